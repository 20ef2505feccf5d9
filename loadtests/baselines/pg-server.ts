/**
 * The PostgreSQL alternative served by our own api app (services/api/app.ts), so the HTTP side is
 * identical and only the store differs. See pg-commands.ts for the allocation itself.
 *
 *   DATABASE_URL=… PG_MODE=fn|tx PG_POOL_MAX=8 PG_SYNC_COMMIT=off PORT=3200 ADMIN_TOKEN=… JWT_SECRET=… \
 *     bun loadtests/baselines/pg-server.ts
 * The database must hold PG_BASELINE_SCHEMA (loadtests/bench/allocate.ts creates a throwaway one).
 */
import type { Redis } from "ioredis";
import postgres from "postgres";
import { createApp } from "../../services/api/app.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createPgStockCommands, type PgMode } from "./pg-commands.ts";

const env = process.env;
const mode = (env.PG_MODE ?? "fn") as PgMode;
if (mode !== "fn" && mode !== "tx") throw new Error("PG_MODE must be fn or tx");
const sync = env.PG_SYNC_COMMIT ?? "off";
const sql = postgres(env.DATABASE_URL!, {
  max: Number(env.PG_POOL_MAX ?? 8),
  prepare: true,
  onnotice: () => {},
  connection: { synchronous_commit: sync, application_name: `pg-baseline-${mode}` },
});
const logger = createLogger("api-pg-baseline", env.LOG_LEVEL ?? "info");
// createApp pings Redis for /readyz; here the store is PostgreSQL.
const storePing = { ping: async () => (await sql`SELECT 1`, "PONG") } as unknown as Redis;

const app = createApp({
  commands: createPgStockCommands(sql, mode),
  redis: storePing,
  logger,
  registry: createMetricsRegistry("api"),
  adminToken: env.ADMIN_TOKEN!,
  jwtSecret: env.JWT_SECRET!,
  maxBodyBytes: 16 * 1024,
});
const server = Bun.serve({ port: Number(env.PORT ?? 3200), hostname: "127.0.0.1", fetch: app.fetch });
logger.info({ port: server.port, mode, poolMax: Number(env.PG_POOL_MAX ?? 8), synchronousCommit: sync }, "pg baseline listening");
process.on("SIGTERM", () => {
  void server.stop().then(() => sql.end({ timeout: 5 })).then(() => process.exit(0));
});
