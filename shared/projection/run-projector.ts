/**
 * The whole life of a projector binary (or of another Kafka consumer binary, the notifier), so each
 * main.ts only says what it writes: typed config (fail fast), logger, metrics, the admin server with readiness from
 * the consumer, graceful SIGTERM (stop consuming, finish and commit the batch, close the store,
 * then the admin server), and exit 1 when it cannot start.
 */
import type { Registry } from "prom-client";
import type { z } from "zod";
import { startAdminServer } from "../admin-server.ts";
import { type KafkaEnv, loadConfigOrExit, type ProjectorEnv } from "../config.ts";
import { onShutdown } from "../lifecycle.ts";
import { createLogger, type Logger } from "../logger.ts";
import { createMetricsRegistry } from "../metrics.ts";
import type { ConsumerWorker, ProjectorKafkaOptions } from "./projector.ts";

/** What every consumer binary's config has; the projector variables are there for projectors only. */
type ConsumerConfig = KafkaEnv & Partial<ProjectorEnv> & { LOG_LEVEL: string; ADMIN_PORT: number };

export interface ProjectorWiring<C> {
  config: C;
  logger: Logger;
  registry: Registry;
  /** The Kafka side every projector shares, from the config. */
  kafka: Omit<ProjectorKafkaOptions, "groupId"> & { groupId?: string };
}

export interface BuiltProjector {
  projector: ConsumerWorker;
  /** Closes the store client after the consumer has stopped. */
  close(): Promise<unknown>;
}

export async function runProjector<S extends z.ZodType<ConsumerConfig>>(
  name: string,
  schema: S,
  build: (wiring: ProjectorWiring<z.infer<S>>) => BuiltProjector | Promise<BuiltProjector>,
): Promise<void> {
  const config = loadConfigOrExit(schema, name);
  const logger = createLogger(name, config.LOG_LEVEL as Parameters<typeof createLogger>[1]);
  const registry = createMetricsRegistry(name);
  const kafka = {
    brokers: config.KAFKA_BROKERS,
    topic: config.KAFKA_TOPIC,
    dlqTopic: config.KAFKA_DLQ_TOPIC,
    groupId: config.PROJECTOR_GROUP_ID,
    topicPartitions: config.KAFKA_PARTITIONS,
    partitionsConsumedConcurrently: config.PROJECTOR_CONCURRENCY,
    fetchMaxWaitMs: config.PROJECTOR_FETCH_MAX_WAIT_MS,
    fetchMinBytes: config.PROJECTOR_FETCH_MIN_BYTES,
  };
  const { projector, close } = await build({ config, logger, registry, kafka });

  const admin = startAdminServer({ port: config.ADMIN_PORT, registry, notReadyReason: () => projector.notReadyReason() });
  logger.info({ adminPort: admin.port }, "admin server listening");

  onShutdown(logger, async () => {
    await projector.stop();
    await close();
    await admin.stop();
  });

  try {
    await projector.start();
  } catch (err) {
    logger.fatal({ err }, `${name} failed to start`);
    process.exit(1);
  }
}
