/**
 * The whole life of a projector binary (or of another Kafka consumer binary, the notifier), so each
 * main.ts only says what it writes: typed config (fail fast), logger, metrics, the admin server with readiness from
 * the consumer, graceful SIGTERM (stop consuming, finish and commit the batch, close the store,
 * then the admin server). A start waits out what is not ready yet (shared/retry.ts, /readyz says what)
 * and exits 1, with one line, only on what retrying cannot fix.
 */
import type { Registry } from "prom-client";
import type { z } from "zod";
import { startAdminServer } from "../admin-server.ts";
import { type KafkaEnv, loadConfigOrExit, type ProjectorEnv } from "../config.ts";
import { onShutdown } from "../lifecycle.ts";
import { createLogger, type Logger } from "../logger.ts";
import { createMetricsRegistry } from "../metrics.ts";
import { exitOnFatalStart, StartCancelledError } from "../retry.ts";
import type { ConsumerWorker, ProjectorKafkaOptions } from "./projector.ts";

/** What every consumer binary's config has; the projector variables are there for projectors only. */
type ConsumerConfig = KafkaEnv & Partial<ProjectorEnv> & { LOG_LEVEL: string; ADMIN_PORT: number; ADMIN_HOST: string };

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
    consumers: config.PROJECTOR_CONSUMERS,
    fetchMaxWaitMs: config.PROJECTOR_FETCH_MAX_WAIT_MS,
    fetchMinBytes: config.PROJECTOR_FETCH_MIN_BYTES,
    // A consumer that can be neither kept nor restarted: exit, so the supervisor starts a new process.
    onFatal: (err: unknown) => exitOnFatalStart(logger, name, err),
  };
  const { projector, close } = await build({ config, logger, registry, kafka });

  const admin = startAdminServer({ port: config.ADMIN_PORT, hostname: config.ADMIN_HOST, registry, notReadyReason: () => projector.notReadyReason() });
  logger.info({ adminPort: admin.port }, "admin server listening");

  onShutdown(logger, async () => {
    await projector.stop();
    await close();
    await admin.stop();
  });

  try {
    await projector.start();
  } catch (err) {
    if (err instanceof StartCancelledError) return; // SIGTERM while waiting: onShutdown exits 0
    exitOnFatalStart(logger, name, err);
  }
}
