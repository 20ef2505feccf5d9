/**
 * The Kafka side every projector shares: a consumer group reading the stock-events topic in batches
 * (kafkajs eachBatch, autoCommit off), each batch projected by projectBatch (batch.ts), poison sent
 * to the DLQ, then the offsets committed — only after the store has the batch. A store outage keeps
 * the batch in a retry loop (heartbeating, not ready, nothing committed); stop() lets the batch in
 * hand finish and commit, or abandons it uncommitted if the store is down, then leaves the group.
 *
 * Start (docs/design.md §13): topics with leaders (ensureTopics), the DLQ producer, then the group,
 * each step retried while Kafka is not ready (shared/retry.ts), /readyz saying what is awaited.
 * A consumer that kafkajs gives up on (`crash` with restart: false) is replaced in this process
 * after a backoff, and the process is not ready until the new one has joined: a projector that
 * consumes nothing never answers ready. What retrying cannot fix goes to onFatal (the binary exits 1).
 */
import type { Consumer, EachBatchPayload, Kafka, Producer } from "kafkajs";
import { ensureTopics, stockEventTopics } from "../kafka/topics.ts";
import { createIdempotentProducer } from "../kafka/producer.ts";
import { backoffMs, sleep } from "../lifecycle.ts";
import type { Logger } from "../logger.ts";
import { classifyStartError, FatalStartError, retryStart, StartCancelledError } from "../retry.ts";
import { projectBatch, type BatchOutcome, type ProjectionSink } from "./batch.ts";
import { sendToDlq } from "./dlq.ts";
import type { ProjectorMetrics } from "./metrics.ts";
import { headerText } from "../kafka/event-message.ts";
import { TRACEPARENT, traceIdOf } from "../trace.ts";

export interface ProjectionSinkWithPing extends ProjectionSink {
  /** Cheap reachability check for /readyz; throws when the store is down. */
  ping(): Promise<void>;
  /** The store in words, for the start's log lines and /readyz ("postgresql"). */
  readonly store?: string;
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
  /** Called when the consumer cannot go on and retrying cannot help (default: log it; the binary exits 1). */
  onFatal?: (err: unknown) => void;
  /** Refresh the consumer-lag gauge every 5 s (default true; one member per process is enough). */
  reportLag?: boolean;
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
  /** What the start (or a restart after a crash) is waiting for; null once the consumer runs. */
  let waiting: string | null = "starting";
  /** Set when kafkajs gave up on the consumer; cleared when the replacement joins its group. */
  let crashed: string | null = null;
  let crashesInARow = 0;
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

  const retry = <T>(what: string, step: () => Promise<T>) =>
    retryStart(step, {
      logger,
      what,
      stopped: () => stopping,
      onWaiting: (reason) => {
        waiting = reason;
      },
    });

  /** A new kafkajs consumer, joined to the group and running (retried until Kafka lets it). */
  async function runConsumer(): Promise<void> {
    await retry(`kafka consumer group ${groupId} on ${topic}`, async () => {
      const c = newConsumer();
      consumer = c;
      try {
        await c.connect();
        await c.subscribe({ topic, fromBeginning: true });
        await c.run({
          autoCommit: false,
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 16,
          eachBatch,
        });
      } catch (err) {
        await c.disconnect().catch(() => {});
        throw err;
      }
    });
    waiting = null;
    if (stopping) await consumer?.disconnect();
  }

  function newConsumer(): Consumer {
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
    c.on(c.events.GROUP_JOIN, (e) => {
      if (c !== consumer) return;
      joined = true;
      crashed = null;
      logger.info({ groupId, memberId: e.payload.memberId, assignment: e.payload.memberAssignment }, "joined consumer group");
      sink.assigned?.();
    });
    c.on(c.events.CRASH, (e) => {
      if (c !== consumer) return;
      joined = false;
      const { error, restart } = e.payload;
      if (restart || stopping) {
        logger.warn({ err: error, restart }, "consumer crashed; kafkajs restarts it");
        return;
      }
      crashed = `kafka consumer crashed and was given up (${classifyStartError(error).reason}); restarting it`;
      metrics.consumerRestarts.inc();
      const wait = backoffMs(crashesInARow++, 500, 10_000);
      logger.error({ err: error, retryInMs: wait, crashesInARow }, "kafka consumer crashed and kafkajs gave up on it; restarting it in this process");
      void sleep(wait)
        .then(() => (stopping || c !== consumer ? undefined : runConsumer()))
        .catch((err: unknown) => {
          if (err instanceof StartCancelledError) return;
          crashed = `kafka consumer could not be restarted: ${err instanceof Error ? err.message : String(err)}`;
          (options.onFatal ?? ((e: unknown) => logger.fatal({ err: e }, "kafka consumer cannot be restarted")))(err instanceof FatalStartError ? err : new FatalStartError(crashed, { cause: err }));
        });
    });
    return c;
  }

  async function eachBatch({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }: EachBatchPayload): Promise<void> {
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
    const commitStarted = performance.now();
    observeStages(outcome, fetchedAt, storedAt);
    metrics.busySeconds.inc({ step: "parse" }, outcome.parseSeconds);
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
    metrics.busySeconds.inc({ step: "commit" }, (performance.now() - commitStarted) / 1000);
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
    crashesInARow = 0;
  }

  return {
    async start() {
      // The store takes a known-good batch (rolled back): reachable, and set up (a missing table is
      // a missing migration, which retrying cannot fix: classifyStartError says so).
      await retry(`${sink.store ?? "the store"} (probe write)`, () => sink.probe());
      await retry(`kafka topics ${topic} and ${dlqTopic} with partition leaders`, () =>
ensureTopics(kafka, stockEventTopics(topic, options.topicPartitions ?? 12, dlqTopic)));
      producer = createIdempotentProducer(kafka);
      await retry("kafka (DLQ producer)", () => producer!.connect());
      await runConsumer();
      if (options.reportLag !== false) {
        lagTimer = setInterval(() => void refreshLagGauge(), 5_000);
        lagTimer.unref?.();
      }
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
      if (crashed) return crashed;
      if (waiting) return waiting;
      if (!joined) return `not in the consumer group ${groupId} yet`;
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
