-- Read models fed only by events from Kafka (DESIGN §6).
-- Applied once by `bun run migrate`, in file-name order, inside a transaction.

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
CREATE TABLE stocks (
  stock_id       text        PRIMARY KEY,
  name           text        NOT NULL,
  description    text        NOT NULL DEFAULT '',
  price          bigint      NOT NULL,
  currency       text        NOT NULL,
  total          integer     NOT NULL,
  available      integer     NOT NULL,
  held           integer     NOT NULL,
  sold           integer     NOT NULL,
  per_user_limit integer     NOT NULL,
  hold_seconds   integer     NOT NULL,
  starts_at      timestamptz NOT NULL,
  ends_at        timestamptz,
  version        integer     NOT NULL,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL,
  sold_out_at    timestamptz
);

-- One row per allocation: held → purchased | cancelled | expired.
CREATE TABLE orders (
  allocation_id text        PRIMARY KEY,
  stock_id      text        NOT NULL,
  user_id       text        NOT NULL,
  quantity      integer     NOT NULL,
  status        text        NOT NULL CHECK (status IN ('held', 'purchased', 'cancelled', 'expired')),
  amount        bigint,
  currency      text,
  held_at       timestamptz NOT NULL,
  expires_at    timestamptz NOT NULL,
  purchased_at  timestamptz,
  released_at   timestamptz,
  updated_at    timestamptz NOT NULL
);
CREATE INDEX orders_user_newest ON orders (user_id, held_at DESC, allocation_id DESC);
CREATE INDEX orders_stock ON orders (stock_id);

-- Analytics: per stock and minute, what happened.
CREATE TABLE sales_by_minute (
  stock_id           text        NOT NULL,
  minute             timestamptz NOT NULL,
  units_allocated    integer     NOT NULL DEFAULT 0,
  units_sold         integer     NOT NULL DEFAULT 0,
  revenue            bigint      NOT NULL DEFAULT 0,
  released_expired   integer     NOT NULL DEFAULT 0,
  released_cancelled integer     NOT NULL DEFAULT 0,
  PRIMARY KEY (stock_id, minute)
);
