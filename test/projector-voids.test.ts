/**
 * Repair voids in the real PostgreSQL, whatever the order batches land in (plan.ts's header): a
 * ghost hold (a StockAllocated of a write a failover forgot) becomes 'voided' when the repair
 * snapshot that does not list it is applied, before or after it; real holds never do; a real end
 * always wins; analytics count each void once. The same events, cut into batches in many orders,
 * each into its own stock of one fresh database, must give the same rows.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { StockEvent } from "../shared/domain/events.ts";
import { applyEventsToPostgres } from "../shared/stores/postgres/writer.ts";
import { createTestDatabase, type TestDatabase } from "./support/read-side.ts";
import { repairScenario, StockSim } from "../shared/dev/stock-sim.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase("voids");
});
afterAll(async () => {
  await db?.drop();
});

/** The scenario for one stock (ghost hold, phantom purchase, real holds), plus a real end after the snapshot. */
function events(stockId: string) {
  const sim = new StockSim();
  const e = repairScenario(sim, stockId);
  // Ends of holds after the snapshot: the live one is cancelled (v9).
  const cancel = sim.release(e.live.payload.allocationId, "cancelled");
  return { e, cancel, all: [...Object.values(e), cancel] as StockEvent[] };
}

/** Deterministic shuffle (mulberry32) so a failure can be re-run. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let a = seed >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

test("voids are the same whatever the batch order; a redelivery changes nothing", async () => {
  const orders: Record<string, StockEvent[][]> = {};
  const scenarios = new Map<string, ReturnType<typeof events>>();
  const cut = (name: string, make: (all: StockEvent[]) => StockEvent[][]) => {
    const s = events(`v-${name}`);
    scenarios.set(name, s);
    orders[name] = make(s.all);
  };
  cut("one-batch", (all) => [all]);
  cut("in-order", (all) => batches(all, 1));
  cut("reversed", (all) => batches([...all].reverse(), 1));
  cut("snapshot-first", (all) => [[all.find((x) => x.eventType === "StockSnapshot")!], all.filter((x) => x.eventType !== "StockSnapshot")]);
  for (let seed = 1; seed <= 8; seed++) cut(`shuffle${seed}`, (all) => batches(shuffled(all, seed), 1 + (seed % 3)));

  for (const [, list] of Object.entries(orders)) for (const batch of list) await applyEventsToPostgres(db.sql, batch);
  // Redelivery of everything (new batches, same events): no row moves, nothing counts twice.
  const before = await db.sql`SELECT * FROM orders ORDER BY allocation_id`;
  const minutesBefore = await db.sql`SELECT * FROM sales_by_minute ORDER BY stock_id, minute`;
  for (const [, list] of Object.entries(orders)) await applyEventsToPostgres(db.sql, list.flat());
  expect(await db.sql`SELECT * FROM orders ORDER BY allocation_id`).toEqual(before);
  expect(await db.sql`SELECT * FROM sales_by_minute ORDER BY stock_id, minute`).toEqual(minutesBefore);

  for (const [name, s] of scenarios) {
    const stockId = `v-${name}`;
    const rows = await db.sql<{ user_id: string; status: string; placed_version: number | null; voided_at: Date | null; released_at: Date | null }[]>`
      SELECT user_id, status, placed_version, voided_at, released_at FROM orders WHERE stock_id = ${stockId}`;
    const byUser = Object.fromEntries(rows.map((r) => [r.user_id, r]));
    const statuses = Object.fromEntries(rows.map((r) => [r.user_id, r.status]));
    expect([name, statuses]).toEqual([name, { liv: "cancelled", buy: "purchased", ghost: "voided", phantom: "purchased", exp: "expired", after: "held" }]);
    expect(byUser.ghost!.voided_at?.toISOString()).toBe(s.e.snapshot.occurredAt);
    expect(byUser.ghost!.placed_version).toBe(5);
    expect(byUser.after!.placed_version).toBe(8);
    // A real end keeps its own time and no void time, even when a snapshot had voided it first.
    expect([name, byUser.exp!.voided_at, byUser.exp!.released_at?.toISOString()]).toEqual([name, null, s.e.expiry.occurredAt]);
    const [m] = await db.sql<{ allocated: number; sold: number; expired: number; cancelled: number; holds_voided: number; voided: number }[]>`
      SELECT sum(units_allocated)::int AS allocated, sum(units_sold)::int AS sold, sum(units_expired)::int AS expired,
             sum(units_cancelled)::int AS cancelled, sum(holds_voided)::int AS holds_voided, sum(units_voided)::int AS voided
      FROM sales_by_minute WHERE stock_id = ${stockId}`;
    expect([name, m]).toEqual([name, { allocated: 55, sold: 7, expired: 3, cancelled: 1, holds_voided: 1, voided: 40 }]);
    // allocated − sold − expired − cancelled − voided = units in 'held' orders (the real hold placed after the snapshot).
    expect(m!.allocated - m!.sold - m!.expired - m!.cancelled - m!.voided).toBe(4);
  }
});

test("a real end that lands after the void replaces it, and analytics take the void back", async () => {
  // A hold that really ended before the snapshot, whose end arrives last: the snapshot voids it first.
  const sim = new StockSim();
  const stockId = "v-late-end";
  const created = sim.create(stockId, { total: 10 });
  const hold = sim.allocate(stockId, "late", 2)!;
  const end = sim.release(hold.payload.allocationId, "expired");
  const snapshot = sim.snapshot(stockId);
  for (const batch of [[created, hold], [snapshot]]) await applyEventsToPostgres(db.sql, batch);
  const voided = await db.sql<{ status: string; holds_voided: number }[]>`
    SELECT o.status, (SELECT sum(holds_voided)::int FROM sales_by_minute WHERE stock_id = ${stockId}) AS holds_voided
    FROM orders o WHERE o.stock_id = ${stockId}`;
  expect([...voided]).toEqual([{ status: "voided", holds_voided: 1 }]);
  await applyEventsToPostgres(db.sql, [end]);
  const [row] = await db.sql<{ status: string; holds_voided: number; units_voided: number; units_expired: number }[]>`
    SELECT o.status, sum(m.holds_voided)::int AS holds_voided, sum(m.units_voided)::int AS units_voided, sum(m.units_expired)::int AS units_expired
    FROM orders o JOIN sales_by_minute m USING (stock_id) WHERE o.stock_id = ${stockId} GROUP BY o.status`;
  expect(row).toEqual({ status: "expired", holds_voided: 0, units_voided: 0, units_expired: 2 });
  const [order] = await db.sql<{ voided_at: Date | null }[]>`SELECT voided_at FROM orders WHERE stock_id = ${stockId}`;
  expect(order!.voided_at).toBeNull();
});
