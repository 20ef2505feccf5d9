/**
 * The Kafka side every projector shares: a consumer group reading the stock-events topic in batches
 * (kafkajs eachBatch, autoCommit off), each batch projected by projectBatch (batch.ts), poison sent
 * to the DLQ, then the offsets committed — only after the store has the batch. A store outage keeps
 * the batch in a retry loop (heartbeating, not ready, nothing committed); stop() lets the batch in
 * hand finish and commit, or abandons it uncommitted if the store is down, then leaves the group.
 */
import type { Consumer, Kafka, Producer } from "kafkajs";
import { ensureTopic } from "../kafka/client.ts";
import { createIdempotentProducer } from "../kafka/producer.ts";
import { backoffMs, sleep } from "../lifecycle.ts";
import type { Logger } from "../logger.ts";
import { projectBatch, type BatchOutcome, type ProjectionSink } from "./batch.ts";
import { sendToDlq } from "./dlq.ts";
import type { ProjectorMetrics } from "./metrics.ts";
import { headerText } from "../kafka/event-message.ts";
import { TRACEPARENT, traceIdOf } from "../trace.ts";

export interface ProjectionSinkWithPing extends ProjectionSink {
  /** Cheap reachability check for /readyz; throws when the store is down. */
  ping(): Promise<void>;
}

export interface ProjectionConsumerOptions {
  kafka: Kafka;
  topic: string;
  dlqTopic: string;
  groupId: string;
  sink: ProjectionSinkWithPing;
  logger: Logger;
  metrics: ProjectorMetrics;
  /** Partitions used when this consumer has to create the topic (normally the relay does). */
  topicPartitions?: number;
  /** Batches of different partitions applied at once (each its own store transaction). */
  partitionsConsumedConcurrently?: number;
  maxBytesPerPartition?: number;
  /** Longest a fetch waits on the broker for minBytes to arrive (kafkajs default 5,000; here 250). */
  fetchMaxWaitMs?: number;
  /** Bytes the broker waits for before it answers a fetch (1: answer as soon as anything is there). */
  fetchMinBytes?: number;
  maxDataAttempts?: number;
  /** Backoff cap while the store is down. */
  maxOutageBackoffMs?: number;
}

export interface ProjectionConsumer {
  start(): Promise<void>;
  /** Finish (or abandon, if the store is down) the batch in hand, commit, leave the group, disconnect. */
  stop(): Promise<void>;
  notReadyReason(): Promise<string | null>;
  /** Committed next offset per partition, as seen by this consumer (for the rebuild's "caught up"). */
  committedOffsets(): ReadonlyMap<number, bigint>;
  /** Lag per partition from the broker (high watermark − group's committed offset). */
  fetchLag(): Promise<Map<number, number>>;
}

