/**
 * Sending batches to Kafka until they are acknowledged: the producer's life, capped exponential
 * backoff between attempts, and the stop grace (an in-flight send gets STOP_SEND_GRACE_MS after
 * stop(), then is abandoned unacknowledged).
 *
 * Fencing (RELAY_TRANSACTIONS, default on; docs/design.md §11, docs/relay.md). A lease in Redis
 * cannot stop a paused relay from sending after it lost the lease. So each relay *process* has one
 * transactional producer, `transactionalId = <prefix>-relay-<consumer name>`, and everything it
 * reads in one round, over all the shards it owns, goes out in one transaction (one commit, not
 * one per shard: the broker completes only ~130 commits/s here, docs/adr/0003). Fencing is per
 * process, on takeover:
 * - each shard's holder record (Redis) names the relay that holds it and has not released it
 *   cleanly. A relay that acquires a shard whose record names another relay first initialises
 *   that relay's transactionalId with a short-lived producer (fence()): InitProducerId bumps the
 *   epoch, aborts the paused holder's open transaction, and from then on every send or commit of
 *   that holder fails with INVALID_PRODUCER_EPOCH / PRODUCER_FENCED. Only then does it confirm the
 *   lease (still ours, checked in Redis after the fence) and read the shard.
 * - a fenced relay cannot tell which shard was taken, so it drops all of them (outcome "reset"),
 *   initialises its producer again (a new epoch, which aborts whatever the old one left open) and
 *   acquires its leases anew before sending anything: a relay only ever sends a shard's entries
 *   with a producer initialised *before* it acquired or confirmed that shard's lease. Hence a new
 *   owner, which acquires only after that lease expired and fences after acquiring, always fences
 *   the producer that could hold the shard's entries.
 * - a clean release (handover between batches, every send settled) deletes the record, so live
 *   relays handing shards over do not fence each other.
 * Consumers read committed (kafkajs' default), so an aborted transaction is never seen.
 *
 * A re-send after a failure is the same messages in a new transaction: the failed one is aborted
 * (read-committed consumers never see it), so a Kafka outage does not duplicate. Without
 * transactions, one idempotent producer sends batch by batch (the broker drops a re-sent copy it has).
 */
import { Partitioners, type Kafka, type Message, type Producer } from "kafkajs";
import { ensureTopics, stockEventTopics } from "../../shared/kafka/topics.ts";
import { ACKS_ALL, compressionOf, createIdempotentProducer, MAX_SEND_BYTES, sendBatch } from "../../shared/kafka/producer.ts";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import type { Batch } from "./batches.ts";
import { freezeForTest, type RelayContext } from "./context.ts";
import { errorMessage } from "./health.ts";

/** How long stop() lets an in-flight Kafka send finish before abandoning it (unacknowledged). */
export const STOP_SEND_GRACE_MS = 5_000;
/** Broker-side limit of an open transaction: a relay killed mid-transaction holds back read-committed consumers of its partitions at most this long (less when the next owner fences it first). */
const TRANSACTION_TIMEOUT_MS = 30_000;
/**
 * kafkajs' retry of a transactional send. Back-to-back transactions of one producer meet the
 * previous commit still writing its markers: AddPartitionsToTxn answers CONCURRENT_TRANSACTIONS,
 * and kafkajs retries the whole send after initialRetryTime (±20 %, doubling, capped). The Java
 * client waits ~20 ms for this; at 100 ms each hit cost ~100–600 ms of latency (docs/relay.md,
 * "Latency of one event"). 20 ms doubling, capped at 500 ms, 9 times covers ~2.6 s of a broker blip
 * (100 ms × 5 covered ~3 s); the 500 ms cap (was 2 s) means the retry after a killed leader's
 * partitions were given new leaders comes at most 0.5 s late instead of 1.3 s. Fencing is unaffected:
 * INVALID_PRODUCER_EPOCH / PRODUCER_FENCED are not retried.
 */
