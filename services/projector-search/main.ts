/** projector-search binary: wiring only (see projector.ts and docs/read-side.md). */
import { startAdminServer } from "../../shared/admin-server.ts";
import { loadConfigOrExit, projectorSearchSchema } from "../../shared/config.ts";
import { onShutdown } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createSearchClient } from "../../shared/stores/search/mapping.ts";
import { createSearchProjector } from "../../shared/stores/search/sink.ts";

const config = loadConfigOrExit(projectorSearchSchema, "projector-search");
const logger = createLogger("projector-search", config.LOG_LEVEL);
const registry = createMetricsRegistry("projector-search");
const es = createSearchClient(config.ELASTICSEARCH_URL, { requestTimeoutMs: 30_000, maxRetries: 1 });

const projector = createSearchProjector({
  brokers: config.KAFKA_BROKERS,
  topic: config.KAFKA_TOPIC,
  dlqTopic: config.KAFKA_DLQ_TOPIC,
  groupId: config.PROJECTOR_GROUP_ID,
  topicPartitions: config.KAFKA_PARTITIONS,
  fetchMaxWaitMs: config.PROJECTOR_FETCH_MAX_WAIT_MS,
  fetchMinBytes: config.PROJECTOR_FETCH_MIN_BYTES,
  partitionsConsumedConcurrently: config.PROJECTOR_CONCURRENCY,
  es,
  index: config.ELASTICSEARCH_INDEX_ALIAS,
  refresh: config.PROJECTOR_SEARCH_REFRESH,
  refreshMinSpacingMs: config.PROJECTOR_SEARCH_REFRESH_SPACING_MS,
  refreshInterval: config.ELASTICSEARCH_REFRESH_INTERVAL,
  logger,
  registry,
});

const admin = startAdminServer({ port: config.ADMIN_PORT, registry, notReadyReason: () => projector.notReadyReason() });
logger.info({ adminPort: admin.port }, "admin server listening");

onShutdown(logger, async () => {
  await projector.stop();
  await es.close();
  await admin.stop();
});

try {
  await projector.start();
} catch (err) {
  logger.fatal({ err }, "projector failed to start");
  process.exit(1);
}
