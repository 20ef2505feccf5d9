/** projector-postgres binary: wiring only (see projector.ts and docs/read-side.md). */
import { startAdminServer } from "../../shared/admin-server.ts";
import { loadConfigOrExit, projectorPostgresSchema } from "../../shared/config.ts";
import { onShutdown } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createProjectorSql } from "../../shared/stores/postgres/client.ts";
import { createPostgresProjector } from "../../shared/stores/postgres/sink.ts";

const config = loadConfigOrExit(projectorPostgresSchema, "projector-postgres");
const logger = createLogger("projector-postgres", config.LOG_LEVEL);
const registry = createMetricsRegistry("projector-postgres");
const concurrency = config.PROJECTOR_CONCURRENCY;
// One merged transaction at a time normally; a few more while a failed merge is retried per partition.
const sql = createProjectorSql(config.DATABASE_URL, { max: Math.min(concurrency, 4) + 1 });

const projector = createPostgresProjector({
  brokers: config.KAFKA_BROKERS,
  topic: config.KAFKA_TOPIC,
  dlqTopic: config.KAFKA_DLQ_TOPIC,
  groupId: config.PROJECTOR_GROUP_ID,
  topicPartitions: config.KAFKA_PARTITIONS,
  fetchMaxWaitMs: config.PROJECTOR_FETCH_MAX_WAIT_MS,
  fetchMinBytes: config.PROJECTOR_FETCH_MIN_BYTES,
  partitionsConsumedConcurrently: concurrency,
  sql,
  logger,
  registry,
});

const admin = startAdminServer({ port: config.ADMIN_PORT, registry, notReadyReason: () => projector.notReadyReason() });
logger.info({ adminPort: admin.port }, "admin server listening");

onShutdown(logger, async () => {
  await projector.stop();
  await sql.end({ timeout: 5 });
  await admin.stop();
});

try {
  await projector.start();
} catch (err) {
  logger.fatal({ err }, "projector failed to start");
  process.exit(1);
}
