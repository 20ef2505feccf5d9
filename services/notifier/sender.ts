/**
 * One HTTP attempt of a webhook, signed with the spec's own library (`standardwebhooks`, pure JS, runs
 * on Bun as is): headers webhook-id (= event id, so receivers dedupe), webhook-timestamp (now, re-signed
 * on every attempt: verifiers reject timestamps older than 5 minutes) and webhook-signature
 * (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`); the body is the event envelope.
 *
 * Redirects are not followed (a 3xx is a failed attempt); a deadline bounds the wait for the response
 * headers (this includes the connect) and another the whole attempt. Both are raced in JS as well as
 * signalled to fetch: Bun's fetch does not always honour an abort while it is still connecting. Only a
 * short excerpt of the response body is read and kept.
 */
import { Webhook } from "standardwebhooks";
import { parseRetryAfter } from "./schedule.ts";

export const EXCERPT_BYTES = 200;
/** Bytes of a response body read at most (so the connection can be reused); the rest is cancelled. */
const DRAIN_BYTES = 64 * 1024;
const USER_AGENT = "flash-sale-notifier/1 (Standard Webhooks)";

export interface SignedTarget {
  url: string;
  webhook: Webhook;
}

export function signedTarget(url: string, secret: string): SignedTarget {
  return { url, webhook: new Webhook(secret) };
}

export interface SendOptions {
  connectTimeoutMs: number;
  timeoutMs: number;
}

export interface SendResult {
  status: number | null;
  retryAfterMs: number | null;
  /** Short excerpt of the response body (non-2xx) or of the error; null when there is nothing to say. */
  excerpt: string | null;
  failure: "timeout" | "network" | null;
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

/** Printable, single-line, at most EXCERPT_BYTES characters. */
export function excerpt(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim().slice(0, EXCERPT_BYTES);
}

export async function sendWebhook(target: SignedTarget, message: { id: string; body: string }, options: SendOptions): Promise<SendResult> {
  const started = performance.now();
  const now = new Date();
  const controller = new AbortController();
  const abort = () => controller.abort();
  const totalLeft = () => options.timeoutMs - (performance.now() - started);
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const response = await race(
      fetch(target.url, {
        method: "POST",
        body: message.body,
        redirect: "manual",
        signal: controller.signal,
        headers: {
          "content-type": "application/json",
          "user-agent": USER_AGENT,
          "webhook-id": message.id,
          "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
          "webhook-signature": target.webhook.sign(message.id, now, message.body),
        },
      }),
      Math.min(options.connectTimeoutMs, options.timeoutMs),
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
