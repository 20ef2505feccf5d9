-- Read models fed only by events from Kafka (DESIGN §6), written by projector-postgres.
-- Applied once by `bun run migrate`, in file-name order, inside a transaction.
--
-- Names are never schema-qualified: `bun run rebuild postgres` replays the same files into a fresh
-- schema (search_path set to it), fills it from the topic, then moves the tables into place in one
-- transaction (docs/read-side.md).
--
-- Every write the projector makes is order-independent (version guards, COALESCE, LEAST, additive
-- counters of events that were new to stock_events), so a replay, a duplicate or two writers during a
-- rebuild converge to the same rows.

-- Append-only log of every event applied: dedupe by event_id (exactly-once effect), audit, replay.
CREATE TABLE stock_events (
  event_id     uuid        PRIMARY KEY,
  event_type   text        NOT NULL,
  aggregate_id text        NOT NULL,
  version      integer     NOT NULL,
  occurred_at  timestamptz NOT NULL,
  payload      jsonb       NOT NULL,
  recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_events_aggregate ON stock_events (aggregate_id, version);

-- One row per stock: counters as of `version`; older events never overwrite newer ones.
-- The static fields come from StockCreated; they are nullable only so that a counters event that is
-- applied before its StockCreated (e.g. the creation went to the DLQ) still has a row to land in.
CREATE TABLE stocks (
  stock_id             text        PRIMARY KEY,
  name                 text,
  description          text,
  price                bigint,
  currency             text,
  total                integer,
  per_user_limit       integer,
  hold_seconds         integer,
  starts_at            timestamptz,
  ends_at              timestamptz,
  created_at           timestamptz,
  available            integer     NOT NULL,
  held                 integer     NOT NULL,
  sold                 integer     NOT NULL,
  version              integer     NOT NULL,
  -- occurredAt of the event that produced `version`.
  updated_at           timestamptz NOT NULL,
  -- First moment nothing was left to allocate (available = 0; held units may still come back).
  first_unavailable_at timestamptz,
  -- First moment every unit was sold (available = 0 and held = 0, i.e. sold = total).
  sold_out_at          timestamptz
);

-- One row per allocation: held → purchased | cancelled | expired.
-- held_at / expires_at come from StockAllocated, purchased_at / amount from PurchaseCompleted,
-- released_at from StockReleased; placed_at is the sort key (held_at once known).
CREATE TABLE orders (
  allocation_id text        PRIMARY KEY,
  stock_id      text        NOT NULL,
  user_id       text        NOT NULL,
  quantity      integer     NOT NULL,
  status        text        NOT NULL CHECK (status IN ('held', 'purchased', 'cancelled', 'expired')),
  amount        bigint,
  currency      text,
  placed_at     timestamptz NOT NULL,
  held_at       timestamptz,
  expires_at    timestamptz,
  purchased_at  timestamptz,
  released_at   timestamptz,
  updated_at    timestamptz NOT NULL
);
-- Order history: newest first, keyset-paginated on (placed_at, allocation_id).
CREATE INDEX orders_user_newest ON orders (user_id, placed_at DESC, allocation_id DESC);
CREATE INDEX orders_stock ON orders (stock_id);

-- Analytics: per stock and minute (of occurredAt), what happened. Units and holds are both kept:
-- "holds released by reason" counts holds, sell-through counts units.
CREATE TABLE sales_by_minute (
  stock_id         text        NOT NULL,
  minute           timestamptz NOT NULL,
  holds_placed     integer     NOT NULL DEFAULT 0,
  units_allocated  integer     NOT NULL DEFAULT 0,
  purchases        integer     NOT NULL DEFAULT 0,
  units_sold       integer     NOT NULL DEFAULT 0,
  revenue          bigint      NOT NULL DEFAULT 0,
  holds_expired    integer     NOT NULL DEFAULT 0,
  units_expired    integer     NOT NULL DEFAULT 0,
  holds_cancelled  integer     NOT NULL DEFAULT 0,
  units_cancelled  integer     NOT NULL DEFAULT 0,
  PRIMARY KEY (stock_id, minute)
);
CREATE INDEX sales_by_minute_minute ON sales_by_minute (minute);
