/**
 * Phase 2 of `bun run bench:projectors`: allocations at a steady BENCH_RATE per second for
 * BENCH_SECONDS through the whole pipeline (Lua allocate → relay → Kafka → both projectors, all
 * binaries), probes among them (projectors-probes.ts), each read back at once through the api with
 * its Consistency-Token (projectors-ryw.ts); then the freshness percentiles per store, the
 * read-your-writes wait, the time budget per stage from the services' own histograms, and their CPU.
 */
import type { Subprocess } from "bun";
import postgres from "postgres";
import { setPriority } from "node:os";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createRedis, deleteKeysByPrefix } from "../../shared/redis/client.ts";
import { createStockCommands, type StockCommands } from "../../shared/redis/commands.ts";
import { stackEnv } from "../../shared/dev/env.ts";
import { cpuSeconds, fmt, percentile } from "../support.ts";
import { formatFreshnessShares, formatStages, RELAY_STAGES, relayStageFigures, stageFigures, type FreshnessResult, type Variant } from "./projector-report.ts";
import { AppendWatcher, ProbePollers, since, type Probe } from "./projectors-probes.ts";
import { ReadYourWritesProbes } from "./projectors-ryw.ts";
import { stop, type ProjectorBench } from "./projectors-stack.ts";

const LOAD_STOCKS = Array.from({ length: 400 }, (_, i) => `load${i}`);
const PROBE_STOCKS = Array.from({ length: 40 }, (_, i) => `probe${i}`);

/** The pipeline of one freshness run: its own topic, alias, database and key prefix, and the three services. */
interface Pipeline {
  topic: string;
  alias: string;
  prefix: string;
  redis: ReturnType<typeof createRedis>;
  commands: StockCommands;
  sql: postgres.Sql;
  relay: Subprocess;
  pg: Subprocess;
  search: Subprocess;
  /** The api binary, reading each probe back with its Consistency-Token (projectors-ryw.ts). */
  ryw: ReadYourWritesProbes;
}