const TRANSACTIONAL_SEND_RETRY = { retries: 9, initialRetryTime: 20, maxRetryTime: 500 } as const;
/**
 * Cap of the pause between two attempts of one batch. An attempt already waits out kafkajs' own
 * retries (~2.5 s, TRANSACTIONAL_SEND_RETRY), so this pause only has to keep a dead Kafka from being
 * hammered; with the default 5 s cap, the attempt after a partition's new leader was elected could
 * start up to 5 s late (publishing resumed 11 s after a broker kill -9, docs/guarantees.md).
 */
const SEND_BACKOFF_CAP_MS = 1_000;
const ABANDONED = Symbol("abandoned");

/** "reset": our producer was fenced or had to be replaced; every shard must be acquired again. */
export type SendOutcome = "sent" | "abandoned" | "reset";

/** Where a transaction's time went (ms), for the stage metrics. */
export interface SendTimes {
  sendMs: number;
  commitMs: number;
}

function errorTypes(err: unknown): string[] {
  const types: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const type = (e as { type?: string }).type;
    if (type) types.push(type);
    e = (e as { cause?: unknown }).cause ?? (e as { originalError?: unknown }).originalError;
  }
  return types;
}

/** kafkajs errors after which the producer's id/sequence state is useless: start a new producer. */
export function needsNewProducer(err: unknown): boolean {
  return errorTypes(err).some((t) => /OUT_OF_ORDER_SEQUENCE_NUMBER|UNKNOWN_PRODUCER_ID|INVALID_PRODUCER_EPOCH|INVALID_PRODUCER_ID_MAPPING|INVALID_TXN_STATE/.test(t));
}

/** A transactional producer with a newer epoch exists: we were fenced (kafkajs 2.2 maps PRODUCER_FENCED, code 90, to no name). */
export function isFenced(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const { type, code } = e as { type?: string; code?: number };
    if (type === "INVALID_PRODUCER_EPOCH" || type === "PRODUCER_FENCED" || code === 90) return true;
    e = (e as { cause?: unknown }).cause ?? (e as { originalError?: unknown }).originalError;
  }
  return false;
}

/** One transactional identity per relay process (its consumer name), under the deployment's prefix. */
export const transactionalIdOf = (prefix: string, relay: string) => `${prefix}-relay-${relay}`;

/** Consecutive batches joined into sends of at most MAX_SEND_BYTES (kafkajs does not split a send), in order. */
export function toSends(batches: readonly Batch[]): Message[][] {
  const sends: Message[][] = [];
  let current: Message[] = [];
  let bytes = 0;
  for (const batch of batches) {
    if (batch.messages.length === 0) continue;
    if (current.length > 0 && bytes + batch.bytes > MAX_SEND_BYTES) {
      sends.push(current);
      current = [];
      bytes = 0;
    }
    current = current.concat(batch.messages);
    bytes += batch.bytes;
  }
  if (current.length > 0) sends.push(current);
  return sends;
}

/** Our producer is gone (fenced, broken, or never initialised since the last reset): the shards must be acquired again. */
class ProducerGoneError extends Error {
  constructor(why: string) {
    super(why);
    this.name = "ProducerGoneError";
  }
}

export class KafkaSender {
  /** RELAY_TRANSACTIONS=false: one idempotent producer for every shard. */
  private plain: { producer: Producer; connected: boolean } | undefined;
  /** RELAY_TRANSACTIONS=true: this relay's transactional producer (InitProducerId done), until a reset. */
  private producer: Promise<Producer> | undefined;
  private readonly compression;
  private readonly transactional: boolean;

  constructor(
    private readonly kafka: Kafka,
    private readonly ctx: RelayContext,
  ) {
    this.compression = compressionOf(ctx.cfg.RELAY_COMPRESSION);
    this.transactional = ctx.cfg.RELAY_TRANSACTIONS;
  }

