-- Retention of the read models' event log (bun run retention, docs/webhooks.md "Retention"): the
-- events of a stock whose sale ended long ago are deleted stock by stock; this finds those stocks.
CREATE INDEX stocks_ends_at ON stocks (ends_at) WHERE ends_at IS NOT NULL;
