/**
 * Projector benchmark (`bun run bench:projectors`), against the real stack. Not a test: it prints.
 *
 *  1. drain: BENCH_EVENTS events (a realistic mix over BENCH_STOCKS stocks, StockCreated first per
 *     stock; shared/dev/stock-sim.ts) are preloaded on a fresh topic; then each projector binary
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
 *     Each probe is also read back at once through the api binary (its defaults: 1 s wait) with its
 *     Consistency-Token, history and search (projectors-ryw.ts): the read-your-writes wait, p50/p99.
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
 * Files: projectors-stack.ts (the run's settings, clients and everything it creates), projectors-drain.ts
 * (1), projectors-freshness.ts and projectors-probes.ts (2), projector-report.ts (the figures, 3's table).
 *
 * Env: REDIS_URL, KAFKA_BROKERS, DATABASE_URL, ELASTICSEARCH_URL, BENCH_EVENTS (200000),
 * BENCH_STOCKS (500), BENCH_RATE (2000), BENCH_SECONDS (20), BENCH_PROBES (50), BENCH_POLL_MS (20), BENCH_ES_GET (0),
 * KAFKA_PARTITIONS (12), OUTBOX_SHARDS (4), PROJECTOR_CONCURRENCY (16), BENCH_SKIP_DRAIN, BENCH_SKIP_FRESHNESS,
 * BENCH_DRAIN_ONLY (projector-postgres | projector-search), BENCH_VARIANTS, BENCH_ROUNDS (1), BENCH_NICE (0).
 */
import { parseVariants, summaryLines, type FreshnessResult } from "./projector-report.ts";
import { drain } from "./projectors-drain.ts";
import { freshness } from "./projectors-freshness.ts";
import { ProjectorBench, readProjectorBenchSettings } from "./projectors-stack.ts";
import { fmt } from "../support.ts";

const settings = readProjectorBenchSettings();
const bench = new ProjectorBench(settings);
try {
  bench.log(
    `run ${bench.run}: ${fmt(settings.BENCH_EVENTS)} events, ${settings.BENCH_STOCKS} stocks, ${settings.KAFKA_PARTITIONS} partitions, PROJECTOR_CONCURRENCY=${settings.PROJECTOR_CONCURRENCY}`,
  );
  const variants = parseVariants(settings.BENCH_VARIANTS);
  const drains = settings.BENCH_SKIP_DRAIN ? [] : await drain(bench, variants);
  const results: FreshnessResult[] = [];
  if (!settings.BENCH_SKIP_FRESHNESS) {
    for (let round = 0; round < settings.BENCH_ROUNDS; round++) for (const v of variants) results.push(await freshness(bench, v, round));
  }
  for (const line of summaryLines(variants, drains, results, settings.BENCH_ROUNDS)) bench.log(line);
} finally {
  await bench.cleanup();
}
process.exit(0);
