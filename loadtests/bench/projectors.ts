/**
 * Projector benchmark (`bun run bench:projectors`), against the real stack. Not a test: it prints.
 *
 *  1. drain: BENCH_EVENTS events (a realistic mix over BENCH_STOCKS stocks, StockCreated first per
 *     stock; test/support/stock-sim.ts) are preloaded on a fresh topic; then each projector binary
 *     (`bun services/projector-<x>/main.ts`, its own process, one after the other) drains it.
 *     Rate = events / time from its first committed batch to its last (startup and group join are
 *     reported apart), plus the CPU seconds the projector process used.
 *  2. freshness: allocations at a steady BENCH_RATE per second for BENCH_SECONDS through the whole
 *     pipeline: Lua allocate (createStockCommands) → relay → Kafka → both projectors (all binaries).
 *     Probe allocations (BENCH_PROBES per second, on stocks nothing else touches, so their version
 *     is known) are timed from their event's occurredAt (read off the topic) to: the broker's append,
 *     the order row in PostgreSQL and the
 *     document version in a search (what GET /api/stocks/search sees: after a refresh,
 *     refresh_interval 250ms). One poller per store checks every pending probe each BENCH_POLL_MS.
 *     BENCH_ES_GET=1 adds a realtime GET poller (the projector's lag without the refresh). It is off
 *     by default because it disturbs what it measures: a realtime GET of a document changed since
 *     the last refresh makes Elasticsearch refresh the shard, so polling it every few ms turns into
 *     hundreds of extra refreshes a second on the same two cores.
 *
 *     Then the time budget per stage (flashsale_projector_stage_seconds of each projector, p50/p99 between the
 *     scrapes before and after the load: relay = occurredAt → broker append, kafka_to_fetch,
 *     fetch_to_commit, commit_to_visible; docs/read-side.md "Time budget").
 *  3. variants: BENCH_VARIANTS="name:VAR=value,VAR=value;name2:…" runs the freshness phase once per
 *     variant (the VARs go to every service it spawns), BENCH_ROUNDS times in turn (A B A B …), and
 *     ends with one table: old settings against new in the same invocation, on the same noise.
 *     A variant's BENCH_REPO=<dir> spawns the projectors of another checkout (the code before a
 *     change); the relay always comes from this one, so only the projector side differs.
 *     BENCH_NICE=n (also per variant) renices this process (the load generator) to n during the load (services stay at
 *     0), to show what share of the tail is CPU contention on two cores.
 *
 * Env: REDIS_URL, KAFKA_BROKERS, DATABASE_URL, ELASTICSEARCH_URL, BENCH_EVENTS (200000),
 * BENCH_STOCKS (500), BENCH_RATE (2000), BENCH_SECONDS (20), BENCH_PROBES (50), BENCH_POLL_MS (20), BENCH_ES_GET (0),
 * KAFKA_PARTITIONS (12), OUTBOX_SHARDS (4), PROJECTOR_CONCURRENCY (16), BENCH_SKIP_DRAIN, BENCH_SKIP_FRESHNESS,
 * BENCH_DRAIN_ONLY (projector-postgres | projector-search), BENCH_VARIANTS, BENCH_ROUNDS (1), BENCH_NICE (0).
 */
import type { Subprocess } from "bun";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { fetchGroupOffsets, fetchHighWatermarks, remaining } from "../../shared/projection/offsets.ts";
import { createSearchClient, type StockDocument } from "../../shared/stores/search/mapping.ts";
import { createRedis, deleteKeysByPrefix } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { deleteIndices, produceEvents } from "../../test/support/read-side.ts";
import { generateWorkload, StockSim } from "../../test/support/stock-sim.ts";
import { cpuSeconds, createMigratedDatabase } from "../support.ts";
import { setPriority } from "node:os";
import { parsePromText, type Sample } from "../../shared/prom-text.ts";
import { formatStages, parseVariants, RELAY_STAGES, relayStageFigures, stageFigures, summaryLines, type DrainResult, type FreshnessResult, type Variant } from "./projector-report.ts";
import { stackEnv } from "../../test/support/env.ts";

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const { REDIS_URL, KAFKA_BROKERS: BROKERS, DATABASE_URL, ELASTICSEARCH_URL: ES_URL } = stackEnv;
const EVENTS = env("BENCH_EVENTS", 200_000);
const STOCKS = env("BENCH_STOCKS", 500);
const RATE = env("BENCH_RATE", 2_000);
const SECONDS = env("BENCH_SECONDS", 20);
const PROBES_PER_SECOND = env("BENCH_PROBES", 50);
const POLL_MS = env("BENCH_POLL_MS", 20);
const ES_GET = env("BENCH_ES_GET", 0) === 1;
const PARTITIONS = env("KAFKA_PARTITIONS", 12);
const SHARDS = env("OUTBOX_SHARDS", 4);
const ROUNDS = env("BENCH_ROUNDS", 1);
const NICE = env("BENCH_NICE", 0);


