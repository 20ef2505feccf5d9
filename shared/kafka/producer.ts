/**
 * Producer factory for writers that need docs/design.md §5 guarantees: idempotent (the broker drops a
 * retried batch it already wrote), acks=all, partitioned by key with the Java-compatible murmur2
 * partitioner (so every client agrees which partition a stock id lands on).
 */
import { CompressionTypes, Partitioners, type Kafka, type Message, type Producer, type RetryOptions } from "kafkajs";

export interface IdempotentProducerOptions {
  /**
   * kafkajs retries inside one send before it gives up and throws. Finite on purpose: the caller
   * keeps control (logs the outage once, backs off, stays stoppable) and re-sends the *same* batch,
   * which reuses the same sequence numbers, so the broker still drops a copy it had already written.
   */
  retry?: RetryOptions;
}

export function createIdempotentProducer(kafka: Kafka, options: IdempotentProducerOptions = {}): Producer {
  return kafka.producer({
    idempotent: true,
    // One request in flight per broker connection: sends are sequential anyway, and it keeps
    // per-partition order even across kafkajs' internal retries.
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    retry: options.retry ?? { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
  });
}

export const ACKS_ALL = -1;

/**
 * Upper bound for the messages of one send. Kafka's default message.max.bytes is ~1 MiB per record
 * batch, and kafkajs does not split a send by size, so a send whose messages for one partition
 * exceed it fails as MESSAGE_TOO_LARGE, whatever the partitioning. Stay under it for the whole send.
 */
export const MAX_SEND_BYTES = 900_000;

/** An upper bound of a message's size in a record batch: value, key, headers, per-record overhead. */
export function messageBytes(message: Message): number {
  let bytes = 64 + byteLength(message.key) + byteLength(message.value);
  for (const [name, value] of Object.entries(message.headers ?? {})) {
    bytes += 8 + name.length * 3 + (Array.isArray(value) ? value.reduce((n, v) => n + byteLength(v), 0) : byteLength(value));
  }
  return bytes;
}

function byteLength(value: Buffer | string | null | undefined): number {
  if (value == null) return 0;
  return typeof value === "string" ? Buffer.byteLength(value) : value.length;
}

/** Splits messages, in order, into sends of at most maxCount messages and MAX_SEND_BYTES. */
export function splitForSend<M extends Message>(messages: readonly M[], maxCount = Number.POSITIVE_INFINITY): M[][] {
  const sends: M[][] = [];
  let current: M[] = [];
  let bytes = 0;
  for (const message of messages) {
    const size = messageBytes(message);
    if (current.length > 0 && (current.length >= maxCount || bytes + size > MAX_SEND_BYTES)) {
      sends.push(current);
      current = [];
      bytes = 0;
    }
    current.push(message);
    bytes += size;
  }
  if (current.length > 0) sends.push(current);
  return sends;
}

export function compressionOf(name: "none" | "gzip"): CompressionTypes {
  return name === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None;
}

/** Sends one batch to one topic and waits for every in-sync replica to have it. */
export async function sendBatch(
  producer: Producer,
  topic: string,
  messages: Message[],
  compression: CompressionTypes = CompressionTypes.None,
): Promise<void> {
  await producer.send({ topic, messages, acks: ACKS_ALL, compression });
}
