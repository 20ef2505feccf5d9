/**
 * The one place a domain event becomes a Kafka message (docs/design.md §5): key = stock id, value =
 * the event JSON unchanged, and headers: ours (eventType, schemaVersion, eventId), the CloudEvents
 * Kafka protocol binding in binary mode (ce_* attributes + content-type, the value being the data),
 * and the W3C traceparent of the request that caused it. The relay sends what this builds; the
 * AsyncAPI document (shared/domain/contract.ts) describes it.
 */
import type { IHeaders, Message } from "kafkajs";
import type { StockEvent } from "../domain/events.ts";
import { parseTraceparent, TRACEPARENT } from "../trace.ts";

export const CLOUDEVENTS_SPEC_VERSION = "1.0";
/** ce_source: the context the events happen in (a URI reference, the same for every stock event). */
export const CLOUDEVENTS_SOURCE = "/flashsale/stocks";
export const EVENT_CONTENT_TYPE = "application/json";
/** ce_type: reverse-DNS-like and versioned by schemaVersion, e.g. flashsale.stock.StockAllocated.v1. */
const cloudEventType = (event: Pick<StockEvent, "eventType" | "schemaVersion">) => `flashsale.stock.${event.eventType}.v${event.schemaVersion}`;

const EVENT_HEADER_NAMES = [
  "eventType",
  "schemaVersion",
  "eventId",
  "ce_specversion",
  "ce_id",
  "ce_type",
  "ce_source",
  "ce_subject",
  "ce_time",
  "content-type",
  TRACEPARENT,
  "relay",
] as const;

type EventHeaders = Record<Exclude<(typeof EVENT_HEADER_NAMES)[number], typeof TRACEPARENT | "relay">, string> & { traceparent?: string; relay?: string };

/** `relay`: the consumer name of the relay that published this copy (for diagnosing duplicates and fencing). */
function eventHeaders(event: StockEvent, traceparent?: string, relay?: string): EventHeaders {
  const headers: EventHeaders = {
    eventType: event.eventType,
    schemaVersion: String(event.schemaVersion),
    eventId: event.eventId,
    ce_specversion: CLOUDEVENTS_SPEC_VERSION,
    ce_id: event.eventId,
    ce_type: cloudEventType(event),
    ce_source: CLOUDEVENTS_SOURCE,
    ce_subject: event.aggregateId,
    ce_time: event.occurredAt,
    "content-type": EVENT_CONTENT_TYPE,
  };
  // Only a well-formed one travels on: a broken trace header must not follow the event around.
  if (traceparent && parseTraceparent(traceparent)) headers.traceparent = traceparent;
  if (relay) headers.relay = relay;
  return headers;
}

/** The Kafka message of an event; `value` is its exact JSON text when there is one (the relay's), else re-encoded. */
export function eventMessage(event: StockEvent, options: { value?: Buffer | string; traceparent?: string; relay?: string } = {}): Message {
  return { key: event.aggregateId, value: options.value ?? JSON.stringify(event), headers: eventHeaders(event, options.traceparent, options.relay) };
}

/** A header's text (kafkajs hands headers over as Buffers), or undefined. */
export function headerText(headers: IHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  const first = Array.isArray(value) ? value[0] : value;
  if (first === undefined) return undefined;
  return typeof first === "string" ? first : first.toString("utf8");
}
