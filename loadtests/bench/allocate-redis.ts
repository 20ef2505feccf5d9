/**
 * The Redis ceilings as bench:allocate targets: `redis` (redis-benchmark EVALSHA of allocate.lua, no
 * HTTP, no Bun) and `ioredis` (commands.allocate() in a loop, our Redis path without HTTP). allocate.ts
 * passes what it shares with every target.
 */
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { DEFAULT_OUTBOX_MAX_LENGTH, REQUEST_RECORD_TTL_SECONDS } from "../../shared/domain/policy.ts";
import { createRedis, deleteKeysByPrefix } from "../../shared/redis/client.ts";
import { allocateFingerprint } from "../../shared/redis/calls.ts";
import { createStockCommands, type StockCommands } from "../../shared/redis/commands.ts";
import { scriptSource } from "../../shared/redis/scripts.ts";
import { formatReport } from "../../shared/verify/report.ts";
import { verify } from "../../shared/verify/verify.ts";
import { cpuSeconds, uniquePrefix } from "../support.ts";
import type { Row } from "./allocate-report.ts";

export interface RedisBenchContext {
  redisUrl: string;
  /** --vus: clients of redis-benchmark, calls in flight of the ioredis loop. */
  vus: string;
  redisRequests: string;
  warmupSeconds: number;
  durationSeconds: number;
  units: number;
  perUserLimit: number;
  stockSpecs(prefix: string, count: number): Array<{ id: string; name: string; price: number; quantity: number; perUserLimit: number }>;
  record(row: Row): void;
  fail(): void;
}

export async function benchRedisBenchmark(ctx: RedisBenchContext): Promise<void> {
  const { redisUrl: REDIS_URL, vus: VUS, redisRequests, units: UNITS, perUserLimit: PER_USER_LIMIT, record } = ctx;
  const prefix = uniquePrefix("bredis");
  const redis = createRedis(REDIS_URL);
  try {
    const keys = createKeyLayout(prefix, 1);
    const commands = createStockCommands(redis, keys);
    await commands.createStock({ id: "hot", name: "Hot", price: 1999, quantity: UNITS, perUserLimit: PER_USER_LIMIT });
    const sha = (await redis.script("LOAD", scriptSource("fsAllocate"))) as string;
    const stock = keys.stock("hot");
    // Same keys and arguments the api passes (no Idempotency-Key: a request record per call, kept
    // REQUEST_RECORD_TTL_SECONDS); __rand_int__ makes each call a new user, allocation, request and
    // event (redis-benchmark draws each occurrence separately; it is 12 digits, a UUID's last group).
    const requestKey = keys.allocationRequest("hot", "0190a6c2-1f00-4000-8000-000000000000").replace(/0{12}$/, "__rand_int__");
    const room = keys.room("hot"); // KEYS 7-10: the waiting room's, untouched by a stock without one
    const args = [
      "EVALSHA", sha, "10",
      stock, keys.stockBuyers("hot"), `${prefix}:{0}:hold:s0-__rand_int__`, keys.holdsDue(0), requestKey, keys.outbox(0),
      room.room, room.line, room.admitted, room.tickets,
      "hot", "u__rand_int__", "1", "s0-__rand_int__", "0190a6c2-1f00-7000-8000-__rand_int__", allocateFingerprint("u__rand_int__", "hot", 1),
      String(REQUEST_RECORD_TTL_SECONDS), String(DEFAULT_OUTBOX_MAX_LENGTH), "", "",
    ];
    const url = new URL(REDIS_URL);
    const proc = Bun.spawn(
      ["redis-benchmark", "-h", url.hostname, "-p", url.port || "6379", "-c", VUS, "-n", redisRequests, "-r", "1000000", "--csv", ...args],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await new Response(proc.stdout).text();
    const code = await proc.exited;
    const line = out.trim().split("\n").at(-1) ?? "";
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    const cols = line.split(",").map((v) => v.replaceAll('"', ""));
    const counters = await redis.hmget(stock, "available", "held", "sold", "total");
    const held = Number(counters[1]);
    // Holds must have been made: a script that refuses its arguments ('invalid') would measure nothing.
    const ok = code === 0 && held > 0 && Number(counters[0]) + held + Number(counters[2]) === Number(counters[3]);
    if (!ok) ctx.fail();
    record({
      target: "redis",
      stocks: 1,
      closed: { rps: Number(cols[1]), p50: Number(cols[4]), p99: Number(cols[6]), requests: held, ok },
      check: `${held} held, conservation ${ok ? "ok" : "BROKEN"}`,
      note: `redis-benchmark -c ${VUS} -n ${redisRequests} EVALSHA allocate.lua`,
    });
  } finally {
    await deleteKeysByPrefix(redis, prefix);
    await redis.quit();
  }
}

/** `inflight` loops of commands.allocate() on random stocks and buyers for `ms`: how many, and each one's latency (sorted). */
export async function allocationLoop(commands: StockCommands, stockIds: string[], inflight: number, ms: number): Promise<{ n: number; latencies: number[] }> {
  const latencies: number[] = [];
  const until = performance.now() + ms;
  let n = 0;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (performance.now() < until) {
        const t = performance.now();
        await commands.allocate({ stockId: stockIds[Math.floor(Math.random() * stockIds.length)]!, userId: `b${Math.floor(Math.random() * 10_000)}`, quantity: 1 });
        latencies.push(performance.now() - t);
        n++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { n, latencies };
}

/** Our Redis path without HTTP: commands.allocate() in a loop with 64 calls in flight (auto-pipelined). */
export async function benchIoredis(ctx: RedisBenchContext, stockCount: number): Promise<void> {
  const { redisUrl: REDIS_URL, vus: VUS, warmupSeconds, durationSeconds, stockSpecs, record } = ctx;
  const prefix = uniquePrefix("bio");
  const redis = createRedis(REDIS_URL);
  try {
    const keys = createKeyLayout(prefix, 4);
    const commands = createStockCommands(redis, keys);
    const stocks = stockSpecs(prefix, stockCount);
    for (const s of stocks) await commands.createStock(s);
    const ids = stocks.map((s) => s.id);
    await allocationLoop(commands, ids, Number(VUS), warmupSeconds * 1000);
    const t0 = cpuSeconds(process.pid);
    const { n, latencies } = await allocationLoop(commands, ids, Number(VUS), durationSeconds * 1000);
    const t1 = cpuSeconds(process.pid);
    const report = await verify({ redis, prefix, layers: ["redis"], outbox: "full" });
    if (!report.ok) {
      ctx.fail();
      console.log(formatReport(report));
    }
    record({
      target: "ioredis",
      stocks: stockCount,
      closed: { rps: n / durationSeconds, p50: latencies[Math.floor(n * 0.5)]!, p99: latencies[Math.floor(n * 0.99)]!, requests: n, ok: report.ok },
      serverCpuUsPerReq: ((t1 - t0) * 1e6) / n,
      check: `verifier ${report.ok ? "clean" : "FAILED"}`,
      note: `${VUS} in flight, in-process (no HTTP)`,
    });
  } finally {
    await deleteKeysByPrefix(redis, prefix);
    await redis.quit();
  }
}
