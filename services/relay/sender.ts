/**
 * Sending a batch of one shard to Kafka until it is acknowledged: the producers' life, capped
 * exponential backoff between attempts, and the stop grace (an in-flight send gets
 * STOP_SEND_GRACE_MS after stop(), then is abandoned unacknowledged).
 *
 * Fencing (RELAY_TRANSACTIONS, default on; docs/design.md §11). A lease in Redis cannot stop a
 * paused relay from sending after it lost the lease. So each shard has a transactional producer
 * with `transactionalId = <prefix>-relay-shard-<n>`, and each batch is one transaction. A relay
 * that acquires a shard initialises that producer (InitProducerId bumps the epoch and aborts the
 * old owner's open transaction); from then on every send or commit of the old owner fails with
 * INVALID_PRODUCER_EPOCH, and the relay drops the shard instead of retrying. Consumers read
 * committed (kafkajs' default), so an aborted batch is never seen.
 * The one rule that keeps a zombie from fencing the rightful owner in turn: a producer is only
 * ever initialised by a relay that holds the shard's lease, checked in Redis *after* the init and
 * before its first send (if the check passes, the new owner's init, which comes after it acquired
 * the lease, comes after ours and fences us).
 *
 * A re-send after a failure is the same batch in a new transaction: the failed one is aborted
 * (read-committed consumers never see it), so a Kafka outage does not duplicate. Without
 * transactions, one idempotent producer sends everything (the broker drops a re-sent copy it has).
 */
import { Partitioners, type Kafka, type Message, type Producer } from "kafkajs";
import { ensureTopics, stockEventTopics } from "../../shared/kafka/topics.ts";
import { ACKS_ALL, compressionOf, createIdempotentProducer, sendBatch } from "../../shared/kafka/producer.ts";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import type { RelayContext } from "./context.ts";
import { errorMessage } from "./health.ts";

/** How long stop() lets an in-flight Kafka send finish before abandoning it (unacknowledged). */
export const STOP_SEND_GRACE_MS = 5_000;
/** Broker-side limit of an open transaction: a relay killed mid-transaction holds back read-committed consumers of its partitions at most this long (less when the next owner initialises first). */
const TRANSACTION_TIMEOUT_MS = 30_000;
/**
 * kafkajs' retry of a transactional send. Back-to-back transactions of one producer meet the
 * previous commit still writing its markers: AddPartitionsToTxn answers CONCURRENT_TRANSACTIONS,
 * and kafkajs retries the whole send after initialRetryTime (±20 %, doubling, capped). The Java
 * client waits ~20 ms for this; at 100 ms each hit cost ~100–600 ms of latency (docs/relay.md,
 * "Latency of one event"). 20 ms doubling 7 times still covers ~2.5 s of a broker blip (100 ms × 5
 * covered ~3 s). Fencing is unaffected: INVALID_PRODUCER_EPOCH / PRODUCER_FENCED are not retried.
 */
const TRANSACTIONAL_SEND_RETRY = { retries: 7, initialRetryTime: 20, maxRetryTime: 2_000 } as const;
/**
 * Cap of the pause between two attempts of one batch. An attempt already waits out kafkajs' own
 * retries (~2.5 s, TRANSACTIONAL_SEND_RETRY), so this pause only has to keep a dead Kafka from being
 * hammered; with the default 5 s cap, the attempt after a partition's new leader was elected could
 * start up to 5 s late (publishing resumed 11 s after a broker kill -9, docs/guarantees.md).
 */
const SEND_BACKOFF_CAP_MS = 1_000;
const ABANDONED = Symbol("abandoned");

export type SendOutcome = "sent" | "abandoned" | "fenced";

/** Not the owner of the shard any more (another relay's producer has a newer epoch, or the lease is gone). */
export class FencedError extends Error {
  constructor(shard: number, why: string) {
    super(`shard ${shard}: ${why}`);
    this.name = "FencedError";
  }
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
  if (err instanceof FencedError) return true;
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const { type, code } = e as { type?: string; code?: number };
    if (type === "INVALID_PRODUCER_EPOCH" || type === "PRODUCER_FENCED" || code === 90) return true;
    e = (e as { cause?: unknown }).cause ?? (e as { originalError?: unknown }).originalError;
  }
  return false;
}

export const transactionalIdOf = (prefix: string, shard: number) => `${prefix}-relay-shard-${shard}`;

export class KafkaSender {
  /** RELAY_TRANSACTIONS=false: one idempotent producer for every shard. */
  private plain: { producer: Producer; connected: boolean } | undefined;
  /** RELAY_TRANSACTIONS=true: an initialised transactional producer per owned shard. */
  private readonly producers = new Map<number, Promise<Producer>>();
  private readonly compression;
  private readonly transactional: boolean;

  constructor(
    private readonly kafka: Kafka,
    private readonly ctx: RelayContext,
    /** True when this relay holds the shard's lease right now (read from Redis). */
    private readonly leaseIsMine: (shard: number) => Promise<boolean>,
  ) {
    this.compression = compressionOf(ctx.cfg.RELAY_COMPRESSION);
    this.transactional = ctx.cfg.RELAY_TRANSACTIONS;
  }

