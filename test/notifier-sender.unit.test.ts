/**
 * One webhook attempt against real local HTTP servers (ports 3200-3299): the request verifies under the
 * `standardwebhooks` library, redirects are not followed, the deadlines hold against a receiver that
 * never answers or never finishes its body, only a short excerpt of a response is kept (at most 1 KiB),
 * Retry-After is read. SSRF at send time, with an injected resolver (no packet leaves loopback): an
 * address that is refused now is not contacted, whatever it was at registration (DNS rebinding), and
 * the request goes to the very address that was checked.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { EXCERPT_BYTES, EXCERPT_MAX_BYTES, sendWebhook, signedTarget } from "../services/notifier/sender.ts";
import type { Resolver } from "../shared/webhooks/address-policy.ts";
import { generateSecret } from "../shared/webhooks/endpoints.ts";

const secret = generateSecret();
const servers: ReturnType<typeof Bun.serve>[] = [];
function serve(fetch: (req: Request) => Response | Promise<Response>): string {
  for (;;) {
    const port = 3200 + Math.floor(Math.random() * 100);
    try {
      servers.push(Bun.serve({ port, hostname: "127.0.0.1", fetch, idleTimeout: 30 }));
      return `http://127.0.0.1:${port}/hook`;
    } catch {
      // taken, try another
    }
  }
}
afterAll(() => {
  for (const s of servers) s.stop(true);
});
const message = { id: "01938a5e-7c1d-7e4f-9a2b-3c4d5e6f7a8b", body: JSON.stringify({ eventId: "01938a5e-7c1d-7e4f-9a2b-3c4d5e6f7a8b", note: "ünïcode ✓" }) };
// The receivers here are on loopback: allowed only with the flag (WEBHOOK_ALLOW_PRIVATE_NETWORKS).
const options = { connectTimeoutMs: 1_000, timeoutMs: 2_000, allowPrivate: true };

test("a signed POST that the standardwebhooks verifier accepts; 2xx keeps no excerpt", async () => {
  let seen: { headers: Record<string, string>; body: string; method: string } | undefined;
  const url = serve(async (req) => {
    seen = { headers: Object.fromEntries(req.headers), body: await req.text(), method: req.method };
    return new Response("thanks");
  });
  const result = await sendWebhook(signedTarget(url, secret), message, options);
  expect(result).toMatchObject({ status: 200, excerpt: null, failure: null, retryAfterMs: null });
  expect(seen!.method).toBe("POST");
  expect(seen!.headers["content-type"]).toBe("application/json");
  expect(seen!.headers["webhook-id"]).toBe(message.id);
  expect(Math.abs(Number(seen!.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(5);
  expect(seen!.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
  expect(new Webhook(secret).verify(seen!.body, seen!.headers)).toEqual(JSON.parse(message.body));
  expect(() => new Webhook(generateSecret()).verify(seen!.body, seen!.headers)).toThrow();
});

test("redirects are not followed: a 3xx is a failed attempt and the target is never called", async () => {
  let targetCalls = 0;
  const target = serve(() => {
    targetCalls++;
    return new Response("ok");
  });
  const url = serve(() => Response.redirect(target, 307));
  const result = await sendWebhook(signedTarget(url, secret), message, options);
  expect(result.status).toBe(307);
  expect(targetCalls).toBe(0);
});

test("deadlines: no response headers, or a body that never ends", async () => {
  const silent = serve(() => new Promise<Response>(() => {}));
  let started = performance.now();
  const noHeaders = await sendWebhook(signedTarget(silent, secret), message, options);
  expect(noHeaders).toMatchObject({ status: null, failure: "timeout" });
  expect(performance.now() - started).toBeLessThan(1_800);

  const trickle = serve(
    () =>
      new Response(
        new ReadableStream({
          async start(controller) {
            controller.enqueue(new TextEncoder().encode("error: "));
            await Bun.sleep(10_000);
            controller.close();
          },
        }),
        { status: 503 },
      ),
  );
  started = performance.now();
  const slowBody = await sendWebhook(signedTarget(trickle, secret), message, options);
  expect(slowBody).toMatchObject({ status: null, failure: "timeout" });
  expect(performance.now() - started).toBeLessThan(2_800);

  const refused = await sendWebhook(signedTarget("http://127.0.0.1:1/hook", secret), message, options);
  expect(refused).toMatchObject({ status: null, failure: "network" });
});

test("only a short single-line excerpt of a failure is kept; Retry-After is read", async () => {
  const url = serve(() => new Response(`line one\nline two\n${"x".repeat(100_000)}`, { status: 429, headers: { "retry-after": "7" } }));
  const result = await sendWebhook(signedTarget(url, secret), message, options);
  expect(result.status).toBe(429);
  expect(result.retryAfterMs).toBe(7_000);
  expect(result.excerpt!.length).toBe(EXCERPT_BYTES);
  expect(result.excerpt!.startsWith("line one line two x")).toBe(true);
});

test("the stored excerpt is at most 1 KiB of UTF-8, whatever the characters", async () => {
  const url = serve(() => new Response("𝔘".repeat(5_000), { status: 500 }));
  const result = await sendWebhook(signedTarget(url, secret), message, options);
  expect(result.status).toBe(500);
  expect(Buffer.byteLength(result.excerpt!)).toBeLessThanOrEqual(EXCERPT_MAX_BYTES);
  expect(result.excerpt!.length).toBeGreaterThan(0);
});

describe("SSRF at send time (injected resolver)", () => {
  /** A name that resolved to a public address at registration and now answers with loopback (DNS rebinding). */
  const answers = new Map<string, string[]>();
  const resolve: Resolver = async (host) => {
    const a = answers.get(host);
    if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    return a;
  };

  test("a name that now resolves to loopback is refused and never contacted; so are literal inside addresses", async () => {
    let calls = 0;
    const url = serve(() => {
      calls++;
      return new Response("ok");
    });
    const port = new URL(url).port;
    answers.set("rebind.test", ["127.0.0.1"]);
    const strict = { ...options, allowPrivate: false, resolve };
    const rebound = await sendWebhook(signedTarget(`http://rebind.test:${port}/hook`, secret), message, strict);
    expect(rebound).toMatchObject({ status: null, failure: "refused" });
    expect(rebound.excerpt).toContain("rebind.test resolves to 127.0.0.1: loopback");
    // One private address among public ones is enough to refuse the name.
    answers.set("mixed.test", ["93.184.215.14", "::ffff:169.254.169.254"]);
    expect(await sendWebhook(signedTarget(`http://mixed.test:${port}/hook`, secret), message, strict)).toMatchObject({ failure: "refused" });
    for (const literal of [url, `http://[::1]:${port}/hook`, "http://169.254.169.254/latest/meta-data/", `http://[::ffff:7f00:1]:${port}/hook`, `http://2130706433:${port}/hook`]) {
      expect((await sendWebhook(signedTarget(literal, secret), message, strict)).failure).toBe("refused");
    }
    expect(await sendWebhook(signedTarget(`http://nowhere.test:${port}/hook`, secret), message, strict)).toMatchObject({ failure: "refused" });
    expect(calls).toBe(0);
  });

  test("the request goes to the address that was checked, with the URL's name as Host", async () => {
    let host = null as string | null;
    const url = serve((req) => {
      host = req.headers.get("host");
      return new Response("ok");
    });
    const port = new URL(url).port;
    // "pinned.test" exists only in this resolver: the request can only arrive here through the checked address.
    answers.set("pinned.test", ["127.0.0.1"]);
    const result = await sendWebhook(signedTarget(`http://pinned.test:${port}/hook`, secret), message, { ...options, allowPrivate: true, resolve });
    expect(result.status).toBe(200);
    expect(host).toBe(`pinned.test:${port}`);
  });
});

test("the node:crypto signature is the standardwebhooks library's, for any secret, id, time and body", () => {
  const bodies = ["", "{}", message.body, "x".repeat(10_000), JSON.stringify({ emoji: "🚀", nul: "\u0000", quote: '"' })];
  for (const s of [secret, generateSecret(), generateSecret().replace(/^whsec_/, "")]) {
    const ours = signedTarget("http://127.0.0.1:1/hook", s);
    const theirs = new Webhook(s);
    for (const body of bodies) {
      const at = new Date(1_700_000_000_000 + Math.floor(Math.random() * 1e9));
      expect(ours.sign(message.id, at, body)).toBe(theirs.sign(message.id, at, body));
    }
  }
  expect(() => signedTarget("http://127.0.0.1:1/hook", "")).toThrow();
});
