/**
 * The PostgreSQL alternative as a bench:allocate target: the same api shape served from PostgreSQL
 * (loadtests/baselines/pg-server.ts, a PL/pgSQL function or a client-side transaction), in a throwaway
 * database, checked afterwards (checkPgBaseline). allocate.ts passes what it shares with every target.
 */
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { checkPgBaseline, PG_BASELINE_SCHEMA } from "../baselines/pg-commands.ts";
import { adminPost, cpuSeconds, startProcess, uniquePrefix, waitHealthy } from "../support.ts";
import type { Row } from "./allocate-report.ts";
import { freePort } from "../../shared/dev/env.ts";

export interface PgBenchContext {
  databaseUrl: string;
  adminToken: string;
  jwtSecret: string;
  /** --pool: the baseline server's connection pool. */
  pool: string;
  dir: string;
  stockSpecs(prefix: string, count: number): Array<{ id: string } & Record<string, unknown>>;
  k6Runs(target: string, baseUrl: string, stockIds: string[], cpu: () => number, storeCpu?: () => number): Promise<Pick<Row, "closed" | "open" | "serverCpuUsPerReq" | "storeCpuUsPerReq">>;
  record(row: Row): void;
  /** Counts a failed check (the bench exits non-zero). */
  fail(): void;
}

/** CPU seconds of every PostgreSQL backend serving `database` (its `ps` title names the database). */
function pgBackendCpuSeconds(database: string): number {
  let total = 0;
  for (const entry of new Bun.Glob("[0-9]*").scanSync({ cwd: "/proc", onlyFiles: false })) {
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmd.startsWith("postgres: ") && cmd.includes(` ${database} `)) total += cpuSeconds(Number(entry));
    } catch {
      // gone
    }
  }
  return total;
}

export async function benchPg(ctx: PgBenchContext, mode: "fn" | "tx", stockCount: number, sync: string): Promise<void> {
  const { databaseUrl: DATABASE_URL, adminToken, jwtSecret, pool, dir, stockSpecs, k6Runs, record } = ctx;
  const database = uniquePrefix(`bpg${mode}`);
  const admin = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${database}`);
  const url = new URL(DATABASE_URL);
  url.pathname = `/${database}`;
  const sql = postgres(url.toString(), { max: 2, onnotice: () => {} });
  const port = await freePort();
  let child: ReturnType<typeof startProcess> | undefined;
  try {
    await sql.unsafe(PG_BASELINE_SCHEMA);
    child = startProcess(
      `pg-${mode}-${sync}-${stockCount}`,
      [process.execPath, "loadtests/baselines/pg-server.ts"],
      { PORT: String(port), ADMIN_TOKEN: adminToken, JWT_SECRET: jwtSecret, DATABASE_URL: url.toString(), PG_MODE: mode, PG_POOL_MAX: pool, PG_SYNC_COMMIT: sync },
      dir,
    );
    const baseUrl = `http://127.0.0.1:${port}`;
    await waitHealthy(`${baseUrl}/readyz`, child);
    const stocks = stockSpecs(database, stockCount);
    for (const s of stocks) await adminPost(baseUrl, adminToken, "/api/stocks", s);
    const pid = child.proc.pid;
    const r = await k6Runs(`pg-${mode}-${sync}`, baseUrl, stocks.map((s) => s.id), () => cpuSeconds(pid), () => pgBackendCpuSeconds(database));
    const problems = await checkPgBaseline(sql);
    const [{ held }] = (await sql`SELECT coalesce(sum(held), 0)::int AS held FROM stock`) as unknown as [{ held: number }];
    if (problems.length > 0) {
      ctx.fail();
      console.log(`[bench] pg-${mode} check: ${problems.slice(0, 5).join("; ")}`);
    }
    record({
      target: `pg-${mode} sync ${sync}`,
      stocks: stockCount,
      ...r,
      check: `check ${problems.length === 0 ? "clean" : "FAILED"} (${held} held)`,
      note: `pool max ${pool}, synchronous_commit ${sync}`,
    });
  } finally {
    await child?.stop();
    await sql.end({ timeout: 2 });
    await admin.unsafe(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  }
}
