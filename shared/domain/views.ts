/**
 * The shapes clients see (docs/design.md §10), and how they are read from Redis hashes.
 *
 * One source: each view is a zod shape here; its TypeScript type is `z.infer` of it, and the api's
 * OpenAPI schemas are `z.object(shape)` of the same fields (services/api/schemas.ts), so a field
 * added here is a field of the type, the validation and the document at once.
 */
import { z } from "zod";

export const STOCK_STATUSES = ["upcoming", "live", "sold_out", "ended"] as const;
export type StockStatus = (typeof STOCK_STATUSES)[number];

/**
 * 'voided' exists only in the read side: a hold Redis never had (the event of a write a failover forgot),
 * ended by a repair snapshot (docs/design.md §11). Redis itself never gives a hold that status.
 */
export const ALLOCATION_STATUSES = ["held", "purchased", "cancelled", "expired", "voided"] as const;
export type AllocationStatus = (typeof ALLOCATION_STATUSES)[number];

/** Why units went back: the StockReleased reasons, and the final statuses of a hold that ended unbought. */
export const RELEASE_REASONS = ["expired", "cancelled"] as const;

const int = () => z.number().int();

export const stockViewShape = {
  id: z.string(),
  name: z.string(),
  description: z.string(),
  price: int(),
  currency: z.string(),
  total: int(),
  available: int(),
  held: int(),
  sold: int(),
  perUserLimit: int(),
  holdSeconds: int(),
  startsAt: z.string(),
  endsAt: z.string().nullable(),
  status: z.enum(STOCK_STATUSES),
  version: int(),
  /** Present when the stock sells through a waiting room (docs/waiting-room.md). */
  waitingRoom: z.object({ enabled: z.literal(true), admissionTtlSeconds: int() }).optional(),
};
export type StockView = z.infer<z.ZodObject<typeof stockViewShape>>;

export const allocationViewShape = {
  allocationId: z.string(),
  stockId: z.string(),
  userId: z.string(),
  quantity: int(),
  status: z.enum(ALLOCATION_STATUSES),
  expiresAt: z.string(),
  amount: int().optional(),
  currency: z.string().optional(),
};
export type AllocationView = z.infer<z.ZodObject<typeof allocationViewShape>>;

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
    ...(hash.roomTtl === undefined ? {} : { waitingRoom: { enabled: true as const, admissionTtlSeconds: num("roomTtl") } }),
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

/** A stock's counters and version as one store has them (the verifier compares every read model's with Redis's). */
export interface StockCounters {
  stockId: string;
  available: number;
  held: number;
  sold: number;
  version: number;
}
