/**
 * Poison or a broken store? When every event of a batch that was tried alone has been rejected, the
 * events may be poison, or the store may refuse everything (a bad migration, a changed mapping).
 * The two need opposite answers: poison goes to the DLQ so the events behind it flow; a broken store
 * must not empty the read model into the DLQ, so the batch waits as in an outage.
 *
 * The question is put to the store itself: each sink's `probe()` writes this known-good lifecycle of
 * a synthetic stock (created, allocated, purchased, allocated again, cancelled: every event type and
 * every table or field the events touch) without leaving a trace (a rolled-back transaction, a
 * simulated ingest). If the store accepts it, the rejected events are poison.
 */
import { stockEventSchema, type StockEvent } from "../domain/events.ts";

/** Stock ids of probes start with this; no real stock id can be this long and odd. */
export const PROBE_STOCK_PREFIX = "__projection-probe__";

/** Five valid events of one synthetic stock, parsed by the event schema (so they stay valid as it evolves). */
export function probeEvents(now = new Date()): StockEvent[] {
  const stockId = `${PROBE_STOCK_PREFIX}${Bun.randomUUIDv7()}`;
  const at = now.toISOString();
  const later = new Date(now.getTime() + 600_000).toISOString();
  const first = { allocationId: `${stockId}:a1`, userId: "probe", quantity: 1 };
  const second = { allocationId: `${stockId}:a2`, userId: "probe", quantity: 1 };
  let version = 0;
  const envelope = () => ({ eventId: Bun.randomUUIDv7(), schemaVersion: 1, aggregateType: "Stock", aggregateId: stockId, version: ++version, occurredAt: at });
  const raw = [
    {
      ...envelope(),
      eventType: "StockCreated",
      payload: {
        name: "probe",
        description: "projection probe",
        price: 100,
        currency: "EUR",
        total: 2,
        perUserLimit: 2,
        holdSeconds: 600,
        startsAt: at,
        endsAt: later,
        available: 2,
        held: 0,
        sold: 0,
      },
    },
    { ...envelope(), eventType: "StockAllocated", payload: { ...first, expiresAt: later, available: 1, held: 1, sold: 0 } },
    { ...envelope(), eventType: "PurchaseCompleted", payload: { ...first, amount: 100, currency: "EUR", available: 1, held: 0, sold: 1 } },
    { ...envelope(), eventType: "StockAllocated", payload: { ...second, expiresAt: later, available: 0, held: 1, sold: 1 } },
    { ...envelope(), eventType: "StockReleased", payload: { ...second, reason: "cancelled", available: 1, held: 0, sold: 1 } },
  ];
  return raw.map((event) => stockEventSchema.parse(event));
}
