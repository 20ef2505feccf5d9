/** expirer binary: wiring only. Releases timed-out holds; see expirer.ts. */
import { startAdminServer } from "../../shared/admin-server.ts";
import { expirerSchema, loadConfigOrExit } from "../../shared/config.ts";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { onShutdown } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis } from "../../shared/redis/client.ts";
import { registerRedisMemoryGauges } from "../../shared/redis/memory-metrics.ts";
import { createExpirer } from "./expirer.ts";

const config = loadConfigOrExit(expirerSchema, "expirer");
const logger = createLogger("expirer", config.LOG_LEVEL);
const redis = createRedis(config);
redis.on("error", (err) => logger.warn({ err: err.message }, "redis connection error"));
const registry = createMetricsRegistry("expirer");

const expirer = createExpirer({
  redis,
  keys: createKeyLayout(config.REDIS_KEY_PREFIX, config.OUTBOX_SHARDS),
  logger,
  registry,
  intervalMs: config.EXPIRER_INTERVAL_MS,
  batchSize: config.EXPIRER_BATCH_SIZE,
  holdRetentionSeconds: config.HOLD_RETENTION_SECONDS,
});

// Redis memory against maxmemory, per master, for the RedisMemory* alerts (docs/design.md §3).
registerRedisMemoryGauges(registry, redis);

let stopping = false;
const admin = startAdminServer({
  port: config.ADMIN_PORT,
  hostname: config.ADMIN_HOST,
  registry,
  notReadyReason: () => (stopping ? "shutting down" : expirer.isHealthy() ? null : "waiting for redis (no expiry pass has reached it yet, or the last one failed)"),
});
expirer.start();
logger.info({ adminPort: admin.port, intervalMs: config.EXPIRER_INTERVAL_MS, shards: config.OUTBOX_SHARDS }, "expirer started");

onShutdown(logger, async () => {
  stopping = true;
  await expirer.stop();
  await admin.stop();
  await redis.quit();
});
