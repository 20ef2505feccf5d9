/**
 * The Redis ceiling of allocate.lua on one node against a 3-master cluster (docs/design.md §11), in
 * one run, for `bun run bench:allocate --targets lua`. redis-benchmark cannot route EVALSHA by key
 * slot, so the load comes from DRIVERS processes of loadtests/bench/lua-driver.ts: the api's own
 * commands.allocate() without HTTP, INFLIGHT calls each, over many stocks spread on 16 shards.
 * Besides calls/s it reports where the CPU went, per call: the masters, the replicas (a cluster
 * replicates every write), and the drivers (the client side that a real deployment runs in the api).
 */
import { join } from "node:path";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createRedis, deleteKeysByPrefix, isCluster, parseClusterNodes, type RedisClient } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { formatReport } from "../../shared/verify/report.ts";
import { verify } from "../../shared/verify/verify.ts";
import { cpuSeconds, uniquePrefix } from "../support.ts";

const SHARDS = 16;

export interface LuaCeilingRow {
  target: "1 node" | "3 masters";
  calls: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU µs per call: the masters, the replicas, the driver processes. */
  cpu: { masters: number; replicas: number; drivers: number };
  check: string;
  ok: boolean;
}

export interface LuaCeilingOptions {
  redisUrl: string;
  /** host:port,… of the cluster. */
  clusterNodes: string;
  stocks: number;
  drivers: number;
  inflight: number;
  warmupMs: number;
  durationMs: number;
  units: number;
  perUserLimit: number;
  dir: string;
}

/** The redis-server processes behind a client, with their role (they run on this machine). */
async function serverPids(redis: RedisClient): Promise<Array<{ pid: number; role: "master" | "replica" }>> {
  const nodes = isCluster(redis) ? redis.nodes("all") : [redis];
  return Promise.all(
    nodes.map(async (n) => {
      const info = await n.info();
      return { pid: Number(/process_id:(\d+)/.exec(info)?.[1]), role: /role:master/.test(info) ? ("master" as const) : ("replica" as const) };
    }),
  );
}

async function runOne(target: LuaCeilingRow["target"], o: LuaCeilingOptions): Promise<LuaCeilingRow> {
  const clusterNodes = target === "3 masters" ? o.clusterNodes : undefined;
  const redis = createRedis({ REDIS_URL: o.redisUrl, REDIS_CLUSTER_NODES: parseClusterNodes(clusterNodes) });
  const prefix = uniquePrefix(target === "1 node" ? "lua1" : "lua3");
  try {
    const commands = createStockCommands(redis, createKeyLayout(prefix, SHARDS));
    const ids = Array.from({ length: o.stocks }, (_, i) => `${prefix}-s${i}`);
    await Promise.all(ids.map((id, i) => commands.createStock({ id, name: `Bench ${i}`, price: 1999, quantity: o.units, perUserLimit: o.perUserLimit })));
    if (isCluster(redis)) await new Promise((r) => (redis.status === "ready" ? r(null) : redis.once("ready", r)));
    const servers = await serverPids(redis);
    const env = {
      BENCH_REDIS_URL: o.redisUrl,
      BENCH_CLUSTER_NODES: clusterNodes ?? "",
      BENCH_PREFIX: prefix,
      BENCH_SHARDS: String(SHARDS),
      BENCH_STOCK_IDS: ids.join(","),
      INFLIGHT: String(o.inflight),
      WARMUP_MS: String(o.warmupMs),
      DURATION_MS: String(o.durationMs),
    };
    const drivers = Array.from({ length: o.drivers }, (_, i) =>
      Bun.spawn([process.execPath, join(import.meta.dir, "lua-driver.ts")], {
        env: { ...process.env, ...env },
        stdout: "pipe",
        stderr: Bun.file(join(o.dir, `lua-${target.replace(" ", "")}-driver${i}.err.log`)),
      }),
    );
    const lines = drivers.map((d) => (async function* () {
      let buffer = "";
      for await (const chunk of d.stdout as ReadableStream<Uint8Array>) {
        buffer += new TextDecoder().decode(chunk);
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          yield JSON.parse(buffer.slice(0, nl)) as { phase: string; calls?: number; errors?: number; p50?: number; p99?: number; cpuMicros?: number; firstError?: string };
          buffer = buffer.slice(nl + 1);
        }
      }
    })());
    const sample = () => ({
      masters: servers.filter((s) => s.role === "master").reduce((a, s) => a + cpuSeconds(s.pid), 0),
      replicas: servers.filter((s) => s.role === "replica").reduce((a, s) => a + cpuSeconds(s.pid), 0),
    });
    // Every driver past its warm-up, then sample; the same after they finish.
    for (const l of lines) await l.next();
    const c0 = sample();
    const t0 = performance.now();
    const done = await Promise.all(lines.map(async (l) => (await l.next()).value!));
    const seconds = (performance.now() - t0) / 1000;
    const c1 = sample();
    await Promise.all(drivers.map((d) => d.exited));
    const calls = done.reduce((a, d) => a + (d.calls ?? 0), 0);
    const errors = done.reduce((a, d) => a + (d.errors ?? 0), 0);
    const perCall = (a: number, b: number) => ((b - a) * 1e6) / calls;
    const report = await verify({ redis, prefix, layers: ["redis"], outbox: "auto" });
    if (!report.ok) console.log(formatReport(report));
    const firstError = done.find((d) => d.firstError)?.firstError;
    return {
      target,
      calls,
      rps: calls / seconds,
      p50: Math.max(...done.map((d) => d.p50 ?? Number.NaN)),
      p99: Math.max(...done.map((d) => d.p99 ?? Number.NaN)),
      errors,
      cpu: { masters: perCall(c0.masters, c1.masters), replicas: perCall(c0.replicas, c1.replicas), drivers: done.reduce((a, d) => a + (d.cpuMicros ?? Number.NaN), 0) / calls },
      check: `verifier ${report.ok ? "clean" : "FAILED"}, ${errors} error(s)${firstError ? ` (first: ${firstError})` : ""}`,
      ok: report.ok && errors === 0,
    };
  } finally {
    await deleteKeysByPrefix(redis, prefix).catch((err) => console.error(`[bench] cleanup ${prefix}: ${err}`));
    redis.disconnect();
  }
}

/** Both targets, the single node first; the caller prints the ratio. */
export async function benchLuaCeiling(o: LuaCeilingOptions): Promise<LuaCeilingRow[]> {
  return [await runOne("1 node", o), await runOne("3 masters", o)];
}

export function luaCeilingTable(rows: LuaCeilingRow[], o: Pick<LuaCeilingOptions, "drivers" | "inflight" | "stocks">): string {
  const f = (v: number, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : "–");
  const lines = [
    `allocate.lua ceiling: ${o.drivers} driver process(es) × ${o.inflight} in flight, ${o.stocks} stocks over ${SHARDS} shards, commands.allocate() (EVALSHA, auto-pipelined)`,
    "",
    "| Redis | calls/s | p50 ms | p99 ms | CPU µs/call: masters | replicas | drivers | check |",
    "|---|---:|---:|---:|---:|---:|---:|---|",
    ...rows.map((r) => `| ${r.target} | ${f(r.rps)} | ${f(r.p50, 1)} | ${f(r.p99, 1)} | ${f(r.cpu.masters)} | ${f(r.cpu.replicas)} | ${f(r.cpu.drivers)} | ${r.check} |`),
  ];
  const [one, three] = rows;
  if (one && three) lines.push("", `3 masters / 1 node: ${(three.rps / one.rps).toFixed(2)}× the calls/s`);
  return lines.join("\n");
}
