/**
 * The front-door targets of `bun run bench:allocate` (docs/design.md §12), beside the others of the
 * same run:
 *   api-sold-out  our api on a sold-out stock: refusals from memory. Its Redis is a private
 *                 redis-server, so INFO commandstats counts only this api's scripts.
 *   api-workers   our api with API_WORKERS = cores on one live stock (server CPU = all workers).
 *   buckets       the rate limiter's token bucket: in-process (what the api uses) against the same
 *                 bucket as a Redis Lua script (what a shared, exact limit would cost per request).
 */
import { cpus } from "node:os";
import { createRedis, deleteKeysByPrefix } from "../../shared/redis/client.ts";
import { TokenBuckets } from "../../services/api/rate-limit.ts";
import { childPids, startPrivateRedis } from "../../shared/dev/processes.ts";
import { mintUserToken } from "../../shared/dev/token.ts";
import { adminPost, cpuSeconds, loadApiEnv, startProcess, uniquePrefix, waitHealthy } from "../support.ts";
import { freePort } from "../../shared/dev/env.ts";

export interface K6RunsResult {
  closed?: { rps: number; requests: number };
  open?: { achieved: number };
  serverCpuUsPerReq?: number;
  storeCpuUsPerReq?: number;
}

export interface FrontDoorContext<R extends K6RunsResult> {
  dir: string;
  adminToken: string;
  jwtSecret: string;
  vus: number;
  openSeconds: number;
  k6Runs(target: string, baseUrl: string, stockIds: string[], cpu: () => number, storeCpu?: () => number): Promise<R>;
}

async function scriptCalls(redis: ReturnType<typeof createRedis>): Promise<number> {
  const info = await redis.info("commandstats");
  return [...info.matchAll(/^cmdstat_(evalsha|eval):calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[2]), 0);
}

