/**
 * Poison never stalls a partition (issue 9 §4), against the real Kafka, PostgreSQL and
 * Elasticsearch, for both projectors:
 *   - [bad, bad, bad, good, good] in one batch: the three go to the DLQ, the two are applied, the
 *     offsets move past all five;
 *   - a batch of only poison events: all of it goes to the DLQ and is committed, and the good events
 *     produced after it are applied.
 * "Bad" passes the event schema but the store refuses it: a counter past PostgreSQL's and the
 * mapping's integer range (the kind of event only a store can reject, retried, then isolated).
 * Each scenario gets its own single-partition topic (so the messages arrive as one batch) and a
 * projector started after the produce (so its first fetch holds them all).
 */
import { describe, expect, test } from "bun:test";
import type { Kafka } from "kafkajs";
import { createPostgresProjector, probePostgres } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import type { StockEvent } from "../shared/domain/events.ts";
import { DLQ_HEADERS } from "../shared/projection/dlq.ts";
import { isElasticOutage, isPostgresOutage } from "../shared/projection/errors.ts";
import { PROBE_STOCK_PREFIX, probeEvents } from "../shared/projection/probe.ts";
import type { Projector } from "../shared/projection/projector.ts";
import { readSearchCounters } from "../shared/stores/search/queries.ts";
import { STOCK_INDEX_BODY } from "../shared/stores/search/mapping.ts";
import { probeSearch } from "../shared/stores/search/writer.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { eventMessage } from "../shared/kafka/event-message.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ database: "poison", search: true });
const alias = fx.alias("poisonstocks");

/** A StockAllocated that the schema accepts and both stores refuse (out of integer range), each on its own stock. */
function poisonEvents(sim: StockSim, count: number): StockEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const id = uniqueName(`bad${i}`);
    sim.create(id, { total: 5 });
    const event = sim.allocate(id, "villain", 1)!;
    return { ...event, payload: { ...event.payload, quantity: 3_000_000_000, available: 3_000_000_000 } };
  });
}

async function readDlq(kafka: Kafka, topic: string, expected: number): Promise<Array<{ eventId: string; reason: string; error: string }>> {
  const seen: Array<{ eventId: string; reason: string; error: string }> = [];
  const consumer = kafka.consumer({ groupId: uniqueName("dlqreader") });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: `${topic}.dlq`, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        seen.push({
          eventId: JSON.parse(String(message.value)).eventId,
          reason: String(message.headers?.[DLQ_HEADERS.reason]),
          error: String(message.headers?.[DLQ_HEADERS.error]),
        });
      },
    });
    await eventually(async () => seen.length >= expected, { what: `${expected} DLQ messages`, timeoutMs: 30_000 });
  } finally {
    await consumer.disconnect();
  }
  return seen;
}

async function waitForZeroLag(projector: Projector, what: string): Promise<void> {
  await eventually(async () => [...(await projector.consumer.fetchLag()).values()].every((lag) => lag === 0), { timeoutMs: 45_000, what });
}

interface Target {
  name: string;
  start(topic: string): Promise<Projector>;
  /** The stock's version in the read model (undefined when absent). */
  version(stockId: string): Promise<number | undefined>;
  /** The store's own words in the DLQ error header. */
  rejection: RegExp;
}

const targets: Target[] = [
  {
    name: "projector-postgres",
    async start(topic) {
      const p = fx.track(createPostgresProjector({ brokers, topic, groupId: uniqueName("pgpoison"), sql: fx.db.sql, logger: testLogger }));
      await p.start();
      return p;
    },
    async version(stockId) {
      const [row] = await fx.db.sql<{ version: number }[]>`SELECT version FROM stocks WHERE stock_id = ${stockId}`;
      return row?.version;
    },
    rejection: /out of range/,
  },
  {
    name: "projector-search",
    async start(topic) {
      const p = fx.track(createSearchProjector({ brokers, topic, groupId: uniqueName("espoison"), es: fx.es, index: alias, logger: testLogger }));
      await p.start();
      return p;
    },
    async version(stockId) {
      return (await readSearchCounters(fx.es, alias, [stockId])).get(stockId)?.version;
    },
    rejection: /out of range|failed to parse/,
  },
];

