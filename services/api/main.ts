/** api binary: wiring only. See app.ts for the routes and README for the environment. */
import { startAdminServer } from "../../shared/admin-server.ts";
import { apiSchema, loadConfigOrExit } from "../../shared/config.ts";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { onShutdown } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { createReaderSql } from "../../shared/stores/postgres/client.ts";
import { createSearchClient } from "../../shared/stores/search/mapping.ts";
import { createApp } from "./app.ts";
import { DashboardCollector } from "./dashboard/collector.ts";
import { createReadRoutes } from "./read-routes.ts";
import { webhookRoutesFromConfig } from "./routes/webhooks.ts";

const config = loadConfigOrExit(apiSchema, "api");
const logger = createLogger("api", config.LOG_LEVEL);
const redis = createRedis(config);
redis.on("error", (err) => logger.warn({ err: err.message }, "redis connection error"));

// Read side: fail fast when a store is down (503), so allocation never waits on it.
const sql = createReaderSql(config.DATABASE_URL);
const es = createSearchClient(config.ELASTICSEARCH_URL, { requestTimeoutMs: 2_000, maxRetries: 0 });

const webhooks = webhookRoutesFromConfig(config);

let draining = false;
const commands = createStockCommands(redis, createKeyLayout(config.REDIS_KEY_PREFIX, config.OUTBOX_SHARDS), {
  holdRetentionSeconds: config.HOLD_RETENTION_SECONDS,
  outboxMaxLength: config.OUTBOX_MAX_LENGTH,
});
const registry = createMetricsRegistry("api");
const dashboard = new DashboardCollector({ redis, commands, registry, workerMetricsUrls: config.WORKER_METRICS_URLS });
const app = createApp({
  commands,
  redis,
  logger,
  registry,
  dashboard,
  adminToken: config.ADMIN_TOKEN,
  jwtSecret: config.JWT_SECRET,
  jwtIssuer: config.JWT_ISSUER,
  jwtAudience: config.JWT_AUDIENCE,
  jwtMaxLifetimeSeconds: config.JWT_MAX_LIFETIME_SECONDS,
  maxBodyBytes: config.MAX_BODY_BYTES,
  maxHeaderBytes: config.MAX_HEADER_BYTES,
  readRoutes: createReadRoutes({ sql, es, esAlias: config.ELASTICSEARCH_INDEX_ALIAS }),
  webhookRoutes: webhooks.routes,
  notReadyReason: () => (draining ? "shutting down" : null),
});

const server = Bun.serve({
  port: config.PORT,
  hostname: "0.0.0.0",
  fetch: app.fetch,
  // Backstop only: the app answers oversized bodies itself with a problem+json 413.
  maxRequestBodySize: Math.max(config.MAX_BODY_BYTES * 4, 1024 * 1024),
});
// Operators' port, like the workers': /metrics is not on the public port (it shows sales velocity).
// /healthz and /readyz answer on both, so load balancers keep probing the public port.
const admin = startAdminServer({
  port: config.ADMIN_PORT,
  registry,
  notReadyReason: async () => {
    if (draining) return "shutting down";
    try {
      await redis.ping();
      return null;
    } catch {
      return "redis unreachable";
    }
  },
});
logger.info({ port: server.port, adminPort: admin.port, shards: config.OUTBOX_SHARDS }, "api listening");

onShutdown(logger, async () => {
  draining = true;
  dashboard.stop();
  await server.stop(); // stop accepting, let in-flight requests finish
  await admin.stop();
  await Promise.allSettled([redis.quit(), sql.end({ timeout: 5 }), es.close(), webhooks.close()]);
});
