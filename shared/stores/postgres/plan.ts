/**
 * Pure part of projector-postgres: turns the events that were new to `stock_events` into one row per
 * stock, one row per allocation and one row per (stock, minute), so a batch is three multi-row
 * statements whatever its size. Every row merges order-independently with what is stored
 * (see the ON CONFLICT clauses in writer.ts), so batches may be applied in any order.
 *
 * Voids (a repair's StockSnapshot with `liveHolds`, docs/design.md §11): an order still 'held', of the
 * snapshot's stock, placed (its StockAllocated's version) below the snapshot's version and not in the
 * list is a hold Redis never had: it becomes 'voided'. Order-independent like the rest:
 *   - the snapshot and the StockAllocated in one batch: decided here (voidingSnapshot);
 *   - the StockAllocated applied after the snapshot: the writer checks the stored snapshots;
 *   - the snapshot applied after the order: the writer voids the stored 'held' orders.
 * A hold placed at or above the snapshot's version is never voided; a real end (purchase, expiry,
 * cancel) always wins over 'voided', whichever comes first (mergeOrderStatus), and a void never
 * overrides one.
 */
import type { EventOf, StockEvent } from "../../domain/events.ts";
import type { AllocationStatus } from "../../domain/views.ts";

interface StockRow {
  stock_id: string;
  /** Static fields: only when the batch holds the StockCreated. */
  name: string | null;
  description: string | null;
  price: number | null;
  currency: string | null;
  total: number | null;
  per_user_limit: number | null;
  hold_seconds: number | null;
  starts_at: string | null;
  ends_at: string | null;
  created_at: string | null;
  /** Counters of the newest event of the batch. */
  available: number;
  held: number;
  sold: number;
  version: number;
  updated_at: string;
  first_unavailable_at: string | null;
  sold_out_at: string | null;
}

export interface OrderRow {
  allocation_id: string;
  stock_id: string;
  user_id: string;
  quantity: number;
  /** 'held' unless the batch holds the allocation's end, or a snapshot of the batch voids it. */
  status: AllocationStatus;
  /** Version of the StockAllocated; null when the batch does not hold it. */
  placed_version: number | null;
  /** occurredAt of the batch's snapshot that voided it. */
  voided_at: string | null;
  amount: number | null;
  currency: string | null;
  placed_at: string;
  held_at: string | null;
  expires_at: string | null;
  purchased_at: string | null;
  released_at: string | null;
  updated_at: string;
}

interface MinuteRow {
  stock_id: string;
  minute: string;
  holds_placed: number;
  units_allocated: number;
  purchases: number;
  units_sold: number;
  revenue: number;
  holds_expired: number;
  units_expired: number;
  holds_cancelled: number;
  units_cancelled: number;
  /** Holds Redis never had, voided by a repair snapshot, at the snapshot's minute. */
  holds_voided: number;
  units_voided: number;
}

/** A repair snapshot that lists the stock's live holds (snapshots without the list void nothing). */
export interface SnapshotRow {
  event_id: string;
  stock_id: string;
  version: number;
  occurred_at: string;
  live_holds: string[];
}

export interface PostgresPlan {
  stocks: StockRow[];
  orders: OrderRow[];
  /** Per stock-minute counts of the batch alone (the writer adds them in SQL from the new events). */
  minutes: MinuteRow[];
  snapshots: SnapshotRow[];
}

const ENDED: ReadonlySet<AllocationStatus> = new Set(["purchased", "expired", "cancelled"]);

/**
 * How a stored status and an incoming one merge (the writer's ON CONFLICT says the same in SQL): a real
 * end wins (the incoming one first, as before voids existed), then 'voided', then 'held'. Commutative
 * wherever both sides can occur, so the order batches land in does not matter.
 */
export function mergeOrderStatus(stored: AllocationStatus, incoming: AllocationStatus): AllocationStatus {
  if (ENDED.has(incoming)) return incoming;
  if (ENDED.has(stored)) return stored;
  return stored === "voided" || incoming === "voided" ? "voided" : "held";
}

/**
 * The snapshot that voids an order, or null: the lowest-version snapshot of its stock above the order's
 * placed version that does not list it, for an order still 'held'. Placed at or above the snapshot's
 * version (e.g. a real hold right after a repair) or of unknown placement: never.
 */