const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const log = (msg: string) => console.log(`[bench:projectors] ${msg}`);
const kafka = new Kafka({ clientId: "bench-projectors", brokers: BROKERS.split(","), logLevel: logLevel.NOTHING });
const es = createSearchClient(ES_URL);
const children: Subprocess[] = [];
const topics: string[] = [];
const aliases: string[] = [];
const databases: string[] = [];
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");


let databaseCount = 0;
async function createDatabase(): Promise<string> {
  const name = `bench_${run}_${++databaseCount}`;
  databases.push(name);
  return createMigratedDatabase(DATABASE_URL, name);
}

/** LogAppendTime: the broker stamps each message when it appends it (the relay's share of the latency). */
async function createTopic(name: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic: name, numPartitions: PARTITIONS, replicationFactor: 1, configEntries: [{ name: "message.timestamp.type", value: "LogAppendTime" }] }],
    waitForLeaders: true,
  });
  await admin.disconnect();
  topics.push(name);
}

/** Admin port of each spawned service, by pid (for its /metrics). */
const adminPorts = new Map<number, number>();

function spawn(service: string, vars: Record<string, string>, variant: Record<string, string> = {}): Subprocess {
  const adminPort = 19_000 + Math.floor(Math.random() * 1_000);
  // BENCH_REPO in a variant runs that checkout's projectors (e.g. the code before a change), same run.
  const child = Bun.spawn([process.execPath, `services/${service}/main.ts`], {
    cwd: (service.startsWith("projector-") ? variant.BENCH_REPO : undefined) ?? `${import.meta.dir}/../..`,
    env: {
      ...(process.env as Record<string, string>),
      REDIS_URL,
      KAFKA_BROKERS: BROKERS,
      DATABASE_URL,
      ELASTICSEARCH_URL: ES_URL,
      KAFKA_PARTITIONS: String(PARTITIONS),
      OUTBOX_SHARDS: String(SHARDS),
      ADMIN_PORT: String(adminPort),
      LOG_LEVEL: process.env.BENCH_CHILD_LOG_LEVEL ?? "warn",
      ...variant,
      ...vars,
    },
    stdout: "inherit",
    stderr: "inherit",
  });
  children.push(child);
  adminPorts.set(child.pid, adminPort);
  return child;
}

async function scrape(child: Subprocess): Promise<Sample[]> {
  return parsePromText(await (await fetch(`http://127.0.0.1:${adminPorts.get(child.pid)}/metrics`)).text());
}

