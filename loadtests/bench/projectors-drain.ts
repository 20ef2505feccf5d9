/**
 * Phase 1 of `bun run bench:projectors`: BENCH_EVENTS events (a realistic mix over BENCH_STOCKS
 * stocks, StockCreated first per stock) preloaded on a fresh topic, then each projector binary drains
 * it, one after the other, once per variant and round. Rate = events / time from its first committed
 * batch to its last (startup and group join are reported apart), plus the projector process's CPU.
 */
import type { Subprocess } from "bun";
import postgres from "postgres";
import { sumOf } from "../../shared/prom-text.ts";
import { fetchGroupOffsets, fetchHighWatermarks, remaining } from "../../shared/projection/offsets.ts";
import { produceEvents } from "../../shared/dev/read-side.ts";
import { generateWorkload, StockSim } from "../../shared/dev/stock-sim.ts";
import { stackEnv } from "../../shared/dev/env.ts";
import { cpuSeconds, fmt } from "../support.ts";
import type { DrainResult, Variant } from "./projector-report.ts";
import { stop, type ProjectorBench } from "./projectors-stack.ts";

const SERVICES = ["projector-postgres", "projector-search"] as const;

export async function drain(bench: ProjectorBench, variants: Variant[]): Promise<DrainResult[]> {
  const { run, settings, kafka } = bench;
  const { BENCH_EVENTS: EVENTS, BENCH_STOCKS: STOCKS } = settings;
  const topic = `bench.projectors.${run}`;
  await bench.createTopic(topic);
  const sim = new StockSim();
  let t = performance.now();
  const events = generateWorkload(sim, { count: EVENTS, stockCount: STOCKS, prefix: "b", users: 20_000, totalPerStock: 10_000_000 });
  const counts = events.reduce<Record<string, number>>((acc, e) => ((acc[e.eventType] = (acc[e.eventType] ?? 0) + 1), acc), {});
  bench.log(`generated ${fmt(events.length)} events over ${STOCKS} stocks in ${((performance.now() - t) / 1000).toFixed(1)} s: ${JSON.stringify(counts)}`);
  t = performance.now();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await produceEvents(producer, topic, events, 5_000);
  await producer.disconnect();
  const end = await fetchHighWatermarks(kafka, topic);
  bench.log(`preloaded on ${topic} (${settings.KAFKA_PARTITIONS} partitions) in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const drains: DrainResult[] = [];
  const services = SERVICES.filter((s) => !settings.BENCH_DRAIN_ONLY || s === settings.BENCH_DRAIN_ONLY);
  for (let round = 0; round < settings.BENCH_ROUNDS; round++)
    for (const variant of variants)
      for (const service of services) {
        drains.push(await drainOnce(bench, { topic, end, service, variant, tag: `${variant.name}-${round}` }));
        if (service === "projector-postgres") await bench.dropDatabases();
      }
  return drains;
}

interface DrainRun {
  topic: string;
  /** The topic's high watermarks: drained when the group's offsets reach them. */
  end: Awaited<ReturnType<typeof fetchHighWatermarks>>;
  service: (typeof SERVICES)[number];
  variant: Variant;
  tag: string;
}

/** One projector binary drains the preloaded topic with a group of its own. */
async function drainOnce(bench: ProjectorBench, { topic, end, service, variant, tag }: DrainRun): Promise<DrainResult> {
  const { run, kafka } = bench;
  const EVENTS = bench.settings.BENCH_EVENTS;
  const group = `bench-${service}-${run}-${tag}`;
  const alias = `bench-stocks-${run}-drain-${tag}`;
  if (service === "projector-search") bench.aliases.push(alias);
  // A fresh database per drain: the same events again would only be duplicates.
  const databaseUrl = service === "projector-postgres" ? await bench.createDatabase() : stackEnv.DATABASE_URL;
  const started = performance.now();
  const child = bench.spawn(service, { KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: group, DATABASE_URL: databaseUrl, ELASTICSEARCH_INDEX_ALIAS: alias }, variant.vars);
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
  const cpu = cpuSeconds(child.pid);
  const breakdown = await drainBreakdown(bench, child, service === "projector-postgres" ? databaseUrl : null);
  await stop(child);
  const overall = EVENTS / ((done - started) / 1000);
  // Drained within one offset poll: no steady-state span to measure (use more BENCH_EVENTS).
  const steady = firstDone < EVENTS ? `${fmt((EVENTS - firstDone) / ((done - firstAt) / 1000))} events/s` : "n/a (one poll)";
  bench.log(
    `[${variant.name}] ${service}: drained ${fmt(EVENTS)} events at ${steady} (first batch → last), ` +
      `${fmt(overall)} events/s including start and group join (${((firstAt - started) / 1000).toFixed(1)} s); ` +
      `projector CPU ${cpu.toFixed(1)} s`,
  );
  const perEvent = (seconds: number) => `${((seconds * 1e6) / EVENTS).toFixed(1)} µs`;
  bench.log(
    `[${variant.name}] ${service} per event: wall ${perEvent((done - firstAt) / 1000 / ((EVENTS - firstDone) / EVENTS))}; ` +
      `busy (summed over batches, the members overlap): parse ${perEvent(breakdown.parse)}, store ${perEvent(breakdown.store)}, commit ${perEvent(breakdown.commit)}; ` +
      `CPU: projector ${perEvent(cpu)}` + (breakdown.storeCpu === null ? "" : `, PostgreSQL backends ${perEvent(breakdown.storeCpu)}`),
  );
  return { variant: variant.name, service, rate: firstDone < EVENTS ? (EVENTS - firstDone) / ((done - firstAt) / 1000) : NaN, cpu };
}

/** The drained projector's busy seconds per step (its metrics) and, for PostgreSQL, its backends' CPU (/proc, same machine). */
async function drainBreakdown(bench: ProjectorBench, child: Subprocess, databaseUrl: string | null) {
  const samples = await bench.scrape(child);
  const step = (name: string) => sumOf(samples, "flashsale_projector_busy_seconds_total", { step: name });
  let storeCpu: number | null = null;
  if (databaseUrl) {
    const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    const backends = await sql<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`;
    await sql.end();
    storeCpu = backends.reduce((total, b) => total + (cpuSeconds(b.pid) || 0), 0);
  }
  return { parse: step("parse"), store: step("store"), commit: step("commit"), storeCpu };
}
