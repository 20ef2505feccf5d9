/**
 * The front door under a stampede (docs/design.md §12), over real HTTP against real api processes
 * and a private redis-server (INFO commandstats on the shared 6379 counts every helper's commands):
 *   - after sell-out, allocate refusals come from memory: 2,000 requests reach Redis < 20 times;
 *   - units given back (cancel, or a lost message) reach buyers within SOLD_OUT_CACHE_MS + 100 ms,
 *     on both of two api processes (pub/sub reaches both);
 *   - Idempotency-Key replays stay exact while the refusals come from memory;
 *   - per-user and per-IP request-rate limits: 429 problem+json with Retry-After and the IETF
 *     RateLimit fields, others unaffected, a client honouring Retry-After gets through;
 *   - API_WORKERS=2 serves one port from two processes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mintUserToken } from "../shared/dev/token.ts";
import { createRedis, deleteKeysByPrefix, parseClusterNodes } from "../shared/redis/client.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { FD_ADMIN_TOKEN, FD_JWT_SECRET, commandCalls, inParallel, startApi } from "./support/front-door.ts";
import { childPids, startPrivateRedis, type Proc } from "../shared/dev/processes.ts";

const REDIS_PORT = 3190;
const CACHE_MS = 250;
const prefix = uniqueName("fd").slice(0, 32);

let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
let a1: Proc & { url: string };
let a2: Proc & { url: string };
const tokens = new Map<string, string>();

async function token(userId: string): Promise<string> {
  let t = tokens.get(userId);
  if (!t) tokens.set(userId, (t = await mintUserToken(userId, FD_JWT_SECRET)));
  return t;
}

async function createStock(url: string, body: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${url}/api/stocks`, {
    method: "POST",
    headers: { Authorization: `Bearer ${FD_ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "front door", price: 100, ...body }),
  });
  expect(res.status).toBe(201);
}

async function allocate(url: string, stockId: string, userId: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/api/stocks/${stockId}/allocate`, {
    method: "POST",
    headers: { Authorization: `Bearer ${await token(userId)}`, "Content-Type": "application/json", ...headers },
    body: JSON.stringify({ quantity: 1 }),
  });
}

async function cancel(url: string, allocationId: string, userId: string): Promise<Response> {
  return fetch(`${url}/api/allocations/${allocationId}/cancel`, { method: "POST", headers: { Authorization: `Bearer ${await token(userId)}` } });
}

/** Sells a fresh stock of `units` out through `url`; returns the holds. */
async function soldOutStock(url: string, units: number): Promise<{ stockId: string; holds: { allocationId: string; userId: string }[] }> {
  const stockId = uniqueName("so");
  await createStock(url, { id: stockId, quantity: units, perUserLimit: 1 });
  const holds = [];
  for (let i = 0; i < units; i++) {
    const userId = `${stockId}-w${i}`;
    const res = await allocate(url, stockId, userId);
    expect(res.status).toBe(201);
    holds.push({ allocationId: ((await res.json()) as { allocationId: string }).allocationId, userId });
  }
  const refused = await allocate(url, stockId, `${stockId}-late`);
  expect(refused.status).toBe(409);
  expect(((await refused.json()) as { code: string }).code).toBe("sold_out");
  return { stockId, holds };
}

