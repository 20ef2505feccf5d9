/** api binary: wiring only. See app.ts for the routes and README for the environment. */
import { apiWorkerAdminPort } from "../../shared/services.ts";
import { startAdminServer } from "../../shared/admin-server.ts";
import { apiSchema, loadConfigOrExit } from "../../shared/config.ts";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { onShutdown, sleep } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { startDurability } from "../../shared/redis/durability.ts";
import { StartCancelledError } from "../../shared/retry.ts";
import { createReaderSql } from "../../shared/stores/postgres/client.ts";
import { createSearchClient } from "../../shared/stores/search/mapping.ts";
import { dlqTopicOf } from "../../shared/kafka/client.ts";
import { createApp } from "./app.ts";
import { DashboardCollector } from "./dashboard/collector.ts";
import { DASHBOARD_OPEN_PATHS, dashboardRoutes } from "./dashboard/routes.ts";
import { createReadRoutes } from "./read-routes.ts";
import { createReadConsistency } from "./consistency/stores.ts";
import { webhookRoutesFromConfig } from "./routes/webhooks.ts";
import { subscribeReleased } from "./released-subscriber.ts";
import { RefusalCache } from "./allocate/sold-out-cache.ts";
import { StreamSlots } from "./sse-limit.ts";
import { exitWithSupervisor, superviseWorkers, workerIndex } from "./workers.ts";

const config = loadConfigOrExit(apiSchema, "api");
const logger = createLogger("api", config.LOG_LEVEL);
// API_WORKERS > 1: this process only supervises the workers (it never returns from here).
if (config.API_WORKERS > 1 && workerIndex() === null) await superviseWorkers(config.API_WORKERS, logger);
if (workerIndex() !== null) exitWithSupervisor(logger);
const redis = createRedis(config);
redis.on("error", (err) => logger.warn({ err: err.message }, "redis connection error"));

// Read side: fail fast when a store is down (503), so allocation never waits on it.
const sql = createReaderSql(config.DATABASE_URL);
const es = createSearchClient(config.ELASTICSEARCH_URL, { requestTimeoutMs: 2_000, maxRetries: 0 });
// Read-your-writes: one LISTEN and one search watermark poller for the whole process (consistency/stores.ts).
const consistency = createReadConsistency({ sql, es, esAlias: config.ELASTICSEARCH_INDEX_ALIAS, logger });

const webhooks = await webhookRoutesFromConfig(config);
if (!webhooks.encrypted) logger.warn("WEBHOOK_SECRETS_KEY is unset: new webhook secrets are stored in plain text (docs/webhooks.md)");
if (config.WEBHOOK_ALLOW_PRIVATE_NETWORKS) logger.warn("WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: webhook URLs may name loopback and private addresses");

// Refusals from memory (docs/design.md §12), kept fresh by the scripts' "released" messages.
const keys = createKeyLayout(config.REDIS_KEY_PREFIX, config.OUTBOX_SHARDS);
const registry = createMetricsRegistry("api");
const refusals = new RefusalCache({ ttlMs: config.SOLD_OUT_CACHE_MS, registry });
const released = config.SOLD_OUT_CACHE_MS > 0 ? subscribeReleased(redis, keys, refusals, logger) : null;
released?.ready.catch((err: Error) => {
  if (!(err instanceof StartCancelledError)) logger.error({ err: err.message }, "released channels not subscribed: refusals not cached");
});

// REDIS_DURABILITY: what a write waits for before its answer; a Redis that cannot keep it stops the start.
const durability = await startDurability(redis, { profile: config.REDIS_DURABILITY, timeoutMs: config.REDIS_DURABILITY_TIMEOUT_MS, registry, logger }).catch((err: Error) => {
  // A configuration error, as loadConfigOrExit reports one: one line on stderr, exit 1.
  console.error(JSON.stringify({ level: "fatal", service: "api", msg: `REDIS_DURABILITY cannot be kept by this Redis: ${err.message}` }));
  process.exit(1);
});

