/**
 * One HTTP attempt of a webhook, signed with the spec's own library (`standardwebhooks`, pure JS, runs
 * on Bun as is): headers webhook-id (= event id, so receivers dedupe), webhook-timestamp (now, re-signed
 * on every attempt: verifiers reject timestamps older than 5 minutes) and webhook-signature
 * (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`); the body is the event envelope.
 *
 * Where it may go (SSRF, shared/webhooks/address-policy.ts): the host is resolved at every attempt, every
 * address checked, and the request goes to the checked address itself (Host header and TLS server name
 * keep the URL's name), so a name that re-binds to an inside address between check and connect cannot
 * redirect it; a refused address is a failed attempt ("refused"), retried through the schedule.
 * Redirects are not followed (a 3xx is a failed attempt); a deadline bounds the wait for the response
 * headers (this includes resolving and the connect) and another the whole attempt. Both are raced in JS as well as
 * signalled to fetch: Bun's fetch does not always honour an abort while it is still connecting. Only a
 * short excerpt of the response body is read and kept.
 */
import { createHmac } from "node:crypto";
import { isIP } from "node:net";
import { Webhook } from "standardwebhooks";
import { checkWebhookUrl, pinnedUrl, type Resolver } from "../../shared/webhooks/address-policy.ts";
import { parseRetryAfter } from "./schedule.ts";

/** Characters of a response kept (single line); never more than EXCERPT_MAX_BYTES of UTF-8. */
export const EXCERPT_BYTES = 200;
/** The stored excerpt's bound in bytes (issue 21: 1 KiB). */
export const EXCERPT_MAX_BYTES = 1024;
/** Bytes of a response body read at most (so the connection can be reused); the rest is cancelled. */
const DRAIN_BYTES = 64 * 1024;
const USER_AGENT = "flash-sale-notifier/1 (Standard Webhooks)";

export interface SignedTarget {
  url: string;
  /** `v1,<base64 HMAC-SHA256 of id.timestamp.body>` under the endpoint's secret. */
  sign(id: string, at: Date, body: string): string;
}

/**
 * The signature is the spec's, computed with node:crypto's HMAC: `standardwebhooks` signs in pure JS
 * (fast-sha256), which was a tenth of the notifier's CPU per delivery in a drain. The library still
 * reads the secret (its format, its errors), and a unit test holds both signatures equal.
 */
export function signedTarget(url: string, secret: string): SignedTarget {
  new Webhook(secret); // throws on a secret the spec's library would refuse
  const key = Buffer.from(secret.startsWith(WEBHOOK_SECRET_PREFIX) ? secret.slice(WEBHOOK_SECRET_PREFIX.length) : secret, "base64");
  return { url, sign: (id, at, body) => `v1,${createHmac("sha256", key).update(`${id}.${Math.floor(at.getTime() / 1000)}.${body}`).digest("base64")}` };
}

const WEBHOOK_SECRET_PREFIX = "whsec_";

export interface SendOptions {
  connectTimeoutMs: number;
  timeoutMs: number;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: loopback and private receivers allowed (development, tests). */
  allowPrivate: boolean;
  /** Host name → addresses; the system resolver by default (tests inject one). */
  resolve?: Resolver;
}

export interface SendResult {
  status: number | null;
  retryAfterMs: number | null;
  /** Short excerpt of the response body (non-2xx) or of the error; null when there is nothing to say. */
  excerpt: string | null;
  failure: "timeout" | "network" | "refused" | null;
  ms: number;
}

class Deadline extends Error {
  constructor(readonly what: string) {
    super(`${what} timed out`);
    this.name = "Deadline";
  }
}

function race<T>(work: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new Deadline(what));
    }, Math.max(1, ms));
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** Reads up to DRAIN_BYTES and returns the first EXCERPT_BYTES as text; cancels the rest. */
async function readExcerpt(response: Response): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < DRAIN_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      if (size < EXCERPT_BYTES) chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    if (size >= DRAIN_BYTES) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  return excerpt(new TextDecoder().decode(Buffer.concat(chunks).subarray(0, EXCERPT_BYTES)));
}

/** Printable, single-line, at most EXCERPT_BYTES characters and EXCERPT_MAX_BYTES bytes of UTF-8. */
export function excerpt(text: string): string {
  let cut = text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim().slice(0, EXCERPT_BYTES);
  while (Buffer.byteLength(cut) > EXCERPT_MAX_BYTES) cut = cut.slice(0, -1);
  return cut;
}

export async function sendWebhook(target: SignedTarget, message: { id: string; body: string }, options: SendOptions): Promise<SendResult> {
  const started = performance.now();
  const now = new Date();
  const controller = new AbortController();
  const abort = () => controller.abort();
  const totalLeft = () => options.timeoutMs - (performance.now() - started);
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const connectMs = Math.min(options.connectTimeoutMs, options.timeoutMs);
    const check = await race(checkWebhookUrl(target.url, { allowPrivate: options.allowPrivate, resolve: options.resolve }), connectMs, "resolve", () => {});
    if (!check.ok) return { status: null, retryAfterMs: null, excerpt: excerpt(check.reason), failure: "refused", ms: elapsed() };
    const { host, hostname, protocol } = new URL(target.url);
    const name = hostname.replace(/^\[|\]$/g, "");
    const response = await race(
      fetch(pinnedUrl(target.url, check.address), {
        method: "POST",
        body: message.body,
        redirect: "manual",
        signal: controller.signal,
        // The checked address is what we connect to; the URL's name still goes in Host and in TLS (SNI, certificate).
        ...(protocol === "https:" && !isIP(name) ? { tls: { serverName: name } } : {}),
        headers: {
          host,
          "content-type": "application/json",
          "user-agent": USER_AGENT,
          "webhook-id": message.id,
          "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
          "webhook-signature": target.sign(message.id, now, message.body),
        },
      }),
      connectMs - (performance.now() - started),
      "connect and response headers",
      abort,
    );
    const status = response.status;
    const text = await race(readExcerpt(response), totalLeft(), "request", abort).catch((err: unknown) => {
      // The status is known; a body that does not arrive in time only loses its excerpt.
      if (status >= 200 && status < 300) return "";
      throw err;
    });
    const ok = status >= 200 && status < 300;
    return {
      status,
      retryAfterMs: ok ? null : parseRetryAfter(response.headers.get("retry-after")),
      excerpt: ok ? null : text || null,
      failure: null,
      ms: elapsed(),
    };
  } catch (err) {
    const timeout = err instanceof Deadline || (err as Error)?.name === "TimeoutError" || (err as Error)?.name === "AbortError";
    const description = err instanceof Error ? err.message : String(err);
    return { status: null, retryAfterMs: null, excerpt: excerpt(description), failure: timeout ? "timeout" : "network", ms: elapsed() };
  }
}
