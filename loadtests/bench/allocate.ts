/**
 * `bun run bench:allocate`: our allocate endpoint side by side with its ceilings and its usual
 * alternative, in one run on one machine, with the same k6 settings for every HTTP target:
 *
 *   hono-bare   Hono on Bun returning a small JSON 201 (the HTTP ceiling)      loadtests/baselines/hono-bare.ts
 *   redis       redis-benchmark EVALSHA of allocate.lua, 64 clients (the Redis ceiling, no HTTP, no Bun)  allocate-redis.ts
 *   ioredis     commands.allocate() in a Bun loop, 64 in flight (our Redis path without HTTP)          allocate-redis.ts
 *   api         our api (services/api/main.ts), fresh process and key prefix
 *   pg-fn       the PostgreSQL alternative, one PL/pgSQL call per allocation  allocate-pg.ts, loadtests/baselines/pg-*.ts
 *   pg-tx       the PostgreSQL alternative, client-side transaction (4 round trips)
 *   api-sold-out, api-workers, buckets   the front door (loadtests/bench/front-door.ts, docs/design.md §12)
 *   lua         allocate.lua calls/s on 1 node and on the 3-master cluster (stack.sh up redis-cluster),
 *               DRIVERS processes × INFLIGHT calls of commands.allocate(), ratio and CPU per call
 *               (masters, replicas, drivers)                                  loadtests/bench/allocate-cluster.ts
 *   api-cluster our api with REDIS_CLUSTER_NODES (the same runs as api, against the cluster)
 *   durability  each REDIS_DURABILITY profile (fast, fsync, replica) on a private master + replica, with
 *               throughput and p99 as ratios of fast's from the same run    loadtests/bench/allocate-durability.ts
 * api and pg-* run on one hot stock and on 100 stocks. Each HTTP target gets a freshly started
 * server, a warm-up, then two measured k6 runs (loadtests/k6/bench.js):
 *   closed  VUS virtual users, as fast as answers come, for DURATION → throughput and its latency
 *   open    RATE arrivals per second for OPEN_DURATION → latency at the same load for everyone
 * Stocks hold 5,000,000 units and a 1,000 per-user limit, so the runs measure allocation, not
 * sold_out. After each store-backed run the store is checked (verifier / baseline check).
 *
 *   bun run bench:allocate [--vus 64] [--duration 20s] [--rate 1000] [--open-duration 15s] [--warmup 5s]
 *                          [--targets hono-bare,redis,ioredis,api,pg-fn,pg-tx,lua,api-cluster] [--pool 8] [--sync off,on] [--repeat 1]
 *                          [--drivers 2] [--inflight 64]   (lua, durability)   [--durability fast,fsync,replica]
 * PostgreSQL runs with synchronous_commit off (the durability of our Redis default, appendfsync
 * everysec) and on (PostgreSQL's default, every commit flushed before the row lock is released).
 * Results: loadtests/results/bench-<id>/ (summary.json, table.md, k6 summaries, server logs).
 */
import { parseArgs } from "node:util";
import { freePort, stackEnv } from "../../shared/dev/env.ts";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { unlink } from "node:fs/promises";
import { createRedis, deleteKeysByPrefix, isCluster, keyHolders, parseClusterNodes, type RedisClient } from "../../shared/redis/client.ts";
import { describeRow, mergeRows, reportTable, type Row } from "./allocate-report.ts";
import { benchPg, type PgBenchContext } from "./allocate-pg.ts";
import { benchIoredis, benchRedisBenchmark, type RedisBenchContext } from "./allocate-redis.ts";
import { benchLuaCeiling, luaCeilingTable, type LuaCeilingRow } from "./allocate-cluster.ts";
import { verify } from "../../shared/verify/verify.ts";
import { benchDurability, durabilityRatios, parseProfiles } from "./allocate-durability.ts";
import { formatReport } from "../../shared/verify/report.ts";
import { benchApiSoldOut, benchApiWorkers, benchBuckets, type FrontDoorContext } from "./front-door.ts";
import { adminPost, cpuSeconds, findK6, machine, mintTokens, newLoadRun, runK6, startApi, startProcess, uniquePrefix, waitHealthy, type K6Summary, type StartedApi } from "../support.ts";

