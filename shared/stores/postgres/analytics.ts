/**
 * Sales analytics from PostgreSQL: per stock (units sold, revenue, holds released by reason,
 * sell-through, time to sell-out) and a per-minute series, both from sales_by_minute + stocks.
 * Voided holds (a repair ended holds Redis never had, docs/design.md §11) are counted apart from the
 * releases, which stay facts of events: unitsAllocated − unitsSold − unitsReleased − unitsVoided = held.
 */
import type postgres from "postgres";
import { z } from "zod";
import type { StockCounters } from "../../domain/views.ts";

const int = () => z.number().int();
const byReason = z.object({ expired: int(), cancelled: int() });

/** The report's shapes, as the api answers them; the route's OpenAPI schemas are built from these. */
export const stockSalesShape = {
  stockId: z.string(),
  name: z.string().nullable(),
  currency: z.string().nullable(),
  price: int().nullable(),
  total: int().nullable(),
  available: int(),
  held: int(),
  sold: int(),
  holdsPlaced: int(),
  unitsAllocated: int(),
  purchases: int(),
  unitsSold: int(),
  revenue: int().describe("minor units of `currency`"),
  holdsReleased: byReason,
  unitsReleased: byReason,
  holdsVoided: int().describe("holds Redis never had (events of forgotten writes), ended by a repair snapshot"),
  unitsVoided: int(),
  sellThrough: z.number().nullable().describe("sold / total, 0..1 (null while the StockCreated is unknown)"),
  saleStartedAt: z.string().nullable(),
  firstUnavailableAt: z.string().nullable().describe("first moment nothing was left to allocate"),
  soldOutAt: z.string().nullable().describe("first moment every unit was sold"),
  timeToUnavailableSeconds: z.number().nullable(),
  timeToSellOutSeconds: z.number().nullable(),
};
type StockSales = z.infer<z.ZodObject<typeof stockSalesShape>>;

export const minutePointShape = {
  minute: z.string(),
  holdsPlaced: int(),
  unitsAllocated: int(),
  purchases: int(),
  unitsSold: int(),
  holdsExpired: int(),
  holdsCancelled: int(),
  unitsExpired: int(),
  unitsCancelled: int(),
  holdsVoided: int().describe("at the minute of the repair snapshot that voided them"),
  unitsVoided: int(),
  revenue: z.record(z.string(), int()).describe("per currency, minor units (different currencies are never added up)"),
};
type MinutePoint = z.infer<z.ZodObject<typeof minutePointShape>>;

export interface SalesReport {
  generatedAt: string;
  window: { from: string; to: string };
  stocks: StockSales[];
  series: MinutePoint[];
}

export interface SalesQuery {
  stockId?: string;
  /** Series window; default the last 60 minutes up to now. Per-stock figures are all-time. */
  from?: Date;
  to?: Date;
  /** Most stocks returned, by revenue then id. */
  limit: number;
}

const MAX_SERIES_MINUTES = 24 * 60;
const num = (v: string | number | null) => (v === null ? 0 : Number(v));
const iso = (d: Date | null) => (d === null ? null : d.toISOString());
const seconds = (from: Date | null, to: Date | null) => (from && to ? Math.max(0, (to.getTime() - from.getTime()) / 1000) : null);

export class InvalidWindowError extends Error {}

