/**
 * projector-postgres' store side: a batch is ONE statement, one round trip, atomic on its own.
 *
 *   fresh   INSERT the batch into stock_events ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id
 *   s, o    upsert one row per stock (guarded by version) and per allocation, planned (plan.ts) from
 *           all the batch's events, each row written only if `fresh` holds an event of its stock /
 *           allocation (a batch of redeliveries writes nothing)
 *   ss      the stored repair snapshots (with liveHolds) of the stocks that have a 'held' order row in
 *           the batch: an order placed below one's version and not listed is inserted 'voided'
 *   v       the batch's new snapshots void the stored 'held' orders they exclude (plan.ts's header
 *           has the rule); orders the batch writes itself are left to `o`
 *   m       add to sales_by_minute what the events in `fresh` count, aggregated in SQL from the rows
 *           `fresh` returns (counters are additive: a redelivered event must not count twice; the
 *           same rules as addToMinute in plan.ts, which plans the tests' expectations), and the
 *           voids: +1 for each order that became 'voided' (o, v), −1 for a voided one a real end
 *           replaced, at the void's minute. `prior` (the batch's orders that were voided before the
 *           statement; partial index orders_voided, so nearly free) says which rows changed. It is
 *           read in the statement's snapshot: a stock's events come from one partition, applied by
 *           one writer at a time (the rebuild's swap locks the tables), so no other writer moves those
 *           rows meanwhile. The exception is a rebalance while the old owner still finishes a batch:
 *           if, in that window, a snapshot voids a real hold whose (earlier) end lands concurrently
 *           in the other writer's batch, holds_voided keeps one void it should have taken back.
 *           The order rows themselves stay exact (ON CONFLICT merges with the latest row).
 *
 * Why one statement: the stock and order rows merge idempotently with what is stored (version
 * guard, LEAST/COALESCE; see the ON CONFLICT clauses), so they do not need to know which events
 * were new before they are planned; only the additive minute counters do, and SQL filters those by
 * `fresh` itself. That takes the batch from BEGIN + insert + three upserts + COMMIT (four round
 * trips, each a wake-up of the backend on a busy machine) to one; data-modifying CTEs run in one
 * snapshot and commit together, so the read models never see half a batch.
 *
 * Rows travel as one JSON parameter per CTE (json_to_recordset), so a batch of any size never hits
 * the 65,535 bind-parameter limit. Parameters are bound as text (`::text::json`): bound to a json
 * parameter, postgres.js would JSON-encode the string again. Table names are unqualified: the
 * connection's search_path chooses the schema (the rebuild command writes into a fresh one).
 */
import type postgres from "postgres";
import type { StockEvent } from "../../domain/events.ts";
import { planPostgresBatch } from "./plan.ts";

export interface PostgresApplyResult {
  /** Events that were new and are now reflected in the read models. */
  applied: StockEvent[];
  /** Events already in stock_events (or repeated inside the batch): skipped. */
  duplicates: number;
}

function prepare(events: readonly StockEvent[]) {
  // Repeats inside one batch (a relay retry can land both copies in one fetch) are dropped here.
  const unique = new Map<string, StockEvent>();
  for (const event of events) if (!unique.has(event.eventId)) unique.set(event.eventId, event);

  // Sorted by (stock, version): concurrent writers (a rebuild next to the live projector) take the
  // index locks in the same order and cannot deadlock each other.
  const rows = [...unique.values()]
    .sort((a, b) => (a.aggregateId < b.aggregateId ? -1 : a.aggregateId > b.aggregateId ? 1 : a.version - b.version))
    .map((e) => ({
      event_id: e.eventId,
      event_type: e.eventType,
      aggregate_id: e.aggregateId,
      version: e.version,
      occurred_at: e.occurredAt,
      payload: e.payload,
    }));
  return { unique, rows };
}

export async function applyEventsToPostgres(sql: postgres.Sql, events: readonly StockEvent[]): Promise<PostgresApplyResult> {
  return applyEventsWith(sql, events);
}

/** The same, inside a transaction the caller owns (the rebuild's swap copies late events with it; the probe rolls back). */
export async function applyEventsInTransaction(tx: postgres.TransactionSql, events: readonly StockEvent[]): Promise<PostgresApplyResult> {
  return applyEventsWith(tx, events);
}

