/** The shapes clients see (docs/design.md §10), and how they are read from Redis hashes. */

export type StockStatus = "upcoming" | "live" | "sold_out" | "ended";

export interface StockView {
  id: string;
  name: string;
  description: string;
  price: number;
  currency: string;
  total: number;
  available: number;
  held: number;
  sold: number;
  perUserLimit: number;
  holdSeconds: number;
  startsAt: string;
  endsAt: string | null;
  status: StockStatus;
  version: number;
}

export type AllocationStatus = "held" | "purchased" | "cancelled" | "expired";

export interface AllocationView {
  allocationId: string;
  stockId: string;
  userId: string;
  quantity: number;
  status: AllocationStatus;
  expiresAt: string;
  amount?: number;
  currency?: string;
}

export function stockStatus(counters: { available: number; startsAtMs: number; endsAtMs: number | null }, nowMs: number): StockStatus {
  if (counters.endsAtMs !== null && nowMs >= counters.endsAtMs) return "ended";
  if (nowMs < counters.startsAtMs) return "upcoming";
  return counters.available === 0 ? "sold_out" : "live";
}

/** Builds the view from a stock hash (HGETALL as an object); null when the hash is empty. */
export function stockViewFromHash(id: string, hash: Record<string, string>, nowMs = Date.now()): StockView | null {
  if (hash.total === undefined) return null;
  const num = (field: string) => Number(hash[field] ?? 0);
  const startsAtMs = num("startsAt");
  const endsAtMs = hash.endsAt ? Number(hash.endsAt) : null;
  const available = num("available");
  return {
    id,
    name: hash.name ?? "",
    description: hash.description ?? "",
    price: num("price"),
    currency: hash.currency ?? "",
    total: num("total"),
    available,
    held: num("held"),
    sold: num("sold"),
    perUserLimit: num("perUserLimit"),
    holdSeconds: num("holdSeconds"),
    startsAt: new Date(startsAtMs).toISOString(),
    endsAt: endsAtMs === null ? null : new Date(endsAtMs).toISOString(),
    status: stockStatus({ available, startsAtMs, endsAtMs }, nowMs),
    version: num("version"),
  };
}

/** Flat [field, value, field, value …] (HGETALL as the scripts return it) to an object. */
export function pairsToObject(flat: unknown[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}

export function allocationViewFromHash(allocationId: string, hash: Record<string, string>): AllocationView | null {
  if (hash.stockId === undefined) return null;
  const view: AllocationView = {
    allocationId,
    stockId: hash.stockId,
    userId: hash.userId ?? "",
    quantity: Number(hash.quantity),
    status: (hash.status ?? "held") as AllocationStatus,
    expiresAt: new Date(Number(hash.expiresAt)).toISOString(),
  };
  if (hash.amount) {
    view.amount = Number(hash.amount);
    view.currency = hash.currency ?? "";
  }
  return view;
}