  /** Creates the topics if missing (and waits for their leaders), connects the (non-transactional) producer. */
  async connect(): Promise<void> {
    const { KAFKA_TOPIC, KAFKA_PARTITIONS, KAFKA_DLQ_TOPIC } = this.ctx.cfg;
    await ensureTopics(this.kafka, stockEventTopics(KAFKA_TOPIC, KAFKA_PARTITIONS, KAFKA_DLQ_TOPIC));
    if (this.transactional) return; // per shard, on acquire (fence)
    this.plain ??= { producer: createIdempotentProducer(this.kafka), connected: false };
    if (!this.plain.connected) {
      await this.plain.producer.connect();
      this.plain.connected = true;
    }
  }

  async disconnect(): Promise<void> {
    const all = [...this.producers.keys()].map((s) => this.release(s));
    if (this.plain) all.push(Promise.race([this.plain.producer.disconnect().catch(() => {}), sleep(5_000)]));
    await Promise.all(all);
  }

  /**
   * Just acquired the shard: initialise its transactional producer now, which fences the previous
   * owner at once (rather than at our first send). A failure is logged; the first send retries.
   */
  async fence(shard: number): Promise<void> {
    if (!this.transactional) return;
    await this.release(shard);
    await this.producerFor(shard).catch((err) => this.ctx.log.warn({ shard, err: errorMessage(err) }, "could not initialise the shard's transactional producer yet"));
  }

  /** Gave the shard up (or lost it): drop its producer. */
  async release(shard: number): Promise<void> {
    const producer = this.producers.get(shard);
    if (!producer) return;
    this.producers.delete(shard);
    await Promise.race([producer.then((p) => p.disconnect()).catch(() => {}), sleep(5_000)]);
  }

  private producerFor(shard: number): Promise<Producer> {
    let producer = this.producers.get(shard);
    if (!producer) {
      producer = this.initProducer(shard);
      producer.catch(() => this.producers.get(shard) === producer && this.producers.delete(shard));
      this.producers.set(shard, producer);
    }
    return producer;
  }

  private async initProducer(shard: number): Promise<Producer> {
    const producer = this.kafka.producer({
      transactionalId: transactionalIdOf(this.ctx.keys.prefix, shard),
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
      if (!(await this.leaseIsMine(shard))) throw new FencedError(shard, "lease lost while initialising the transactional producer");
      return producer;
    } catch (err) {
      await producer.disconnect().catch(() => {});
      throw err;
    }
  }

  /** One shard's messages in one transaction (or one idempotent send). */
  private async sendOnce(shard: number, messages: Message[], startedAt: number): Promise<void> {
    const { KAFKA_TOPIC: topic } = this.ctx.cfg;
    if (!this.transactional) {
      if (!this.plain?.connected) await this.connect();
      await sendBatch(this.plain!.producer, topic, messages, this.compression);
      return;
    }
    const producer = await this.producerFor(shard);
    const txn = await producer.transaction();
    try {
      await txn.send({ topic, messages, acks: ACKS_ALL, compression: this.compression });
      await txn.commit();
    } catch (err) {
      // Said before the abort: with Kafka down the abort itself waits out kafkajs' retries (seconds),
      // and readiness and the log must not lag the outage by that long.
      if (!isFenced(err)) this.ctx.kafkaState.markDown(err, startedAt);
      // Aborted, the batch is invisible to read-committed consumers; if even the abort fails, the
      // producer is stuck mid-transaction: a new one (next attempt) aborts it on the broker.
      await txn.abort().catch(async () => this.release(shard));
      throw err;
    }
  }

  /**
   * Produces one shard's batch until Kafka acknowledges it. "abandoned" if stop() came first (or the
   * send outlived the grace), "fenced" if another relay owns the shard now (do not retry).
   */
  async sendWithRetry(shard: number, messages: Message[], firstEventId: string | undefined): Promise<SendOutcome> {
    const { stop, metrics, kafkaState, log } = this.ctx;
    for (let attempt = 0; ; attempt++) {
      if (stop.stopping && attempt > 0) return "abandoned";
      const startedAt = Date.now();
      try {
        const send = this.sendOnce(shard, messages, startedAt);
        send.catch(() => {}); // if abandoned, a late failure must not become an unhandled rejection
        const outcome = await Promise.race([send, stop.stopped.then(() => sleep(STOP_SEND_GRACE_MS)).then(() => ABANDONED)]);
        if (outcome === ABANDONED) return "abandoned";
        kafkaState.markUp();
        return "sent";
      } catch (err) {
        if (isFenced(err)) {
          await this.release(shard);
          log.warn({ shard, err: errorMessage(err), events: messages.length, firstEventId }, "fenced: another relay owns the shard now; batch not published, shard dropped");
          return "fenced";
        }
        metrics.sendFailures.inc();
        kafkaState.markDown(err, startedAt);
        log.debug({ err: errorMessage(err), attempt, shard, events: messages.length, firstEventId }, "kafka send failed");
        if (needsNewProducer(err)) await this.replace(shard, err);
        await stop.pause(backoffMs(attempt, 100, SEND_BACKOFF_CAP_MS));
      }
    }
  }

  /** The producer's idempotence state is no longer valid: the next attempt starts a new one. */
  private async replace(shard: number, reason: unknown): Promise<void> {
    this.ctx.log.warn({ shard, err: errorMessage(reason) }, "replacing the Kafka producer (its idempotence state is no longer valid)");
    if (this.transactional) return this.release(shard);
    const old = this.plain;
    this.plain = undefined;
    if (old) await Promise.race([old.producer.disconnect().catch(() => {}), sleep(5_000)]);
  }
}
