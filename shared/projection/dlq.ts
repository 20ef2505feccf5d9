/**
 * Dead-letter messages: the original key, value and headers, plus why and where it failed, so an
 * operator can inspect, fix and re-publish. Sent (and acknowledged) before the batch's offsets are
 * committed, so a crash in between re-delivers rather than loses.
 */
import type { Message, Producer } from "kafkajs";
import { ACKS_ALL, splitForSend } from "../kafka/producer.ts";
import type { PoisonMessage } from "./batch.ts";

export const DLQ_HEADERS = {
  error: "dlq-error",
  reason: "dlq-reason",
  sourceTopic: "dlq-source-topic",
  sourcePartition: "dlq-source-partition",
  sourceOffset: "dlq-source-offset",
  consumerGroup: "dlq-consumer-group",
  failedAt: "dlq-failed-at",
} as const;

function toDlqMessage(poison: PoisonMessage, source: { topic: string; partition: number; groupId: string }): Message {
  const headers: Record<string, Buffer | string | (Buffer | string)[]> = {};
  for (const [name, value] of Object.entries(poison.message.headers ?? {})) {
    if (value !== undefined) headers[name] = value;
  }
  headers[DLQ_HEADERS.error] = poison.error;
  headers[DLQ_HEADERS.reason] = poison.reason;
  headers[DLQ_HEADERS.sourceTopic] = source.topic;
  headers[DLQ_HEADERS.sourcePartition] = String(source.partition);
  headers[DLQ_HEADERS.sourceOffset] = poison.message.offset;
  headers[DLQ_HEADERS.consumerGroup] = source.groupId;
  headers[DLQ_HEADERS.failedAt] = new Date().toISOString();
  return { key: poison.message.key, value: poison.message.value, headers };
}

export async function sendToDlq(
  producer: Producer,
  dlqTopic: string,
  poison: readonly PoisonMessage[],
  source: { topic: string; partition: number; groupId: string },
): Promise<void> {
  if (poison.length === 0) return;
  // A whole fetched batch can be poison: split it so no send passes the broker's size limit.
  for (const messages of splitForSend(poison.map((p) => toDlqMessage(p, source)))) {
    await producer.send({ topic: dlqTopic, acks: ACKS_ALL, messages });
  }
}
