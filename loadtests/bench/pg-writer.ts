/**
 * PostgreSQL writer benchmark (`bun run bench:pg-writer`): the projector's store call alone, no Kafka,
 * so the statement shapes can be compared on the same noise. Each writer gets its own fresh,
 * migrated database; the same batches of a realistic stream (test/support/stock-sim.ts) are applied
 * by the writers in turn (A, B, A, B …), at a small batch size (what a projector sees at 2,000
 * events/s) and a large one (a drain). Prints per writer and size: p50/p99 ms per batch, events/s.
 *
 * BENCH_BASE=<checkout> adds that checkout's shared/stores/postgres/writer.ts as the writer "base"
 * (e.g. the code before a change: `git archive <commit> | tar -x -C /tmp/base` and a node_modules link).
 *
 * Env: DATABASE_URL, BENCH_EVENTS (40000), BENCH_STOCKS (500), BENCH_SIZES ("200,4000"), BENCH_BASE.
 */
import postgres from "postgres";
import type { StockEvent } from "../../shared/domain/events.ts";
import { migrate } from "../../shared/stores/postgres/migrate.ts";
import { MIGRATIONS_DIR } from "../../shared/stores/postgres/migration-files.ts";
import { stackEnv } from "../../test/support/env.ts";
import { generateWorkload, StockSim } from "../../test/support/stock-sim.ts";

type Apply = (sql: postgres.Sql, events: readonly StockEvent[]) => Promise<unknown>;

const EVENTS = Number(process.env.BENCH_EVENTS ?? 40_000);
const STOCKS = Number(process.env.BENCH_STOCKS ?? 500);
const SIZES = (process.env.BENCH_SIZES ?? "200,4000").split(",").map(Number);
const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const log = (msg: string) => console.log(`[bench:pg-writer] ${msg}`);
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

const writers: Array<{ name: string; apply: Apply }> = [
  { name: "current", apply: (await import("../../shared/stores/postgres/writer.ts")).applyEventsToPostgres },
];
if (process.env.BENCH_BASE) writers.unshift({ name: "base", apply: (await import(`${process.env.BENCH_BASE}/shared/stores/postgres/writer.ts`)).applyEventsToPostgres });

const admin = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
const databases: string[] = [];
async function database(): Promise<postgres.Sql> {
  const name = `bench_pgw_${run}_${databases.length}`;
  databases.push(name);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(stackEnv.DATABASE_URL);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 2, onnotice: () => {} });
  await migrate(sql, MIGRATIONS_DIR);
  return sql;
}

try {
  log(`run ${run}: ${EVENTS} events over ${STOCKS} stocks, batch sizes ${SIZES.join(", ")}, writers ${writers.map((w) => w.name).join(", ")}`);
  for (const size of SIZES) {
    const events = generateWorkload(new StockSim(), { count: EVENTS, stockCount: STOCKS, prefix: `b${size}`, users: 20_000, totalPerStock: 10_000_000 });
    const targets: Array<{ name: string; apply: Apply; sql: postgres.Sql; times: number[] }> = [];
    for (const w of writers) targets.push({ ...w, sql: await database(), times: [] });
    for (let i = 0; i < events.length; i += size) {
      const batch = events.slice(i, i + size);
      for (const t of targets) {
        const started = performance.now();
        await t.apply(t.sql, batch);
        t.times.push(performance.now() - started);
      }
    }
    for (const t of targets) {
      const sorted = [...t.times].sort((a, b) => a - b);
      const total = t.times.reduce((a, b) => a + b, 0);
      log(
        `${t.name}, ${size} events/batch: p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms per batch, ` +
          `${Math.round(events.length / (total / 1000)).toLocaleString("en-US")} events/s (n=${t.times.length})`,
      );
      await t.sql.end();
    }
  }
} finally {
  for (const name of databases) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
  await admin.end();
}
