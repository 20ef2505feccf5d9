/**
 * projector-postgres against the real Kafka and PostgreSQL: events produced straight to a fresh
 * topic (as the relay would), projected into a fresh database.
 */
import { describe, expect, test } from "bun:test";
import type postgres from "postgres";
import { createPostgresProjector } from "../shared/stores/postgres/sink.ts";
import type { StockEvent } from "../shared/domain/events.ts";
import { DLQ_HEADERS } from "../shared/projection/dlq.ts";
import type { Projector } from "../shared/projection/projector.ts";
import { waitForConvergence } from "../shared/verify/convergence.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ database: "pg" });
const topic = fx.topic("pgtopic");

function startProjector(groupId: string): Promise<Projector> {
  const projector = fx.track(createPostgresProjector({ brokers, topic, groupId, sql: fx.db.sql, logger: testLogger }));
  return projector.start().then(() => projector);
}

/** Every read-model row, in primary-key order (recorded_at is wall-clock of the insert, so left out). */
async function snapshot(sql: postgres.Sql) {
  return {
    events: await sql`SELECT event_id, event_type, aggregate_id, version, occurred_at, payload FROM stock_events ORDER BY event_id`,
    stocks: await sql`SELECT * FROM stocks ORDER BY stock_id`,
    orders: await sql`SELECT * FROM orders ORDER BY allocation_id`,
    minutes: await sql`SELECT * FROM sales_by_minute ORDER BY stock_id, minute`,
  };
}

async function waitForZeroLag(projector: Projector) {
  await eventually(async () => [...(await projector.consumer.fetchLag()).values()].every((lag) => lag === 0), {
    timeoutMs: 30_000,
    what: "consumer lag 0",
  });
}

const sim = new StockSim();
let events: StockEvent[] = [];
const groupId = uniqueName("pggroup");