export function voidingSnapshot<S extends Pick<SnapshotRow, "stock_id" | "version" | "live_holds">>(
  order: Pick<OrderRow, "allocation_id" | "stock_id" | "status" | "placed_version">,
  snapshots: readonly S[],
): S | null {
  if (order.status !== "held" || order.placed_version === null) return null;
  let found: S | null = null;
  for (const snap of snapshots) {
    if (snap.stock_id !== order.stock_id || snap.version <= order.placed_version) continue;
    if (snap.live_holds.includes(order.allocation_id)) continue;
    if (!found || snap.version < found.version) found = snap;
  }
  return found;
}

/**
 * a ≤ b in time. The events' own timestamps are UTC with milliseconds (`…T12:00:00.000Z`), which compare
 * as text; anything else (an offset, other precision) is parsed. The fast path saves two Date.parse per
 * folded event, a visible share of projector-postgres' CPU in a drain.
 */
function notAfter(a: string, b: string): boolean {
  if (a.length === 24 && b.length === 24 && a.charCodeAt(23) === 90 && b.charCodeAt(23) === 90) return a <= b; // 90 = "Z"
  return Date.parse(a) <= Date.parse(b);
}

const earlier = (a: string | null, b: string | null): string | null => {
  if (a === null) return b;
  if (b === null) return a;
  return notAfter(a, b) ? a : b;
};

const later = (a: string, b: string): string => (notAfter(b, a) ? a : b);

/** The UTC minute an ISO timestamp falls in, as ISO. */
export function minuteOf(iso: string): string {
  const ms = Date.parse(iso);
  return new Date(ms - (((ms % 60_000) + 60_000) % 60_000)).toISOString();
}

function stockRowOf(event: StockEvent): StockRow {
  const { available, held, sold } = event.payload;
  return {
    stock_id: event.aggregateId,
    name: null,
    description: null,
    price: null,
    currency: null,
    total: null,
    per_user_limit: null,
    hold_seconds: null,
    starts_at: null,
    ends_at: null,
    created_at: null,
    available,
    held,
    sold,
    version: event.version,
    updated_at: event.occurredAt,
    first_unavailable_at: available === 0 ? event.occurredAt : null,
    sold_out_at: available === 0 && held === 0 ? event.occurredAt : null,
  };
}

function mergeStock(row: StockRow, event: StockEvent): void {
  if (event.version > row.version) {
    row.available = event.payload.available;
    row.held = event.payload.held;
    row.sold = event.payload.sold;
    row.version = event.version;
    row.updated_at = event.occurredAt;
  }
  if (event.payload.available === 0) {
    row.first_unavailable_at = earlier(row.first_unavailable_at, event.occurredAt);
    if (event.payload.held === 0) row.sold_out_at = earlier(row.sold_out_at, event.occurredAt);
  }
}

function applyCreated(row: StockRow, event: EventOf<"StockCreated">): void {
  const p = event.payload;
  row.name = p.name;
  row.description = p.description;
  row.price = p.price;
  row.currency = p.currency;
  row.total = p.total;
  row.per_user_limit = p.perUserLimit;
  row.hold_seconds = p.holdSeconds;
  row.starts_at = p.startsAt;
  row.ends_at = p.endsAt;
  row.created_at = event.occurredAt;
}

type OrderEvent = Exclude<StockEvent, { eventType: "StockCreated" | "StockSnapshot" }>;

function orderRowOf(event: OrderEvent): OrderRow {
  const p = event.payload;
  return {
    allocation_id: p.allocationId,
    stock_id: event.aggregateId,
    user_id: p.userId,
    quantity: p.quantity,
    status: "held",
    placed_version: null,
    voided_at: null,
    amount: null,
    currency: null,
    placed_at: event.occurredAt,
    held_at: null,
    expires_at: null,
    purchased_at: null,
    released_at: null,
    updated_at: event.occurredAt,
  };
}

function mergeOrder(row: OrderRow, event: OrderEvent): void {
  row.placed_at = earlier(row.placed_at, event.occurredAt)!;
  row.updated_at = later(row.updated_at, event.occurredAt);
  switch (event.eventType) {
    case "StockAllocated":
      row.held_at = event.occurredAt;
      row.expires_at = event.payload.expiresAt;
      row.placed_version = event.version;
      break;
    case "PurchaseCompleted":
      row.status = "purchased";
      row.amount = event.payload.amount;
      row.currency = event.payload.currency;
      row.purchased_at = event.occurredAt;
      break;
    case "StockReleased":
      row.status = event.payload.reason;
      row.released_at = event.occurredAt;
      break;
    default:
      unhandled(event);
  }
}