/** Cumulative counts of a projector's flashsale_projector_freshness_seconds histogram, by bucket bound ("+Inf" last). */
async function freshnessBuckets(child: Subprocess): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPorts.get(child.pid)}/metrics`)).text();
  const buckets = new Map<string, number>();
  for (const match of text.matchAll(/^flashsale_projector_freshness_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\d+)/gm)) {
    buckets.set(match[1]!, (buckets.get(match[1]!) ?? 0) + Number(match[2]));
  }
  return buckets;
}

/** "≤ 0.25 s 61 %, ≤ 0.5 s 93 %, …" for the events a projector committed between two snapshots. */
function formatFreshnessShares(before: Map<string, number>, after: Map<string, number>): string {
  const total = (after.get("+Inf") ?? 0) - (before.get("+Inf") ?? 0);
  if (total <= 0) return "no events";
  const shares = ["0.1", "0.25", "0.5", "1", "2.5"].map((le) => {
    const n = (after.get(le) ?? 0) - (before.get(le) ?? 0);
    return `≤ ${le} s ${((100 * n) / total).toFixed(1)} %`;
  });
  return `${shares.join(", ")} (n=${fmt(total)})`;
}

async function stop(child: Subprocess): Promise<void> {
  if (child.exitCode === null) {
    child.kill("SIGTERM");
    await child.exited;
  }
}

// ---------------------------------------------------------------- 1. drain

async function drain(variants: Variant[]): Promise<void> {
  const topic = `bench.projectors.${run}`;
  await createTopic(topic);
  const sim = new StockSim();
  let t = performance.now();
  const events = generateWorkload(sim, { count: EVENTS, stockCount: STOCKS, prefix: "b", users: 20_000, totalPerStock: 10_000_000 });
  const counts = events.reduce<Record<string, number>>((acc, e) => ((acc[e.eventType] = (acc[e.eventType] ?? 0) + 1), acc), {});
  log(`generated ${fmt(events.length)} events over ${STOCKS} stocks in ${((performance.now() - t) / 1000).toFixed(1)} s: ${JSON.stringify(counts)}`);
  t = performance.now();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await produceEvents(producer, topic, events, 5_000);
  await producer.disconnect();
  const end = await fetchHighWatermarks(kafka, topic);
  log(`preloaded on ${topic} (${PARTITIONS} partitions) in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const services = (["projector-postgres", "projector-search"] as const).filter((s) => !process.env.BENCH_DRAIN_ONLY || s === process.env.BENCH_DRAIN_ONLY);
  for (let round = 0; round < ROUNDS; round++)
  for (const variant of variants)
  for (const service of services) {
    const tag = `${variant.name}-${round}`;
    const group = `bench-${service}-${run}-${tag}`;
    const alias = `bench-stocks-${run}-drain-${tag}`;
    if (service === "projector-search") aliases.push(alias);
    // A fresh database per drain: the same events again would only be duplicates.
    const databaseUrl = service === "projector-postgres" ? await createDatabase() : DATABASE_URL;
    const started = performance.now();
    const child = spawn(service, { KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: group, DATABASE_URL: databaseUrl, ELASTICSEARCH_INDEX_ALIAS: alias }, variant.vars);
    let firstAt = 0;
    let firstDone = 0;
    for (;;) {
      const left = remaining(await fetchGroupOffsets(kafka, group, topic), end);
      const now = performance.now();
      if (left < EVENTS && firstAt === 0) {
        firstAt = now;
        firstDone = EVENTS - left;
      }
      if (left === 0) break;
      if (child.exitCode !== null) throw new Error(`${service} exited with ${child.exitCode}`);
      if (now - started > 600_000) throw new Error(`${service}: ${left} events left after 10 minutes`);
      await Bun.sleep(100);
    }
    const done = performance.now();
    const cpu = await cpuSeconds(child.pid);
    await stop(child);
    const overall = EVENTS / ((done - started) / 1000);
    // Drained within one offset poll: no steady-state span to measure (use more BENCH_EVENTS).
    const steady = firstDone < EVENTS ? `${fmt((EVENTS - firstDone) / ((done - firstAt) / 1000))} events/s` : "n/a (one poll)";
    log(
      `[${variant.name}] ${service}: drained ${fmt(EVENTS)} events at ${steady} (first batch → last), ` +
        `${fmt(overall)} events/s including start and group join (${((firstAt - started) / 1000).toFixed(1)} s); ` +
        `projector CPU ${cpu.toFixed(1)} s`,
    );
    drains.push({ variant: variant.name, service, rate: firstDone < EVENTS ? (EVENTS - firstDone) / ((done - firstAt) / 1000) : NaN, cpu });
    if (service === "projector-postgres") await dropDatabases();
  }
}

const drains: DrainResult[] = [];

// ---------------------------------------------------------------- 2. freshness

interface Probe {
  allocationId: string;
  stockId: string;
  version: number;
  respondedAt: number;
  /** The event's occurredAt (Redis TIME), from the topic: the origin of every figure when known. */
  occurredAt?: number;
  kafka?: number;
  pg?: number;
  esGet?: number;
  esSearch?: number;
}

const results: FreshnessResult[] = [];

