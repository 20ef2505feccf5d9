/**
 * Order history from PostgreSQL: a user's allocations, newest first, keyset-paginated on
 * (placed_at, allocation_id) — stable under inserts, no OFFSET scans (index orders_user_newest).
 */
import type postgres from "postgres";
import { z } from "zod";
import { ALLOCATION_STATUSES } from "../../domain/views.ts";
import { decodeCursor, encodeCursor } from "../cursor.ts";

/** One order as the api answers it; the route's OpenAPI schema is z.object(orderViewShape). */
export const orderViewShape = {
  allocationId: z.string(),
  stockId: z.string(),
  stockName: z.string().nullable(),
  userId: z.string(),
  quantity: z.number().int(),
  status: z.enum(ALLOCATION_STATUSES),
  amount: z.number().int().nullable(),
  currency: z.string().nullable(),
  placedAt: z.string(),
  expiresAt: z.string().nullable(),
  purchasedAt: z.string().nullable(),
  releasedAt: z.string().nullable().describe("when the hold ended unbought: expired, cancelled, or voided by a repair"),
  updatedAt: z.string(),
};
type OrderView = z.infer<z.ZodObject<typeof orderViewShape>>;

export interface OrderPage {
  items: OrderView[];
  /** Pass back as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

interface OrderCursor {
  /** placed_at in microseconds since the epoch (exact, unlike a JS Date). */
  t: string;
  id: string;
}

export class InvalidCursorError extends Error {
  constructor() {
    super("invalid cursor");
    this.name = "InvalidCursorError";
  }
}

/**
 * The latest placed_at a real cursor can carry, in microseconds: 9999-12-31T23:59:59.999999Z. A larger
 * `t` (a tampered cursor) overflowed bigint or timestamptz in PostgreSQL, a 500 instead of a 400.
 */
const MAX_CURSOR_MICROS = 253_402_300_799_999_999n;

function parseOrderCursor(cursor: string): OrderCursor {
  const value = decodeCursor(cursor) as Partial<OrderCursor> | null;
  if (!value || typeof value.t !== "string" || !/^\d{1,18}$/.test(value.t) || BigInt(value.t) > MAX_CURSOR_MICROS) {
    throw new InvalidCursorError();
  }
  if (typeof value.id !== "string" || value.id.length > 200) throw new InvalidCursorError();
  return { t: value.t, id: value.id };
}

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export async function listOrdersForUser(sql: postgres.Sql, userId: string, options: { limit: number; cursor?: string }): Promise<OrderPage> {
  const after = options.cursor ? parseOrderCursor(options.cursor) : null;
  const limit = options.limit;
  const rows = await sql<
    Array<{
      allocation_id: string;
      stock_id: string;
      stock_name: string | null;
      user_id: string;
      quantity: number;
      status: OrderView["status"];
      amount: string | null;
      currency: string | null;
      placed_at: Date;
      placed_us: string;
      expires_at: Date | null;
      purchased_at: Date | null;
      released_at: Date | null;
      updated_at: Date;
    }>
  >`
    SELECT o.allocation_id, o.stock_id, s.name AS stock_name, o.user_id, o.quantity, o.status, o.amount, o.currency,
           o.placed_at, (extract(epoch FROM o.placed_at) * 1000000)::bigint::text AS placed_us,
           o.expires_at, o.purchased_at,
           -- A voided hold ended at the repair snapshot that voided it (migrations/003_voided_holds.sql).
           COALESCE(o.released_at, CASE WHEN o.status = 'voided' THEN o.voided_at END) AS released_at, o.updated_at
    FROM orders o LEFT JOIN stocks s ON s.stock_id = o.stock_id
    WHERE o.user_id = ${userId}
      ${
        after
          ? sql`AND (o.placed_at, o.allocation_id) < (timestamptz 'epoch' + ${after.t}::bigint * interval '1 microsecond', ${after.id})`
          : sql``
      }
    ORDER BY o.placed_at DESC, o.allocation_id DESC
    LIMIT ${limit + 1}`;
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map((r) => ({
      allocationId: r.allocation_id,
      stockId: r.stock_id,
      stockName: r.stock_name,
      userId: r.user_id,
      quantity: r.quantity,
      status: r.status,
      amount: r.amount === null ? null : Number(r.amount),
      currency: r.currency,
      placedAt: r.placed_at.toISOString(),
      expiresAt: iso(r.expires_at),
      purchasedAt: iso(r.purchased_at),
      releasedAt: iso(r.released_at),
      updatedAt: r.updated_at.toISOString(),
    })),
    nextCursor: rows.length > limit && last ? encodeCursor({ t: last.placed_us, id: last.allocation_id } satisfies OrderCursor) : null,
  };
}