describe("projector-postgres", () => {
  test("projects a realistic stream: counters, orders and analytics match the write side", async () => {
    events = generateWorkload(sim, { count: 6_000, stockCount: 25, prefix: uniqueName("st"), totalPerStock: 400 });
    await produceEvents(fx.producer, topic, events);
    const projector = await startProjector(groupId);

    const mismatches = await waitForConvergence({ expected: async () => sim.expectedCounters(), sql: fx.db.sql, timeoutMs: 20_000 });
    expect(mismatches).toEqual([]);
    await waitForZeroLag(projector);

    const [row] = await fx.db.sql`SELECT count(*)::int AS count FROM stock_events`;
    expect(row!.count).toBe(events.length);

    const orders = await fx.db.sql<{ allocation_id: string; status: string; user_id: string; quantity: number }[]>`
      SELECT allocation_id, status, user_id, quantity FROM orders`;
    expect(orders.length).toBe(sim.holds.size);
    for (const order of orders) {
      const hold = sim.holds.get(order.allocation_id)!;
      expect({ status: order.status, user: order.user_id, quantity: order.quantity }).toEqual({ status: hold.status, user: hold.userId, quantity: hold.quantity });
    }

    const analytics = await fx.db.sql<{ stock_id: string; units_sold: number; expired: number; cancelled: number }[]>`
      SELECT stock_id, sum(units_sold)::int AS units_sold, sum(holds_expired)::int AS expired, sum(holds_cancelled)::int AS cancelled
      FROM sales_by_minute GROUP BY stock_id`;
    const holds = [...sim.holds.values()];
    for (const row of analytics) {
      expect(row.units_sold).toBe(sim.stocks.get(row.stock_id)!.sold);
      expect(row.expired).toBe(holds.filter((h) => h.stockId === row.stock_id && h.status === "expired").length);
      expect(row.cancelled).toBe(holds.filter((h) => h.stockId === row.stock_id && h.status === "cancelled").length);
    }
    expect((await projector.metrics.eventsApplied.get()).values[0]?.value).toBe(events.length);
  }, 60_000);

  test("replay: the whole topic delivered again (offsets reset, and every event produced twice) changes nothing (I3)", async () => {
    const before = await snapshot(fx.db.sql);
    await fx.stopProjectors();
    const admin = fx.kafka.admin();
    await admin.connect();
    await admin.resetOffsets({ groupId, topic, earliest: true });
    await admin.disconnect();
    await produceEvents(fx.producer, topic, events); // duplicates on the topic too, as after relay retries

    const projector = await startProjector(groupId);
    await waitForZeroLag(projector);
    const duplicates = (await projector.metrics.duplicatesSkipped.get()).values[0]?.value;
    const applied = (await projector.metrics.eventsApplied.get()).values[0]?.value ?? 0;
    expect(duplicates).toBe(events.length * 2);
    expect(applied).toBe(0);
    expect(await snapshot(fx.db.sql)).toEqual(before);
  }, 60_000);

  test("a poison message goes to the DLQ with the error in headers; the events after it are projected", async () => {
    const stockId = uniqueName("poison");
    const created = sim.create(stockId, { total: 10 });
    const good1 = sim.allocate(stockId, "p1", 1)!;
    // Passes the schema, but PostgreSQL refuses it (integer out of range): rejected after retries.
    const tooBig = { ...sim.allocate(stockId, "p2", 1)!, payload: { ...good1.payload, allocationId: "s0-bad", quantity: 3_000_000_000 } };
    const good2 = sim.allocate(stockId, "p3", 2)!;
    await fx.producer.send({
      topic,
      messages: [
        { key: stockId, value: JSON.stringify(created) },
        { key: stockId, value: "{this is not json" },
        { key: stockId, value: JSON.stringify(good1) },
        { key: stockId, value: JSON.stringify({ ...good1, eventId: Bun.randomUUIDv7(), schemaVersion: 2 }) },
        { key: stockId, value: JSON.stringify(tooBig), headers: { eventType: "StockAllocated" } },
        { key: stockId, value: JSON.stringify(good2) },
      ],
    });
    // The stock's newest version is good2's; the row converges to it.
    await eventually(async () => {
      const [row] = await fx.db.sql`SELECT version FROM stocks WHERE stock_id = ${stockId}`;
      return row?.version === good2.version;
    }, { what: "events after the poison projected" });
    const [order] = await fx.db.sql`SELECT status, quantity FROM orders WHERE allocation_id = ${good2.payload.allocationId}`;
    expect(order).toMatchObject({ status: "held", quantity: 2 });
    const [bad] = await fx.db.sql`SELECT count(*)::int AS n FROM stock_events WHERE event_id = ${tooBig.eventId}`;
    expect(bad!.n).toBe(0);

    const dlq: Array<{ value: string; headers: Record<string, string> }> = [];
    const consumer = fx.kafka.consumer({ groupId: uniqueName("dlqreader") });
    await consumer.connect();
    await consumer.subscribe({ topic: `${topic}.dlq`, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
        dlq.push({ value: String(message.value), headers });
      },
    });
    await eventually(async () => dlq.length >= 3, { what: "3 DLQ messages", timeoutMs: 20_000 });
    await consumer.disconnect();
    expect(dlq.map((m) => m.headers[DLQ_HEADERS.reason]).sort()).toEqual(["rejected", "unparseable", "unparseable"]);
    const rejected = dlq.find((m) => m.headers[DLQ_HEADERS.reason] === "rejected")!;
    expect(rejected.headers[DLQ_HEADERS.error]).toContain("out of range");
    expect(rejected.headers[DLQ_HEADERS.sourceTopic]).toBe(topic);
    expect(rejected.headers[DLQ_HEADERS.consumerGroup]).toBe(groupId);
    expect(rejected.headers.eventType).toBe("StockAllocated");
    expect(JSON.parse(rejected.value).eventId).toBe(tooBig.eventId);
  }, 60_000);
});
