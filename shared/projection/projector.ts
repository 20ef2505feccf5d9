/**
 * A projector = a sink (how events land in one store) + the shared consumer, metrics and readiness.
 * Constructible in-process (tests, the benchmark, the rebuild command); main.ts adds the admin server
 * and signal handling.
 */
import type { Registry } from "prom-client";
import { createKafka, dlqTopicOf } from "../kafka/client.ts";
import type { Logger } from "../logger.ts";
import { prom } from "../metrics.ts";
import { combiningSink } from "./combine.ts";
import { createProjectionConsumer, type ProjectionConsumer, type ProjectionSinkWithPing } from "./consumer.ts";
import { createProjectorMetrics, type ProjectorMetrics } from "./metrics.ts";

export interface ProjectorKafkaOptions {
  brokers: string[];
  topic: string;
  /** Default `<topic>.dlq`. */
  dlqTopic?: string;
  groupId: string;
  clientId?: string;
  /** Partitions used if the projector has to create the topic. */
  topicPartitions?: number;
  /** Partition batches in flight at once; they are merged into one store call (combine.ts). Default 16. */
  partitionsConsumedConcurrently?: number;
  maxBytesPerPartition?: number;
  /** Cap on the events of one merged store call (default 10,000). */
  maxEventsPerApply?: number;
  maxOutageBackoffMs?: number;
  /** kafkajs maxWaitTimeInMs (default 250) and minBytes (default 1). */
  fetchMaxWaitMs?: number;
  fetchMinBytes?: number;
  /** The consumer cannot go on and retrying cannot help (runProjector exits 1). */
  onFatal?: (err: unknown) => void;
}

/** What runProjector runs: a projector, or another consumer of the same life (the notifier). */
export interface ConsumerWorker {
  readonly registry: Registry;
  start(): Promise<void>;
  /** Stop consuming: finish the batch, commit, leave the group. */
  stop(): Promise<void>;
  notReadyReason(): Promise<string | null>;
}

export interface Projector extends ConsumerWorker {
  readonly groupId: string;
  readonly metrics: ProjectorMetrics;
  readonly consumer: ProjectionConsumer;
}

export function createProjector(
  options: ProjectorKafkaOptions & { sink: ProjectionSinkWithPing; logger: Logger; registry?: Registry; onStop?: () => Promise<void> },
): Projector {
  const registry = options.registry ?? new prom.Registry();
  const metrics = createProjectorMetrics(registry);
  const kafka = createKafka({ brokers: options.brokers, clientId: options.clientId ?? options.groupId, logger: options.logger });
  const consumer = createProjectionConsumer({
    kafka,
    topic: options.topic,
    dlqTopic: dlqTopicOf(options.topic, options.dlqTopic),
    groupId: options.groupId,
    // Group commit: the batches of one fetch (one per partition) become one store call.
    sink: combiningSink(options.sink, { maxEvents: options.maxEventsPerApply }),
    logger: options.logger,
    metrics,
    topicPartitions: options.topicPartitions,
    partitionsConsumedConcurrently: options.partitionsConsumedConcurrently,
    maxBytesPerPartition: options.maxBytesPerPartition,
    maxOutageBackoffMs: options.maxOutageBackoffMs,
    fetchMaxWaitMs: options.fetchMaxWaitMs,
    fetchMinBytes: options.fetchMinBytes,
    onFatal: options.onFatal,
  });
  let started = false;
  let stopped = false;
  return {
    groupId: options.groupId,
    metrics,
    registry,
    consumer,
    async start() {
      if (started) throw new Error("projector already started");
      started = true;
      await consumer.start();
      options.logger.info({ topic: options.topic, groupId: options.groupId }, "projector started");
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await consumer.stop();
      await options.onStop?.();
      options.logger.info({ groupId: options.groupId }, "projector stopped");
    },
    notReadyReason: () => consumer.notReadyReason(),
  };
}