/** flashsale_allocate_refusals_from_memory_total of one api process (its admin port is its port + 10). */
async function fromMemory(apiUrl: string): Promise<number> {
  const admin = apiUrl.replace(/:(\d+)$/, (_, p: string) => `:${Number(p) + 10}`);
  const text = await (await fetch(`${admin}/metrics`)).text();
  return [...text.matchAll(/^flashsale_allocate_refusals_from_memory_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** Allocates as fresh users until one gets a 201; returns the milliseconds it took. */
async function msUntilAllocated(url: string, stockId: string, since: number, limitMs: number): Promise<number> {
  for (let i = 0; performance.now() - since < limitMs + 2_000; i++) {
    const res = await allocate(url, stockId, `${stockId}-r${i}-${Math.random().toString(36).slice(2, 6)}`);
    if (res.status === 201) return performance.now() - since;
    expect(res.status).toBe(409);
    await res.body?.cancel();
    await Bun.sleep(5);
  }
  return Number.POSITIVE_INFINITY;
}

beforeAll(async () => {
  redis = await startPrivateRedis(REDIS_PORT);
  // No rate limits here (one test retries 50 times as one user); they have their own api below.
  const env = { REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, SOLD_OUT_CACHE_MS: String(CACHE_MS), RATE_LIMIT_IP: "off", RATE_LIMIT_ALLOCATE: "off" };
  [a1, a2] = await Promise.all([startApi(3101, env), startApi(3102, env)]);
  // Warm the token cache so the measured loops below only measure the api.
  await Promise.all(Array.from({ length: 2000 }, (_, i) => token(`crowd${i}`)));
}, 60_000);

afterAll(async () => {
  await Promise.allSettled([a1?.stop(), a2?.stop()]);
  await redis?.stop();
});

describe("sold out from memory", () => {
  test("after sell-out, 2,000 allocate requests reach Redis fewer than 20 times", async () => {
    const { stockId } = await soldOutStock(a1.url, 3);
    const before = await commandCalls(redis.client);
    const started = performance.now();
    const statuses = await inParallel(2000, 32, async (i) => {
      const res = await allocate(a1.url, stockId, `crowd${i}`);
      const body = (await res.json()) as { code: string; available: number; requestId: string };
      return `${res.status} ${body.code} ${body.available}`;
    });
    const elapsed = performance.now() - started;
    const after = await commandCalls(redis.client);
    expect(new Set(statuses)).toEqual(new Set(["409 sold_out 0"]));
    // One probe per SOLD_OUT_CACHE_MS at most, whatever the request rate.
    expect(after.total - before.total).toBeLessThan(20);
    console.log(`[front-door] 2000 sold_out in ${elapsed.toFixed(0)} ms: ${after.total - before.total} Redis commands (${after.evalsha - before.evalsha} scripts)`);
  });

  test("bad input on a sold-out stock is still judged by the route (400/415), only valid requests come from memory", async () => {
    const { stockId } = await soldOutStock(a1.url, 1);
    const post = async (body: string | undefined, type?: string) => {
      const headers: Record<string, string> = { Authorization: `Bearer ${await token("judged")}` };
      if (type) headers["Content-Type"] = type;
      const res = await fetch(`${a1.url}/api/stocks/${stockId}/allocate`, { method: "POST", headers, body });
      return `${res.status} ${((await res.json()) as { code: string }).code}`;
    };
    const before = await fromMemory(a1.url);
    expect(await post('{"quantity":1}', "application/json")).toBe("409 sold_out");
    expect(await post(undefined)).toBe("409 sold_out");
    expect(await fromMemory(a1.url)).toBe(before + 2);
    expect(await post('{"quantity":0}', "application/json")).toBe("400 invalid_request");
    expect(await post('{"quantity":1,"extra":true}', "application/json")).toBe("400 invalid_request");
    expect(await post("{not json", "application/json")).toBe("400 invalid_request");
    expect(await post("quantity=1", "text/plain")).toBe("415 unsupported_media_type");
    expect((await fetch(`${a1.url}/api/stocks/${stockId}/allocate`, { method: "POST" })).status).toBe(401);
    // The access metrics name the route for refusals from memory as for any other answer.
    const metrics = await (await fetch(`${a1.url.replace(/:(\d+)$/, (_, p: string) => `:${Number(p) + 10}`)}/metrics`)).text();
    expect(metrics).toMatch(/flashsale_http_requests_total\{[^}]*route="\/api\/stocks\/:id\/allocate"[^}]*code="409"[^}]*\} \d+/);
  });

  test("with Idempotency-Key: replays stay exact, and doomed keys cost a GET, not a script", async () => {
    const { stockId } = await soldOutStock(a1.url, 1);
    // A buyer who got a unit before the sell-out retries with the key of the first request: same answer.
    const firstKey = `k-${stockId}`;
    await createStock(a1.url, { id: `${stockId}-b`, quantity: 1, perUserLimit: 1 });
    const first = await allocate(a1.url, `${stockId}-b`, "keyed-buyer", { "Idempotency-Key": firstKey });
    expect(first.status).toBe(201);
    const firstBody = await first.json();
    const soldOut = await allocate(a1.url, `${stockId}-b`, "keyed-other");
    expect(soldOut.status).toBe(409);

    const before = await commandCalls(redis.client);
    const replays = await inParallel(50, 10, async () => {
      const res = await allocate(a1.url, `${stockId}-b`, "keyed-buyer", { "Idempotency-Key": firstKey });
      return { status: res.status, replayed: res.headers.get("Idempotent-Replayed"), body: await res.json() };
    });
    const doomed = await inParallel(200, 20, async (i) => {
      const res = await allocate(a1.url, stockId, `crowd${i}`, { "Idempotency-Key": `doomed-${i}` });
      return `${res.status} ${((await res.json()) as { code: string }).code}`;
    });
    const after = await commandCalls(redis.client);
    for (const r of replays) {
      expect(r.status).toBe(201);
      expect(r.replayed).toBe("true");
      expect(r.body).toEqual(firstBody);
    }
    expect(new Set(doomed)).toEqual(new Set(["409 sold_out"]));
    expect(after.evalsha - before.evalsha).toBeLessThan(10);
    // The same key for another quantity is still 422, from memory too.
    const reused = await fetch(`${a1.url}/api/stocks/${stockId}-b/allocate`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await token("keyed-buyer")}`, "Content-Type": "application/json", "Idempotency-Key": firstKey },
      body: JSON.stringify({ quantity: 2 }),
    });
    expect(reused.status).toBe(422);
    expect(((await reused.json()) as { code: string }).code).toBe("idempotency_key_reused");
  });

  test("not_started is answered from memory until the start, then the sale opens", async () => {
    const stockId = uniqueName("ns");
    const startsInMs = 1_500;
    await createStock(a1.url, { id: stockId, quantity: 5, startsAt: new Date(Date.now() + startsInMs).toISOString() });
    const first = await allocate(a1.url, stockId, "early0");
    expect(first.status).toBe(409);
    expect(((await first.json()) as { code: string }).code).toBe("not_started");
    const before = await commandCalls(redis.client);
    const early = await inParallel(300, 20, async (i) => (await allocate(a1.url, stockId, `crowd${i}`)).status);
    const after = await commandCalls(redis.client);
    expect(new Set(early)).toEqual(new Set([409]));
    expect(after.total - before.total).toBeLessThan(5);
    await Bun.sleep(Math.max(0, startsInMs - 300));
    const opened = await msUntilAllocated(a1.url, stockId, performance.now(), 2_000);
    expect(opened).toBeLessThan(2_000);
  });
});

describe("units given back reach buyers within SOLD_OUT_CACHE_MS + 100 ms", () => {
  test("a cancel on one api process reaches both processes' caches", async () => {
    const { stockId, holds } = await soldOutStock(a1.url, 2);
    // Both processes now refuse from memory.
    for (const api of [a1, a2]) {
      const res = await allocate(api.url, stockId, `${stockId}-warm`);
      expect(res.status).toBe(409);
    }
    const before = await commandCalls(redis.client);
    await inParallel(200, 20, async (i) => (await allocate(i % 2 ? a1.url : a2.url, stockId, `crowd${i}`)).status);
    expect((await commandCalls(redis.client)).evalsha - before.evalsha).toBeLessThan(10);

    for (const [api, hold] of [
      [a2, holds[0]!],
      [a1, holds[1]!],
    ] as const) {
      const cancelled = await cancel(a1.url, hold.allocationId, hold.userId);
      expect(cancelled.status).toBe(200);
      const ms = await msUntilAllocated(api.url, stockId, performance.now(), CACHE_MS + 100);
      console.log(`[front-door] released unit allocated on ${api.url} after ${ms.toFixed(1)} ms`);
      expect(ms).toBeLessThan(CACHE_MS + 100);
    }
  });

  test("a unit that comes back without a message (lost) is found within the time bound", async () => {
    const { stockId } = await soldOutStock(a2.url, 1);
    await allocate(a2.url, stockId, `${stockId}-warm`);
    // Straight into Redis, no script, no message: only the time bound can find it.
    const stockKey = (await redis.client.keys(`${prefix}:*:stock:${stockId}`))[0]!;
    await redis.client.hincrby(stockKey, "available", 1);
    await redis.client.hincrby(stockKey, "total", 1);
    const ms = await msUntilAllocated(a2.url, stockId, performance.now(), CACHE_MS + 100);
    expect(ms).toBeLessThan(CACHE_MS + 100);
  });
});

describe("on the stack's Redis Cluster (sharded pub/sub)", () => {
  test("a cancel reaches two api processes' caches through SSUBSCRIBE on the shard's master", async () => {
    const env = {
      REDIS_CLUSTER_NODES: stackEnv.REDIS_CLUSTER_NODES,
      REDIS_KEY_PREFIX: `${prefix}k`.slice(0, 32),
      OUTBOX_SHARDS: "16",
      SOLD_OUT_CACHE_MS: "2000", // long, so only the message can explain a quick success
      RATE_LIMIT_IP: "off",
      RATE_LIMIT_ALLOCATE: "off",
    };
    const [k1, k2] = await Promise.all([startApi(3105, env), startApi(3106, env)]);
    try {
      for (let round = 0; round < 3; round++) {
        // Stocks on different shards, hence (with 16 shards over 3 masters) different nodes.
        const { stockId, holds } = await soldOutStock(k1.url, 1);
        for (const api of [k1, k2]) {
          expect((await allocate(api.url, stockId, `${stockId}-warm`)).status).toBe(409);
          // The next refusal comes from memory: the subscription is live on the cluster.
          const before = await fromMemory(api.url);
          expect((await allocate(api.url, stockId, `${stockId}-warm2`)).status).toBe(409);
          expect(await fromMemory(api.url)).toBe(before + 1);
        }
        expect((await cancel(k1.url, holds[0]!.allocationId, holds[0]!.userId)).status).toBe(200);
        const ms = await msUntilAllocated(round % 2 ? k1.url : k2.url, stockId, performance.now(), 500);
        expect(ms).toBeLessThan(500);
      }
    } finally {
      await Promise.allSettled([k1.stop(), k2.stop()]);
      const cluster = createRedis({ REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(stackEnv.REDIS_CLUSTER_NODES) });
      await deleteKeysByPrefix(cluster, env.REDIS_KEY_PREFIX);
      await cluster.quit();
    }
  }, 60_000);
});

describe("request-rate limits", () => {
  let b: Proc & { url: string };
  const bPrefix = `${prefix}b`.slice(0, 32);

  beforeAll(async () => {
    b = await startApi(3103, {
      REDIS_URL: redis.url,
      REDIS_KEY_PREFIX: bPrefix,
      RATE_LIMIT_ALLOCATE: "5/10s",
      RATE_LIMIT_IP: "100/60s",
      TRUSTED_PROXIES: "127.0.0.1",
    });
  }, 30_000);
  afterAll(async () => {
    await b?.stop();
  });

  test("one user over the rate gets 429 with the headers while others keep getting 201; Retry-After is honoured", async () => {
    const stockId = uniqueName("rl");
    await createStock(b.url, { id: stockId, quantity: 1000, perUserLimit: 100 });
    const greedy: Response[] = [];
    for (let i = 0; i < 7; i++) greedy.push(await allocate(b.url, stockId, "greedy"));
    expect(greedy.map((r) => r.status)).toEqual([201, 201, 201, 201, 201, 429, 429]);
    expect(greedy[0]!.headers.get("RateLimit-Policy")).toBe('"allocate";q=5;w=10');
    expect(greedy[0]!.headers.get("RateLimit")).toMatch(/^"allocate";r=4;t=\d+$/);
    const refused = greedy[5]!;
    expect(refused.headers.get("content-type")).toContain("application/problem+json");
    const retryAfter = Number(refused.headers.get("Retry-After"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(10);
    expect(refused.headers.get("RateLimit-Policy")).toBe('"allocate";q=5;w=10');
    expect(refused.headers.get("RateLimit")).toBe(`"allocate";r=0;t=${retryAfter}`);
    const problem = (await refused.json()) as Record<string, unknown>;
    expect(problem).toMatchObject({ status: 429, code: "rate_limited", title: "Too many requests" });
    expect(typeof problem.requestId).toBe("string");

    // Others are not affected.
    const others = await Promise.all(Array.from({ length: 5 }, (_, i) => allocate(b.url, stockId, `patient${i}`)));
    expect(others.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);

    // A client that waits Retry-After seconds gets through.
    await Bun.sleep(retryAfter * 1000);
    expect((await allocate(b.url, stockId, "greedy")).status).toBe(201);
  }, 30_000);

  test("the per-IP limit holds against 1,000 requests with bad tokens, before authentication", async () => {
    const client = { "X-Forwarded-For": "198.51.100.7" }; // a client behind our trusted proxy (127.0.0.1)
    const statuses = await inParallel(1000, 20, async (i) => {
      const res = await fetch(`${b.url}/api/stocks/any/allocate`, {
        method: "POST",
        headers: { Authorization: `Bearer not-a-jwt-${i}`, "Content-Type": "application/json", ...client },
        body: "{}",
      });
      if (res.status === 429) {
        expect(res.headers.get("Retry-After")).not.toBeNull();
        expect(res.headers.get("RateLimit-Policy")).toBe('"ip";q=100;w=60');
      }
      return res.status;
    });
    const unauthorized = statuses.filter((s) => s === 401).length;
    const limited = statuses.filter((s) => s === 429).length;
    expect(unauthorized + limited).toBe(1000);
    // 100 in the bucket, plus what refills (100 per 60 s) while the loop runs.
    expect(unauthorized).toBeGreaterThanOrEqual(100);
    expect(unauthorized).toBeLessThanOrEqual(110);
    // Another client address through the same proxy has its own bucket; health is never limited.
    const other = await fetch(`${b.url}/api/stocks/any/allocate`, { method: "POST", headers: { Authorization: "Bearer bad", "X-Forwarded-For": "198.51.100.8" } });
    expect(other.status).toBe(401);
    const limitedAgain = await fetch(`${b.url}/api/stocks/any/allocate`, { method: "POST", headers: { Authorization: "Bearer bad", ...client } });
    expect(limitedAgain.status).toBe(429);
    expect((await fetch(`${b.url}/healthz`, { headers: client })).status).toBe(200);
  }, 60_000);
});

describe("API_WORKERS", () => {
  test("two worker processes serve one port, and X-Forwarded-For is ignored from an untrusted peer", async () => {
    const c = await startApi(3107, { REDIS_URL: redis.url, REDIS_KEY_PREFIX: `${prefix}c`.slice(0, 32), API_WORKERS: "2", RATE_LIMIT_IP: "30/60s" });
    try {
      expect(childPids(c.proc.pid).length).toBe(2);
      await Bun.sleep(1_000); // the second worker binds the port a moment after the first answers
      // Spoofed client addresses do not buy fresh buckets: every request counts against 127.0.0.1, per worker.
      const statuses = await inParallel(150, 10, async (i) => {
        const res = await fetch(`${c.url}/api/stocks/any`, { headers: { "X-Forwarded-For": `203.0.113.${i % 250}` }, keepalive: false });
        await res.body?.cancel();
        return res.status;
      });
      const limited = statuses.filter((s) => s === 429).length;
      // Two processes, 30 each: the rest is refused (a few refills aside).
      expect(limited).toBeGreaterThanOrEqual(150 - 2 * 30 - 5);
      expect(statuses.filter((s) => s === 404).length).toBeGreaterThan(30);
    } finally {
      await c.stop();
    }
    expect(c.proc.exitCode).toBe(0);
  }, 60_000);
});
