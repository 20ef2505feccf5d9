/**
 * The read-model tables are whatever migrations/*.sql create. `bun run migrate` applies them to the
 * live schema (and records them); the rebuild command uses applyMigrationFiles to create the same
 * tables in a fresh schema, without touching the migration history. A file whose first line is
 * `-- rebuild: skip` holds state that is not a read model (the notifier's endpoints and delivery log):
 * the rebuild leaves it out, so the swap never replaces those tables with empty ones.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type postgres from "postgres";

export const MIGRATIONS_DIR = join(import.meta.dir, "..", "..", "migrations");

export function migrationFiles(dir = MIGRATIONS_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_.*\.sql$/.test(f))
    .sort();
}

const REBUILD_SKIP = /^-- rebuild: skip\s*$/m;

/** True when the file opts out of read-model rebuilds (its first line is `-- rebuild: skip`). */
export function isSkippedByRebuild(text: string): boolean {
  return REBUILD_SKIP.test(text.split("\n", 1)[0] ?? "");
}

/** Runs every read-model migration file, in order, with search_path = `schema`, in one transaction. */
export async function applyMigrationFiles(sql: postgres.Sql, schema: string, dir = MIGRATIONS_DIR): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
    for (const file of migrationFiles(dir)) {
      const text = readFileSync(join(dir, file), "utf8");
      if (!isSkippedByRebuild(text)) await tx.unsafe(text);
    }
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
