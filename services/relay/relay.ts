/**
 * The relay (issue 4): moves events from the per-shard Redis Stream outboxes to Kafka,
 * at least once, in stream order per shard, and trims what Kafka has acknowledged.
 *
 *   own the shard (lease, see ownership.ts)
 *     → take over what is pending on it (XAUTOCLAIM min-idle 0) and re-send our PEL (XREADGROUP … 0)
 *     → loop: XREADGROUP … > over all owned shards (one call, BLOCK, dedicated connection)
 *             validate each entry (parseEvent); bad ones → dead-letter stream
 *             produce the batch (idempotent, acks=all), await the ack
 *             XACK, then XTRIM MINID to the oldest still-pending id (or past the last acked one)
 *     → every claim interval: XAUTOCLAIM entries idle > RELAY_CLAIM_IDLE_MS and re-send them
 *
 * Kafka down: the batch stays in memory and pending, and is re-sent (the same batch, so the
 * idempotent producer lets the broker drop a copy it already has) with capped exponential backoff.
 * Redis down: the loop backs off and retries. Each outage is logged once when it starts and once
 * when it ends. stop(): stop reading, let the in-flight send finish for a short grace (then
 * abandon it unacknowledged), release the leases, disconnect.
 */
import { hostname } from "node:os";
import type { Redis } from "ioredis";
import type { Kafka, Message, Producer } from "kafkajs";
import { prom } from "../../shared/metrics.ts";
import type { Registry } from "prom-client";
import type { RelayConfig } from "../../shared/config.ts";
import { OUTBOX_EVENT_FIELD, parseEvent } from "../../shared/domain/events.ts";
import { ensureTopic } from "../../shared/kafka/client.ts";
import { compressionOf, createIdempotentProducer, MAX_SEND_BYTES, messageBytes, sendBatch } from "../../shared/kafka/producer.ts";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";
import { createRelayMetrics, type RelayMetrics, type ShardSnapshot } from "./metrics.ts";
import { runScript } from "../../shared/redis/scripts.ts";
import { ShardOwnership } from "./ownership.ts";
import {
  compareIds,
  fieldValue,
  idTimeMs,
  isBusyGroup,
  isNoGroup,
  nextId,
  pairs,
  parseStreams,
  RELAY_GROUP,
  type OutboxEntry,
} from "./stream.ts";

export type RelaySettings = Pick<
  RelayConfig,
  | "KAFKA_TOPIC"
  | "KAFKA_PARTITIONS"
  | "RELAY_BATCH_SIZE"
  | "RELAY_LINGER_MS"
  | "RELAY_BLOCK_MS"
  | "RELAY_CLAIM_IDLE_MS"
  | "RELAY_CONSUMER_NAME"
  | "RELAY_LEASE_MS"
  | "RELAY_COMPRESSION"
>;

export interface RelayDeps {
  /** Commands connection (caller owns it). The relay opens its own duplicate for blocking reads. */
  redis: Redis;
  kafka: Kafka;
  keys: KeyLayout;
  config: RelaySettings;
  logger: Logger;
  /** Where the relay's metrics go; a private registry when omitted. */
  registry?: Registry;
}

export interface Relay {
  readonly consumerName: string;
  readonly metrics: RelayMetrics;
  /** Creates groups and topic, connects, starts relaying. Retries (with backoff) until it succeeds or stop() is called. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** null when ready; otherwise why not (for /readyz). */
  notReadyReason(): string | null;
  /** Shards this relay currently reads. */
  ownedShards(): number[];
  /** Outbox length, pending count and lag per shard, read from Redis. */
  snapshot(): Promise<ShardSnapshot[]>;
}

/** How long stop() lets an in-flight Kafka send finish before abandoning it (unacknowledged). */
const STOP_SEND_GRACE_MS = 5_000;
/** Consumers with nothing pending and idle this long are removed from the group (dead relays). */
const DEAD_CONSUMER_IDLE_MS = 3_600_000;
const ABANDONED = Symbol("abandoned");