const { REDIS_URL, DATABASE_URL, REDIS_CLUSTER_NODES } = stackEnv;
const ALL_TARGETS = ["hono-bare", "redis", "ioredis", "api", "api-sold-out", "api-workers", "buckets", "pg-fn", "pg-tx", "lua", "api-cluster", "durability"] as const;
type Target = (typeof ALL_TARGETS)[number];

const UNITS = 5_000_000;
const PER_USER_LIMIT = 1000;


const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    vus: { type: "string", default: "64" },
    duration: { type: "string", default: "20s" },
    rate: { type: "string", default: "1000" },
    "open-duration": { type: "string", default: "15s" },
    warmup: { type: "string", default: "5s" },
    targets: { type: "string", default: ALL_TARGETS.join(",") },
    stocks: { type: "string", default: "100" },
    pool: { type: "string", default: "8" },
    sync: { type: "string", default: "off,on" },
    repeat: { type: "string", default: "1" },
    "redis-requests": { type: "string", default: "200000" },
    drivers: { type: "string", default: "2" },
    inflight: { type: "string", default: "64" },
    durability: { type: "string", default: process.env.REDIS_DURABILITY ?? "fast,fsync,replica" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(readFileSync(import.meta.path, "utf8").split("*/")[0]);
  process.exit(0);
}
const targets = values.targets!.split(",").map((t) => t.trim()) as Target[];
for (const t of targets) if (!ALL_TARGETS.includes(t)) throw new Error(`unknown target ${t} (known: ${ALL_TARGETS.join(", ")})`);
const VUS = values.vus!;
const DURATION = values.duration!;
const RATE = values.rate!;
const OPEN_DURATION = values["open-duration"]!;
const MANY = Number(values.stocks);
const syncModes = values.sync!.split(",").map((m) => m.trim());
for (const m of syncModes) if (m !== "on" && m !== "off") throw new Error("--sync takes off, on or off,on");
const seconds = (d: string) => Number(/^(\d+(?:\.\d+)?)s$/.exec(d)?.[1] ?? Number.NaN);
if (!Number.isFinite(seconds(DURATION)) || !Number.isFinite(seconds(OPEN_DURATION)) || !Number.isFinite(seconds(values.warmup!))) {
  throw new Error("--duration, --open-duration and --warmup take seconds, e.g. 20s");
}

const loadRun = newLoadRun("bench");
const { id, dir, adminToken, jwtSecret } = loadRun;
const tokensFile = join(dir, "tokens.json");
const rows: Row[] = [];
const luaRows: LuaCeilingRow[] = [];
let luaTable = "";
let failures = 0;

// ------------------------------------------------------------------ helpers


/** The redis-server processes behind a client: the one node, or every node of a cluster. */
async function redisPids(redis: RedisClient): Promise<number[]> {
  return Promise.all((await keyHolders(redis)).concat(isCluster(redis) ? redis.nodes("slave") : []).map(async (n) => Number(/process_id:(\d+)/.exec(await n.info("server"))?.[1])));
}


/** allocate.lua on 1 node against the 3-master cluster (allocate-cluster.ts). */
async function benchLua(): Promise<void> {
  const options = {
    redisUrl: REDIS_URL,
    clusterNodes: REDIS_CLUSTER_NODES,
    stocks: MANY,
    drivers: Number(values.drivers),
    inflight: Number(values.inflight),
    warmupMs: seconds(values.warmup!) * 1000,
    durationMs: seconds(DURATION) * 1000,
    units: UNITS,
    perUserLimit: PER_USER_LIMIT,
    dir,
  };
  const result = await benchLuaCeiling(options);
  luaRows.push(...result);
  for (const r of result) {
    if (!r.ok) failures++;
    console.log(`[bench] lua on ${r.target}: ${r.rps.toFixed(0)} calls/s p50 ${r.p50.toFixed(1)} p99 ${r.p99.toFixed(1)} ms | CPU µs/call masters ${r.cpu.masters.toFixed(0)}, replicas ${r.cpu.replicas.toFixed(0)}, drivers ${r.cpu.drivers.toFixed(0)} | ${r.check}`);
  }
  luaTable = luaCeilingTable(result, options);
}

