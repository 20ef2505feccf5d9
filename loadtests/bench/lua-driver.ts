/**
 * One load-generating process for the Redis-ceiling bench (loadtests/bench/allocate-cluster.ts):
 * commands.allocate() — the api's own path to allocate.lua, EVALSHA with auto-pipelining, per key
 * slot on a cluster — with INFLIGHT calls in flight over the given stocks, for WARMUP_MS then
 * DURATION_MS. Several of these run at once, so the driver is not the one core that limits.
 * Prints a line when its measured part starts, then one with { calls, errors, p50, p99, cpuMicros, firstError }.
 *
 * Env: BENCH_REDIS_URL, BENCH_CLUSTER_NODES (host:port,… — set: the Cluster client), BENCH_PREFIX,
 * BENCH_SHARDS, BENCH_STOCK_IDS (comma), INFLIGHT, WARMUP_MS, DURATION_MS.
 */
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createRedis, parseClusterNodes } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { z } from "zod";
import { benchInt, readBenchEnv } from "../support.ts";

// Set by allocate-cluster.ts, which starts this process.
const env = readBenchEnv({
  BENCH_REDIS_URL: z.string().default("redis://127.0.0.1:6379"),
  BENCH_CLUSTER_NODES: z.string().optional(),
  BENCH_PREFIX: z.string().min(1),
  BENCH_SHARDS: benchInt(16, 1),
  BENCH_STOCK_IDS: z.string().min(1),
  INFLIGHT: benchInt(64, 1),
  WARMUP_MS: benchInt(2000),
  DURATION_MS: benchInt(10_000, 1),
});
const redis = createRedis({ REDIS_URL: env.BENCH_REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(env.BENCH_CLUSTER_NODES) });
redis.on("error", () => {});
const commands = createStockCommands(redis, createKeyLayout(env.BENCH_PREFIX, env.BENCH_SHARDS));
const stocks = env.BENCH_STOCK_IDS.split(",");
const inflight = env.INFLIGHT;

async function run(ms: number, record: boolean) {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const until = performance.now() + ms;
  await Promise.all(
    Array.from({ length: inflight }, async (_, w) => {
      let i = w;
      while (performance.now() < until) {
        const t = performance.now();
        try {
          await commands.allocate({ stockId: stocks[i++ % stocks.length]!, userId: `d${process.pid}-${w}`, quantity: 1 });
          if (record) latencies.push(performance.now() - t);
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }
    }),
  );
  return { latencies, errors, firstError };
}

await run(env.WARMUP_MS, false);
// The parent samples CPU around the measured part: tell it when it starts.
console.log(JSON.stringify({ phase: "measuring" }));
const cpu0 = process.cpuUsage();
const { latencies, errors, firstError } = await run(env.DURATION_MS, true);
const cpu = process.cpuUsage(cpu0);
latencies.sort((a, b) => a - b);
const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? Number.NaN;
// Its own CPU time while measuring (µs): the parent cannot read /proc once the driver has exited.
console.log(JSON.stringify({ phase: "done", calls: latencies.length, errors, p50: at(0.5), p99: at(0.99), cpuMicros: cpu.user + cpu.system, firstError }));
redis.disconnect();