export async function salesReport(sql: postgres.Sql, query: SalesQuery, nowMs = Date.now()): Promise<SalesReport> {
  const to = query.to ?? new Date(nowMs);
  const from = query.from ?? new Date(to.getTime() - 60 * 60_000);
  if (from.getTime() >= to.getTime()) throw new InvalidWindowError("`from` must be before `to`");
  if (to.getTime() - from.getTime() > MAX_SERIES_MINUTES * 60_000) throw new InvalidWindowError("the window is at most 24 hours");
  const stockFilter = query.stockId === undefined ? sql`` : sql`AND stock_id = ${query.stockId}`;

  const [stockRows, seriesRows] = await Promise.all([
    sql<
      Array<{
        stock_id: string;
        name: string | null;
        currency: string | null;
        price: string | null;
        total: number | null;
        available: number;
        held: number;
        sold: number;
        started_at: Date | null;
        first_unavailable_at: Date | null;
        sold_out_at: Date | null;
        holds_placed: string | null;
        units_allocated: string | null;
        purchases: string | null;
        units_sold: string | null;
        revenue: string | null;
        holds_expired: string | null;
        units_expired: string | null;
        holds_cancelled: string | null;
        units_cancelled: string | null;
        holds_voided: string | null;
        units_voided: string | null;
      }>
    >`
      WITH totals AS (
        SELECT stock_id, sum(holds_placed) AS holds_placed, sum(units_allocated) AS units_allocated,
               sum(purchases) AS purchases, sum(units_sold) AS units_sold, sum(revenue) AS revenue,
               sum(holds_expired) AS holds_expired, sum(units_expired) AS units_expired,
               sum(holds_cancelled) AS holds_cancelled, sum(units_cancelled) AS units_cancelled,
               sum(holds_voided) AS holds_voided, sum(units_voided) AS units_voided
        FROM sales_by_minute WHERE true ${stockFilter}
        GROUP BY stock_id
      )
      SELECT s.stock_id, s.name, s.currency, s.price, s.total, s.available, s.held, s.sold,
             GREATEST(s.starts_at, s.created_at) AS started_at, s.first_unavailable_at, s.sold_out_at,
             t.holds_placed, t.units_allocated, t.purchases, t.units_sold, t.revenue,
             t.holds_expired, t.units_expired, t.holds_cancelled, t.units_cancelled, t.holds_voided, t.units_voided
      FROM stocks s LEFT JOIN totals t ON t.stock_id = s.stock_id
      WHERE true ${query.stockId === undefined ? sql`` : sql`AND s.stock_id = ${query.stockId}`}
      ORDER BY COALESCE(t.revenue, 0) DESC, s.stock_id
      LIMIT ${query.limit}`,
    sql<
      Array<{
        minute: Date;
        currency: string | null;
        holds_placed: string;
        units_allocated: string;
        purchases: string;
        units_sold: string;
        revenue: string;
        holds_expired: string;
        units_expired: string;
        holds_cancelled: string;
        units_cancelled: string;
        holds_voided: string;
        units_voided: string;
      }>
    >`
      SELECT m.minute, s.currency, sum(m.holds_placed) AS holds_placed, sum(m.units_allocated) AS units_allocated,
             sum(m.purchases) AS purchases, sum(m.units_sold) AS units_sold, sum(m.revenue) AS revenue,
             sum(m.holds_expired) AS holds_expired, sum(m.units_expired) AS units_expired,
             sum(m.holds_cancelled) AS holds_cancelled, sum(m.units_cancelled) AS units_cancelled,
             sum(m.holds_voided) AS holds_voided, sum(m.units_voided) AS units_voided
      FROM sales_by_minute m LEFT JOIN stocks s ON s.stock_id = m.stock_id
      WHERE m.minute >= ${from} AND m.minute < ${to}
        ${query.stockId === undefined ? sql`` : sql`AND m.stock_id = ${query.stockId}`}
      GROUP BY m.minute, s.currency
      ORDER BY m.minute`,
  ]);

  const stocks: StockSales[] = stockRows.map((r) => ({
    stockId: r.stock_id,
    name: r.name,
    currency: r.currency,
    price: r.price === null ? null : Number(r.price),
    total: r.total,
    available: r.available,
    held: r.held,
    sold: r.sold,
    holdsPlaced: num(r.holds_placed),
    unitsAllocated: num(r.units_allocated),
    purchases: num(r.purchases),
    unitsSold: num(r.units_sold),
    revenue: num(r.revenue),
    holdsReleased: { expired: num(r.holds_expired), cancelled: num(r.holds_cancelled) },
    unitsReleased: { expired: num(r.units_expired), cancelled: num(r.units_cancelled) },
    holdsVoided: num(r.holds_voided),
    unitsVoided: num(r.units_voided),
    sellThrough: r.total ? r.sold / r.total : r.total === 0 ? 1 : null,
    saleStartedAt: iso(r.started_at),
    firstUnavailableAt: iso(r.first_unavailable_at),
    soldOutAt: iso(r.sold_out_at),
    timeToUnavailableSeconds: seconds(r.started_at, r.first_unavailable_at),
    timeToSellOutSeconds: seconds(r.started_at, r.sold_out_at),
  }));

  const byMinute = new Map<string, MinutePoint>();
  for (const r of seriesRows) {
    const minute = r.minute.toISOString();
    let point = byMinute.get(minute);
    if (!point) {
      point = {
        minute,
        holdsPlaced: 0,
        unitsAllocated: 0,
        purchases: 0,
        unitsSold: 0,
        holdsExpired: 0,
        holdsCancelled: 0,
        unitsExpired: 0,
        unitsCancelled: 0,
        holdsVoided: 0,
        unitsVoided: 0,
        revenue: {},
      };
      byMinute.set(minute, point);
    }
    point.holdsPlaced += num(r.holds_placed);
    point.unitsAllocated += num(r.units_allocated);
    point.purchases += num(r.purchases);
    point.unitsSold += num(r.units_sold);
    point.holdsExpired += num(r.holds_expired);
    point.holdsCancelled += num(r.holds_cancelled);
    point.unitsExpired += num(r.units_expired);
    point.unitsCancelled += num(r.units_cancelled);
    point.holdsVoided += num(r.holds_voided);
    point.unitsVoided += num(r.units_voided);
    const revenue = num(r.revenue);
    if (revenue > 0) {
      const currency = r.currency ?? "unknown";
      point.revenue[currency] = (point.revenue[currency] ?? 0) + revenue;
    }
  }

  return {
    generatedAt: new Date(nowMs).toISOString(),
    window: { from: from.toISOString(), to: to.toISOString() },
    stocks,
    series: [...byMinute.values()],
  };
}

/** Stocks per query when reading counters back (the verifier reads thousands). */
const COUNTER_CHUNK = 1_000;

/** The counters of these stocks as the read model has them (the verifier's I6, repair's highest version seen). */
export async function readPostgresCounters(sql: postgres.Sql, stockIds: readonly string[]): Promise<Map<string, StockCounters>> {
  const out = new Map<string, StockCounters>();
  for (let i = 0; i < stockIds.length; i += COUNTER_CHUNK) {
    const part = stockIds.slice(i, i + COUNTER_CHUNK);
    const rows = await sql<StockCounters[]>`
      SELECT stock_id AS "stockId", available, held, sold, version FROM stocks WHERE stock_id = ANY(${part as string[]})`;
    for (const row of rows) out.set(row.stockId, { ...row });
  }
  return out;
}
