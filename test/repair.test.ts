/**
 * Drift, detected and repaired (docs/design.md §11). The pipeline runs (relay + both projectors,
 * in-process); then a version reaches Kafka with content Redis never had — as after a failover to a
 * lagging replica, here produced directly — and Redis's own event at that version follows it. The
 * version-guarded read models keep the first copy: they drifted, and no later event at that version
 * fixes them. `verify` names the stock with the repair command; `repairStock` (bun run repair)
 * appends a StockSnapshot above every version seen; the relay publishes it, both projectors apply
 * it, and the stock's counters in both read models equal Redis again (the ghost's order row stays:
 * see the README's repair section).
 */
import { afterAll, expect, test } from "bun:test";
import { ACKS_ALL } from "../shared/kafka/producer.ts";
import { createPostgresProjector } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import { readRedisCounters, waitForConvergence } from "../shared/verify/convergence.ts";
import { repairStock } from "../shared/verify/repair.ts";
import { verify } from "../shared/verify/verify.ts";
import { main as repairMain } from "../scripts/repair.ts";
import { brokers, readSideFixtures, stackEnv, testLogger, uniqueName } from "./support/read-side.ts";
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
    for (let i = 0; i < 5; i++) await h.commands.allocate({ stockId, userId: `u${i}`, quantity: 1 });
    await Promise.all(projectors.map((p) => p.start()));
    const expected = async () => [...(await readRedisCounters(h.redis, h.keys, [stockId])).values()];
    expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);

    // A forgotten write's event at version 7, then Redis's own version 7 (other content).
    const at6 = (await h.commands.getStock(stockId))!;
    expect(at6.version).toBe(6);
    const ghost = {
      eventId: Bun.randomUUIDv7(),
      eventType: "StockAllocated",
      schemaVersion: 1,
      aggregateType: "Stock",
      aggregateId: stockId,
      version: 7,
      occurredAt: new Date().toISOString(),
      payload: { allocationId: `s${h.keys.shardOf(stockId)}-${Bun.randomUUIDv7()}`, userId: "ghost", quantity: 40, expiresAt: new Date(Date.now() + 600_000).toISOString(), available: at6.available - 40, held: at6.held + 40, sold: at6.sold },
    };
    const producer = fx.kafka.producer();
    await producer.connect();
    await producer.send({ topic: h.topic, acks: ACKS_ALL, messages: [{ key: stockId, value: JSON.stringify(ghost), headers: { eventType: ghost.eventType, schemaVersion: "1", eventId: ghost.eventId } }] });
    await producer.disconnect();
    await Bun.sleep(2_000); // the projectors take the ghost first
    await h.commands.allocate({ stockId, userId: "real", quantity: 1 });

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
    expect(repaired.version).toBe(8); // above the 7 Kafka and the read models have

    expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);
    // Later events follow the snapshot as usual.
    await h.commands.allocate({ stockId, userId: "after", quantity: 2 });
    expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);
    const clean = await check();
    console.log(`[repair] after: ${clean.findings.map((f) => `${f.layer}: ${f.message}`).join(" | ") || "clean"}`);
    // Repaired: Kafka's history has a new baseline, and the stock counters of both read models equal Redis.
    // Not repaired (documented in README): rows the ghost event created besides the stock's counters
    // (its order, its analytics minute); verify keeps naming them.
    const left = clean.findings.filter((f) => !(f.layer === "postgres" && f.message.startsWith("orders add up")));
    expect(left).toEqual([]);

    // A stock Redis does not have is refused, not invented.
    await expect(repairStock({ redis: h.redis, keys: h.keys, stockId: "nosuchstock", seenVersion: 0 })).rejects.toThrow("no stock nosuchstock");
    await relay.stop();
  },
  120_000,
);
