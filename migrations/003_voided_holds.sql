-- Holds Redis never had, ended by a repair (docs/design.md §11, README "Drift repair").
-- A StockAllocated of a write a failover forgot leaves an order 'held' for ever: no expiry or
-- purchase will come for a hold Redis does not have. `bun run repair` appends a StockSnapshot that
-- lists the stock's live holds; projector-postgres then marks 'voided' every order of the stock that
-- is still 'held', was placed before the snapshot's version and is not in the list (plan.ts, writer.ts).

-- The version of the order's StockAllocated: "placed before the snapshot" is a version comparison,
-- never a time one (clocks and batch order do not matter). NULL until the StockAllocated is applied;
-- an order without it is never voided.
ALTER TABLE orders ADD COLUMN placed_version integer;
-- occurredAt of the snapshot that voided the order; NULL unless status = 'voided'. A real end
-- (purchase, expiry, cancel) that arrives later always wins: it replaces the status and clears this.
ALTER TABLE orders ADD COLUMN voided_at timestamptz;
-- The writer looks up, per batch, which of its orders are voided (a real end then takes the void back
-- out of the analytics): voided orders are rare, so this index is tiny and the look-up nearly free.
CREATE INDEX orders_voided ON orders (allocation_id) WHERE status = 'voided';
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
  CHECK (status IN ('held', 'purchased', 'cancelled', 'expired', 'voided'));

-- Orders projected before this file: their placed_version from the events already applied.
UPDATE orders o SET placed_version = e.version
FROM stock_events e
WHERE e.event_type = 'StockAllocated' AND e.payload->>'allocationId' = o.allocation_id;

-- Each batch looks up the stored snapshots of its stocks (a StockAllocated applied after the snapshot
-- that excludes it is voided on arrival); snapshots are rare, so this index is tiny.
CREATE INDEX stock_events_snapshots ON stock_events (aggregate_id, version) WHERE event_type = 'StockSnapshot';

-- Analytics: holds and units voided, at the minute of the snapshot that voided them. The other
-- columns keep their meaning (facts of events): allocated − purchased − expired − cancelled − voided
-- = units still held (per stock, all time).
ALTER TABLE sales_by_minute ADD COLUMN holds_voided integer NOT NULL DEFAULT 0;
ALTER TABLE sales_by_minute ADD COLUMN units_voided integer NOT NULL DEFAULT 0;