const stat = (s: K6Summary | null, metric: string, key: string) => s?.metrics?.[metric]?.values?.[key] ?? Number.NaN;

async function k6Runs(target: string, baseUrl: string, stockIds: string[], cpu: () => number, storeCpu?: () => number): Promise<Pick<Row, "closed" | "open" | "serverCpuUsPerReq" | "storeCpuUsPerReq">> {
  const env = { BASE_URL: baseUrl, TOKENS_FILE: tokensFile, STOCK_IDS: stockIds.join(","), TARGET: target, VUS };
  const tag = `${target}-${stockIds.length}`;
  await runK6("bench.js", { ...env, MODE: "closed", DURATION: values.warmup! }, join(dir, `${tag}-warmup.json`), { quiet: true });
  const c0 = cpu();
  const s0 = storeCpu?.() ?? 0;
  const closed = await runK6("bench.js", { ...env, MODE: "closed", DURATION }, join(dir, `${tag}-closed.json`), { quiet: true });
  const c1 = cpu();
  const s1 = storeCpu?.() ?? 0;
  const open = await runK6("bench.js", { ...env, MODE: "open", RATE, DURATION: OPEN_DURATION }, join(dir, `${tag}-open.json`), { quiet: true });
  const cs = closed.summary;
  const os = open.summary;
  const requests = stat(cs, "http_reqs", "count");
  const result = {
    closed: {
      rps: stat(cs, "http_reqs", "rate"),
      p50: stat(cs, "http_req_duration", "med"),
      p99: stat(cs, "http_req_duration", "p(99)"),
      requests,
      ok: closed.exitCode === 0,
    },
    open: {
      rate: Number(RATE),
      achieved: stat(os, "http_reqs", "rate"),
      p50: stat(os, "http_req_duration", "med"),
      p99: stat(os, "http_req_duration", "p(99)"),
      dropped: stat(os, "dropped_iterations", "count") || 0,
      ok: open.exitCode === 0,
    },
    serverCpuUsPerReq: ((c1 - c0) * 1e6) / requests,
    storeCpuUsPerReq: storeCpu ? ((s1 - s0) * 1e6) / requests : undefined,
  };
  if (!result.closed.ok || !result.open.ok) failures++;
  return result;
}


function record(row: Row): void {
  rows.push(row);
  console.log(describeRow(row));
}

const stockSpecs = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, i) => ({
    id: count === 1 ? `${prefix}-hot` : `${prefix}-s${i}`,
    name: `Bench item ${i}`,
    price: 1999,
    quantity: UNITS,
    perUserLimit: PER_USER_LIMIT,
  }));

// ------------------------------------------------------------------ targets

async function benchHonoBare(): Promise<void> {
  const port = await freePort();
  const child = startProcess("hono-bare", [process.execPath, "loadtests/baselines/hono-bare.ts"], { PORT: String(port) }, dir);
  try {
    await waitHealthy(`http://127.0.0.1:${port}/healthz`, child);
    const pid = child.proc.pid;
    const r = await k6Runs("hono-bare", `http://127.0.0.1:${port}`, ["x"], () => cpuSeconds(pid));
    record({ target: "hono-bare", stocks: null, ...r });
  } finally {
    await child.stop();
  }
}

