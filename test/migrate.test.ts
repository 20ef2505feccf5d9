/**
 * The migrations runner on the real PostgreSQL of the stack, in throwaway databases:
 * order, one transaction per file, idempotence, concurrent starters, immutability of applied files.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { migrate, MigrationError, readMigrations } from "../shared/stores/postgres/migrate.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";

const REPO_MIGRATIONS = join(import.meta.dir, "..", "migrations");

function urlFor(db: string): string {
  const u = new URL(stackEnv.DATABASE_URL);
  u.pathname = `/${db}`;
  return u.toString();
}

const admin = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
const created: string[] = [];
const pools: postgres.Sql[] = [];
const dirs: string[] = [];

async function freshDatabase(label: string): Promise<postgres.Sql> {
  const name = uniqueName(label);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  created.push(name);
  const sql = postgres(urlFor(name), { max: 4, onnotice: () => {} });
  pools.push(sql);
  return sql;
}

async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "fs-migrations-"));
  dirs.push(dir);
  for (const [name, body] of Object.entries(files)) await writeFile(join(dir, name), body);
  return dir;
}

async function tables(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ table_name: string }[]>`
    SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`;
  return rows.map((r) => r.table_name);
}

beforeAll(async () => {
  await admin`SELECT 1`;
});

afterAll(async () => {
  await Promise.all(pools.map((p) => p.end({ timeout: 2 })));
  for (const db of created) await admin.unsafe(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin.end({ timeout: 2 });
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("migrate", () => {
  test("applies the repository's migrations once, records them, and a second run applies nothing", async () => {
    const sql = await freshDatabase("mig_repo");
    const files = await readMigrations(REPO_MIGRATIONS);
    expect(files.length).toBeGreaterThan(0);

    const first = await migrate(sql, REPO_MIGRATIONS);
    expect(first.applied).toEqual(files.map((f) => f.version));
    expect(first.alreadyApplied).toEqual([]);
    expect(await tables(sql)).toEqual(expect.arrayContaining(["schema_migrations", "stock_events", "orders", "stocks"]));

    const second = await migrate(sql, REPO_MIGRATIONS);
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toEqual(files.map((f) => f.version));
    const history = await sql<{ version: string; checksum: string }[]>`SELECT version, checksum FROM schema_migrations ORDER BY version`;
    expect(history.map((h) => h.version)).toEqual(files.map((f) => f.version));
    expect(history.map((h) => h.checksum)).toEqual(files.map((f) => f.checksum));
  });

  test("applies files in number order, not name order", async () => {
    const dir = await migrationsDir({
      "2_second.sql": "INSERT INTO steps VALUES (2);",
      "10_third.sql": "INSERT INTO steps VALUES (10);",
      "001_first.sql": "CREATE TABLE steps (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());",
    });
    const sql = await freshDatabase("mig_order");
    const result = await migrate(sql, dir);
    expect(result.applied).toEqual(["001", "2", "10"]);
    const rows = await sql<{ n: number }[]>`SELECT n FROM steps ORDER BY at`;
    expect(rows.map((r) => r.n)).toEqual([2, 10]);
  });

  test("a failing file leaves nothing of itself behind and stops the run; earlier files stay applied", async () => {
    const dir = await migrationsDir({
      "001_ok.sql": "CREATE TABLE a (id int);",
      "002_bad.sql": "CREATE TABLE b (id int); SELECT no_such_function();",
      "003_never.sql": "CREATE TABLE c (id int);",
    });
    const sql = await freshDatabase("mig_fail");
    const error = await migrate(sql, dir).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MigrationError);
    expect(String((error as Error).message)).toContain("002_bad.sql");
    expect(await tables(sql)).toEqual(["a", "schema_migrations"]);
    const history = await sql<{ version: string }[]>`SELECT version FROM schema_migrations`;
    expect(history.map((h) => h.version)).toEqual(["001"]);
  });

  test("concurrent starters apply each file exactly once", async () => {
    const dir = await migrationsDir({
      "001_counter.sql": "CREATE TABLE runs (n serial PRIMARY KEY, file text NOT NULL);",
      "002_a.sql": "INSERT INTO runs (file) VALUES ('002'); SELECT pg_sleep(0.05);",
      "003_b.sql": "INSERT INTO runs (file) VALUES ('003');",
    });
    const sql = await freshDatabase("mig_race");
    // Separate pools, like separate processes.
    const starters = Array.from({ length: 6 }, () => {
      const s = postgres(urlFor(created.at(-1)!), { max: 2, onnotice: () => {} });
      pools.push(s);
      return s;
    });
    const results = await Promise.all(starters.map((s) => migrate(s, dir)));
    const appliedTotal = results.flatMap((r) => r.applied).sort();
    expect(appliedTotal).toEqual(["001", "002", "003"]);
    const rows = await sql<{ file: string }[]>`SELECT file FROM runs ORDER BY n`;
    expect(rows.map((r) => r.file)).toEqual(["002", "003"]);
  });

  test("refuses to go on when an applied file was changed", async () => {
    const dir = await migrationsDir({ "001_t.sql": "CREATE TABLE t (id int);" });
    const sql = await freshDatabase("mig_changed");
    await migrate(sql, dir);
    await writeFile(join(dir, "001_t.sql"), "CREATE TABLE t (id bigint);");
    await writeFile(join(dir, "002_u.sql"), "CREATE TABLE u (id int);");
    await expect(migrate(sql, dir)).rejects.toThrow(/001_t\.sql changed after it was applied/);
    expect(await tables(sql)).toEqual(["schema_migrations", "t"]);
  });

  test("rejects badly named files and duplicate numbers before touching the database", async () => {
    const bad = await migrationsDir({ "first.sql": "SELECT 1;" });
    await expect(readMigrations(bad)).rejects.toThrow(/NNN_name\.sql/);
    const dup = await migrationsDir({ "001_a.sql": "SELECT 1;", "1_b.sql": "SELECT 1;" });
    await expect(readMigrations(dup)).rejects.toThrow(/share the number/);
  });
});