export function createProjectionConsumer(options: ProjectionConsumerOptions): ProjectionConsumer {
  const { kafka, topic, dlqTopic, groupId, sink, logger, metrics } = options;
  const maxDataAttempts = options.maxDataAttempts ?? 3;
  let consumer: Consumer | null = null;
  let producer: Producer | null = null;
  let joined = false;
  let stopping = false;
  let outage: string | null = null;
  let lagTimer: ReturnType<typeof setInterval> | null = null;
  const committed = new Map<number, bigint>();

  async function fetchLag(): Promise<Map<number, number>> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [ends, groupOffsets] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId, topics: [topic] })]);
      const committedBy = new Map<number, bigint>();
      for (const p of groupOffsets[0]?.partitions ?? []) committedBy.set(p.partition, BigInt(p.offset));
      const lag = new Map<number, number>();
      for (const end of ends) {
        const high = BigInt(end.high);
        const low = BigInt(end.low);
        let position = committedBy.get(end.partition) ?? -1n;
        if (position < 0n) position = low; // nothing committed yet: everything from the start is lag
        lag.set(end.partition, Number(high > position ? high - position : 0n));
      }
      return lag;
    } finally {
      await admin.disconnect();
    }
  }

  /** The time budget of the batch's applied events (metrics.ts, PROJECTOR_STAGES). */
  function observeStages(outcome: Extract<BatchOutcome, { status: "done" }>, fetchedAt: number, storedAt: number): void {
    const count = outcome.applied.length;
    if (count === 0) return;
    const stage = metrics.stageSeconds;
    for (const event of outcome.applied) {
      const stamped = Number(outcome.messageOf(event.eventId)?.timestamp);
      if (Number.isFinite(stamped)) {
        stage.observe("relay", Math.max(0, stamped - Date.parse(event.occurredAt)) / 1000);
        stage.observe("kafka_to_fetch", Math.max(0, fetchedAt - stamped) / 1000);
      }
    }
    stage.observe("fetch_to_commit", (storedAt - fetchedAt) / 1000, count);
    if (!sink.whenVisible) {
      stage.observe("commit_to_visible", 0, count); // visible at commit (PostgreSQL, read committed)
      return;
    }
    const visible = sink.whenVisible();
    if (!visible) return;
    void visible.then(
      () => stage.observe("commit_to_visible", (Date.now() - storedAt) / 1000, count),
      () => {}, // the next write's visibility is measured again; nothing to retry here
    );
  }

  async function refreshLagGauge(): Promise<void> {
    try {
      for (const [partition, lag] of await fetchLag()) metrics.consumerLag.set({ partition: String(partition) }, lag);
    } catch (err) {
      logger.debug({ err }, "lag refresh failed");
    }
  }

  return {
    async start() {
      await ensureTopic(kafka, topic, options.topicPartitions ?? 12);
      await ensureTopic(kafka, dlqTopic, 1);
      producer = createIdempotentProducer(kafka);
      await producer.connect();
      const c = kafka.consumer({
        groupId,
        allowAutoTopicCreation: false,
        maxWaitTimeInMs: options.fetchMaxWaitMs ?? 250,
        minBytes: options.fetchMinBytes ?? 1,
        maxBytesPerPartition: options.maxBytesPerPartition ?? 2 * 1024 * 1024,
        maxBytes: 32 * 1024 * 1024,
        // A crashed projector's partitions move to a live one after this long. Batches take well under
        // a second and the outage retry loop heartbeats between attempts, so 10 s is safe.
        sessionTimeout: 10_000,
        heartbeatInterval: 2_000,
      });
      consumer = c;
      c.on(c.events.GROUP_JOIN, (e) => {
        joined = true;
        logger.info({ groupId, memberId: e.payload.memberId, assignment: e.payload.memberAssignment }, "joined consumer group");
      });
      c.on(c.events.CRASH, (e) => {
        joined = false;
        logger.error({ err: e.payload.error, restart: e.payload.restart }, "consumer crashed");
      });
      await c.connect();
      await c.subscribe({ topic, fromBeginning: true });
      await c.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 16,
        eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
          if (batch.messages.length === 0) return;
          const started = performance.now();
          const fetchedAt = Date.now();
          const partition = batch.partition;
          const abandon = () => !isRunning() || isStale();
          const outcome = await projectBatch(batch.messages, sink, {
            maxDataAttempts,
            shouldAbort: () => stopping || abandon(),
            waitAfterOutage: async (err, attempt) => {
              outage = err instanceof Error ? err.message : String(err);
              metrics.storeRetries.inc();
              const wait = backoffMs(attempt, 100, options.maxOutageBackoffMs ?? 5_000);
              if (attempt === 0 || attempt % 10 === 0) logger.warn({ err, attempt, wait, partition }, "store unavailable, retrying batch (not committing)");
              await sleep(wait);
              try {
                await heartbeat();
              } catch (hbErr) {
                logger.warn({ err: hbErr }, "heartbeat failed while waiting for the store");
              }
            },
            recovered: () => {
              logger.info({ partition }, "store available again");
              outage = null;
            },
            waitAfterDataError: async (err, attempt) => {
              logger.warn({ err, attempt, partition }, "batch rejected by the store, retrying");
              await sleep(backoffMs(attempt, 50, 500));
            },
          });
          if (outcome.status === "aborted") {
            logger.info({ partition, firstOffset: batch.firstOffset() }, "batch abandoned uncommitted (stopping or rebalancing)");
            return;
          }
          const storedAt = Date.now();
          observeStages(outcome, fetchedAt, storedAt);
          if (outcome.poison.length > 0) {
            await sendToDlq(producer!, dlqTopic, outcome.poison, { topic, partition, groupId });
            for (const p of outcome.poison) {
              metrics.dlqMessages.inc({ reason: p.reason });
              const ids = { eventId: headerText(p.message.headers, "eventId"), traceId: traceIdOf(headerText(p.message.headers, TRACEPARENT)) };
              logger.error({ partition, offset: p.message.offset, ...ids, reason: p.reason, error: p.error }, "message sent to the DLQ");
            }
          }
          const last = batch.lastOffset();
          const next = (BigInt(last) + 1n).toString();
          resolveOffset(last);
          await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition, offset: next }] }] });
          committed.set(partition, BigInt(next));
          // One line per event at debug (follow a request by its trace id); skipped cheaply otherwise.
          if (logger.isLevelEnabled("debug")) {
            for (const m of batch.messages) {
              const ids = { eventId: headerText(m.headers, "eventId"), traceId: traceIdOf(headerText(m.headers, TRACEPARENT)) };
              logger.debug({ partition, offset: m.offset, ...ids }, "event committed");
            }
          }

          const now = Date.now();
          metrics.eventsApplied.inc(outcome.applied.length);
          metrics.duplicatesSkipped.inc(outcome.duplicates);
          metrics.batchSize.observe(batch.messages.length);
          metrics.batchSeconds.observe((performance.now() - started) / 1000);
          for (const event of outcome.applied) metrics.freshnessSeconds.observe("", Math.max(0, now - Date.parse(event.occurredAt)) / 1000);
          const high = BigInt(batch.highWatermark);
          metrics.consumerLag.set({ partition: String(partition) }, Number(high > BigInt(next) ? high - BigInt(next) : 0n));
        },
      });
      lagTimer = setInterval(() => void refreshLagGauge(), 5_000);
      lagTimer.unref?.();
    },

    async stop() {
      stopping = true;
      if (lagTimer) clearInterval(lagTimer);
      // disconnect() stops fetching, waits for the batch in hand (which commits, or abandons if the
      // store is down), then leaves the group.
      await consumer?.disconnect();
      await producer?.disconnect();
      joined = false;
    },

    async notReadyReason() {
      if (stopping) return "shutting down";
      if (!joined) return "not in the consumer group yet";
      if (outage) return `store unavailable: ${outage}`;
      try {
        await Promise.race([sink.ping(), sleep(1_500).then(() => Promise.reject(new Error("ping timed out")))]);
        return null;
      } catch (err) {
        return `store unreachable: ${err instanceof Error ? err.message : String(err)}`;
      }
    },

    committedOffsets: () => committed,
    fetchLag,
  };
}