/** Our api on the single node, or (cluster) with REDIS_CLUSTER_NODES on the stack's 3-master cluster. */
async function benchApi(stockCount: number, cluster = false): Promise<void> {
  const prefix = uniquePrefix("bapi");
  const target = cluster ? "api-cluster" : "api";
  const redis = createRedis({ REDIS_URL, REDIS_CLUSTER_NODES: cluster ? parseClusterNodes(REDIS_CLUSTER_NODES) : undefined });
  let api: StartedApi | undefined;
  try {
    api = await startApi(loadRun, { name: `${target}-${stockCount}`, logDir: dir, env: { REDIS_URL, REDIS_KEY_PREFIX: prefix, ...(cluster ? { REDIS_CLUSTER_NODES } : {}) } });
    const { child, baseUrl } = api;
    const stocks = stockSpecs(prefix, stockCount);
    for (const s of stocks) await adminPost(baseUrl, adminToken, "/api/stocks", s);
    const rpids = await redisPids(redis);
    const r = await k6Runs(target, baseUrl, stocks.map((s) => s.id), () => cpuSeconds(child.proc.pid), () => rpids.reduce((a, p) => a + cpuSeconds(p), 0));
    const report = await verify({ redis, prefix, layers: ["redis"], outbox: "full" });
    if (!report.ok) {
      failures++;
      console.log(formatReport(report));
    }
    record({
      target,
      stocks: stockCount,
      ...r,
      check: `verifier ${report.ok ? "clean" : "FAILED"} (${report.totals.held} held)`,
      note: cluster ? "store CPU = all six cluster nodes (masters and replicas)" : "store CPU = the whole redis-server (shared with anything else using it)",
    });
  } finally {
    await api?.child.stop();
    await deleteKeysByPrefix(redis, prefix);
    await redis.quit();
  }
}


// ------------------------------------------------------------------ report

// ------------------------------------------------------------------ main

let loadAtStart = "";

const frontDoor: FrontDoorContext<Awaited<ReturnType<typeof k6Runs>>> = {
  dir,
  adminToken,
  jwtSecret,
  vus: Number(VUS),
  openSeconds: seconds(OPEN_DURATION),
  k6Runs,
};

const redisContext: RedisBenchContext = {
  redisUrl: REDIS_URL,
  vus: VUS,
  redisRequests: values["redis-requests"]!,
  warmupSeconds: seconds(values.warmup!),
  durationSeconds: seconds(DURATION),
  units: UNITS,
  perUserLimit: PER_USER_LIMIT,
  stockSpecs,
  record,
  fail: () => void failures++,
};

const pgContext: PgBenchContext = {
  databaseUrl: DATABASE_URL,
  adminToken,
  jwtSecret,
  pool: values.pool!,
  dir,
  stockSpecs,
  k6Runs,
  record,
  fail: () => void failures++,
};

