/**
 * The usual alternative to our Redis write side, for the allocation benchmark: allocation in
 * PostgreSQL, written as well as we would write it, behind the very same Hono app (it implements
 * StockCommands, so auth, validation, problem+json, metrics and logging are ours, unchanged).
 *
 * One transaction per allocation, same rules as allocate.lua:
 *   - stock exists, sale window open, enough units (a snapshot read answers sold_out without
 *     touching the row lock, so rejections do not queue behind buyers)
 *   - per-user limit: upsert of the buyer's units, guarded by the limit (a row per user: no
 *     contention between users)
 *   - conditional decrement `UPDATE stock SET available = available - q … WHERE id = $1 AND
 *     available >= q` — the hot row, taken as late as possible so its lock is held only until commit
 *   - the allocation row (with its due-time index, as the expirer needs) and the outbox row
 * Any failed check rolls the whole transaction back. Pooled connections (postgres.js, `max`
 * configurable), prepared statements (postgres.js' default).
 *
 * Two shapes, both measured:
 *   tx  client-side transaction: BEGIN; buyer upsert; one statement that decrements the stock and
 *       inserts allocation + outbox rows (CTE); COMMIT — 4 round trips, the row lock spans ~1
 *   fn  the same in one PL/pgSQL function call: 1 round trip, the row lock spans only the server side
 * Durability matches our Redis default (appendfsync everysec): synchronous_commit = off, i.e. a crash
 * may lose the last fraction of a second of commits, consistently. `on` is available for reference.
 */
import type postgres from "postgres";
import { DomainError } from "../../shared/domain/errors.ts";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import type { AllocateInput, AllocateResult, CreateStockInput, StockCommands } from "../../shared/redis/commands.ts";
import { FAST } from "../../shared/redis/durability.ts";
import { stockStatus, type AllocationView, type StockView } from "../../shared/domain/views.ts";

export type PgMode = "tx" | "fn";

export const PG_BASELINE_SCHEMA = `
CREATE TABLE stock (
  id             text PRIMARY KEY,
  name           text NOT NULL,
  description    text NOT NULL DEFAULT '',
  price          bigint NOT NULL,
  currency       text NOT NULL,
  total          integer NOT NULL,
  available      integer NOT NULL CHECK (available >= 0),
  held           integer NOT NULL DEFAULT 0,
  sold           integer NOT NULL DEFAULT 0,
  per_user_limit integer NOT NULL,
  hold_seconds   integer NOT NULL,
  starts_at      timestamptz NOT NULL,
  ends_at        timestamptz,
  version        integer NOT NULL
);
CREATE TABLE stock_buyer (
  stock_id text NOT NULL,
  user_id  text NOT NULL,
  units    integer NOT NULL,
  PRIMARY KEY (stock_id, user_id)
);
CREATE TABLE allocation (
  id         text PRIMARY KEY,
  stock_id   text NOT NULL,
  user_id    text NOT NULL,
  quantity   integer NOT NULL,
  status     text NOT NULL,
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE INDEX allocation_due ON allocation (expires_at) WHERE status = 'held';
CREATE TABLE outbox (
  id           bigserial PRIMARY KEY,
  event_id     uuid NOT NULL,
  event_type   text NOT NULL,
  aggregate_id text NOT NULL,
  version      integer NOT NULL,
  payload      jsonb NOT NULL,
  occurred_at  timestamptz NOT NULL
);

-- fn mode: the whole allocation in one call. Failed checks RAISE, so the statement (and with it the
-- autocommit transaction) rolls back; the client maps the message to the domain error.
CREATE FUNCTION bench_allocate(p_stock text, p_user text, p_qty integer, p_alloc text, p_event uuid)
RETURNS TABLE (available integer, held integer, sold integer, version integer, expires_at timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE
  s stock%ROWTYPE;
  t timestamptz := clock_timestamp();
  v_available integer; v_held integer; v_sold integer; v_version integer; v_expires timestamptz;
BEGIN
  SELECT * INTO s FROM stock WHERE id = p_stock;
  IF NOT FOUND THEN RAISE EXCEPTION 'not_found'; END IF;
  IF t < s.starts_at THEN RAISE EXCEPTION 'not_started'; END IF;
  IF s.ends_at IS NOT NULL AND t >= s.ends_at THEN RAISE EXCEPTION 'ended'; END IF;
  IF s.available < p_qty THEN RAISE EXCEPTION 'sold_out'; END IF;
  IF p_qty > s.per_user_limit THEN RAISE EXCEPTION 'limit_exceeded'; END IF;
  INSERT INTO stock_buyer AS b (stock_id, user_id, units) VALUES (p_stock, p_user, p_qty)
    ON CONFLICT (stock_id, user_id) DO UPDATE SET units = b.units + EXCLUDED.units
    WHERE b.units + EXCLUDED.units <= s.per_user_limit;
  IF NOT FOUND THEN RAISE EXCEPTION 'limit_exceeded'; END IF;
  UPDATE stock AS x SET available = x.available - p_qty, held = x.held + p_qty, version = x.version + 1
    WHERE x.id = p_stock AND x.available >= p_qty
    RETURNING x.available, x.held, x.sold, x.version INTO v_available, v_held, v_sold, v_version;
  IF NOT FOUND THEN RAISE EXCEPTION 'sold_out'; END IF;
  v_expires := t + make_interval(secs => s.hold_seconds);
  INSERT INTO allocation VALUES (p_alloc, p_stock, p_user, p_qty, 'held', v_expires, t);
  INSERT INTO outbox (event_id, event_type, aggregate_id, version, payload, occurred_at)
    VALUES (p_event, 'StockAllocated', p_stock, v_version,
            jsonb_build_object('allocationId', p_alloc, 'userId', p_user, 'quantity', p_qty, 'expiresAt', v_expires,
                               'available', v_available, 'held', v_held, 'sold', v_sold), t);
  RETURN QUERY SELECT v_available, v_held, v_sold, v_version, v_expires;
END
$fn$;
`;