export async function freshness(bench: ProjectorBench, variant: Variant, round: number): Promise<FreshnessResult> {
  const { settings } = bench;
  const p = await startPipeline(bench, variant, round);
  const { BENCH_RATE: RATE, BENCH_SECONDS: SECONDS, BENCH_PROBES: PROBES_PER_SECOND, BENCH_NICE: NICE } = settings;
  bench.log(
    `[${variant.name}] pipeline up (relay + both projectors) in ${p.upSeconds.toFixed(1)} s; ${RATE}/s for ${SECONDS} s, ` +
      `${PROBES_PER_SECOND} probes/s; ${JSON.stringify(variant.vars)}${NICE ? `; load generator at nice ${NICE}` : ""}`,
  );

  const pollers = new ProbePollers(p.sql, bench.es, p.alias, settings.BENCH_POLL_MS);
  const watcher = new AppendWatcher(bench.kafka, `bench-watch-${bench.run}`);
  await watcher.start(p.topic);
  await Bun.sleep(3_000); // joined
  const bucketsBefore = { pg: await bench.freshnessBuckets(p.pg), search: await bench.freshnessBuckets(p.search) };
  const stagesBefore = { pg: await bench.scrape(p.pg), search: await bench.scrape(p.search), relay: await bench.scrape(p.relay) };
  const nice = Number(variant.vars.BENCH_NICE ?? NICE);
  if (nice) setPriority(process.pid, nice);

  const load = await driveLoad(bench, p.commands, (probe) => {
    watcher.add(probe);
    pollers.pending.pg.add(probe);
    if (settings.BENCH_ES_GET) pollers.pending.get.add(probe);
    pollers.pending.search.add(probe);
    p.ryw.read(probe, probe.userId);
  });
  if (nice) setPriority(process.pid, 0); // root may lower it again; the polling and reporting run at 0
  bench.log(`issued ${fmt(load.issued)} allocations in ${load.elapsed.toFixed(1)} s (${fmt(load.issued / load.elapsed)}/s), ${load.errors} errors, ${load.probes.length} probes`);
  // Probes on the same stock are allocated one after the other only if each answer came back before
  // the next was sent; with BENCH_PROBES/40 per stock per second that holds, but check it.
  const unresolved = await pollers.settle(60_000);
  await p.ryw.settle();

  await watcher.stop();
  const { probes } = load;
  const result: FreshnessResult = {
    variant: variant.name,
    kafka: since(probes, (q) => q.kafka),
    pg: since(probes, (q) => q.pg),
    search: since(probes, (q) => q.esSearch),
    stages: {
      pg: stageFigures(stagesBefore.pg, await bench.scrape(p.pg)),
      search: stageFigures(stagesBefore.search, await bench.scrape(p.search)),
      relay: relayStageFigures(stagesBefore.relay, await bench.scrape(p.relay)),
    },
  };
  const report = (label: string, values: number[]) => {
    const sorted = values.sort((a, b) => a - b);
    bench.log(
      `[${variant.name}] freshness → ${label}: p50 ${percentile(sorted, 50)} ms, p90 ${percentile(sorted, 90)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted[sorted.length - 1]} ms (n=${sorted.length})`,
    );
  };
  report("Kafka (relay: appended to the topic)", [...result.kafka]);
  report("PostgreSQL (order row)", [...result.pg]);
  if (settings.BENCH_ES_GET) report("Elasticsearch GET (doc version, realtime)", since(probes, (q) => q.esGet));
  report("Elasticsearch search (doc version, after refresh)", [...result.search]);
  for (const line of p.ryw.lines(variant.name)) bench.log(line);
  // Where the time goes, per stage, from the projectors' own histograms (every event, not only probes).
  bench.log(`[${variant.name}] time budget, relay, p50/p99 ms: ${formatStages(result.stages.relay, Object.keys(RELAY_STAGES))} (read_to_kafka_ack per batch)`);
  bench.log(`[${variant.name}] time budget, projector-postgres, p50/p99 ms: ${formatStages(result.stages.pg)}`);
  bench.log(`[${variant.name}] time budget, projector-search, p50/p99 ms: ${formatStages(result.stages.search)}`);
  if (unresolved > 0) bench.log(`WARNING: ${unresolved} probe checks never resolved`);
  // The projectors' own view (commit time − occurredAt, every event, no polling): where search's extra time goes.
  bench.log(`projector-postgres freshness at commit (its metric): ${formatFreshnessShares(bucketsBefore.pg, await bench.freshnessBuckets(p.pg))}`);
  bench.log(`projector-search freshness at bulk ack (its metric): ${formatFreshnessShares(bucketsBefore.search, await bench.freshnessBuckets(p.search))}`);
  for (const [name, child] of [["relay", p.relay], ["projector-postgres", p.pg], ["projector-search", p.search]] as const) {
    bench.log(`${name} CPU ${cpuSeconds(child.pid).toFixed(1)} s`);
  }
  await Promise.all([stop(p.relay), stop(p.pg), stop(p.search), stop(p.ryw.api)]);
  await p.sql.end();
  await deleteKeysByPrefix(p.redis, p.prefix);
  p.redis.disconnect();
  return result;
}