/**
 * ms from each probe's occurredAt (the issue's definition of freshness; falls back to the allocate
 * response if the watcher missed the message) to the moment `at` saw it. Not from the response alone:
 * a niced or busy load generator stamps its responses late, which would hide the relay's share.
 */
function since(probes: Probe[], at: (p: Probe) => number | undefined): number[] {
  return probes.flatMap((p) => {
    const seen = at(p);
    return seen === undefined ? [] : [seen - (p.occurredAt ?? p.respondedAt)];
  });
}

async function freshness(variant: Variant, round: number): Promise<void> {
  const tag = `${variant.name.replace(/[^a-z0-9]/gi, "").toLowerCase()}${round}`;
  const topic = `bench.pipeline.${run}.${tag}`;
  const alias = `bench-stocks-${run}-live-${tag}`;
  aliases.push(alias);
  await createTopic(topic);
  await dropDatabases(); // the drain's, if any: the pipeline gets a clean database
  const databaseUrl = await createDatabase();
  const prefix = `benchproj${run}${tag}`.slice(0, 32);
  const redis = createRedis(REDIS_URL);
  redis.on("error", () => {});
  const keys = createKeyLayout(prefix, SHARDS);
  const commands = createStockCommands(redis, keys);
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });

  const loadStocks = Array.from({ length: 400 }, (_, i) => `load${i}`);
  const probeStocks = Array.from({ length: 40 }, (_, i) => `probe${i}`);
  await Promise.all(
    [...loadStocks, ...probeStocks].map((id) => commands.createStock({ id, name: `Bench ${id}`, price: 100, quantity: 10_000_000, perUserLimit: 10_000_000 })),
  );
  const probeVersion = new Map(probeStocks.map((id) => [id, 1]));

  const relay = spawn("relay", { KAFKA_TOPIC: topic, REDIS_KEY_PREFIX: prefix }, variant.vars);
  const pg = spawn("projector-postgres", { KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: `bench-pg-live-${run}-${tag}`, DATABASE_URL: databaseUrl }, variant.vars);
  const search = spawn("projector-search", { KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: `bench-es-live-${run}-${tag}`, ELASTICSEARCH_INDEX_ALIAS: alias }, variant.vars);
  // Wait until the creations went all the way through (everything joined and warm).
  const t0 = performance.now();
  for (;;) {
    const [rows] = await sql`SELECT count(*)::int AS n FROM stocks`.catch(() => [{ n: 0 }]);
    const docs = await es.count({ index: alias }).catch(() => ({ count: 0 }));
    if (rows?.n === loadStocks.length + probeStocks.length && docs.count === rows.n) break;
    if (performance.now() - t0 > 120_000) throw new Error("pipeline did not come up in 2 minutes");
    await Bun.sleep(200);
  }
  log(
    `[${variant.name}] pipeline up (relay + both projectors) in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${RATE}/s for ${SECONDS} s, ` +
      `${PROBES_PER_SECOND} probes/s; ${JSON.stringify(variant.vars)}${NICE ? `; load generator at nice ${NICE}` : ""}`,
  );

  const probes: Probe[] = [];
  const pending = { pg: new Set<Probe>(), get: new Set<Probe>(), search: new Set<Probe>() };
  let running = true;
  let errors = 0;

  const pollers = [
    (async () => {
      while (running || pending.pg.size > 0) {
        if (pending.pg.size > 0) {
          const ids = [...pending.pg].map((p) => p.allocationId);
          const rows = await sql<{ allocation_id: string }[]>`SELECT allocation_id FROM orders WHERE allocation_id = ANY(${ids})`;
          const now = Date.now();
          const found = new Set(rows.map((r) => r.allocation_id));
          for (const p of pending.pg) if (found.has(p.allocationId)) (p.pg = now), pending.pg.delete(p);
        }
        await Bun.sleep(POLL_MS);
      }
    })(),
    (async () => {
      while (running || pending.get.size > 0) {
        if (pending.get.size > 0) {
          const ids = [...new Set([...pending.get].map((p) => p.stockId))];
          const result = await es.mget<StockDocument>({ index: alias, ids, realtime: true, _source_includes: ["version"] });
          const now = Date.now();
          const version = new Map(result.docs.map((d) => [d._id, "found" in d && d.found ? d._source!.version : 0]));
          for (const p of pending.get) if ((version.get(p.stockId) ?? 0) >= p.version) (p.esGet = now), pending.get.delete(p);
        }
        await Bun.sleep(POLL_MS);
      }
    })(),
    (async () => {
      while (running || pending.search.size > 0) {
        if (pending.search.size > 0) {
          const ids = [...new Set([...pending.search].map((p) => p.stockId))];
          const result = await es.search<StockDocument>({ index: alias, size: ids.length, query: { ids: { values: ids } }, _source: ["version"] });
          const now = Date.now();
          const version = new Map(result.hits.hits.map((h) => [h._id!, h._source!.version]));
          for (const p of pending.search) if ((version.get(p.stockId) ?? 0) >= p.version) (p.esSearch = now), pending.search.delete(p);
        }
        await Bun.sleep(POLL_MS);
      }
    })(),
  ];

  // Append to the topic (broker LogAppendTime): the relay's share, apart from the projectors'.
  const byAllocation = new Map<string, Probe>();
  const arrivedEarly = new Map<string, { at: number; occurredAt: number }>();
  const watcher = kafka.consumer({ groupId: `bench-watch-${run}`, maxWaitTimeInMs: 50 });
  await watcher.connect();
  await watcher.subscribe({ topic, fromBeginning: false });
  await watcher.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const now = Number(m.timestamp); // broker append time
        if (!m.key || !String(m.key).startsWith("probe")) continue;
        const event = JSON.parse(String(m.value)) as { occurredAt: string; payload: { allocationId?: string } };
        const allocationId = event.payload.allocationId;
        if (!allocationId) continue;
        const probe = byAllocation.get(allocationId);
        if (probe) (probe.kafka = now), (probe.occurredAt = Date.parse(event.occurredAt));
        else arrivedEarly.set(allocationId, { at: now, occurredAt: Date.parse(event.occurredAt) });
      }
    },
  });
  await Bun.sleep(3_000); // joined
  const bucketsBefore = { pg: await freshnessBuckets(pg), search: await freshnessBuckets(search) };
  const stagesBefore = { pg: await scrape(pg), search: await scrape(search), relay: await scrape(relay) };
  const nice = Number(variant.vars.BENCH_NICE ?? NICE);
  if (nice) setPriority(process.pid, nice);

  // Load: every 10 ms a slice of RATE/100 allocations (auto-pipelined), probes spread among them.
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
      const stockId = isProbe ? probeStocks[(issued / probeEvery) % probeStocks.length]! : loadStocks[issued % loadStocks.length]!;
      let version = 0;
      if (isProbe) {
        version = probeVersion.get(stockId)! + 1;
        probeVersion.set(stockId, version);
      }
      const op = commands.allocate({ stockId, userId: `u${user++ % 50_000}`, quantity: 1 }).then(
        ({ allocation }) => {
          if (!isProbe) return;
          const probe: Probe = { allocationId: allocation.allocationId, stockId, version, respondedAt: Date.now() };
          probes.push(probe);
          byAllocation.set(probe.allocationId, probe);
          const early = arrivedEarly.get(probe.allocationId);
          if (early !== undefined) (probe.kafka = early.at), (probe.occurredAt = early.occurredAt);
          pending.pg.add(probe);
          if (ES_GET) pending.get.add(probe);
          pending.search.add(probe);
        },
        () => void errors++,
      );
      inflight.add(op);
      void op.finally(() => inflight.delete(op));
    }
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - started) / 1000;
  if (nice) setPriority(process.pid, 0); // root may lower it again; the polling and reporting run at 0
  log(`issued ${fmt(issued)} allocations in ${elapsed.toFixed(1)} s (${fmt(issued / elapsed)}/s), ${errors} errors, ${probes.length} probes`);
  // Probes on the same stock are allocated one after the other only if each answer came back before
  // the next was sent; with BENCH_PROBES/40 per stock per second that holds, but check it.
  const deadline = Date.now() + 60_000;
  while ((pending.pg.size > 0 || pending.get.size > 0 || pending.search.size > 0) && Date.now() < deadline) await Bun.sleep(50);
  running = false;
  const unresolved = pending.pg.size + pending.get.size + pending.search.size;
  pending.pg.clear();
  pending.get.clear();
  pending.search.clear();
  await Promise.all(pollers);

  const report = (label: string, values: number[]) => {
    const sorted = values.sort((a, b) => a - b);
    log(
      `[${variant.name}] freshness → ${label}: p50 ${percentile(sorted, 50)} ms, p90 ${percentile(sorted, 90)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted[sorted.length - 1]} ms (n=${sorted.length})`,
    );
  };
  await watcher.disconnect();
  const result: FreshnessResult = {
    variant: variant.name,
    kafka: since(probes, (p) => p.kafka),
    pg: since(probes, (p) => p.pg),
    search: since(probes, (p) => p.esSearch),
    stages: {
      pg: stageFigures(stagesBefore.pg, await scrape(pg)),
      search: stageFigures(stagesBefore.search, await scrape(search)),
      relay: relayStageFigures(stagesBefore.relay, await scrape(relay)),
    },
  };
  results.push(result);
  report("Kafka (relay: appended to the topic)", [...result.kafka]);
  report("PostgreSQL (order row)", [...result.pg]);
  if (ES_GET) report("Elasticsearch GET (doc version, realtime)", since(probes, (p) => p.esGet));
  report("Elasticsearch search (doc version, after refresh)", [...result.search]);
  // Where the time goes, per stage, from the projectors' own histograms (every event, not only probes).
  log(`[${variant.name}] time budget, relay, p50/p99 ms: ${formatStages(result.stages.relay, Object.keys(RELAY_STAGES))} (read_to_kafka_ack per batch)`);
  log(`[${variant.name}] time budget, projector-postgres, p50/p99 ms: ${formatStages(result.stages.pg)}`);
  log(`[${variant.name}] time budget, projector-search, p50/p99 ms: ${formatStages(result.stages.search)}`);
  if (unresolved > 0) log(`WARNING: ${unresolved} probe checks never resolved`);
  // The projectors' own view (commit time − occurredAt, every event, no polling): where search's extra time goes.
  log(`projector-postgres freshness at commit (its metric): ${formatFreshnessShares(bucketsBefore.pg, await freshnessBuckets(pg))}`);
  log(`projector-search freshness at bulk ack (its metric): ${formatFreshnessShares(bucketsBefore.search, await freshnessBuckets(search))}`);
  for (const [name, child] of [["relay", relay], ["projector-postgres", pg], ["projector-search", search]] as const) {
    log(`${name} CPU ${(await cpuSeconds(child.pid)).toFixed(1)} s`);
  }
  await Promise.all([stop(relay), stop(pg), stop(search)]);
  await sql.end();
  await deleteKeysByPrefix(redis, prefix);
  redis.disconnect();
}