interface StockRow {
  id: string;
  name: string;
  description: string;
  price: string;
  currency: string;
  total: number;
  available: number;
  held: number;
  sold: number;
  per_user_limit: number;
  hold_seconds: number;
  starts_at: Date;
  ends_at: Date | null;
  version: number;
}

function viewOf(r: StockRow): StockView {
  const startsAtMs = r.starts_at.getTime();
  const endsAtMs = r.ends_at ? r.ends_at.getTime() : null;
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    price: Number(r.price),
    currency: r.currency,
    total: r.total,
    available: r.available,
    held: r.held,
    sold: r.sold,
    perUserLimit: r.per_user_limit,
    holdSeconds: r.hold_seconds,
    startsAt: r.starts_at.toISOString(),
    endsAt: r.ends_at ? r.ends_at.toISOString() : null,
    status: stockStatus({ available: r.available, startsAtMs, endsAtMs }, Date.now()),
    version: r.version,
  };
}

const CODES = new Set(["not_found", "not_started", "ended", "sold_out", "limit_exceeded"]);

/** A domain outcome raised inside the transaction; rolls it back and becomes a DomainError. */
class Rejected extends Error {}

function domainError(code: string, stockId: string): DomainError {
  switch (code) {
    case "not_found":
      return new DomainError("not_found", "no such stock", { stockId });
    case "not_started":
      return new DomainError("not_started", "the sale has not started yet", { stockId });
    case "ended":
      return new DomainError("ended", "the sale has ended", { stockId });
    case "sold_out":
      return new DomainError("sold_out", "not enough units left", { stockId });
    default:
      return new DomainError("limit_exceeded", "per-user limit reached for this stock", { stockId });
  }
}

