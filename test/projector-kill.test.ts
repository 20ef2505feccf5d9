/**
 * kill -9 of the projector-postgres binary in the middle of its work, then a restart: nothing is
 * lost (offsets are committed only after the transaction) and nothing is counted twice (events are
 * deduplicated by event_id inside the transaction that applies them).
 */
import { expect, test } from "bun:test";
import { waitForConvergence } from "../shared/verify/convergence.ts";
import { brokers, eventually, readSideFixtures } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { serviceProcesses } from "./support/processes.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ database: "kill" });
const topic = fx.topic("killtopic");
const groupId = uniqueName("killgroup");
const projectors = serviceProcesses("projector-postgres", () => ({
  DATABASE_URL: fx.db.url,
  KAFKA_BROKERS: brokers.join(","),
  KAFKA_TOPIC: topic,
  PROJECTOR_GROUP_ID: groupId,
}));

async function countEvents(): Promise<number> {
  const [row] = await fx.db.sql`SELECT count(*)::int AS n FROM stock_events`;
  return row!.n as number;
}

test("kill -9 mid-batch, restart: no loss, no double count", async () => {
  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 40_000, stockCount: 50, prefix: uniqueName("k"), totalPerStock: 100_000 });
  await produceEvents(fx.producer, topic, events, 5_000);

  const first = projectors.start();
  // Kill it while it is busy: some events in, far from all.
  const seenBeforeKill = await eventually(async () => {
    const n = await countEvents();
    return n > 2_000 ? n : undefined;
  }, { timeoutMs: 30_000, intervalMs: 10, what: "first events projected" });
  first.kill("SIGKILL");
  await first.exited;
  const atKill = await countEvents();
  expect(atKill).toBeLessThan(events.length); // it really died mid-way

  const second = projectors.start();
  const mismatches = await waitForConvergence({ expected: async () => sim.expectedCounters(), sql: fx.db.sql, timeoutMs: 60_000 });
  expect(mismatches).toEqual([]);
  expect(await countEvents()).toBe(events.length);

  // No double count: every additive figure equals the write side's.
  const holds = [...sim.holds.values()];
  const [totals] = await fx.db.sql`
    SELECT sum(holds_placed)::int AS placed, sum(units_sold)::int AS sold, sum(purchases)::int AS purchases,
           sum(holds_cancelled)::int AS cancelled, sum(holds_expired)::int AS expired FROM sales_by_minute`;
  expect(totals).toEqual({
    placed: holds.length,
    sold: [...sim.stocks.values()].reduce((n, s) => n + s.sold, 0),
    purchases: holds.filter((h) => h.status === "purchased").length,
    cancelled: holds.filter((h) => h.status === "cancelled").length,
    expired: holds.filter((h) => h.status === "expired").length,
  });
  const [orders] = await fx.db.sql`SELECT count(*)::int AS n FROM orders`;
  expect(orders!.n).toBe(holds.length);

  // The admin port: liveness, readiness, metrics.
  const admin = `http://127.0.0.1:${projectors.adminPort}`;
  expect((await fetch(`${admin}/healthz`)).status).toBe(200);
  await eventually(async () => (await fetch(`${admin}/readyz`)).status === 200, { what: "ready" });
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  for (const name of ["flashsale_projector_events_applied_total", "flashsale_projector_duplicates_skipped_total", "flashsale_projector_batch_size_bucket", "flashsale_projector_batch_duration_seconds_bucket", "flashsale_projector_consumer_lag", "flashsale_projector_freshness_seconds_bucket", "flashsale_projector_dlq_messages_total"]) {
    expect(metrics).toContain(name);
  }
  expect(metrics).toContain('service="projector-postgres"');

  second.kill("SIGTERM");
  expect(await second.exited).toBe(0); // graceful: finishes, commits, exits 0
  console.log(`kill -9 after ${seenBeforeKill} events (${atKill} committed at kill), ${events.length} in total`);
}, 120_000);
