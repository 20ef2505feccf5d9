/**
 * Drift, detected and repaired (docs/design.md §11). The pipeline runs (relay + both projectors,
 * in-process); then a version reaches Kafka with content Redis never had — as after a failover to a
 * lagging replica, here produced directly — and Redis's own event at that version follows it. The
 * version-guarded read models keep the first copy: they drifted, and no later event at that version
 * fixes them. `verify` names the stock with the repair command; `repairStock` (bun run repair)
 * appends a StockSnapshot above every version seen, listing the stock's live holds as Redis has
 * them; the relay publishes it, both projectors apply it: the stock's counters in both read models
 * equal Redis again, the ghost's order (a hold Redis never had) is 'voided' and counted as such in
 * analytics, real holds stay as they are, and verify finds nothing at all.
 */
import { afterAll, expect, test } from "bun:test";
import { MAX_SNAPSHOT_LIVE_HOLDS } from "../shared/domain/events.ts";
import { salesReport } from "../shared/stores/postgres/analytics.ts";
import { listOrdersForUser } from "../shared/stores/postgres/orders.ts";
import { ACKS_ALL } from "../shared/kafka/producer.ts";
import { createPostgresProjector } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import { readRedisCounters, waitForConvergence } from "../shared/verify/convergence.ts";
import { MAX_DUE_SCAN, repairStock } from "../shared/verify/repair.ts";
import { verify } from "../shared/verify/verify.ts";
import { main as repairMain } from "../scripts/repair.ts";
import { brokers, readSideFixtures, testLogger } from "./support/read-side.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { createHarness } from "./support/relay-harness.ts";

const fx = readSideFixtures({ database: "repair", search: true });
const h = createHarness("repair");
afterAll(() => h.cleanup());

test(
  "a version with content Redis never had: verify names the stock, repair brings both read models back",
  async () => {
    const alias = fx.alias("repairstocks");
    const relay = h.relay();
    const projectors = [
      fx.track(createPostgresProjector({ brokers, topic: h.topic, groupId: uniqueName("reppg"), sql: fx.db.sql, logger: testLogger })),
      fx.track(createSearchProjector({ brokers, topic: h.topic, groupId: uniqueName("repes"), es: fx.es, index: alias, logger: testLogger })),
    ];
    await relay.start();
    const stockId = "drifty";
    await h.commands.createStock({ id: stockId, name: "drift", price: 500, quantity: 100, perUserLimit: 100 });
    const real: string[] = [];
    for (let i = 0; i < 5; i++) real.push((await h.commands.allocate({ stockId, userId: `u${i}`, quantity: 1 })).allocation.allocationId);
    await h.commands.purchase({ allocationId: real[0]!, userId: "u0" });
    // A neighbour on the same shard (same due-holds zset): its holds are not the stock's.
    const neighbour = ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"].find((id) => h.keys.shardOf(id) === h.keys.shardOf(stockId))!;
    await h.commands.createStock({ id: neighbour, name: "next door", price: 100, quantity: 10 });
    await h.commands.allocate({ stockId: neighbour, userId: "n", quantity: 1 });
    await Promise.all(projectors.map((p) => p.start()));
    const expected = async () => [...(await readRedisCounters(h.redis, h.keys, [stockId])).values()];
    expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);

    // A forgotten write's event at version 7, then Redis's own version 7 (other content).
    const at6 = (await h.commands.getStock(stockId))!;
    expect(at6.version).toBe(7);
    const ghost = {
      eventId: Bun.randomUUIDv7(),
      eventType: "StockAllocated",
      schemaVersion: 1,
      aggregateType: "Stock",
      aggregateId: stockId,
      version: 8,
      occurredAt: new Date().toISOString(),
      payload: { allocationId: `s${h.keys.shardOf(stockId)}-${Bun.randomUUIDv7()}`, userId: "ghost", quantity: 40, expiresAt: new Date(Date.now() + 600_000).toISOString(), available: at6.available - 40, held: at6.held + 40, sold: at6.sold },
    };
    const producer = fx.kafka.producer();
    await producer.connect();
    await producer.send({ topic: h.topic, acks: ACKS_ALL, messages: [{ key: stockId, value: JSON.stringify(ghost), headers: { eventType: ghost.eventType, schemaVersion: "1", eventId: ghost.eventId } }] });
    await producer.disconnect();
    await Bun.sleep(2_000); // the projectors take the ghost first
    real.push((await h.commands.allocate({ stockId, userId: "real", quantity: 1 })).allocation.allocationId);

    const kafka = { brokers: stackEnv.KAFKA_BROKERS.split(","), topic: h.topic };
    const check = () => verify({ redis: h.redis, prefix: h.prefix, layers: ["redis", "kafka", "postgres", "search"], kafka, sql: fx.db.sql, es: fx.es, esIndex: alias, deadlineMs: 8_000 });
    const drifted = await check();
    const messages = drifted.findings.map((f) => `${f.layer}: ${f.message}`);
    console.log(`[repair] before: ${messages.join(" | ")}`);
    expect(drifted.ok).toBe(false);
    for (const layer of ["kafka", "postgres", "search"]) {
      expect(drifted.findings.some((f) => f.layer === layer && f.stockId === stockId && f.message.includes(`bun run repair ${stockId}`))).toBe(true);
    }

    // The command line, as an operator runs it (here with the test's prefix, topic and stores).
    const env = { REDIS_KEY_PREFIX: h.prefix, OUTBOX_SHARDS: String(h.keys.shards), KAFKA_TOPIC: h.topic, DATABASE_URL: fx.db.url, ELASTICSEARCH_INDEX_ALIAS: alias };
    const saved = { ...process.env };
    Object.assign(process.env, env);
    let code: number;
    try {
      code = await repairMain([stockId]);
    } finally {
      for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
    }
    expect(code).toBe(0);
    const repaired = (await h.commands.getStock(stockId))!;
    expect(repaired.version).toBe(9); // above the 8 Kafka and the read models have

    expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);
    // The snapshot listed the stock's live holds as Redis has them: the four real ones, not the
    // bought one, not the ghost, not the neighbour's.
    const [snap] = await fx.db.sql<{ live: string[] }[]>`
      SELECT payload->'liveHolds' AS live FROM stock_events WHERE aggregate_id = ${stockId} AND event_type = 'StockSnapshot'`;
    expect(snap!.live).toEqual(real.slice(1).sort());
    // Later events follow the snapshot as usual; a hold placed after it is listed nowhere and stays held.
    const after = (await h.commands.allocate({ stockId, userId: "after", quantity: 2 })).allocation.allocationId;
    expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);
    const clean = await check();
    console.log(`[repair] after: ${clean.findings.map((f) => `${f.layer}: ${f.message}`).join(" | ") || "clean"}`);
    // The whole read side is back: Kafka's history has a new baseline, the counters of both read
    // models equal Redis, and the orders add up (held = Redis's held, purchased = sold).
    expect(clean.findings).toEqual([]);
    expect(clean.ok).toBe(true);

    // As the api answers order history: the ghost's order is voided at the snapshot; real ones keep their status.
    const ghostOrders = await listOrdersForUser(fx.db.sql, "ghost", { limit: 10 });
    expect(ghostOrders.items.map((o) => [o.allocationId, o.status, o.quantity])).toEqual([[ghost.payload.allocationId, "voided", 40]]);
    const [snapTime] = await fx.db.sql<{ at: Date }[]>`SELECT occurred_at AS at FROM stock_events WHERE aggregate_id = ${stockId} AND event_type = 'StockSnapshot'`;
    expect(ghostOrders.items[0]!.releasedAt).toBe(snapTime!.at.toISOString());
    const statusOf = async (user: string) => (await listOrdersForUser(fx.db.sql, user, { limit: 10 })).items.map((o) => [o.allocationId, o.status]);
    expect(await statusOf("u0")).toEqual([[real[0]!, "purchased"]]);
    for (let i = 1; i < 5; i++) expect(await statusOf(`u${i}`)).toEqual([[real[i]!, "held"]]); // live in Redis and PG before the repair
    expect(await statusOf("real")).toEqual([[real[5]!, "held"]]);
    expect(await statusOf("after")).toEqual([[after, "held"]]); // placed after the snapshot
    // Analytics count the void apart from releases: allocated − sold − released − voided = held.
    const report = await salesReport(fx.db.sql, { stockId, limit: 10 });
    const sales = report.stocks[0]!;
    expect(sales).toMatchObject({ holdsVoided: 1, unitsVoided: 40, unitsSold: 1, holdsReleased: { expired: 0, cancelled: 0 } });
    expect(sales.unitsAllocated - sales.unitsSold - sales.unitsReleased.expired - sales.unitsReleased.cancelled - sales.unitsVoided).toBe(repaired.held + 2);
    expect(report.series.reduce((n, p) => n + p.unitsVoided, 0)).toBe(40);

    // A stock Redis does not have is refused, not invented.
    await expect(repairStock({ redis: h.redis, keys: h.keys, stockId: "nosuchstock", seenVersion: 0 })).rejects.toThrow("no stock nosuchstock");
    await relay.stop();
  },
  120_000,
);

