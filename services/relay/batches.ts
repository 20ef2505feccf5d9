/**
 * Turning outbox entries into Kafka batches (pure: no I/O). Each entry becomes a Kafka message,
 * a dead letter (fails validation, or too large for Kafka), or nothing (deleted while pending: it
 * is only acknowledged). Batches keep the entries' order, hold one shard each (acknowledged with one
 * XACK on that shard's stream, acker.ts) and stay within RELAY_BATCH_SIZE entries and
 * MAX_SEND_BYTES of messages.
 */
import type { Message } from "kafkajs";
import { OUTBOX_EVENT_FIELD, OUTBOX_TRACE_FIELD, parseEvent } from "../../shared/domain/events.ts";
import { eventMessage } from "../../shared/kafka/event-message.ts";
import { MAX_SEND_BYTES, messageBytes } from "../../shared/kafka/producer.ts";
import { fieldValue, sniffField, type OutboxEntry } from "./stream.ts";

interface DeadLetter {
  entry: OutboxEntry;
  reason: string;
  eventId?: string;
}

/** One Kafka send (one shard's entries) and what its acknowledgement covers. */
export interface Batch {
  shard: number;
  /** Every entry of the batch (messages, dead letters and deleted ones): all are XACKed together. */
  entries: OutboxEntry[];
  messages: Message[];
  dead: DeadLetter[];
  /** Upper bound of the messages' size in a record batch (messageBytes). */
  bytes: number;
}

type Prepared = { message: Message; bytes: number } | DeadLetter | null;

/**
 * Validates one entry: a Kafka message, a dead letter, or null (deleted while pending: only acknowledge it).
 * `relay` (the consumer name) goes into a header: which relay published a copy, for diagnosing duplicates and fencing.
 */
function prepare(entry: OutboxEntry, relay: string): Prepared {
  if (entry.fields === null) return null;
  const raw = fieldValue(entry.fields, OUTBOX_EVENT_FIELD);
  const parsed = parseEvent(raw);
  if (!parsed.ok) {
    return { entry, reason: raw === undefined ? `missing field "${OUTBOX_EVENT_FIELD}"` : parsed.error, eventId: sniffField(raw, "eventId") };
  }
  // The exact text from the stream, unchanged (encoded once here; kafkajs would do it anyway).
  const value = Buffer.from(raw!, "utf8");
  const { event } = parsed;
  if (value.length > MAX_SEND_BYTES) return { entry, reason: `event larger than ${MAX_SEND_BYTES} bytes`, eventId: event.eventId };
  const message = eventMessage(event, { value, traceparent: fieldValue(entry.fields, OUTBOX_TRACE_FIELD), relay });
  return { message, bytes: messageBytes(message) };
}

/** Splits entries, in order, into one-shard batches of at most `maxEntries` entries and MAX_SEND_BYTES of messages. */
export function toBatches(entries: readonly OutboxEntry[], maxEntries: number, relay: string): Batch[] {
  const batches: Batch[] = [];
  let batch: Batch = { shard: entries[0]?.shard ?? 0, entries: [], messages: [], dead: [], bytes: 0 };
  for (const entry of entries) {
    const item = prepare(entry, relay);
    const size = item && "message" in item ? item.bytes : 0;
    const full = batch.entries.length >= maxEntries || (batch.messages.length > 0 && batch.bytes + size > MAX_SEND_BYTES);
    if (batch.entries.length > 0 && (full || entry.shard !== batch.shard)) {
      batches.push(batch);
      batch = { shard: entry.shard, entries: [], messages: [], dead: [], bytes: 0 };
    }
    batch.entries.push(entry);
    if (item && "message" in item) {
      batch.messages.push(item.message);
      batch.bytes += size;
    } else if (item) {
      batch.dead.push(item);
    }
  }
  if (batch.entries.length > 0) batches.push(batch);
  return batches;
}

/** The eventId header of a message (for logs). */
export const eventIdOf = (m: Message | undefined) => (m?.headers as Record<string, string> | undefined)?.eventId;
