/**
 * `bun run migrate`: applies migrations/NNN_*.sql to DATABASE_URL (see shared/stores/postgres/migrate.ts).
 * Safe to run from several starters at once; a second run applies nothing.
 *
 *   DATABASE_URL    postgres://flashsale:flashsale@127.0.0.1:5432/flashsale (default)
 *   MIGRATIONS_DIR  <repo>/migrations (default)
 */
import { join } from "node:path";
import postgres from "postgres";
import { z } from "zod";
import { loadConfigOrExit } from "../shared/config.ts";
import { migrate, MigrationError } from "../shared/stores/postgres/migrate.ts";

const schema = z.object({
  DATABASE_URL: z.string().url().default("postgres://flashsale:flashsale@127.0.0.1:5432/flashsale"),
  MIGRATIONS_DIR: z.string().min(1).default(join(import.meta.dir, "..", "migrations")),
});

const config = loadConfigOrExit(schema, "migrate");
const target = (() => {
  const u = new URL(config.DATABASE_URL);
  return `${u.hostname}:${u.port || 5432}${u.pathname}`;
})();

const sql = postgres(config.DATABASE_URL, {
  max: 1,
  connect_timeout: 10,
  onnotice: () => {},
  connection: { application_name: "migrate" },
});

let code = 0;
try {
  const result = await migrate(sql, config.MIGRATIONS_DIR, { log: (m) => console.log(`migrate: ${m}`) });
  console.log(
    `migrate: ${target} is up to date (${result.applied.length} applied now, ${result.alreadyApplied.length} already applied)`,
  );
} catch (err) {
  code = 1;
  if (err instanceof MigrationError) console.error(`migrate: ${err.message}`);
  else console.error(`migrate: cannot migrate ${target}: ${(err as Error).message}`);
} finally {
  await sql.end({ timeout: 5 });
}
process.exit(code);