export function defaultConsumerName(): string {
  return `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

export function createRelay(deps: RelayDeps): Relay {
  return new RelayImpl(deps);
}

/** Logs a dependency going down once, and coming back once. */
class Availability {
  private up = true;
  private since = 0;
  constructor(
    private readonly name: string,
    private readonly logger: Logger,
    private readonly gauge: prom.Gauge,
  ) {
    gauge.set(1);
  }
  get isUp(): boolean {
    return this.up;
  }
  markDown(err: unknown): void {
    if (!this.up) return;
    this.up = false;
    this.since = Date.now();
    this.gauge.set(0);
    this.logger.warn({ dependency: this.name, err: errorMessage(err) }, `${this.name} unavailable; retrying with backoff, entries stay pending`);
  }
  markUp(): void {
    if (this.up) return;
    this.up = true;
    this.gauge.set(1);
    this.logger.info({ dependency: this.name, downMs: Date.now() - this.since }, `${this.name} available again`);
  }
}

const errorMessage = (err: unknown) => (err instanceof Error ? `${err.name}: ${err.message}` : String(err));

/** kafkajs errors after which the producer's id/sequence state is useless: start a new producer. */
function needsNewProducer(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const type = (e as { type?: string }).type;
    if (type && /OUT_OF_ORDER_SEQUENCE_NUMBER|UNKNOWN_PRODUCER_ID|INVALID_PRODUCER_EPOCH|INVALID_PRODUCER_ID_MAPPING/.test(type)) return true;
    e = (e as { cause?: unknown }).cause ?? (e as { originalError?: unknown }).originalError;
  }
  return false;
}

interface DeadLetter {
  entry: OutboxEntry;
  reason: string;
  eventId?: string;
}

class RelayImpl implements Relay {
  readonly consumerName: string;
  readonly metrics: RelayMetrics;
  private readonly redis: Redis;
  private readonly kafka: Kafka;
  private readonly reader: Redis;
  private readonly keys: KeyLayout;
  private readonly cfg: RelaySettings;
  private readonly log: Logger;
  private readonly ownership: ShardOwnership;
  private readonly shardOfKey = new Map<string, number>();
  private readonly kafkaState: Availability;
  private readonly redisState: Availability;
  private readonly compression;

  private producer: Producer | undefined;
  private producerConnected = false;
  private groupsReady = false;
  private started = false;
  private phase = "starting";
  private stopping = false;
  private stopPromise: Promise<void> | undefined;
  private resolveStopped!: () => void;
  private readonly stopped = new Promise<void>((resolve) => (this.resolveStopped = resolve));
  private loop: Promise<void> | undefined;
  /** XACK + trim of the last sent batch, overlapping the next read and send (at most one in flight). */
  private ackInFlight: Promise<boolean> = Promise.resolve(true);

  /** Owned shards whose pending entries are being re-sent; read with `>` once done. */
  private readonly recovering = new Set<number>();
  /** Owned shards read with `>`. */
  private readonly live = new Set<number>();
  private nextAcquireAt = 0;
  private nextClaimAt = 0;
  private nextConsumerCleanupAt = 0;

  constructor(deps: RelayDeps) {
    this.redis = deps.redis;
    this.keys = deps.keys;
    this.cfg = deps.config;
    this.consumerName = deps.config.RELAY_CONSUMER_NAME ?? defaultConsumerName();
    this.log = deps.logger.child({ consumer: this.consumerName });
    this.compression = compressionOf(deps.config.RELAY_COMPRESSION);
    const registry = deps.registry ?? new prom.Registry();
    this.metrics = createRelayMetrics(registry, () => this.snapshot());
    this.kafkaState = new Availability("kafka", this.log, this.metrics.kafkaUp);
    this.redisState = new Availability("redis", this.log, this.metrics.redisUp);
    for (const s of this.keys.allShards()) this.shardOfKey.set(this.keys.outbox(s), s);
    // Blocking reads get their own connection so they never hold up acks, leases or scrapes.
    this.reader = deps.redis.duplicate({ enableAutoPipelining: false, lazyConnect: true });
    this.reader.on("error", () => {}); // failures surface on the commands; logged once by redisState
    this.ownership = new ShardOwnership(this.redis, this.keys, this.consumerName, this.cfg.RELAY_LEASE_MS, this.log, (err) =>
      this.redisState.markDown(err),
    );
    this.kafka = deps.kafka;
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.started) throw new Error("relay already started");
    this.started = true;
    this.log.info(
      { topic: this.cfg.KAFKA_TOPIC, shards: this.keys.shards, batchSize: this.cfg.RELAY_BATCH_SIZE, lingerMs: this.cfg.RELAY_LINGER_MS },
      "relay starting",
    );
    this.phase = "connecting to redis";
    for (let attempt = 0; !this.stopping; attempt++) {
      try {
        await this.ensureGroups();
        await this.ownership.startTimer();
        this.redisState.markUp();
        break;
      } catch (err) {
        this.redisState.markDown(err);
        await this.pause(backoffMs(attempt));
      }
    }
    this.phase = "connecting to kafka";
    for (let attempt = 0; !this.stopping; attempt++) {
      try {
        await this.connectKafka();
        this.kafkaState.markUp();
        break;
      } catch (err) {
        this.kafkaState.markDown(err);
        await this.pause(backoffMs(attempt));
      }
    }
    if (this.stopping) return;
    this.loop = this.run();
    this.log.info("relay running");
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.shutdown();
    return this.stopPromise;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    this.resolveStopped();
    this.ownership.stopTimer();
    if (this.loop) await Promise.race([this.loop, sleep(STOP_SEND_GRACE_MS + 3_000)]);
    await Promise.race([this.ownership.leave().catch((err) => this.log.warn({ err: errorMessage(err) }, "could not release shard leases")), sleep(2_000)]);
    this.live.clear();
    this.recovering.clear();
    this.metrics.ownedShards.set(0);
    if (this.producer) {
      await Promise.race([this.producer.disconnect().catch(() => {}), sleep(5_000)]);
    }
    this.reader.disconnect();
    this.log.info("relay stopped");
  }

  notReadyReason(): string | null {
    if (this.stopping) return "stopping";
    if (!this.loop) return this.phase;
    if (!this.redisState.isUp) return "redis unavailable";
    if (!this.kafkaState.isUp) return "kafka unavailable";
    return null;
  }

  ownedShards(): number[] {
    return [...this.live, ...this.recovering].sort((a, b) => a - b);
  }

  /** Sleeps, but wakes up at once when stop() is called. */
  private pause(ms: number): Promise<void> {
    return Promise.race([sleep(ms), this.stopped]);
  }

  private async ensureGroups(): Promise<void> {
    await Promise.all(
      this.keys.allShards().map(async (s) => {
        try {
          // From 0: whatever is already in a fresh stream is unrelayed, so it must be delivered too.
          await this.redis.call("XGROUP", "CREATE", this.keys.outbox(s), RELAY_GROUP, "0", "MKSTREAM");
        } catch (err) {
          if (!isBusyGroup(err)) throw err;
        }
      }),
    );
    this.groupsReady = true;
  }

  private async connectKafka(): Promise<void> {
    await ensureTopic(this.kafka, this.cfg.KAFKA_TOPIC, this.cfg.KAFKA_PARTITIONS);
    if (!this.producer) this.producer = createIdempotentProducer(this.kafka);
    if (!this.producerConnected) {
      await this.producer.connect();
      this.producerConnected = true;
    }
  }

  private async resetProducer(reason: unknown): Promise<void> {
    this.log.warn({ err: errorMessage(reason) }, "replacing the Kafka producer (its idempotence state is no longer valid)");
    const old = this.producer;
    this.producer = undefined;
    this.producerConnected = false;
    if (old) await Promise.race([old.disconnect().catch(() => {}), sleep(5_000)]);
    this.producer = createIdempotentProducer(this.kafka);
    await this.producer.connect();
    this.producerConnected = true;
  }

  // ---------------------------------------------------------------- main loop

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      try {
        if (!this.groupsReady) await this.ensureGroups();
        // Ownership changes and claims only ever happen with every sent batch acknowledged.
        await this.flushAcks();
        await this.reconcileShards();
        if (this.stopping) break;
        await this.housekeeping();
        const recovering = this.recovering.values().next();
        if (!recovering.done) await this.recover(recovering.value);
        else await this.pump();
        this.redisState.markUp();
        attempt = 0;
      } catch (err) {
        if (isNoGroup(err)) this.groupsReady = false; // stream deleted under us: recreate and go on
        this.redisState.markDown(err);
        // A failed call may still have delivered entries to us (e.g. the reply was lost): re-read
        // our own pending entries before reading new ones, so nothing waits for a claim or jumps the queue.
        this.recoverAllLive();
        await this.pause(backoffMs(attempt++));
      }
    }
    await this.flushAcks();
  }

  private flushAcks(): Promise<boolean> {
    return this.ackInFlight;
  }

  private recoverAllLive(): void {
    for (const s of this.live) this.recovering.add(s);
    this.live.clear();
  }

  /**
   * Steady state: read new entries of the live shards and relay them, prefetching the next read
   * while the current batch is produced. Returns to the main loop when ownership, a claim or
   * housekeeping needs attention, or on stop.
   */
  private async pump(): Promise<void> {
    if (this.live.size === 0) {
      await this.pause(this.cfg.RELAY_BLOCK_MS);
      return;
    }
    let next: Promise<OutboxEntry[]> | undefined = this.readNew();
    try {
      while (next) {
        const entries = await next;
        next = !this.stopping && this.steady() ? this.readNew() : undefined;
        if (entries.length > 0 && !(await this.relayEntries(entries))) return;
      }
    } finally {
      if (next) {
        // Left with a read in flight (stop or error): whatever it delivers stays pending on us;
        // the next owner claims it, or we re-read it before anything newer.
        next.catch(() => {});
        if (!this.stopping) this.recoverAllLive();
      }
    }
  }

  /** True when nothing but reading and relaying is due. */
  private steady(): boolean {
    const now = Date.now();
    if (this.recovering.size > 0 || now >= this.nextClaimAt || now >= this.nextConsumerCleanupAt) return false;
    const o = this.ownership;
    if (o.held.size !== this.live.size) return false;
    for (const s of this.live) if (!o.held.has(s) || !o.desired.has(s)) return false;
    if (now >= this.nextAcquireAt) for (const s of o.desired) if (!o.held.has(s)) return false;
    return true;
  }

  /** Applies lease changes between batches (never while a batch of the shard is in flight). */
  private async reconcileShards(): Promise<void> {
    const o = this.ownership;
    for (const s of [...this.live, ...this.recovering]) {
      if (o.held.has(s)) continue;
      this.live.delete(s);
      this.recovering.delete(s);
    }
    for (const s of [...o.held]) {
      if (o.desired.has(s)) continue;
      this.live.delete(s);
      this.recovering.delete(s);
      await o.release(s);
      this.log.info({ shard: s }, "shard handed over to another relay");
    }
    if (Date.now() >= this.nextAcquireAt) {
      this.nextAcquireAt = Date.now() + Math.min(1_000, Math.floor(this.cfg.RELAY_LEASE_MS / 10));
      for (const s of o.desired) {
        if (o.held.has(s) || !(await o.acquire(s))) continue;
        // The lease says the previous owner is gone (or handed over): take over all it left pending.
        const claimed = await this.claim(s, 0);
        this.recovering.add(s);
        this.log.info({ shard: s, claimed }, "shard acquired");
      }
    }
    this.metrics.ownedShards.set(o.held.size);
  }

  /** XAUTOCLAIM (ids only) every entry of the shard idle for at least minIdleMs into our PEL. */
  private async claim(shard: number, minIdleMs: number): Promise<number> {
    const key = this.keys.outbox(shard);
    let cursor = "0-0";
    let claimed = 0;
    do {
      const reply = (await this.redis.call(
        "XAUTOCLAIM",
        key,
        RELAY_GROUP,
        this.consumerName,
        minIdleMs,
        cursor,
        "COUNT",
        1000,
        "JUSTID",
      )) as [string, string[], string[]?];
      cursor = reply[0];
      claimed += reply[1].length;
    } while (cursor !== "0-0" && !this.stopping);
    if (claimed > 0) this.metrics.claimed.inc(claimed);
    return claimed;
  }

  /** Periodic: claim entries idle on other consumers; now and then drop dead consumers. */
  private async housekeeping(): Promise<void> {
    const now = Date.now();
    if (now >= this.nextClaimAt) {
      this.nextClaimAt = now + Math.min(30_000, Math.max(1_000, Math.floor(this.cfg.RELAY_CLAIM_IDLE_MS / 2)));
      for (const s of [...this.live]) {
        const claimed = await this.claim(s, this.cfg.RELAY_CLAIM_IDLE_MS);
        if (claimed === 0) continue;
        this.log.warn({ shard: s, claimed, idleMs: this.cfg.RELAY_CLAIM_IDLE_MS }, "claimed entries left pending by another consumer");
        this.live.delete(s);
        this.recovering.add(s);
      }
    }
    if (now >= this.nextConsumerCleanupAt) {
      this.nextConsumerCleanupAt = now + 300_000;
      for (const s of this.live) {
        await runScript(this.redis, "fsRelayDeleteIdleConsumers", [this.keys.outbox(s)], [RELAY_GROUP, DEAD_CONSUMER_IDLE_MS, this.consumerName]);
      }
    }
  }

  /** Re-sends this consumer's pending entries of one shard, oldest first, then reads it with `>`. */
  private async recover(shard: number): Promise<void> {
    const key = this.keys.outbox(shard);
    let from = "0-0";
    let resent = 0;
    while (!this.stopping && this.ownership.held.has(shard)) {
      const reply = await this.redis.call("XREADGROUP", "GROUP", RELAY_GROUP, this.consumerName, "COUNT", this.cfg.RELAY_BATCH_SIZE, "STREAMS", key, from);
      const entries = parseStreams(reply, this.shardOfKey);
      const last = entries.at(-1);
      if (!last) {
        this.recovering.delete(shard);
        this.live.add(shard);
        if (resent > 0) this.log.info({ shard, resent }, "pending entries re-sent");
        return;
      }
      if (!(await this.relayEntries(entries))) return;
      resent += entries.length;
      from = last.id;
    }
  }

  private async readNew(): Promise<OutboxEntry[]> {
    const shards = [...this.live];
    if (shards.length === 0) {
      await this.pause(this.cfg.RELAY_BLOCK_MS);
      return [];
    }
    const keys = shards.map((s) => this.keys.outbox(s));
    const ids = keys.map(() => ">");
    const batch = this.cfg.RELAY_BATCH_SIZE;
    // One call over every owned shard (single Redis node; see docs/relay.md for Cluster).
    // COUNT is per stream, so this returns up to batch × shards entries; relayEntries splits them.
    const reply = await this.reader.call("XREADGROUP", "GROUP", RELAY_GROUP, this.consumerName, "COUNT", batch, "BLOCK", this.cfg.RELAY_BLOCK_MS, "STREAMS", ...keys, ...ids);
    const entries = parseStreams(reply, this.shardOfKey);
    if (entries.length > 0 && entries.length < batch && this.cfg.RELAY_LINGER_MS > 0 && !this.stopping) {
      await sleep(this.cfg.RELAY_LINGER_MS);
      const more = await this.reader.call("XREADGROUP", "GROUP", RELAY_GROUP, this.consumerName, "COUNT", batch - entries.length, "STREAMS", ...keys, ...ids);
      for (const e of parseStreams(more, this.shardOfKey)) entries.push(e);
    }
    return entries;
  }

  // ---------------------------------------------------------------- one batch

  /**
   * Relays entries (each shard's in stream order) in batches of at most RELAY_BATCH_SIZE:
   * produce, await Kafka, then XACK and trim. Returns false when stopping abandoned a batch.
   */
  private async relayEntries(entries: OutboxEntry[]): Promise<boolean> {
    let batch: OutboxEntry[] = [];
    let messages: Message[] = [];
    let dead: DeadLetter[] = [];
    let bytes = 0;
    for (const entry of entries) {
      const item = this.prepare(entry);
      const size = item && "message" in item ? item.bytes : 0;
      if (batch.length >= this.cfg.RELAY_BATCH_SIZE || (messages.length > 0 && bytes + size > MAX_SEND_BYTES)) {
        if (!(await this.relayBatch(batch, messages, dead))) return false;
        batch = [];
        messages = [];
        dead = [];
        bytes = 0;
      }
      batch.push(entry);
      if (item && "message" in item) {
        messages.push(item.message);
        bytes += size;
      } else if (item) {
        dead.push(item);
      }
    }
    return batch.length === 0 || this.relayBatch(batch, messages, dead);
  }

  /** Validates one entry: a Kafka message, a dead letter, or null (deleted while pending: only acknowledge it). */
  private prepare(entry: OutboxEntry): { message: Message; bytes: number } | DeadLetter | null {
    if (entry.fields === null) return null;
    const raw = fieldValue(entry.fields, OUTBOX_EVENT_FIELD);
    const parsed = parseEvent(raw);
    if (!parsed.ok) {
      return { entry, reason: raw === undefined ? `missing field "${OUTBOX_EVENT_FIELD}"` : parsed.error, eventId: sniffEventId(raw) };
    }
    // The exact text from the stream, unchanged (encoded once here; kafkajs would do it anyway).
    const value = Buffer.from(raw!, "utf8");
    const { event } = parsed;
    if (value.length > MAX_SEND_BYTES) return { entry, reason: `event larger than ${MAX_SEND_BYTES} bytes`, eventId: event.eventId };
    const headers = { eventType: event.eventType, schemaVersion: String(event.schemaVersion), eventId: event.eventId };
    const message = { key: event.aggregateId, value, headers };
    return { message, bytes: messageBytes(message) };
  }

  private async relayBatch(batch: OutboxEntry[], messages: Message[], dead: DeadLetter[]): Promise<boolean> {
    const started = performance.now();
    const headerOf = (m: Message | undefined) => (m?.headers as Record<string, string> | undefined)?.eventId;
    const firstEventId = headerOf(messages[0]);
    const lastEventId = headerOf(messages.at(-1));

    if (messages.length > 0 && !(await this.sendWithRetry(messages, firstEventId))) {
      this.log.warn({ events: messages.length, firstEventId, lastEventId }, "stopping: in-flight batch abandoned unacknowledged (stays pending)");
      return false;
    }
    // Kafka has the batch: acknowledge it while the next batch is read and sent. Acks stay in
    // batch order, and at most one is in flight (we wait for the previous one here).
    const previous = this.ackInFlight;
    this.ackInFlight = previous.then(async (previousOk) => {
      if (!previousOk || !(await this.ackWithRetry(batch, dead))) return false;
      for (const d of dead) {
        this.log.error({ shard: d.entry.shard, entryId: d.entry.id, eventId: d.eventId, reason: d.reason }, "outbox entry failed validation; moved to dead-letter stream");
      }
      this.metrics.deadLetters.inc(dead.length);
      this.metrics.relayed.inc(messages.length);
      this.metrics.batches.inc();
      this.metrics.batchSize.observe(batch.length);
      const seconds = (performance.now() - started) / 1000;
      this.metrics.batchSeconds.observe(seconds);
      this.log.debug({ events: messages.length, firstEventId, lastEventId, ms: Math.round(seconds * 1000) }, "batch relayed");
      return true;
    });
    return previous;
  }

  /** Produces until Kafka acknowledges; false if stop() came first (or the send outlived the grace). */
  private async sendWithRetry(messages: Message[], firstEventId: string | undefined): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopping && attempt > 0) return false;
      try {
        if (!this.producer || !this.producerConnected) await this.connectKafka();
        const send = sendBatch(this.producer!, this.cfg.KAFKA_TOPIC, messages, this.compression);
        send.catch(() => {}); // if abandoned, a late failure must not become an unhandled rejection
        const outcome = await Promise.race([send, this.stopped.then(() => sleep(STOP_SEND_GRACE_MS)).then(() => ABANDONED)]);
        if (outcome === ABANDONED) return false;
        this.kafkaState.markUp();
        return true;
      } catch (err) {
        this.metrics.sendFailures.inc();
        this.kafkaState.markDown(err);
        this.log.debug({ err: errorMessage(err), attempt, events: messages.length, firstEventId }, "kafka send failed");
        if (needsNewProducer(err)) {
          await this.resetProducer(err).catch((e) => this.log.debug({ err: errorMessage(e) }, "producer reset failed"));
        }
        await this.pause(backoffMs(attempt));
      }
    }
  }

  private async ackWithRetry(batch: OutboxEntry[], dead: DeadLetter[]): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.ackAndTrim(batch, dead);
        this.redisState.markUp();
        return true;
      } catch (err) {
        this.redisState.markDown(err);
        // Stopping with Redis down: give up; the entries stay pending and are re-sent later (duplicates, never loss).
        if (this.stopping && attempt >= 2) return false;
        await (this.stopping ? sleep(200) : this.pause(backoffMs(attempt)));
      }
    }
  }

  /**
   * Dead letters + XACK + XINFO GROUPS + XPENDING in one round trip, then XTRIM per shard in a second.
   * Trim point: the oldest entry still pending anywhere in the group (so nothing unacknowledged is
   * ever removed), or, when nothing is pending, just past the group's last-delivered id (everything
   * delivered is then acknowledged). The last-delivered id is read *before* the pending summary
   * (pipeline order is execution order): an entry delivered in between is above it, so it is safe.
   * Undelivered entries are above the last-delivered id, so they are never trimmed either.
   * Our own last acked id is a floor when the group info is unavailable.
   */
  private async ackAndTrim(batch: OutboxEntry[], dead: DeadLetter[]): Promise<void> {
    const idsByShard = new Map<number, string[]>();
    for (const e of batch) {
      const ids = idsByShard.get(e.shard);
      if (ids) ids.push(e.id);
      else idsByShard.set(e.shard, [e.id]);
    }
    const p = this.redis.pipeline();
    for (const d of dead) {
      const { shard, id, fields } = d.entry;
      p.call("XADD", this.keys.outboxDeadLetter(shard), "*", "reason", d.reason, "sourceStream", this.keys.outbox(shard), "sourceId", id, "consumer", this.consumerName, ...(fields ?? []));
    }
    const shards = [...idsByShard.keys()];
    for (const s of shards) {
      p.call("XACK", this.keys.outbox(s), RELAY_GROUP, ...idsByShard.get(s)!);
      p.call("XINFO", "GROUPS", this.keys.outbox(s));
      p.call("XPENDING", this.keys.outbox(s), RELAY_GROUP);
    }
    const results = (await p.exec()) ?? [];
    for (const [err] of results) if (err) throw err;

    const trims = this.redis.pipeline();
    shards.forEach((s, i) => {
      const at = dead.length + i * 3;
      const groups = ((results[at + 1]![1] as unknown[]) ?? []).map(pairs);
      const summary = results[at + 2]![1] as [number, string | null, string | null, unknown];
      let floor = idsByShard.get(s)![0]!;
      for (const id of idsByShard.get(s)!) if (compareIds(id, floor) > 0) floor = id;
      const delivered = groups.find((g) => g.name === RELAY_GROUP)?.["last-delivered-id"];
      if (typeof delivered === "string" && compareIds(delivered, floor) > 0) floor = delivered;
      const minId = summary[0] > 0 && summary[1] ? summary[1] : nextId(floor);
      trims.call("XTRIM", this.keys.outbox(s), "MINID", minId);
    });
    // Trimming is housekeeping: a failure here loses nothing and the next batch trims again.
    const trimmed = (await trims.exec().catch(() => null)) ?? [];
    for (const [err] of trimmed) if (err) this.log.debug({ err: errorMessage(err) }, "outbox trim failed");
  }

  // ---------------------------------------------------------------- observability

  async snapshot(): Promise<ShardSnapshot[]> {
    const shards = this.keys.allShards();
    const p = this.redis.pipeline();
    for (const s of shards) {
      const key = this.keys.outbox(s);
      p.call("XLEN", key);
      p.call("XPENDING", key, RELAY_GROUP);
      p.call("XINFO", "GROUPS", key);
    }
    const first = (await withTimeout(p.exec(), 1_000)) ?? [];
    const stats = shards.map((shard, i) => {
      const [, length] = first[i * 3]!;
      const [pendingErr, summary] = first[i * 3 + 1]!;
      const [, groups] = first[i * 3 + 2]!;
      const pending = pendingErr ? 0 : Number((summary as [number])[0]);
      const group = ((groups as unknown[]) ?? []).map(pairs).find((g) => g.name === RELAY_GROUP);
      const oldest = pending > 0 ? `${(summary as [number, string])[1]}` : group ? `(${String(group["last-delivered-id"])}` : "-";
      return { shard, length: Number(length ?? 0), pending, oldest };
    });
    const q = this.redis.pipeline();
    for (const s of stats) q.call("XRANGE", this.keys.outbox(s.shard), s.oldest, "+", "COUNT", 1);
    const second = (await withTimeout(q.exec(), 1_000)) ?? [];
    const now = Date.now();
    return stats.map((s, i) => {
      const entry = (second[i]?.[1] as [string, string[]][] | undefined)?.[0];
      let lagSeconds = 0;
      if (entry) {
        const occurredAt = Date.parse(sniffField(fieldValue(entry[1], OUTBOX_EVENT_FIELD), "occurredAt") ?? "");
        const at = Number.isFinite(occurredAt) ? occurredAt : idTimeMs(entry[0]);
        lagSeconds = Math.max(0, (now - at) / 1000);
      }
      return { shard: s.shard, length: s.length, pending: s.pending, lagSeconds };
    });
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A top-level string field of a JSON object, when the text parses at all (for logs and lag). */
function sniffField(raw: string | undefined, field: string): string | undefined {
  if (raw === undefined) return undefined;
  try {
    const value = (JSON.parse(raw) as Record<string, unknown>)?.[field];
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

const sniffEventId = (raw: string | undefined) => sniffField(raw, "eventId");