  /** Creates the topics if missing (and waits for their leaders), connects the producer (with transactions: initialises it). */
  async connect(): Promise<void> {
    const { KAFKA_TOPIC, KAFKA_PARTITIONS, KAFKA_DLQ_TOPIC } = this.ctx.cfg;
    await ensureTopics(this.kafka, stockEventTopics(KAFKA_TOPIC, KAFKA_PARTITIONS, KAFKA_DLQ_TOPIC));
    if (this.transactional) {
      await this.ready();
      return;
    }
    this.plain ??= { producer: createIdempotentProducer(this.kafka), connected: false };
    if (!this.plain.connected) {
      await this.plain.producer.connect();
      this.plain.connected = true;
    }
  }

  async disconnect(): Promise<void> {
    const all = [this.dropProducer()];
    if (this.plain) all.push(Promise.race([this.plain.producer.disconnect().catch(() => {}), sleep(5_000)]));
    await Promise.all(all);
  }

  /**
   * Before reading shards just acquired: our own producer is initialised, and each relay named (a
   * previous holder that lost its lease without a clean release) is fenced: its transactionalId is
   * initialised by a short-lived producer, which aborts its open transaction and fails its next
   * send or commit. False (logged) when Kafka could not be reached: the caller must not read the shards.
   */
  async fence(previousHolders: readonly string[]): Promise<boolean> {
    if (!this.transactional) return true;
    try {
      await this.ready();
      await Promise.all(
        previousHolders.map(async (relay) => {
          const fencer = await this.initProducer(relay);
          await Promise.race([fencer.disconnect().catch(() => {}), sleep(5_000)]);
          this.ctx.log.info({ relay }, "fenced the previous holder's Kafka producer");
        }),
      );
      this.ctx.kafkaState.markUp();
      return true;
    } catch (err) {
      this.ctx.kafkaState.markDown(err);
      this.ctx.log.warn({ err: errorMessage(err), previousHolders }, "could not fence the previous holders yet; shards released, tried again");
      return false;
    }
  }

  /** This relay's transactional producer, initialised now if there is none (a new epoch: aborts whatever an earlier one left open). */
  private ready(): Promise<Producer> {
    if (!this.producer) {
      const producer = this.initProducer(this.ctx.consumerName);
      producer.catch(() => this.producer === producer && (this.producer = undefined));
      this.producer = producer;
    }
    return this.producer;
  }

  private async initProducer(relay: string): Promise<Producer> {
    const producer = this.kafka.producer({
      transactionalId: transactionalIdOf(this.ctx.keys.prefix, relay),
      transactionTimeout: TRANSACTION_TIMEOUT_MS,
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // The same (Java-compatible murmur2) partitioner as every other producer: a stock keeps its partition.
      createPartitioner: Partitioners.DefaultPartitioner,
      retry: TRANSACTIONAL_SEND_RETRY,
    });
    try {
      await producer.connect();
      // transaction() runs InitProducerId the first time (the fencing); an empty commit sends nothing.
      await (await producer.transaction()).commit();
      return producer;
    } catch (err) {
      await producer.disconnect().catch(() => {});
      throw err;
    }
  }

  /** Forget our producer (fenced or broken); the next fence() initialises a new one. */
  private async dropProducer(): Promise<void> {
    const producer = this.producer;
    this.producer = undefined;
    if (producer) await Promise.race([producer.then((p) => p.disconnect()).catch(() => {}), sleep(5_000)]);
  }

  /**
   * Produces the batches (any shards, each shard's in order) until Kafka acknowledges them: one
   * transaction, or with RELAY_TRANSACTIONS=false one idempotent send after another. "abandoned" if
   * stop() came first (or the send outlived the grace), "reset" if our producer was fenced or had to
   * be replaced (nothing was published; every shard must be acquired again).
   */
  async send(batches: readonly Batch[], times: SendTimes): Promise<SendOutcome> {
    const sends = toSends(batches);
    if (sends.length === 0) return "sent";
    if (this.transactional) return this.withRetry(sends, (startedAt) => this.transaction(sends, startedAt, times));
    for (const messages of sends) {
      const started = performance.now();
      const outcome = await this.withRetry([messages], () => this.plainSend(messages));
      times.sendMs += performance.now() - started;
      if (outcome !== "sent") return outcome;
    }
    return "sent";
  }

