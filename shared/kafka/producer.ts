/**
 * Producer factory for writers that need DESIGN §5 guarantees: idempotent (the broker drops a
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