/** Our api answering a sold-out stock: every request a 409 from memory, Redis touched ~10 times a second. */
export async function benchApiSoldOut<R extends K6RunsResult>(ctx: FrontDoorContext<R>): Promise<R & { check: string; note: string; scriptShare: number }> {
  const redisPort = await freePort();
  const redis = await startPrivateRedis(redisPort);
  const port = await freePort();
  const child = startProcess("api-sold-out", [process.execPath, "services/api/main.ts"], loadApiEnv(ctx, port, await freePort(), { REDIS_URL: redis.url }), ctx.dir);
  try {
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(`${baseUrl}/readyz`, child);
    await adminPost(baseUrl, ctx.adminToken, "/api/stocks", { id: "gone", name: "Sold out", price: 1999, quantity: 1, perUserLimit: 1 });
    const token = await mintUserToken("first-buyer", ctx.jwtSecret);
    const first = await fetch(`${baseUrl}/api/stocks/gone/allocate`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    if (first.status !== 201) throw new Error(`the one unit was not allocated: ${first.status}`);
    const pid = Number(/process_id:(\d+)/.exec(await redis.client.info("server"))?.[1]);
    const before = await scriptCalls(redis.client);
    const r = await ctx.k6Runs("api-sold-out", baseUrl, ["gone"], () => cpuSeconds(child.proc.pid), () => cpuSeconds(pid));
    const scripts = (await scriptCalls(redis.client)) - before;
    // Requests of the closed and open runs (the warm-up's are not counted, so the share is an upper bound).
    const requests = (r.closed?.requests ?? 0) + (r.open?.achieved ?? 0) * ctx.openSeconds;
    const share = requests > 0 ? scripts / requests : Number.NaN;
    const [available] = await redis.client.hmget((await redis.client.keys("*:stock:gone"))[0]!, "available");
    return {
      ...r,
      scriptShare: share,
      check: `${scripts} scripts for ${Math.round(requests)} requests (${(share * 100).toFixed(2)}%), available ${available}`,
      note: "private redis-server; SOLD_OUT_CACHE_MS default",
    };
  } finally {
    await child.stop();
    await redis.stop();
  }
}

/** Our api with one process per core on one port, on one live stock (on the shared Redis). */
export async function benchApiWorkers<R extends K6RunsResult>(
  ctx: FrontDoorContext<R>,
  redisUrl: string,
  units: number,
): Promise<R & { note: string; prefix: string; workers: number }> {
  const workers = cpus().length;
  const prefix = uniquePrefix("bapiw");
  const port = await freePort();
  const adminPort = await freePort();
  const child = startProcess(
    "api-workers",
    [process.execPath, "services/api/main.ts"],
    loadApiEnv(ctx, port, adminPort, { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix, API_WORKERS: String(workers) }),
    ctx.dir,
  );
  const redis = createRedis(redisUrl);
  try {
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(`${baseUrl}/readyz`, child);
    await Bun.sleep(1_000); // every worker bound the port
    await adminPost(baseUrl, ctx.adminToken, "/api/stocks", { id: `${prefix}-hot`, name: "Hot", price: 1999, quantity: units, perUserLimit: 1000 });
    const all = [child.proc.pid, ...childPids(child.proc.pid)];
    const r = await ctx.k6Runs("api-workers", baseUrl, [`${prefix}-hot`], () => all.reduce((sum, pid) => sum + cpuSeconds(pid), 0));
    return { ...r, prefix, workers, note: `API_WORKERS=${workers} (server CPU = supervisor + workers)` };
  } finally {
    await child.stop();
    await deleteKeysByPrefix(redis, prefix);
    await redis.quit();
  }
}

/*
  The Redis-backed alternative to TokenBuckets.take, for the measurement only.
  KEYS[1] bucket hash   ARGV[1] capacity   ARGV[2] tokens per ms   ARGV[3] idle ttl ms
  Returns 1 (taken) or 0 (refused).
*/
const REDIS_BUCKET_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = math.min(cap, (tonumber(b[1]) or cap) + (now - (tonumber(b[2]) or now)) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return ok`;

export interface BucketFigures {
  local: { opsPerSecond: number; cpuUsPerOp: number };
  redis: { opsPerSecond: number; cpuUsPerOp: number; redisCpuUsPerOp: number; p50Ms: number; p99Ms: number };
}

/** One take per simulated request over 10,000 users: in-process, then on Redis with `inFlight` concurrent. */
export async function benchBuckets(redisUrl: string, inFlight: number, seconds: number): Promise<BucketFigures> {
  const users = Array.from({ length: 10_000 }, (_, i) => `u${i}`);
  const local = new TokenBuckets("allocate", { limit: 20, windowSeconds: 10 });
  const n = 2_000_000;
  const c0 = cpuSeconds(process.pid);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) local.take(users[i % users.length]!);
  const localMs = performance.now() - t0;
  const localCpu = cpuSeconds(process.pid) - c0;

  const prefix = uniquePrefix("bbucket");
  const redis = createRedis(redisUrl);
  try {
    const pid = Number(/process_id:(\d+)/.exec(await redis.info("server"))?.[1]);
    redis.defineCommand("benchBucket", { numberOfKeys: 1, lua: REDIS_BUCKET_LUA });
    const take = (user: string) => (redis as unknown as { benchBucket(k: string, ...a: number[]): Promise<number> }).benchBucket(`${prefix}:{b}:${user}`, 20, 20 / 10_000, 20_000);
    await take("warm");
    const latencies: number[] = [];
    const until = performance.now() + seconds * 1000;
    const r0 = cpuSeconds(pid);
    const b0 = cpuSeconds(process.pid);
    const started = performance.now();
    let count = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async (_, w) => {
        for (let i = w; performance.now() < until; i += inFlight) {
          const t = performance.now();
          await take(users[i % users.length]!);
          latencies.push(performance.now() - t);
          count++;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      // A synchronous loop: its wall time is its CPU time (the process clock's 10 ms ticks are too coarse here).
      local: { opsPerSecond: n / (localMs / 1000), cpuUsPerOp: Math.max((localMs * 1000) / n, (localCpu * 1e6) / n) },
      redis: {
        opsPerSecond: count / elapsed,
        cpuUsPerOp: ((cpuSeconds(process.pid) - b0) * 1e6) / count,
        redisCpuUsPerOp: ((cpuSeconds(pid) - r0) * 1e6) / count,
        p50Ms: latencies[Math.floor(count * 0.5)]!,
        p99Ms: latencies[Math.floor(count * 0.99)]!,
      },
    };
  } finally {
    await deleteKeysByPrefix(redis, prefix);
    await redis.quit();
  }
}