/** A new order event type must be handled here: this stops the build until it is. */
function unhandled(event: never): never {
  throw new Error(`projector-postgres has no rule for ${(event as StockEvent).eventType}`);
}

function emptyMinute(stockId: string, minute: string): MinuteRow {
  return {
    stock_id: stockId,
    minute,
    holds_placed: 0,
    units_allocated: 0,
    purchases: 0,
    units_sold: 0,
    revenue: 0,
    holds_expired: 0,
    units_expired: 0,
    holds_cancelled: 0,
    units_cancelled: 0,
    holds_voided: 0,
    units_voided: 0,
  };
}

function addToMinute(row: MinuteRow, event: OrderEvent): void {
  const quantity = event.payload.quantity;
  switch (event.eventType) {
    case "StockAllocated":
      row.holds_placed += 1;
      row.units_allocated += quantity;
      break;
    case "PurchaseCompleted":
      row.purchases += 1;
      row.units_sold += quantity;
      row.revenue += event.payload.amount;
      break;
    case "StockReleased":
      if (event.payload.reason === "expired") {
        row.holds_expired += 1;
        row.units_expired += quantity;
      } else {
        row.holds_cancelled += 1;
        row.units_cancelled += quantity;
      }
      break;
    default:
      unhandled(event);
  }
}

const byKey = <T>(key: (row: T) => string) => (a: T, b: T) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

/**
 * `events` must be the events not applied before (deduplicated by eventId); any order.
 * Rows come out sorted by primary key, so concurrent writers lock rows in the same order.
 */
export function planPostgresBatch(events: readonly StockEvent[], options: { minutes?: boolean } = {}): PostgresPlan {
  // The writer adds the minute counters in SQL (only the events that were new count): it asks for no minutes.
  const withMinutes = options.minutes ?? true;
  const stocks = new Map<string, StockRow>();
  const orders = new Map<string, OrderRow>();
  const minutes = new Map<string, MinuteRow>();
  const snapshots: SnapshotRow[] = [];
  const bucketOf = (stockId: string, occurredAt: string): MinuteRow => {
    const minute = minuteOf(occurredAt);
    const minuteKey = `${stockId}\u0000${minute}`;
    let bucket = minutes.get(minuteKey);
    if (!bucket) {
      bucket = emptyMinute(stockId, minute);
      minutes.set(minuteKey, bucket);
    }
    return bucket;
  };
  for (const event of events) {
    let stock = stocks.get(event.aggregateId);
    if (!stock) {
      stock = stockRowOf(event);
      stocks.set(event.aggregateId, stock);
    } else {
      mergeStock(stock, event);
    }
    if (event.eventType === "StockCreated") {
      applyCreated(stock, event);
      continue;
    }
    // A repair snapshot (bun run repair) restates the counters, at a version above any other, and
    // lists the live holds: the orders it voids are decided once the whole batch is folded.
    if (event.eventType === "StockSnapshot") {
      const live = event.payload.liveHolds;
      if (live) snapshots.push({ event_id: event.eventId, stock_id: event.aggregateId, version: event.version, occurred_at: event.occurredAt, live_holds: live });
      continue;
    }
    const allocationId = event.payload.allocationId;
    let order = orders.get(allocationId);
    if (!order) {
      order = orderRowOf(event);
      orders.set(allocationId, order);
    }
    mergeOrder(order, event);
    if (withMinutes) addToMinute(bucketOf(event.aggregateId, event.occurredAt), event);
  }
  for (const order of snapshots.length > 0 ? orders.values() : []) {
    const snap = voidingSnapshot(order, snapshots);
    if (!snap) continue;
    order.status = "voided";
    order.voided_at = snap.occurred_at;
    order.updated_at = later(order.updated_at, snap.occurred_at);
    if (!withMinutes) continue;
    const bucket = bucketOf(order.stock_id, snap.occurred_at);
    bucket.holds_voided += 1;
    bucket.units_voided += order.quantity;
  }
  return {
    stocks: [...stocks.values()].sort(byKey((r) => r.stock_id)),
    orders: [...orders.values()].sort(byKey((r) => r.allocation_id)),
    minutes: [...minutes.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row),
    snapshots,
  };
}