describe.each(targets)("$name: poison never stalls a partition", (target) => {
  test("[bad, bad, bad, good, good]: the three go to the DLQ, the two are applied, the offsets pass all five", async () => {
    const topic = await fx.createTopic("poisonhead", 1);
    const sim = new StockSim();
    const bad = poisonEvents(sim, 3);
    const stockId = uniqueName("good");
    const good = [sim.create(stockId, { total: 10 }), sim.allocate(stockId, "u1", 2)!];
    await fx.producer.send({ topic, messages: [...bad, ...good].map((e) => eventMessage(e)) });

    const projector = await target.start(topic);
    await eventually(async () => (await target.version(stockId)) === 2, { what: "the good events after the poison applied", timeoutMs: 45_000 });
    await waitForZeroLag(projector, "offsets committed past the batch");
    const dlq = await readDlq(fx.kafka, topic, 3);
    expect(dlq.map((m) => m.eventId).sort()).toEqual(bad.map((e) => e.eventId).sort());
    expect(dlq.every((m) => m.reason === "rejected" && target.rejection.test(m.error))).toBe(true);
    for (const e of bad) expect(await target.version(e.aggregateId)).toBeUndefined();
    await fx.stopProjectors();
  }, 90_000);

  test("a batch of only poison events is dead-lettered and committed; the good events after it are applied", async () => {
    const topic = await fx.createTopic("poisonall", 1);
    const sim = new StockSim();
    const bad = poisonEvents(sim, 3);
    await fx.producer.send({ topic, messages: bad.map((e) => eventMessage(e)) });
    const projector = await target.start(topic);
    await waitForZeroLag(projector, "the all-poison batch committed");
    const dlq = await readDlq(fx.kafka, topic, 3);
    expect(dlq.map((m) => m.eventId).sort()).toEqual(bad.map((e) => e.eventId).sort());
    expect(dlq.every((m) => m.reason === "rejected")).toBe(true);

    const stockId = uniqueName("after");
    await fx.producer.send({ topic, messages: [sim.create(stockId, { total: 10 }), sim.allocate(stockId, "u1", 1)!].map((e) => eventMessage(e)) });
    await eventually(async () => (await target.version(stockId)) === 2, { what: "good events after the poison batch applied", timeoutMs: 30_000 });
    expect((await projector.metrics.dlqMessages.get()).values.find((v) => v.labels.reason === "rejected")?.value).toBe(3);
    await fx.stopProjectors();
  }, 90_000);
});

/** The probe tells a broken store from poison: it passes on a healthy store, leaves nothing, and fails on a broken one. */
describe("the probe", () => {
  test("PostgreSQL: passes and leaves no row on the real schema; fails as a data error when the schema refuses valid rows", async () => {
    await probePostgres(fx.db.sql);
    const like = `${PROBE_STOCK_PREFIX}%`;
    const [left] = await fx.db.sql<{ n: number }[]>`
      SELECT (SELECT count(*) FROM stock_events WHERE aggregate_id LIKE ${like})
           + (SELECT count(*) FROM stocks WHERE stock_id LIKE ${like})
           + (SELECT count(*) FROM orders WHERE stock_id LIKE ${like})
           + (SELECT count(*) FROM sales_by_minute WHERE stock_id LIKE ${like}) AS n`;
    expect(Number(left!.n)).toBe(0);

    // A "bad migration": every real order would now be refused. The probe must say so (data error, not outage).
    await fx.db.sql`ALTER TABLE orders ADD CONSTRAINT poison_test_broken CHECK (quantity > 1000) NOT VALID`;
    try {
      const err = await probePostgres(fx.db.sql).then(() => null, (e: unknown) => e);
      expect(err).not.toBeNull();
      expect(isPostgresOutage(err)).toBe(false);
    } finally {
      await fx.db.sql`ALTER TABLE orders DROP CONSTRAINT poison_test_broken`;
    }
  }, 30_000);

  test("Elasticsearch: passes on the real mapping without indexing; fails as a data error on a mapping that refuses the documents", async () => {
    const good = fx.alias("probegood");
    await fx.es.indices.create({ index: `${good}-v1`, ...STOCK_INDEX_BODY, aliases: { [good]: {} } });
    await probeSearch({ es: fx.es, index: good, requireAlias: true }, probeEvents());
    await fx.es.indices.refresh({ index: good });
    expect((await fx.es.count({ index: good })).count).toBe(0);

    const broken = fx.alias("probebroken");
    await fx.es.indices.create({
      index: `${broken}-v1`,
      mappings: { ...STOCK_INDEX_BODY.mappings, properties: { ...STOCK_INDEX_BODY.mappings.properties, available: { type: "boolean" as const } } },
      aliases: { [broken]: {} },
    });
    const err = await probeSearch({ es: fx.es, index: broken, requireAlias: true }, probeEvents()).then(() => null, (e: unknown) => e);
    expect(err).not.toBeNull();
    expect(isElasticOutage(err)).toBe(false);
  }, 30_000);
});
