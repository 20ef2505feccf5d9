/**
 * PostgreSQL writer benchmark (`bun run bench:pg-writer`): the projector's store call alone, no Kafka,
 * so the statement shapes can be compared on the same noise. Each writer gets its own fresh,
 * migrated database; the same batches of a realistic stream (shared/dev/stock-sim.ts) are applied
 * by the writers in turn (A, B, A, B …), at a small batch size (what a projector sees at 2,000
 * events/s) and a large one (a drain). Prints per writer and size: p50/p99 ms per batch, events/s,
 * and the CPU time per 1,000 events of the writer's PostgreSQL backend (/proc, same machine) and of
 * this process (planning, JSON): on a shared machine the CPU figures are the steadier comparison.
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
import { stackEnv } from "../../shared/dev/env.ts";
import { z } from "zod";
import { benchInt, benchRunId, cpuSeconds, percentile, readBenchEnv } from "../support.ts";
import { generateWorkload, StockSim } from "../../shared/dev/stock-sim.ts";

type Apply = (sql: postgres.Sql, events: readonly StockEvent[]) => Promise<unknown>;

const {
  BENCH_EVENTS: EVENTS,
  BENCH_STOCKS: STOCKS,
  BENCH_SIZES: SIZES,
  BENCH_BASE,
} = readBenchEnv({
  BENCH_EVENTS: benchInt(40_000, 1),
  BENCH_STOCKS: benchInt(500, 1),
  BENCH_SIZES: z
    .string()
    .regex(/^\d+(,\d+)*$/, "batch sizes, comma-separated (e.g. 200,4000)")
    .default("200,4000")
    .transform((s) => s.split(",").map(Number))
    .refine((sizes) => sizes.every((n) => n >= 1), "every batch size is at least 1"),
  BENCH_BASE: z.string().optional(),
});
const run = benchRunId();
const log = (msg: string) => console.log(`[bench:pg-writer] ${msg}`);

const writers: Array<{ name: string; apply: Apply }> = [
  { name: "current", apply: (await import("../../shared/stores/postgres/writer.ts")).applyEventsToPostgres },
];
if (BENCH_BASE) writers.unshift({ name: "base", apply: (await import(`${BENCH_BASE}/shared/stores/postgres/writer.ts`)).applyEventsToPostgres });

const admin = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
const databases: string[] = [];
async function database(): Promise<postgres.Sql> {
  const name = `bench_pgw_${run}_${databases.length}`;
  databases.push(name);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(stackEnv.DATABASE_URL);
  url.pathname = `/${name}`;
  // One connection: one backend process, whose CPU time (/proc) is the writer's cost in PostgreSQL,
  // a figure the machine's load does not distort the way it distorts wall time.
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  await migrate(sql, MIGRATIONS_DIR);
  return sql;
}

try {
  log(`run ${run}: ${EVENTS} events over ${STOCKS} stocks, batch sizes ${SIZES.join(", ")}, writers ${writers.map((w) => w.name).join(", ")}`);
  for (const size of SIZES) {
    const events = generateWorkload(new StockSim(), { count: EVENTS, stockCount: STOCKS, prefix: `b${size}`, users: 20_000, totalPerStock: 10_000_000 });
    const targets: Array<{ name: string; apply: Apply; sql: postgres.Sql; times: number[]; backend: number; cpu: number; ownCpu: number }> = [];
    for (const w of writers) {
      const sql = await database();
      const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      targets.push({ ...w, sql, times: [], backend: row!.pid, cpu: cpuSeconds(row!.pid), ownCpu: 0 });
    }
    for (let i = 0; i < events.length; i += size) {
      const batch = events.slice(i, i + size);
      for (const t of targets) {
        const started = performance.now();
        const own = process.cpuUsage();
        await t.apply(t.sql, batch);
        const used = process.cpuUsage(own);
        t.ownCpu += (used.user + used.system) / 1e6;
        t.times.push(performance.now() - started);
      }
    }
    for (const t of targets) {
      const sorted = [...t.times].sort((a, b) => a - b);
      const total = t.times.reduce((a, b) => a + b, 0);
      log(
        `${t.name}, ${size} events/batch: p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms per batch, ` +
          `${Math.round(events.length / (total / 1000)).toLocaleString("en-US")} events/s; CPU per 1,000 events: PostgreSQL backend ` +
          `${(((cpuSeconds(t.backend) - t.cpu) * 1e6) / events.length).toFixed(1)} ms, this process ${((t.ownCpu * 1e6) / events.length).toFixed(1)} ms (n=${t.times.length})`,
      );
      await t.sql.end();
    }
  }
} finally {
  for (const name of databases) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
  await admin.end();
}