export function createPgStockCommands(sql: postgres.Sql, mode: PgMode): StockCommands {
  const notHere = () => {
    throw new Error("not part of the PostgreSQL baseline (only allocation is benchmarked)");
  };

  async function allocateTx(input: AllocateInput, allocationId: string, eventId: string): Promise<{ expiresAt: Date }> {
    return sql.begin(async (tx) => {
      const [s] = await tx<{ available: number; per_user_limit: number; hold_seconds: number; open: boolean; started: boolean }[]>`
        SELECT available, per_user_limit, hold_seconds, now() >= starts_at AS started, (ends_at IS NULL OR now() < ends_at) AS open
        FROM stock WHERE id = ${input.stockId}`;
      if (!s) throw new Rejected("not_found");
      if (!s.started) throw new Rejected("not_started");
      if (!s.open) throw new Rejected("ended");
      if (s.available < input.quantity) throw new Rejected("sold_out");
      if (input.quantity > s.per_user_limit) throw new Rejected("limit_exceeded");
      const buyer = await tx`
        INSERT INTO stock_buyer AS b (stock_id, user_id, units) VALUES (${input.stockId}, ${input.userId}, ${input.quantity})
        ON CONFLICT (stock_id, user_id) DO UPDATE SET units = b.units + EXCLUDED.units
        WHERE b.units + EXCLUDED.units <= ${s.per_user_limit}
        RETURNING units`;
      if (buyer.length === 0) throw new Rejected("limit_exceeded");
      // The hot row last: decrement, allocation row and outbox row in one statement, then COMMIT.
      const [row] = await tx<{ version: number; expires_at: Date }[]>`
        WITH s AS (
          UPDATE stock SET available = available - ${input.quantity}, held = held + ${input.quantity}, version = version + 1
          WHERE id = ${input.stockId} AND available >= ${input.quantity}
          RETURNING available, held, sold, version, clock_timestamp() AS t, clock_timestamp() + make_interval(secs => hold_seconds) AS expires_at
        ), a AS (
          INSERT INTO allocation SELECT ${allocationId}::text, ${input.stockId}::text, ${input.userId}::text, ${input.quantity}::int, 'held', s.expires_at, s.t FROM s
        ), o AS (
          INSERT INTO outbox (event_id, event_type, aggregate_id, version, payload, occurred_at)
          SELECT ${eventId}::uuid, 'StockAllocated', ${input.stockId}::text, s.version,
                 jsonb_build_object('allocationId', ${allocationId}::text, 'userId', ${input.userId}::text, 'quantity', ${input.quantity}::int,
                                    'expiresAt', s.expires_at, 'available', s.available, 'held', s.held, 'sold', s.sold), s.t
          FROM s
        )
        SELECT version, expires_at FROM s`;
      if (!row) throw new Rejected("sold_out");
      return { expiresAt: row.expires_at };
    }) as Promise<{ expiresAt: Date }>;
  }

  async function allocateFn(input: AllocateInput, allocationId: string, eventId: string): Promise<{ expiresAt: Date }> {
    try {
      const [row] = await sql<{ expires_at: Date }[]>`
        SELECT expires_at FROM bench_allocate(${input.stockId}, ${input.userId}, ${input.quantity}, ${allocationId}, ${eventId})`;
      return { expiresAt: row!.expires_at };
    } catch (err) {
      const message = (err as { message?: string }).message ?? "";
      if (CODES.has(message)) throw new Rejected(message);
      throw err;
    }
  }

  return {
    keys: createKeyLayout("pg", 1),
    // PostgreSQL commits before it answers: no barrier after.
    durability: FAST,

    async createStock(input: CreateStockInput): Promise<StockView> {
      const [row] = await sql<StockRow[]>`
        INSERT INTO stock (id, name, description, price, currency, total, available, per_user_limit, hold_seconds, starts_at, ends_at, version)
        VALUES (${input.id ?? Bun.randomUUIDv7()}, ${input.name}, ${input.description ?? ""}, ${input.price}, ${input.currency ?? "EUR"},
                ${input.quantity}, ${input.quantity}, ${input.perUserLimit ?? input.quantity}, ${input.holdSeconds ?? 600},
                ${input.startsAt ? new Date(input.startsAt) : new Date()}, ${input.endsAt ? new Date(input.endsAt) : null}, 1)
        ON CONFLICT (id) DO NOTHING
        RETURNING *`;
      if (!row) throw new DomainError("stock_exists", `stock ${input.id} already exists`, { stockId: input.id });
      return viewOf(row);
    },

    async allocate(input: AllocateInput): Promise<AllocateResult> {
      // Idempotency-Key is not part of the benchmark (it sends none); refuse rather than pretend.
      if (input.idempotencyKey !== undefined) throw new Error("the PostgreSQL baseline does not implement Idempotency-Key");
      const allocationId = `s0-${Bun.randomUUIDv7()}`;
      const eventId = Bun.randomUUIDv7();
      try {
        const { expiresAt } = mode === "fn" ? await allocateFn(input, allocationId, eventId) : await allocateTx(input, allocationId, eventId);
        const allocation: AllocationView = {
          allocationId,
          stockId: input.stockId,
          userId: input.userId,
          quantity: input.quantity,
          status: "held",
          expiresAt: expiresAt.toISOString(),
        };
        return { allocation, replayed: false, version: null }; // a baseline: no Consistency-Token
      } catch (err) {
        if (err instanceof Rejected) throw domainError(err.message, input.stockId);
        throw err;
      }
    },

    async getStock(stockId: string): Promise<StockView | null> {
      const [row] = await sql<StockRow[]>`SELECT * FROM stock WHERE id = ${stockId}`;
      return row ? viewOf(row) : null;
    },

    purchase: notHere,
    cancel: notHere,
    expire: notHere,
    getAllocation: notHere,
  };
}

/** Conservation and per-user limit in the baseline's tables, so its figures are from a correct run. */
export async function checkPgBaseline(sql: postgres.Sql): Promise<string[]> {
  const problems: string[] = [];
  const stocks = await sql<{ id: string; total: number; available: number; held: number; sold: number; version: number; per_user_limit: number }[]>`
    SELECT id, total, available, held, sold, version, per_user_limit FROM stock`;
  const allocated = new Map(
    (await sql<{ stock_id: string; units: number; n: number }[]>`
      SELECT stock_id, sum(quantity)::int AS units, count(*)::int AS n FROM allocation GROUP BY stock_id`).map((r) => [r.stock_id, r]),
  );
  const events = new Map((await sql<{ id: string; n: number }[]>`SELECT aggregate_id AS id, count(*)::int AS n FROM outbox GROUP BY 1`).map((r) => [r.id, r.n]));
  const over = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM stock_buyer b JOIN stock s ON s.id = b.stock_id WHERE b.units > s.per_user_limit`;
  for (const s of stocks) {
    if (s.available < 0 || s.available + s.held + s.sold !== s.total) problems.push(`${s.id}: ${s.available}+${s.held}+${s.sold} != ${s.total}`);
    const a = allocated.get(s.id);
    if ((a?.units ?? 0) !== s.held) problems.push(`${s.id}: allocation rows hold ${a?.units ?? 0} units, stock says held ${s.held}`);
    if ((events.get(s.id) ?? 0) !== s.version - 1) problems.push(`${s.id}: ${events.get(s.id) ?? 0} outbox rows for version ${s.version}`);
  }
  if (over[0]!.n > 0) problems.push(`${over[0]!.n} buyer(s) over the per-user limit`);
  return problems;
}
