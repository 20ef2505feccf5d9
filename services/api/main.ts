/** api binary: wiring only. See app.ts for the routes and README for the environment. */
import { apiSchema, loadConfigOrExit } from "../../shared/config.ts";
import { createKeyLayout } from "../../shared/keys.ts";
import { onShutdown } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { createReaderSql } from "../../shared/read-models/postgres-client.ts";
import { createSearchClient } from "../../shared/read-models/search-index.ts";
import { createApp } from "./app.ts";
import { createReadRoutes } from "./read-routes.ts";
import { webhookRoutesFromConfig } from "./routes/webhooks.ts";

const config = loadConfigOrExit(apiSchema, "api");
const logger = createLogger("api", config.LOG_LEVEL);
const redis = createRedis(config.REDIS_URL);
redis.on("error", (err) => logger.warn({ err: err.message }, "redis connection error"));

// Read side: fail fast when a store is down (503), so allocation never waits on it.
const sql = createReaderSql(config.DATABASE_URL);
const es = createSearchClient(config.ELASTICSEARCH_URL, { requestTimeoutMs: 2_000, maxRetries: 0 });

const webhooks = webhookRoutesFromConfig(config);

let draining = false;
const app = createApp({
  commands: createStockCommands(redis, createKeyLayout(config.REDIS_KEY_PREFIX, config.OUTBOX_SHARDS)),
  redis,
  logger,
  registry: createMetricsRegistry("api"),
  adminToken: config.ADMIN_TOKEN,
  jwtSecret: config.JWT_SECRET,
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
logger.info({ port: server.port, shards: config.OUTBOX_SHARDS }, "api listening");

onShutdown(logger, async () => {
  draining = true;
  await server.stop(); // stop accepting, let in-flight requests finish
  await Promise.allSettled([redis.quit(), sql.end({ timeout: 5 }), es.close(), webhooks.close()]);
});
