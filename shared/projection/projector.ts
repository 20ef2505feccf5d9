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
  /**
   * Group members in this process (default 1; the binaries: PROJECTOR_CONSUMERS), each with its own fetch loop over its share of the
   * partitions. kafkajs fetches, hands the batches over and waits for all of them before it fetches
   * again, so with one member the store idles while the next fetch is fetched, decoded and parsed,
   * and Kafka idles while the store writes. Two members take turns: one applies while the other
   * fetches (docs/read-side.md "Drain").
   */
  consumers?: number;
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
  // Group commit: the batches of one fetch (one per partition) become one store call. Each member
  // has its own (own transaction, own connection): their partitions, hence their stocks and rows, are
  // disjoint, so two store calls can run at once without waiting on each other's locks.
  const timed = timedSink(options.sink, metrics);
  const members = Array.from({ length: Math.max(1, options.consumers ?? 1) }, (_, i) => createProjectionConsumer({
    kafka,
    topic: options.topic,
    dlqTopic: dlqTopicOf(options.topic, options.dlqTopic),
    groupId: options.groupId,
    sink: combiningSink(timed, { maxEvents: options.maxEventsPerApply }),
    logger: options.logger,
    metrics,
    topicPartitions: options.topicPartitions,
    partitionsConsumedConcurrently: options.partitionsConsumedConcurrently,
    maxBytesPerPartition: options.maxBytesPerPartition,
    maxOutageBackoffMs: options.maxOutageBackoffMs,
    fetchMaxWaitMs: options.fetchMaxWaitMs,
    fetchMinBytes: options.fetchMinBytes,
    onFatal: options.onFatal,
    // One lag poller is enough: the members share the group's offsets.
    reportLag: i === 0,
  }));
  const consumer = members.length === 1 ? members[0]! : combineConsumers(members);
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

/** The sink, its store calls' time counted (busySeconds, step "store"). */
function timedSink<S extends ProjectionSinkWithPing>(sink: S, metrics: ProjectorMetrics): S {
  return {
    ...sink,
    async apply(events) {
      const started = performance.now();
      try {
        return await sink.apply(events);
      } finally {
        metrics.busySeconds.inc({ step: "store" }, (performance.now() - started) / 1000);
      }
    },
  };
}

/** Several members of one group in one process, seen as one consumer (start, stop, readiness, offsets). */
function combineConsumers(members: ProjectionConsumer[]): ProjectionConsumer {
  const committed = new Map<number, bigint>();
  return {
    async start() {
      // Together, so that they join the group in one generation rather than one rebalance each.
      await Promise.all(members.map((member) => member.start()));
    },
    async stop() {
      await Promise.all(members.map((member) => member.stop()));
    },
    async notReadyReason() {
      for (const member of members) {
        const reason = await member.notReadyReason();
        if (reason) return reason;
      }
      return null;
    },
    committedOffsets() {
      // A partition moves between members on a rebalance: the furthest committed offset counts.
      committed.clear();
      for (const member of members)
        for (const [partition, offset] of member.committedOffsets()) if (offset > (committed.get(partition) ?? -1n)) committed.set(partition, offset);
      return committed;
    },
    fetchLag: () => members[0]!.fetchLag(),
  };
}
