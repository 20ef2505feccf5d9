-- rebuild: skip
-- The notifier's own state (services/notifier, README "Webhooks"): endpoints, the events it has
-- taken from Kafka, one delivery per (endpoint, event) and the dead letters. This is not a read
-- model: `bun run rebuild postgres` does not replay this file (the "rebuild: skip" line above), so a
-- rebuild never swaps these tables for empty ones.

-- Where to deliver. `source` is 'config' for the endpoint of WEBHOOK_URL (re-written by the notifier at
-- start) and 'api' for those added through POST /api/webhooks. Removing one sets removed_at: its
-- delivery history stays readable, nothing more is sent to it.
CREATE TABLE webhook_endpoints (
  endpoint_id text        PRIMARY KEY,
  url         text        NOT NULL CHECK (url ~ '^https?://'),
  -- Standard Webhooks secret, "whsec_" + base64 of the key. It signs every request, so it is kept as is.
  secret      text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
  -- NULL = every event type.
  event_types text[],
  description text,
  source      text        NOT NULL CHECK (source IN ('config', 'api')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  removed_at  timestamptz
);

-- Each event once, with the exact body that is signed and sent (the envelope as JSON).
CREATE TABLE webhook_events (
  event_id    uuid        PRIMARY KEY,
  event_type  text        NOT NULL,
  stock_id    text        NOT NULL,
  version     integer     NOT NULL,
  occurred_at timestamptz NOT NULL,
  body        text        NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);

-- The delivery log: one row per (endpoint, event). stock_id/version are copied from the event: the
-- delivery loop orders each stock's deliveries by version without reading the bodies.
CREATE TABLE webhook_deliveries (
  endpoint_id     text        NOT NULL REFERENCES webhook_endpoints (endpoint_id),
  event_id        uuid        NOT NULL REFERENCES webhook_events (event_id),
  stock_id        text        NOT NULL,
  version         integer     NOT NULL,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- HTTP status of the last attempt; NULL when it got no response (refused, timeout, …).
  last_status     integer,
  -- A short excerpt of the last response body or the error, never more (receivers' bodies are not ours to keep).
  last_error      text        CHECK (length(last_error) <= 256),
  last_attempt_at timestamptz,
  delivered_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (endpoint_id, event_id)
);
-- An endpoint's pending work (the delivery loop's load and re-scan, the backlog gauge).
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, created_at) WHERE status = 'pending';

-- Deliveries that used up the retry schedule. `bun run notifier:resend` puts them back to pending
-- (attempts from 0) and deletes them here; the delivery log keeps the history.
CREATE TABLE webhook_dead_letters (
  endpoint_id text        NOT NULL,
  event_id    uuid        NOT NULL,
  stock_id    text        NOT NULL,
  version     integer     NOT NULL,
  attempts    integer     NOT NULL,
  last_status integer,
  last_error  text,
  died_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (endpoint_id, event_id),
  FOREIGN KEY (endpoint_id, event_id) REFERENCES webhook_deliveries (endpoint_id, event_id)
);
