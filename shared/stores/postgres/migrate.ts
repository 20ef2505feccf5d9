/**
 * Migrations runner (docs/design.md §6): applies `migrations/NNN_name.sql` in number order, each file in its
 * own transaction, and records it in `schema_migrations` (version, name, sha-256, time).
 *
 * Safe for concurrent starters: every transaction first takes a transaction-scoped advisory lock and
 * re-reads the history under it, so two processes never apply the same file, and file N is only
 * applied once N-1 is recorded. Idempotent: a second run applies nothing.
 *
 * Applied files are immutable: if one changed after it was applied, `migrate` refuses to continue
 * (add a new NNN file instead), naming the file.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type postgres from "postgres";

/** Arbitrary, fixed key of the advisory lock every migrator takes ("flashmig" in ASCII). */
const MIGRATION_LOCK_KEY = 0x666c6173686d6967n;

const FILE_PATTERN = /^(\d+)_([A-Za-z0-9_.-]+)\.sql$/;

export interface MigrationFile {
  /** The number prefix as written (e.g. "001"), the key in schema_migrations. */
  version: string;
  name: string;
  file: string;
  path: string;
  checksum: string;
  sql: string;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

export interface MigrateOptions {
  log?: (message: string) => void;
}

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MigrationError";
  }
}

/** The migration files of `dir`, in apply order (by number). Rejects duplicate numbers. */
export async function readMigrations(dir: string): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith(".sql"));
  const files: MigrationFile[] = [];
  for (const file of names) {
    const m = FILE_PATTERN.exec(file);
    if (!m) throw new MigrationError(`${file}: migration files must be named NNN_name.sql`);
    const sql = await readFile(join(dir, file), "utf8");
    files.push({
      version: m[1]!,
      name: m[2]!,
      file,
      path: join(dir, file),
      checksum: createHash("sha256").update(sql).digest("hex"),
      sql,
    });
  }
  files.sort((a, b) => Number(a.version) - Number(b.version) || a.file.localeCompare(b.file));
  for (let i = 1; i < files.length; i++) {
    if (Number(files[i]!.version) === Number(files[i - 1]!.version)) {
      throw new MigrationError(`${files[i - 1]!.file} and ${files[i]!.file} share the number ${files[i]!.version}`);
    }
  }
  return files;
}

interface AppliedRow {
  version: string;
  checksum: string;
}

async function lock(tx: postgres.TransactionSql): Promise<void> {
  await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
}

async function ensureHistoryTable(sql: postgres.Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await lock(tx);
    const [row] = await tx<{ exists: boolean }[]>`SELECT to_regclass('schema_migrations') IS NOT NULL AS exists`;
    if (row?.exists) return;
    await tx`
      CREATE TABLE schema_migrations (
        version     text        PRIMARY KEY,
        name        text        NOT NULL,
        checksum    text        NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now(),
        duration_ms integer     NOT NULL
      )`;
  });
}

/**
 * Applies the pending migrations of `dir` to the database of `sql` (its current schema).
 * Returns the versions applied now and those found already applied.
 */
export async function migrate(sql: postgres.Sql, dir: string, options: MigrateOptions = {}): Promise<MigrateResult> {
  const log = options.log ?? (() => {});
  const files = await readMigrations(dir);
  await ensureHistoryTable(sql);
  const result: MigrateResult = { applied: [], alreadyApplied: [] };
  for (const m of files) {
    const applied = await sql.begin(async (tx) => {
      await lock(tx);
      const [row] = await tx<AppliedRow[]>`SELECT version, checksum FROM schema_migrations WHERE version = ${m.version}`;
      if (row) {
        if (row.checksum !== m.checksum) {
          throw new MigrationError(
            `${m.file} changed after it was applied (recorded sha-256 ${row.checksum.slice(0, 12)}…, file ${m.checksum.slice(0, 12)}…). ` +
              `Applied migrations are immutable: put the change in a new NNN_*.sql file (on a throwaway dev database: drop and recreate it).`,
          );
        }
        return false;
      }
      const started = performance.now();
      try {
        // No parameters: the simple query protocol, so a file may hold many statements.
        await tx.unsafe(m.sql);
      } catch (err) {
        throw new MigrationError(`${m.file} failed, nothing of it was applied: ${(err as Error).message}`);
      }
      const ms = Math.round(performance.now() - started);
      await tx`INSERT INTO schema_migrations (version, name, checksum, duration_ms) VALUES (${m.version}, ${m.name}, ${m.checksum}, ${ms})`;
      log(`applied ${m.file} in ${ms} ms`);
      return true;
    });
    (applied ? result.applied : result.alreadyApplied).push(m.version);
  }
  return result;
}
