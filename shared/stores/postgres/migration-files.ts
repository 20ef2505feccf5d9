/**
 * The read-model tables are whatever migrations/*.sql create. `bun run migrate` applies them to the
 * live schema (and records them); the rebuild command uses applyMigrationFiles to create the same
 * tables in a fresh schema, without touching the migration history. A file whose first line is
 * `-- rebuild: skip` holds state that is not a read model (the notifier's endpoints and delivery log):
 * the rebuild leaves it out, so the swap never replaces those tables with empty ones.
 */
import { join } from "node:path";
import type postgres from "postgres";
import { readMigrations } from "./migrate.ts";

export const MIGRATIONS_DIR = join(import.meta.dir, "..", "..", "..", "migrations");

const REBUILD_SKIP = /^-- rebuild: skip\s*$/;

/** True when the file opts out of read-model rebuilds (its first line is `-- rebuild: skip`). */
export function isSkippedByRebuild(text: string): boolean {
  return REBUILD_SKIP.test(text.split("\n", 1)[0] ?? "");
}

/** Runs every read-model migration file, in order (the migrator's own reader), with search_path = `schema`, in one transaction. */
export async function applyMigrationFiles(sql: postgres.Sql, schema: string, dir = MIGRATIONS_DIR): Promise<void> {
  const migrations = await readMigrations(dir);
  await sql.begin(async (tx) => {
    await tx.unsafe(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
    for (const migration of migrations) if (!isSkippedByRebuild(migration.sql)) await tx.unsafe(migration.sql);
  });
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Tables of a schema (ordinary tables only). */
export async function tablesOf(sql: postgres.Sql, schema: string): Promise<string[]> {
  const rows = await sql<{ table_name: string }[]>`
    SELECT table_name FROM information_schema.tables
    WHERE table_schema = ${schema} AND table_type = 'BASE TABLE' ORDER BY table_name`;
  return rows.map((r) => r.table_name);
}