/** A fresh topic, alias, database and key prefix; the stocks created; the relay and both projectors started and warm. */
async function startPipeline(bench: ProjectorBench, variant: Variant, round: number): Promise<Pipeline & { upSeconds: number }> {
  const { run } = bench;
  const tag = `${variant.name.replace(/[^a-z0-9]/gi, "").toLowerCase()}${round}`;
  const topic = `bench.pipeline.${run}.${tag}`;
  const alias = `bench-stocks-${run}-live-${tag}`;
  bench.aliases.push(alias);
  await bench.createTopic(topic);
  await bench.dropDatabases(); // the drain's, if any: the pipeline gets a clean database
  const databaseUrl = await bench.createDatabase();
  const prefix = `benchproj${run}${tag}`.slice(0, 32);
  const redis = createRedis(stackEnv.REDIS_URL);
  redis.on("error", () => {});
  const commands = createStockCommands(redis, createKeyLayout(prefix, bench.settings.OUTBOX_SHARDS));
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  await Promise.all(
    [...LOAD_STOCKS, ...PROBE_STOCKS].map((id) => commands.createStock({ id, name: `Bench ${id}`, price: 100, quantity: 10_000_000, perUserLimit: 10_000_000 })),
  );

  const relay = bench.spawn("relay", { KAFKA_TOPIC: topic, REDIS_KEY_PREFIX: prefix }, variant.vars);
  const pg = bench.spawn("projector-postgres", { KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: `bench-pg-live-${run}-${tag}`, DATABASE_URL: databaseUrl }, variant.vars);
  const search = bench.spawn("projector-search", { KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: `bench-es-live-${run}-${tag}`, ELASTICSEARCH_INDEX_ALIAS: alias }, variant.vars);
  const ryw = await ReadYourWritesProbes.start(bench, { prefix, databaseUrl, alias, topic }, variant.vars);
  // Wait until the creations went all the way through (everything joined and warm).
  const t0 = performance.now();
  for (;;) {
    const [rows] = await sql`SELECT count(*)::int AS n FROM stocks`.catch(() => [{ n: 0 }]);
    const docs = await bench.es.count({ index: alias }).catch(() => ({ count: 0 }));
    if (rows?.n === LOAD_STOCKS.length + PROBE_STOCKS.length && docs.count === rows.n) break;
    if (performance.now() - t0 > 120_000) throw new Error("pipeline did not come up in 2 minutes");
    await Bun.sleep(200);
  }
  return { topic, alias, prefix, redis, commands, sql, relay, pg, search, ryw, upSeconds: (performance.now() - t0) / 1000 };
}

/**
 * The load: every 10 ms a slice of RATE/100 allocations (auto-pipelined), probes spread among them;
 * each probe is handed to `onProbe` when its allocate answers.
 */
async function driveLoad(bench: ProjectorBench, commands: StockCommands, onProbe: (probe: Probe) => void) {
  const { BENCH_RATE: RATE, BENCH_SECONDS: SECONDS, BENCH_PROBES: PROBES_PER_SECOND } = bench.settings;
  const probeVersion = new Map(PROBE_STOCKS.map((id) => [id, 1]));
  const probes: Probe[] = [];
  let errors = 0;
  const sliceMs = 10;
  const perSlice = RATE / (1000 / sliceMs);
  const probeEvery = Math.max(1, Math.round(RATE / PROBES_PER_SECOND));
  let issued = 0;
  let user = 0;
  const inflight = new Set<Promise<unknown>>();
  const started = performance.now();
  const lastSlice = Math.floor((SECONDS * 1000) / sliceMs);
  for (let slice = 0; slice < lastSlice; slice++) {
    const target = started + slice * sliceMs;
    const wait = target - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    const due = Math.floor((slice + 1) * perSlice) - issued;
    for (let i = 0; i < due; i++, issued++) {
      const isProbe = issued % probeEvery === 0;
      const stockId = isProbe ? PROBE_STOCKS[(issued / probeEvery) % PROBE_STOCKS.length]! : LOAD_STOCKS[issued % LOAD_STOCKS.length]!;
      let version = 0;
      if (isProbe) {
        version = probeVersion.get(stockId)! + 1;
        probeVersion.set(stockId, version);
      }
      const op = commands.allocate({ stockId, userId: `u${user++ % 50_000}`, quantity: 1 }).then(
        ({ allocation }) => {
          if (!isProbe) return;
          const probe: Probe = { allocationId: allocation.allocationId, userId: allocation.userId, stockId, version, respondedAt: Date.now() };
          probes.push(probe);
          onProbe(probe);
        },
        () => void errors++,
      );
      inflight.add(op);
      void op.finally(() => inflight.delete(op));
    }
  }
  await Promise.all(inflight);
  return { issued, errors, probes, elapsed: (performance.now() - started) / 1000 };
}