let draining = false;
const commands = createStockCommands(redis, keys, { holdRetentionSeconds: config.HOLD_RETENTION_SECONDS, outboxMaxLength: config.OUTBOX_MAX_LENGTH, durability });
const dashboard = new DashboardCollector({ redis, commands, registry, workerMetricsUrls: config.WORKER_METRICS_URLS });
dashboard.registerStockGauges(registry);
// Event streams of each port, ended at once on shutdown (else server.stop() waits for them until the deadline).
const publicStreams = new StreamSlots(config.SSE_MAX_CLIENTS);
const adminStreams = new StreamSlots(config.SSE_MAX_CLIENTS);
const app = createApp({
  commands,
  refusals,
  redis,
  logger,
  registry,
  adminToken: config.ADMIN_TOKEN,
  jwtSecret: config.JWT_SECRET,
  jwtIssuer: config.JWT_ISSUER,
  jwtAudience: config.JWT_AUDIENCE,
  jwtMaxLifetimeSeconds: config.JWT_MAX_LIFETIME_SECONDS,
  maxBodyBytes: config.MAX_BODY_BYTES,
  maxHeaderBytes: config.MAX_HEADER_BYTES,
  readRoutes: createReadRoutes({ sql, es, esAlias: config.ELASTICSEARCH_INDEX_ALIAS, consistency }),
  webhookRoutes: webhooks.routes,
  rateLimits: {
    ip: config.RATE_LIMIT_IP,
    allocate: config.RATE_LIMIT_ALLOCATE,
    purchase: config.RATE_LIMIT_PURCHASE,
    cancel: config.RATE_LIMIT_CANCEL,
    queuePoll: config.RATE_LIMIT_QUEUE_POLL,
    trustedProxies: config.TRUSTED_PROXIES,
  },
  eventContract: {
    topic: config.KAFKA_TOPIC,
    dlqTopic: dlqTopicOf(config.KAFKA_TOPIC, config.KAFKA_DLQ_TOPIC),
    partitions: config.KAFKA_PARTITIONS,
    brokers: config.KAFKA_BROKERS,
  },
  notReadyReason: () => (draining ? "shutting down" : null),
  streams: publicStreams,
});

const server = Bun.serve({
  port: config.PORT,
  hostname: "0.0.0.0",
  fetch: app.fetch,
  // API_WORKERS processes share the port; the kernel spreads connections over them.
  reusePort: config.API_WORKERS > 1,
  // Backstop only: the app answers oversized bodies itself with a problem+json 413.
  maxRequestBodySize: Math.max(config.MAX_BODY_BYTES * 4, 1024 * 1024),
});
// Operators' port, like the workers': /metrics is not on the public port (it shows sales velocity).
// /healthz and /readyz answer on both, so load balancers keep probing the public port.
// With API_WORKERS, worker i answers on ADMIN_PORT + 100·i (shared/services.ts): each has its own registry, so each is scraped.
// It binds ADMIN_HOST (loopback by default); the dashboard needs the admin token (shared/admin-server.ts).
const admin = startAdminServer({
  port: apiWorkerAdminPort(config.ADMIN_PORT, workerIndex() ?? 0),
  hostname: config.ADMIN_HOST,
  registry,
  adminToken: config.ADMIN_TOKEN,
  routes: dashboardRoutes(dashboard, adminStreams),
  openPaths: DASHBOARD_OPEN_PATHS,
  notReadyReason: async () => {
    if (draining) return "shutting down";
    try {
      // Bounded: with Redis down a PING waits out the client's reconnects (seconds), and a probe must answer.
      await Promise.race([redis.ping(), sleep(1_000).then(() => Promise.reject(new Error("no answer to PING within 1 s")))]);
      return null;
    } catch (err) {
      return `redis unreachable: ${err instanceof Error ? err.message : String(err)}`;
    }
  },
});
logger.info({ port: server.port, adminPort: admin.port, shards: config.OUTBOX_SHARDS, worker: workerIndex() }, "api listening");

onShutdown(logger, async () => {
  draining = true;
  const ended = publicStreams.closeAll() + adminStreams.closeAll();
  if (ended > 0) logger.info({ streams: ended }, "event streams ended");
  dashboard.stop();
  await server.stop(); // stop accepting, let in-flight requests finish
  await admin.stop();
  await released?.close();
  await consistency.close();
  await Promise.allSettled([redis.quit(), sql.end({ timeout: 5 }), es.close(), webhooks.close()]);
});
