/**
 * Pure part of projector-search: coalesce a batch to one document per stock.
 *
 * Bulk `index` replaces the whole document and external versioning only lets a higher version in, so
 * every write is a complete document: the static fields come from the StockCreated in the batch, else
 * from the document already stored (read with a realtime mget), and the counters from the newest
 * event of the batch. Out-of-order and repeated deliveries then cannot move a document back in time:
 * ES rejects the lower version with 409 (already applied).
 */
import type { EventOf, StockEvent } from "../../domain/events.ts";
import { stockStatus } from "../../domain/views.ts";
import type { StockDocument } from "./mapping.ts";

export interface SearchPlanEntry {
  stockId: string;
  /** The event with the highest version for this stock in the batch. */
  newest: StockEvent;
  created: EventOf<"StockCreated"> | null;
  /** The events of the batch this document stands for (for the applied/duplicate counters). */
  events: StockEvent[];
}

export function planSearchBatch(events: readonly StockEvent[]): SearchPlanEntry[] {
  const byStock = new Map<string, SearchPlanEntry>();
  for (const event of events) {
    const entry = byStock.get(event.aggregateId);
    const created = event.eventType === "StockCreated" ? event : null;
    if (!entry) {
      byStock.set(event.aggregateId, { stockId: event.aggregateId, newest: event, created, events: [event] });
      continue;
    }
    entry.events.push(event);
    if (event.version > entry.newest.version) entry.newest = event;
    if (created && !entry.created) entry.created = created;
  }
  return [...byStock.values()];
}

export type StaticFields = Pick<
  StockDocument,
  "name" | "description" | "price" | "currency" | "total" | "perUserLimit" | "holdSeconds" | "startsAt" | "endsAt" | "createdAt" | "complete"
>;

const MISSING_STATIC: StaticFields = {
  name: "",
  description: "",
  price: null,
  currency: null,
  total: null,
  perUserLimit: null,
  holdSeconds: null,
  startsAt: null,
  endsAt: null,
  createdAt: null,
  complete: false,
};

function staticFieldsOf(created: EventOf<"StockCreated">): StaticFields {
  const p = created.payload;
  return {
    name: p.name,
    description: p.description,
    price: p.price,
    currency: p.currency,
    total: p.total,
    perUserLimit: p.perUserLimit,
    holdSeconds: p.holdSeconds,
    startsAt: p.startsAt,
    endsAt: p.endsAt,
    createdAt: created.occurredAt,
    complete: true,
  };
}

export function staticFieldsFromDocument(doc: StockDocument): StaticFields {
  const { name, description, price, currency, total, perUserLimit, holdSeconds, startsAt, endsAt, createdAt, complete } = doc;
  return { name, description, price, currency, total, perUserLimit, holdSeconds, startsAt, endsAt, createdAt, complete };
}

export function statusAt(doc: Pick<StockDocument, "available" | "startsAt" | "endsAt">, nowMs: number): string {
  return stockStatus(
    {
      available: doc.available,
      startsAtMs: doc.startsAt ? Date.parse(doc.startsAt) : 0,
      endsAtMs: doc.endsAt ? Date.parse(doc.endsAt) : null,
    },
    nowMs,
  );
}

/**
 * The full document for `entry`. Static fields come from the batch's StockCreated, else from
 * `known` (fields this process already saw complete; they never change), else from `existing`
 * (the stored document, if any).
 */
export function buildStockDocument(entry: SearchPlanEntry, existing: StockDocument | null, known?: StaticFields): StockDocument {
  const statics = entry.created
    ? staticFieldsOf(entry.created)
    : known
      ? known
      : existing
        ? staticFieldsFromDocument(existing)
        : MISSING_STATIC;
  const { available, held, sold } = entry.newest.payload;
  const doc: StockDocument = {
    stockId: entry.stockId,
    ...statics,
    available,
    held,
    sold,
    version: entry.newest.version,
    updatedAt: entry.newest.occurredAt,
    status: "",
  };
  doc.status = statusAt(doc, Date.parse(doc.updatedAt));
  return doc;
}

/**
 * Repair for the rare case of a StockCreated arriving after a newer, incomplete document (its
 * creation was dead-lettered, or a rebuild writer raced the live one): keep the stored counters and
 * version, fill in the static fields.
 */
export function completeDocument(existing: StockDocument, created: EventOf<"StockCreated">): StockDocument {
  const doc: StockDocument = { ...existing, ...staticFieldsOf(created) };
  doc.status = statusAt(doc, Date.parse(doc.updatedAt));
  return doc;
}