async function dropDatabases(): Promise<void> {
  const admin = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  while (databases.length > 0) await admin.unsafe(`DROP DATABASE IF EXISTS ${databases.pop()} WITH (FORCE)`).catch(() => {});
  await admin.end();
}

async function cleanup(): Promise<void> {
  for (const child of children) await stop(child).catch(() => {});
  const admin = kafka.admin();
  await admin.connect();
  const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.includes(run));
  await admin.deleteGroups(groups).catch(() => {});
  await admin.deleteTopics({ topics: topics.flatMap((t) => [t, `${t}.dlq`]) }).catch(() => {});
  await admin.disconnect();
  for (const alias of aliases) await deleteIndices(es, `${alias}-v*`).catch(() => {});
  await es.close();
  await dropDatabases();
}

try {
  log(`run ${run}: ${fmt(EVENTS)} events, ${STOCKS} stocks, ${PARTITIONS} partitions, PROJECTOR_CONCURRENCY=${process.env.PROJECTOR_CONCURRENCY ?? 16}`);
  const variants = parseVariants(process.env.BENCH_VARIANTS);
  if (!process.env.BENCH_SKIP_DRAIN) await drain(variants);
  if (!process.env.BENCH_SKIP_FRESHNESS) for (let round = 0; round < ROUNDS; round++) for (const v of variants) await freshness(v, round);
  for (const line of summaryLines(variants, drains, results, ROUNDS)) log(line);
} finally {
  await cleanup();
}
process.exit(0);
