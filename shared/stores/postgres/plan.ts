/**
 * Pure part of projector-postgres: turns the events that were new to `stock_events` into one row per
 * stock, one row per allocation and one row per (stock, minute), so a batch is three multi-row
 * statements whatever its size. Every row merges order-independently with what is stored
 * (see the ON CONFLICT clauses in postgres-writer.ts), so batches may be applied in any order.
 */
import type { EventOf, StockEvent } from "../../domain/events.ts";
import type { AllocationStatus } from "../../domain/views.ts";

export interface StockRow {
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
  /** 'held' unless the batch holds the allocation's end. */
  status: AllocationStatus;
  amount: number | null;
  currency: string | null;
  placed_at: string;
  held_at: string | null;
  expires_at: string | null;
  purchased_at: string | null;
  released_at: string | null;
  updated_at: string;
}

export interface MinuteRow {
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
}

export interface PostgresPlan {
  stocks: StockRow[];
  orders: OrderRow[];
  minutes: MinuteRow[];
}

const earlier = (a: string | null, b: string | null): string | null => {
  if (a === null) return b;
  if (b === null) return a;
  return Date.parse(a) <= Date.parse(b) ? a : b;
};

const later = (a: string, b: string): string => (Date.parse(a) >= Date.parse(b) ? a : b);

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
export function planPostgresBatch(events: readonly StockEvent[]): PostgresPlan {
  const stocks = new Map<string, StockRow>();
  const orders = new Map<string, OrderRow>();
  const minutes = new Map<string, MinuteRow>();
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
    // A repair snapshot (bun run repair) only restates the counters, at a version above any other.
    if (event.eventType === "StockSnapshot") continue;
    const allocationId = event.payload.allocationId;
    let order = orders.get(allocationId);
    if (!order) {
      order = orderRowOf(event);
      orders.set(allocationId, order);
    }
    mergeOrder(order, event);
    const minute = minuteOf(event.occurredAt);
    const minuteKey = `${event.aggregateId}\u0000${minute}`;
    let bucket = minutes.get(minuteKey);
    if (!bucket) {
      bucket = emptyMinute(event.aggregateId, minute);
      minutes.set(minuteKey, bucket);
    }
    addToMinute(bucket, event);
  }
  return {
    stocks: [...stocks.values()].sort(byKey((r) => r.stock_id)),
    orders: [...orders.values()].sort(byKey((r) => r.allocation_id)),
    minutes: [...minutes.values()].sort(byKey((r) => `${r.stock_id}\u0000${r.minute}`)),
  };
}