async function main(): Promise<number> {
  const m = machine();
  loadAtStart = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(`[bench] run ${id} → ${dir}`);
  console.log(`[bench] machine: ${m.nproc} CPUs (${m.cpu}), ${m.memoryGiB} GiB, kernel ${m.kernel}, bun ${m.bun}, k6 ${findK6()}`);
  console.log(`[bench] k6: closed ${VUS} VUs × ${DURATION}, open ${RATE}/s × ${OPEN_DURATION}, warm-up ${values.warmup}; targets ${targets.join(", ")}`);
  await mintTokens(tokensFile, 10_000, jwtSecret);
  const repeat = Number(values.repeat);
  for (let i = 0; i < repeat; i++) {
    if (repeat > 1) console.log(`[bench] round ${i + 1}/${repeat}`);
    // Rotate the order each round, so a noisy minute on a shared machine does not always hit the same target.
    const order = targets.map((_, k) => targets[(k + i) % targets.length]!);
    for (const target of order) {
      try {
        switch (target) {
          case "hono-bare":
            await benchHonoBare();
            break;
          case "redis":
            await benchRedisBenchmark(redisContext);
            break;
          case "ioredis":
            await benchIoredis(redisContext, 1);
            await benchIoredis(redisContext, MANY);
            break;
          case "api":
            await benchApi(1);
            await benchApi(MANY);
            break;
          case "api-sold-out": {
            const r = await benchApiSoldOut(frontDoor);
            record({ target: "api-sold-out", stocks: 1, ...r });
            break;
          }
          case "api-workers": {
            const r = await benchApiWorkers(frontDoor, REDIS_URL, UNITS);
            record({ target: "api-workers", stocks: 1, ...r });
            break;
          }
          case "buckets": {
            const b = await benchBuckets(REDIS_URL, Number(VUS), Math.min(10, seconds(DURATION)));
            record({
              target: "bucket local",
              stocks: null,
              closed: { rps: b.local.opsPerSecond, p50: Number.NaN, p99: Number.NaN, requests: 2_000_000, ok: true },
              serverCpuUsPerReq: b.local.cpuUsPerOp,
              note: "TokenBuckets.take, in-process, 10,000 users (rps = takes per second)",
            });
            record({
              target: "bucket redis",
              stocks: null,
              closed: { rps: b.redis.opsPerSecond, p50: b.redis.p50Ms, p99: b.redis.p99Ms, requests: 0, ok: true },
              serverCpuUsPerReq: b.redis.cpuUsPerOp,
              storeCpuUsPerReq: b.redis.redisCpuUsPerOp,
              note: `the same bucket as a Lua script, ${VUS} in flight (server CPU = this process's ioredis)`,
            });
            break;
          }
          case "api-cluster":
            await benchApi(1, true);
            await benchApi(MANY, true);
            break;
          case "lua":
            await benchLua();
            break;
          case "durability":
            await benchDurability({
              profiles: parseProfiles(values.durability!),
              inflight: Number(values.inflight),
              warmupSeconds: seconds(values.warmup!),
              durationSeconds: seconds(DURATION),
              units: UNITS,
              perUserLimit: PER_USER_LIMIT,
              record,
              fail: () => void failures++,
            });
            break;
          case "pg-fn":
          case "pg-tx":
            for (const sync of syncModes) {
              await benchPg(pgContext, target === "pg-fn" ? "fn" : "tx", 1, sync);
              await benchPg(pgContext, target === "pg-fn" ? "fn" : "tx", MANY, sync);
            }
            break;
        }
      } catch (err) {
        failures++;
        console.error(`[bench] ${target} failed: ${(err as Error).stack ?? String(err)}`);
      }
    }
  }
  const final = mergeRows(rows);
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const durabilityTable = durabilityRatios(final);
  const md = reportTable(final, { vus: VUS, rate: RATE, many: MANY, syncModes, luaTable }) + (durabilityTable ? `\n\nDurability profiles (REDIS_DURABILITY), ratios vs fast from this run:\n\n${durabilityTable}\n` : "");
  const command = `bun run bench:allocate ${process.argv.slice(2).join(" ")}`.trim();
  const header =
    `Machine: ${m.nproc} vCPU (${m.cpu}), ${m.memoryGiB} GiB RAM, Linux ${m.kernel}, Bun ${m.bun}; k6, servers, Redis and PostgreSQL all on the same box.\n` +
    `Command: \`${command}\` (run ${id}${repeat > 1 ? `, median of ${repeat} rounds` : ""}); load average at start ${loadAtStart}, at end ${load}.\n`;
  await Bun.write(join(dir, "table.md"), `${header}\n${md}\n`);
  await Bun.write(join(dir, "summary.json"), JSON.stringify({ id, machine: m, command, settings: { VUS, DURATION, RATE, OPEN_DURATION, warmup: values.warmup, pool: values.pool, sync: values.sync, drivers: values.drivers, inflight: values.inflight }, rows, final, lua: luaRows }, null, 2));
  console.log(`\n${header}\n${md}\n`);
  // Signed with this run's throwaway secret: of no further use.
  await unlink(tokensFile).catch(() => {});
  console.log(failures === 0 ? "[bench] all runs passed their checks" : `[bench] ${failures} run(s) FAILED a threshold or a store check (see above)`);
  return failures === 0 ? 0 : 1;
}

process.exit(await main());
