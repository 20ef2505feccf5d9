/** notifier binary: wiring only (see notifier.ts and README "Webhooks"). */
import { startAdminServer } from "../../shared/admin-server.ts";
import { loadConfigOrExit, notifierSchema } from "../../shared/config.ts";
import { onShutdown } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createProjectorSql } from "../../shared/stores/postgres/client.ts";
import { createNotifier } from "./notifier.ts";

const config = loadConfigOrExit(notifierSchema, "notifier");
const logger = createLogger("notifier", config.LOG_LEVEL);
const registry = createMetricsRegistry("notifier");
// Consumer transactions, the delivery loops' reads and result batches, and one held by the delivery lease.
const sql = createProjectorSql(config.DATABASE_URL, { max: 8, applicationName: "notifier" });

const notifier = createNotifier({
  brokers: config.KAFKA_BROKERS,
  topic: config.KAFKA_TOPIC,
  dlqTopic: config.KAFKA_DLQ_TOPIC,
  groupId: config.NOTIFIER_GROUP_ID,
  topicPartitions: config.KAFKA_PARTITIONS,
  sql,
  logger,
  registry,
  configured: { url: config.WEBHOOK_URL, secret: config.WEBHOOK_SECRET, eventTypes: config.WEBHOOK_EVENTS },
  schedule: { baseMs: config.WEBHOOK_RETRY_BASE, maxMs: config.WEBHOOK_RETRY_MAX, maxAttempts: config.WEBHOOK_MAX_ATTEMPTS },
  send: { connectTimeoutMs: config.WEBHOOK_CONNECT_TIMEOUT, timeoutMs: config.WEBHOOK_TIMEOUT },
  concurrency: config.WEBHOOK_CONCURRENCY,
  pollIntervalMs: config.WEBHOOK_POLL_INTERVAL,
});

const admin = startAdminServer({ port: config.ADMIN_PORT, registry, notReadyReason: () => notifier.notReadyReason() });
logger.info({ adminPort: admin.port }, "admin server listening");

onShutdown(logger, async () => {
  await notifier.stop();
  await sql.end({ timeout: 5 });
  await admin.stop();
});

try {
  await notifier.start();
} catch (err) {
  logger.fatal({ err }, "notifier failed to start");
  process.exit(1);
}