test("more live holds than one snapshot lists: refused before any write, retry once they drain", async () => {
  const stockId = "crowded";
  const n = MAX_SNAPSHOT_LIVE_HOLDS + 1;
  await h.commands.createStock({ id: stockId, name: "crowded", price: 1, quantity: n, perUserLimit: n });
  const holds: string[] = [];
  for (let i = 0; i < n; i += 500) {
    const part = await Promise.all(Array.from({ length: Math.min(500, n - i) }, () => h.commands.allocate({ stockId, userId: "many", quantity: 1 })));
    holds.push(...part.map((r) => r.allocation.allocationId));
  }
  const before = (await h.commands.getStock(stockId))!.version;
  const outbox = await h.redis.xlen(h.keys.outbox(h.keys.shardOf(stockId)));
  await expect(repairStock({ redis: h.redis, keys: h.keys, stockId, seenVersion: 0 })).rejects.toThrow(
    `more than ${MAX_SNAPSHOT_LIVE_HOLDS} live holds of the stock`,
  );
  expect((await h.commands.getStock(stockId))!.version).toBe(before);
  expect(await h.redis.xlen(h.keys.outbox(h.keys.shardOf(stockId)))).toBe(outbox);
  // One hold drained: the snapshot goes through and lists exactly the rest.
  await h.commands.cancel({ allocationId: holds[0]!, userId: "many" });
  const r = await repairStock({ redis: h.redis, keys: h.keys, stockId, seenVersion: 0 });
  expect(r.liveHolds).toBe(MAX_SNAPSHOT_LIVE_HOLDS);
  // The other bound: a shard's due set larger than one atomic scan may cover (here lowered to 10,000).
  expect(MAX_DUE_SCAN).toBeGreaterThan(MAX_SNAPSHOT_LIVE_HOLDS);
  const version = (await h.commands.getStock(stockId))!.version;
  await expect(repairStock({ redis: h.redis, keys: h.keys, stockId, seenVersion: 0, maxDueScan: 10_000 })).rejects.toThrow(
    /the stock's shard has \d+ live holds, more than one snapshot scans; retry when holds have drained/,
  );
  expect((await h.commands.getStock(stockId))!.version).toBe(version);
}, 120_000);
