/**
 * The event envelope (docs/design.md §4) and its schema, validated at every boundary:
 * the relay before producing, the projectors before applying, the tests on the outbox.
 *
 * Events are written by the Lua scripts (cjson) and travel unchanged as the Kafka message value.
 */
import { z } from "zod";
import { RELEASE_REASONS } from "./views.ts";

export const EVENT_TYPES = ["StockCreated", "StockAllocated", "StockReleased", "PurchaseCompleted", "StockSnapshot"] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export const SCHEMA_VERSION = 1;

const count = z.number().int().min(0);
const isoTime = z.string().datetime({ offset: true });

/** Counters of the stock right after the event; every event carries them, so any read model can apply it alone. */
const counters = { available: count, held: count, sold: count };

const stockCreatedPayload = z.object({
  name: z.string(),
  description: z.string(),
  price: count,
  currency: z.string().length(3),
  total: count,
  perUserLimit: z.number().int().positive(),
  holdSeconds: z.number().int().positive(),
  startsAt: isoTime,
  endsAt: isoTime.nullable(),
  ...counters,
});

const stockAllocatedPayload = z.object({
  allocationId: z.string(),
  userId: z.string(),
  quantity: z.number().int().positive(),
  expiresAt: isoTime,
  ...counters,
});

const stockReleasedPayload = z.object({
  allocationId: z.string(),
  userId: z.string(),
  quantity: z.number().int().positive(),
  reason: z.enum(RELEASE_REASONS),
  ...counters,
});

const purchaseCompletedPayload = z.object({
  allocationId: z.string(),
  userId: z.string(),
  quantity: z.number().int().positive(),
  amount: count,
  currency: z.string().length(3),
  ...counters,
});

/**
 * The whole stock as Redis has it, appended by `bun run repair` (shared/redis/scripts/snapshot.lua) to
 * bring drifted read models back. Its version jumps past anything downstream has seen, so version-guarded
 * read models take it like any newer event; versions between `previousVersion` and it never exist.
 */
/** The most live holds a snapshot lists (snapshot.lua gets it from repair.ts; why 10,000: its header). */
export const MAX_SNAPSHOT_LIVE_HOLDS = 10_000;

const stockSnapshotPayload = stockCreatedPayload.extend({
  previousVersion: count,
  /**
   * The allocation ids of the stock's live holds in Redis at the snapshot (at most 10,000, sorted). A read
   * model ends every hold of the stock it has as live, placed before the snapshot's version, that is not
   * listed: Redis never had it (projector-postgres marks it 'voided'). Optional, an additive field:
   * a snapshot without it (appended before the field existed) restates the counters only.
   */
  liveHolds: z
    .array(z.string())
    .max(MAX_SNAPSHOT_LIVE_HOLDS)
    .optional()
    .describe(
      "allocation ids of the stock's live holds in Redis at the snapshot, sorted; a read model ends every live hold of the stock " +
        "placed below this version that is not listed (Redis never had it). Absent in snapshots appended before the field existed: then nothing is ended",
    ),
});

const envelope = {
  eventId: z.string().uuid(),
  schemaVersion: z.literal(SCHEMA_VERSION),
  aggregateType: z.literal("Stock"),
  aggregateId: z.string().min(1),
  version: z.number().int().positive(),
  occurredAt: isoTime,
};

export const stockEventSchema = z.discriminatedUnion("eventType", [
  z.object({ ...envelope, eventType: z.literal("StockCreated"), payload: stockCreatedPayload }),
  z.object({ ...envelope, eventType: z.literal("StockAllocated"), payload: stockAllocatedPayload }),
  z.object({ ...envelope, eventType: z.literal("StockReleased"), payload: stockReleasedPayload }),
  z.object({ ...envelope, eventType: z.literal("PurchaseCompleted"), payload: purchaseCompletedPayload }),
  z.object({ ...envelope, eventType: z.literal("StockSnapshot"), payload: stockSnapshotPayload }),
]);

export type StockEvent = z.infer<typeof stockEventSchema>;
export type EventOf<T extends EventType> = Extract<StockEvent, { eventType: T }>;

export type ParseResult = { ok: true; event: StockEvent } | { ok: false; error: string };

/** Parses raw JSON text into a validated event; never throws (poison input is a value, not an exception). */
export function parseEvent(raw: string | Buffer | null | undefined): ParseResult {
  if (raw === null || raw === undefined) return { ok: false, error: "empty message" };
  let json: unknown;
  try {
    json = JSON.parse(typeof raw === "string" ? raw : raw.toString("utf8"));
  } catch (err) {
    return { ok: false, error: `not JSON: ${(err as Error).message}` };
  }
  const result = stockEventSchema.safeParse(json);
  if (result.success) return { ok: true, event: result.data };
  const issues = result.error.issues.slice(0, 5).map((i) => `${i.path.join(".")}: ${i.message}`);
  return { ok: false, error: `schema: ${issues.join("; ")}` };
}

/** The outbox stream entry field that holds the event JSON. */
export const OUTBOX_EVENT_FIELD = "event";
/** The outbox entry field with the W3C traceparent of the request that caused the event (absent when none). */
export const OUTBOX_TRACE_FIELD = "traceparent";