  private async plainSend(messages: Message[]): Promise<void> {
    if (!this.plain?.connected) await this.connect();
    await sendBatch(this.plain!.producer, this.ctx.cfg.KAFKA_TOPIC, messages, this.compression);
  }

  /** All sends in one transaction, then the commit. */
  private async transaction(sends: readonly Message[][], startedAt: number, times: SendTimes): Promise<void> {
    // Never initialise a producer here: a producer must predate the leases of what it sends (see the file's comment).
    if (!this.producer) throw new ProducerGoneError("no producer since the last reset");
    const producer = await this.producer;
    freezeForTest(this.ctx, "send");
    const { KAFKA_TOPIC: topic } = this.ctx.cfg;
    const began = performance.now();
    const txn = await producer.transaction();
    try {
      for (const messages of sends) await txn.send({ topic, messages, acks: ACKS_ALL, compression: this.compression });
      const sent = performance.now();
      await txn.commit();
      times.sendMs = sent - began;
      times.commitMs = performance.now() - sent;
    } catch (err) {
      // Said before the abort: with Kafka down the abort itself waits out kafkajs' retries (seconds),
      // and readiness and the log must not lag the outage by that long.
      if (isFenced(err)) throw err; // nothing to abort: the fencer aborted it on the broker
      this.ctx.kafkaState.markDown(err, startedAt);
      // Aborted, the messages are invisible to read-committed consumers; if even the abort fails, the
      // producer is stuck mid-transaction: drop it (a reset: the next one's init aborts it on the broker).
      await txn.abort().catch(async () => {
        await this.dropProducer();
        throw new ProducerGoneError(`abort failed after: ${errorMessage(err)}`);
      });
      throw err;
    }
  }

  private async withRetry(sends: readonly Message[][], attemptOnce: (startedAt: number) => Promise<void>): Promise<SendOutcome> {
    const { stop, metrics, kafkaState, log } = this.ctx;
    const events = sends.reduce((n, s) => n + s.length, 0);
    const firstEventId = (sends[0]?.[0]?.headers as Record<string, string> | undefined)?.eventId;
    for (let attempt = 0; ; attempt++) {
      if (stop.stopping && attempt > 0) return "abandoned";
      const startedAt = Date.now();
      try {
        const send = attemptOnce(startedAt);
        send.catch(() => {}); // if abandoned, a late failure must not become an unhandled rejection
        const outcome = await Promise.race([send, stop.stopped.then(() => sleep(STOP_SEND_GRACE_MS)).then(() => ABANDONED)]);
        if (outcome === ABANDONED) return "abandoned";
        kafkaState.markUp();
        return "sent";
      } catch (err) {
        if (isFenced(err)) {
          await this.dropProducer();
          log.warn({ err: errorMessage(err), events, firstEventId }, "fenced: another relay took over a shard of ours; transaction not published, all shards dropped");
          return "reset";
        }
        if (err instanceof ProducerGoneError || (this.transactional && needsNewProducer(err))) {
          await this.dropProducer();
          log.warn({ err: errorMessage(err), events, firstEventId }, "replacing the Kafka producer (its state is no longer valid); all shards dropped and acquired again");
          return "reset";
        }
        metrics.sendFailures.inc();
        kafkaState.markDown(err, startedAt);
        log.debug({ err: errorMessage(err), attempt, events, firstEventId }, "kafka send failed");
        if (needsNewProducer(err)) await this.replacePlain(err);
        await stop.pause(backoffMs(attempt, 100, SEND_BACKOFF_CAP_MS));
      }
    }
  }

  /** The idempotent producer's state is no longer valid: the next attempt starts a new one. */
  private async replacePlain(reason: unknown): Promise<void> {
    this.ctx.log.warn({ err: errorMessage(reason) }, "replacing the Kafka producer (its idempotence state is no longer valid)");
    const old = this.plain;
    this.plain = undefined;
    if (old) await Promise.race([old.producer.disconnect().catch(() => {}), sleep(5_000)]);
  }
}