async function applyEventsWith(sql: postgres.Sql | postgres.TransactionSql, events: readonly StockEvent[]): Promise<PostgresApplyResult> {
  const { unique, rows } = prepare(events);
  if (unique.size === 0) return { applied: [], duplicates: events.length };

  const all = [...unique.values()];
  const plan = planPostgresBatch(all, { minutes: false });
  // Stocks whose batch leaves an order 'held': only their stored snapshots can void it (ss).
  // Only a batch with a new snapshot can void stored orders (v): most batches leave that part out.
  const voidStored = plan.snapshots.length > 0;
  const heldStocks = [...new Set(plan.orders.filter((o) => o.status === "held").map((o) => o.stock_id))];
  const inserted = await sql<{ event_id: string }[]>`
    WITH fresh AS (
      INSERT INTO stock_events (event_id, event_type, aggregate_id, version, occurred_at, payload)
      SELECT event_id, event_type, aggregate_id, version, occurred_at, payload
      FROM json_to_recordset(${JSON.stringify(rows)}::text::json)
        AS x(event_id uuid, event_type text, aggregate_id text, version integer, occurred_at timestamptz, payload jsonb)
      ON CONFLICT (event_id) DO NOTHING
      RETURNING event_id, event_type, aggregate_id, occurred_at, payload->>'allocationId' AS allocation_id,
                (payload->>'quantity')::integer AS quantity, (payload->>'amount')::bigint AS amount, payload->>'reason' AS reason
    ),
    s AS (
      INSERT INTO stocks (stock_id, name, description, price, currency, total, per_user_limit, hold_seconds,
                          starts_at, ends_at, created_at, available, held, sold, version, updated_at,
                          first_unavailable_at, sold_out_at)
      SELECT stock_id, name, description, price, currency, total, per_user_limit, hold_seconds,
             starts_at, ends_at, created_at, available, held, sold, version, updated_at,
             first_unavailable_at, sold_out_at
      FROM json_to_recordset(${JSON.stringify(plan.stocks)}::text::json) AS x(
        stock_id text, name text, description text, price bigint, currency text, total integer,
        per_user_limit integer, hold_seconds integer, starts_at timestamptz, ends_at timestamptz,
        created_at timestamptz, available integer, held integer, sold integer, version integer,
        updated_at timestamptz, first_unavailable_at timestamptz, sold_out_at timestamptz)
      WHERE x.stock_id IN (SELECT aggregate_id FROM fresh)
      ON CONFLICT (stock_id) DO UPDATE SET
        name           = COALESCE(EXCLUDED.name, stocks.name),
        description    = COALESCE(EXCLUDED.description, stocks.description),
        price          = COALESCE(EXCLUDED.price, stocks.price),
        currency       = COALESCE(EXCLUDED.currency, stocks.currency),
        total          = COALESCE(EXCLUDED.total, stocks.total),
        per_user_limit = COALESCE(EXCLUDED.per_user_limit, stocks.per_user_limit),
        hold_seconds   = COALESCE(EXCLUDED.hold_seconds, stocks.hold_seconds),
        starts_at      = COALESCE(EXCLUDED.starts_at, stocks.starts_at),
        ends_at        = CASE WHEN EXCLUDED.created_at IS NOT NULL THEN EXCLUDED.ends_at ELSE stocks.ends_at END,
        created_at     = COALESCE(EXCLUDED.created_at, stocks.created_at),
        available      = CASE WHEN EXCLUDED.version > stocks.version THEN EXCLUDED.available ELSE stocks.available END,
        held           = CASE WHEN EXCLUDED.version > stocks.version THEN EXCLUDED.held ELSE stocks.held END,
        sold           = CASE WHEN EXCLUDED.version > stocks.version THEN EXCLUDED.sold ELSE stocks.sold END,
        updated_at     = CASE WHEN EXCLUDED.version > stocks.version THEN EXCLUDED.updated_at ELSE stocks.updated_at END,
        version        = GREATEST(EXCLUDED.version, stocks.version),
        first_unavailable_at = LEAST(EXCLUDED.first_unavailable_at, stocks.first_unavailable_at),
        sold_out_at          = LEAST(EXCLUDED.sold_out_at, stocks.sold_out_at)
    ),
    prior AS (
      SELECT allocation_id, voided_at FROM orders
      WHERE status = 'voided' AND allocation_id IN (SELECT allocation_id FROM fresh)
    ),
    ss AS (
      SELECT aggregate_id AS stock_id, version, occurred_at, payload->'liveHolds' AS live_holds
      FROM stock_events
      WHERE event_type = 'StockSnapshot' AND payload ? 'liveHolds'
        AND aggregate_id IN (SELECT jsonb_array_elements_text(${JSON.stringify(heldStocks)}::text::jsonb))
    ),
    o AS (
      INSERT INTO orders (allocation_id, stock_id, user_id, quantity, status, placed_version, voided_at, amount, currency,
                          placed_at, held_at, expires_at, purchased_at, released_at, updated_at)
      SELECT x.allocation_id, x.stock_id, x.user_id, x.quantity,
             CASE WHEN x.status = 'held' AND sv.version IS NOT NULL THEN 'voided' ELSE x.status END,
             x.placed_version, COALESCE(x.voided_at, sv.occurred_at), x.amount, x.currency, x.placed_at, x.held_at,
             x.expires_at, x.purchased_at, x.released_at, GREATEST(x.updated_at, sv.occurred_at)
      FROM json_to_recordset(${JSON.stringify(plan.orders)}::text::json) AS x(
        allocation_id text, stock_id text, user_id text, quantity integer, status text, placed_version integer,
        voided_at timestamptz, amount bigint, currency text, placed_at timestamptz, held_at timestamptz,
        expires_at timestamptz, purchased_at timestamptz, released_at timestamptz, updated_at timestamptz)
      LEFT JOIN LATERAL (
        SELECT ss.version, ss.occurred_at FROM ss
        WHERE x.status = 'held' AND ss.stock_id = x.stock_id AND ss.version > x.placed_version
          AND NOT (ss.live_holds ? x.allocation_id)
        ORDER BY ss.version LIMIT 1
      ) sv ON true
      WHERE x.allocation_id IN (SELECT allocation_id FROM fresh)
      ON CONFLICT (allocation_id) DO UPDATE SET
        -- mergeOrderStatus (plan.ts): a real end wins, then 'voided', then 'held'.
        status       = CASE WHEN EXCLUDED.status IN ('purchased', 'expired', 'cancelled') THEN EXCLUDED.status
                            WHEN orders.status IN ('purchased', 'expired', 'cancelled') THEN orders.status
                            WHEN 'voided' IN (EXCLUDED.status, orders.status) THEN 'voided'
                            ELSE 'held' END,
        placed_version = COALESCE(orders.placed_version, EXCLUDED.placed_version),
        -- Only a voided order has a void time: a real end clears it (and m takes the void back).
        voided_at    = CASE WHEN 'voided' IN (EXCLUDED.status, orders.status)
                             AND orders.status NOT IN ('purchased', 'expired', 'cancelled')
                             AND EXCLUDED.status NOT IN ('purchased', 'expired', 'cancelled')
                            THEN COALESCE(orders.voided_at, EXCLUDED.voided_at) END,
        amount       = COALESCE(EXCLUDED.amount, orders.amount),
        currency     = COALESCE(EXCLUDED.currency, orders.currency),
        placed_at    = LEAST(EXCLUDED.placed_at, orders.placed_at),
        held_at      = COALESCE(orders.held_at, EXCLUDED.held_at),
        expires_at   = COALESCE(orders.expires_at, EXCLUDED.expires_at),
        purchased_at = COALESCE(orders.purchased_at, EXCLUDED.purchased_at),
        released_at  = COALESCE(orders.released_at, EXCLUDED.released_at),
        updated_at   = GREATEST(EXCLUDED.updated_at, orders.updated_at)
      RETURNING allocation_id, stock_id, quantity, status, voided_at
    ),
    ${voidStored ? sql`v AS (
      UPDATE orders SET status = 'voided', voided_at = pick.occurred_at, updated_at = GREATEST(orders.updated_at, pick.occurred_at)
      FROM (
        SELECT DISTINCT ON (c.allocation_id) c.allocation_id, s.occurred_at
        FROM json_to_recordset(${JSON.stringify(plan.snapshots)}::text::json)
          AS s(event_id uuid, stock_id text, version integer, occurred_at timestamptz, live_holds jsonb)
        JOIN orders c ON c.stock_id = s.stock_id AND c.status = 'held' AND c.placed_version < s.version
                     AND NOT (s.live_holds ? c.allocation_id)
        WHERE s.event_id IN (SELECT event_id FROM fresh)
        ORDER BY c.allocation_id, s.version
      ) pick
      WHERE orders.allocation_id = pick.allocation_id AND orders.status = 'held'
        AND orders.allocation_id NOT IN (SELECT allocation_id FROM fresh WHERE allocation_id IS NOT NULL)
      RETURNING orders.stock_id, orders.quantity, orders.voided_at
    ),` : sql``}
    voids AS (
      SELECT o.stock_id, o.voided_at AS at, 1 AS holds, o.quantity AS units
      FROM o WHERE o.status = 'voided' AND o.allocation_id NOT IN (SELECT allocation_id FROM prior)
      UNION ALL
      SELECT o.stock_id, p.voided_at, -1, -o.quantity
      FROM o JOIN prior p USING (allocation_id)
      WHERE o.status <> 'voided'
      ${voidStored ? sql`UNION ALL
      SELECT stock_id, voided_at, 1, quantity FROM v` : sql``}
    ),
    m AS (
      INSERT INTO sales_by_minute (stock_id, minute, holds_placed, units_allocated, purchases, units_sold, revenue,
                                   holds_expired, units_expired, holds_cancelled, units_cancelled, holds_voided, units_voided)
      SELECT stock_id, minute, sum(holds_placed), sum(units_allocated), sum(purchases), sum(units_sold), sum(revenue),
             sum(holds_expired), sum(units_expired), sum(holds_cancelled), sum(units_cancelled), sum(holds_voided), sum(units_voided)
      FROM (
        SELECT aggregate_id AS stock_id, date_trunc('minute', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute,
               count(*) FILTER (WHERE event_type = 'StockAllocated') AS holds_placed,
               coalesce(sum(quantity) FILTER (WHERE event_type = 'StockAllocated'), 0) AS units_allocated,
               count(*) FILTER (WHERE event_type = 'PurchaseCompleted') AS purchases,
               coalesce(sum(quantity) FILTER (WHERE event_type = 'PurchaseCompleted'), 0) AS units_sold,
               coalesce(sum(amount) FILTER (WHERE event_type = 'PurchaseCompleted'), 0) AS revenue,
               count(*) FILTER (WHERE event_type = 'StockReleased' AND reason = 'expired') AS holds_expired,
               coalesce(sum(quantity) FILTER (WHERE event_type = 'StockReleased' AND reason = 'expired'), 0) AS units_expired,
               count(*) FILTER (WHERE event_type = 'StockReleased' AND reason IS DISTINCT FROM 'expired') AS holds_cancelled,
               coalesce(sum(quantity) FILTER (WHERE event_type = 'StockReleased' AND reason IS DISTINCT FROM 'expired'), 0) AS units_cancelled,
               0 AS holds_voided, 0 AS units_voided
        FROM fresh
        WHERE event_type <> 'StockCreated'
        GROUP BY 1, 2
        UNION ALL
        SELECT stock_id, date_trunc('minute', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 0, 0, 0, 0, 0, 0, 0, 0, 0, sum(holds), sum(units)
        FROM voids
        GROUP BY 1, 2
      ) counted
      GROUP BY 1, 2
      ORDER BY 1, 2
      ON CONFLICT (stock_id, minute) DO UPDATE SET
        holds_placed    = sales_by_minute.holds_placed + EXCLUDED.holds_placed,
        units_allocated = sales_by_minute.units_allocated + EXCLUDED.units_allocated,
        purchases       = sales_by_minute.purchases + EXCLUDED.purchases,
        units_sold      = sales_by_minute.units_sold + EXCLUDED.units_sold,
        revenue         = sales_by_minute.revenue + EXCLUDED.revenue,
        holds_expired   = sales_by_minute.holds_expired + EXCLUDED.holds_expired,
        units_expired   = sales_by_minute.units_expired + EXCLUDED.units_expired,
        holds_cancelled = sales_by_minute.holds_cancelled + EXCLUDED.holds_cancelled,
        units_cancelled = sales_by_minute.units_cancelled + EXCLUDED.units_cancelled,
        holds_voided    = sales_by_minute.holds_voided + EXCLUDED.holds_voided,
        units_voided    = sales_by_minute.units_voided + EXCLUDED.units_voided
    )
    SELECT event_id FROM fresh`;
  const fresh = new Set(inserted.map((r) => r.event_id));
  const applied = all.filter((e) => fresh.has(e.eventId.toLowerCase()));
  return { applied, duplicates: events.length - applied.length };
}
