/**
 * The api's own per-request cost, in-process (no HTTP, no k6): `app.fetch` of an allocate request
 * against our app (sold-out stock from memory, and a live stock on Redis) and against the bare Hono
 * app of loadtests/baselines/hono-bare.ts' shape. For profiling (`bun --cpu-prof`) and quick A/B of
 * middleware changes; the HTTP ratios are bench:allocate's.
 *
 *   bun loadtests/bench/api-overhead.ts [--n 20000] [--only sold-out|live|bare]
 */
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { createApp } from "../../services/api/app.ts";
import { subscribeReleased } from "../../services/api/released-subscriber.ts";
import { RefusalCache } from "../../services/api/allocate/sold-out-cache.ts";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis, deleteKeysByPrefix } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { mintUserToken } from "../../shared/dev/token.ts";
import { uniquePrefix } from "../support.ts";

const { values } = parseArgs({ options: { n: { type: "string", default: "20000" }, only: { type: "string" } } });
const N = Number(values.n);
const ADMIN = "overhead-admin-token-0123456789";
const SECRET = "overhead-jwt-secret-0123456789abcdef0123456789";
const prefix = uniquePrefix("ovh");
const redis = createRedis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const keys = createKeyLayout(prefix, 4);
const logger = createLogger("api", "info");
const refusals = new RefusalCache({ ttlMs: 250, registry: createMetricsRegistry("api") });
const released = subscribeReleased(redis, keys, refusals, logger);
await released.ready;
const commands = createStockCommands(redis, keys);
const app = createApp({
  commands, refusals, redis, logger, registry: createMetricsRegistry("api"), adminToken: ADMIN, jwtSecret: SECRET, maxBodyBytes: 16384,
  rateLimits: { ip: null, allocate: { limit: 1_000_000, windowSeconds: 10 }, purchase: null, cancel: null, trustedProxies: [] },
});

const bare = new Hono();
bare.post("/api/stocks/:id/allocate", async (c) => {
  const body = (await c.req.json().catch(() => ({}))) as { quantity?: number };
  return c.json({ allocationId: "s0-bare-1", stockId: c.req.param("id"), userId: "bare", quantity: body.quantity ?? 1, status: "held", expiresAt: new Date(Date.now() + 600_000).toISOString() }, 201);
});

const tokens = await Promise.all(Array.from({ length: 2000 }, (_, i) => mintUserToken(`ovh${i}`, SECRET)));
// With Content-Length, as k6 and every HTTP client send it (a Request built here has none of its own).
const post = (path: string, token: string, body: unknown) => {
  const text = JSON.stringify(body);
  return new Request(`http://127.0.0.1${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)) },
    body: text,
  });
};
await app.request("/api/stocks", { method: "POST", headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" }, body: JSON.stringify({ id: "gone", name: "x", price: 1, quantity: 1, perUserLimit: 1 }) });
await app.request("/api/stocks", { method: "POST", headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" }, body: JSON.stringify({ id: "hot", name: "x", price: 1, quantity: 10_000_000, perUserLimit: 100 }) });
await app.fetch(post("/api/stocks/gone/allocate", await mintUserToken("first-buyer", SECRET), { quantity: 1 }));

async function run(name: string, fetch: (r: Request) => Response | Promise<Response>, path: string, expect: number, concurrency = 16): Promise<void> {
  for (const round of ["warm", "measured"]) {
    const n = round === "warm" ? Math.min(N, 5000) : N;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let i = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (i < n) {
        const k = i++;
        const res = await fetch(post(path, tokens[k % tokens.length]!, { quantity: 1 }));
        if (res.status !== expect) throw new Error(`${name}: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
        // Let I/O in between requests, as a server's event loop does (the cache's probe reply must land).
        await new Promise((resolve) => setImmediate(resolve));
      }
    }));
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    if (round === "measured") console.log(`${name.padEnd(9)} ${(n / (ms / 1000)).toFixed(0).padStart(7)} req/s  ${(((cpu.user + cpu.system) / n)).toFixed(1).padStart(6)} µs CPU/req (incl. Request build)`);
  }
}

const only = values.only;
if (!only || only === "bare") await run("bare", (r) => bare.fetch(r), "/api/stocks/gone/allocate", 201);
if (!only || only === "sold-out") await run("sold-out", (r) => app.fetch(r), "/api/stocks/gone/allocate", 409);
if (!only || only === "live") await run("live", (r) => app.fetch(r), "/api/stocks/hot/allocate", 201);
await released.close();
await deleteKeysByPrefix(redis, prefix);
await redis.quit();
