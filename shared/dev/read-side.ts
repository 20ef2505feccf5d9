/**
 * Feeding and clearing the read side directly, for the read-side tests and the projector and notifier
 * benches: events produced to Kafka as the relay produces them, and test indices deleted by pattern.
 * Never imported by a service.
 */
import type { Client } from "@elastic/elasticsearch";
import type { Producer } from "kafkajs";
import type { StockEvent } from "../domain/events.ts";
import { eventMessage } from "../kafka/event-message.ts";
import { ACKS_ALL, splitForSend } from "../kafka/producer.ts";

/**
 * Produces events in order, in sends of at most `chunk` messages and MAX_SEND_BYTES (a count alone
 * is not enough: with few keys one partition's share of a send can pass the broker's
 * message.max.bytes, which is what made a 5,000-message send fail now and then).
 */
export async function produceEvents(producer: Producer, topic: string, events: readonly StockEvent[], chunk = 2_000): Promise<void> {
  for (const messages of splitForSend(events.map((e) => eventMessage(e)), chunk)) {
    await producer.send({ topic, acks: ACKS_ALL, messages });
  }
}

/**
 * Deletes the indices matching `pattern` (e.g. `<alias>-v*`). ES 8 refuses wildcard deletes
 * (action.destructive_requires_name), so the names are listed first.
 */
export async function deleteIndices(es: Client, pattern: string): Promise<void> {
  const rows = (await es.cat.indices({ index: pattern, format: "json", h: "index" }).catch(() => [])) as Array<{ index?: string }>;
  const names = rows.flatMap((r) => (r.index ? [r.index] : []));
  if (names.length > 0) await es.indices.delete({ index: names.join(","), ignore_unavailable: true });
}
