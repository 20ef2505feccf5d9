/**
 * Sending a batch to Kafka until it is acknowledged: the producer's life (connect, replace when its
 * idempotence state is no longer valid), capped exponential backoff between attempts, and the stop
 * grace (an in-flight send gets STOP_SEND_GRACE_MS after stop(), then is abandoned unacknowledged).
 *
 * A re-send is the *same* batch from the same producer, so its sequence numbers are the same and
 * the broker drops a copy it already has: a Kafka outage alone does not duplicate.
 */
import type { Kafka, Message, Producer } from "kafkajs";
import { ensureTopic } from "../../shared/kafka/client.ts";
import { compressionOf, createIdempotentProducer, sendBatch } from "../../shared/kafka/producer.ts";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";
import { errorMessage, type Availability, type StopSignal } from "./health.ts";
import type { RelayMetrics } from "./metrics.ts";
import type { RelaySettings } from "./context.ts";

/** How long stop() lets an in-flight Kafka send finish before abandoning it (unacknowledged). */
export const STOP_SEND_GRACE_MS = 5_000;
const ABANDONED = Symbol("abandoned");

/** kafkajs errors after which the producer's id/sequence state is useless: start a new producer. */
export function needsNewProducer(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; depth++) {
    const type = (e as { type?: string }).type;
    if (type && /OUT_OF_ORDER_SEQUENCE_NUMBER|UNKNOWN_PRODUCER_ID|INVALID_PRODUCER_EPOCH|INVALID_PRODUCER_ID_MAPPING/.test(type)) return true;
    e = (e as { cause?: unknown }).cause ?? (e as { originalError?: unknown }).originalError;
  }
  return false;
}

export class KafkaSender {
  private producer: Producer | undefined;
  private connected = false;
  private readonly compression;

  constructor(
    private readonly kafka: Kafka,
    private readonly cfg: RelaySettings,
    private readonly log: Logger,
    private readonly metrics: RelayMetrics,
    private readonly kafkaState: Availability,
    private readonly stop: StopSignal,
  ) {
    this.compression = compressionOf(cfg.RELAY_COMPRESSION);
  }

  /** Creates the topic if missing and connects the producer. */
  async connect(): Promise<void> {
    await ensureTopic(this.kafka, this.cfg.KAFKA_TOPIC, this.cfg.KAFKA_PARTITIONS);
    if (!this.producer) this.producer = createIdempotentProducer(this.kafka);
    if (!this.connected) {
      await this.producer.connect();
      this.connected = true;
    }
  }

  async disconnect(): Promise<void> {
    if (this.producer) await Promise.race([this.producer.disconnect().catch(() => {}), sleep(5_000)]);
  }

  private async resetProducer(reason: unknown): Promise<void> {
    this.log.warn({ err: errorMessage(reason) }, "replacing the Kafka producer (its idempotence state is no longer valid)");
    const old = this.producer;
    this.producer = undefined;
    this.connected = false;
    if (old) await Promise.race([old.disconnect().catch(() => {}), sleep(5_000)]);
    this.producer = createIdempotentProducer(this.kafka);
    await this.producer.connect();
    this.connected = true;
  }

  /** Produces until Kafka acknowledges; false if stop() came first (or the send outlived the grace). */
  async sendWithRetry(messages: Message[], firstEventId: string | undefined): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.stop.stopping && attempt > 0) return false;
      try {
        if (!this.producer || !this.connected) await this.connect();
        const send = sendBatch(this.producer!, this.cfg.KAFKA_TOPIC, messages, this.compression);
        send.catch(() => {}); // if abandoned, a late failure must not become an unhandled rejection
        const outcome = await Promise.race([send, this.stop.stopped.then(() => sleep(STOP_SEND_GRACE_MS)).then(() => ABANDONED)]);
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
        await this.stop.pause(backoffMs(attempt));
      }
    }
  }
}
