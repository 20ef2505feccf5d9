/**
 * projector-search against the real Kafka and Elasticsearch: index + alias created at start,
 * coalesced external-versioned writes, replay, out-of-order and duplicate deliveries, DLQ.
 */
import { describe, expect, test } from "bun:test";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import type { StockEvent } from "../shared/domain/events.ts";
import type { Projector } from "../shared/projection/projector.ts";
import { waitForConvergence } from "../shared/verify/convergence.ts";
import { readSearchCounters } from "../shared/stores/search/queries.ts";
import { indicesOfAlias, type StockDocument } from "../shared/stores/search/mapping.ts";
import { applyEventsToSearch } from "../shared/stores/search/writer.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ search: true });
const topic = fx.topic("estopic");
const alias = fx.alias("stocks");
const groupId = uniqueName("esgroup");
const sim = new StockSim();
let events: StockEvent[] = [];
/** The projector the tests run (restarted by the replay test). */
let current: Projector;

async function startProjector(): Promise<Projector> {
  current = fx.track(createSearchProjector({ brokers, topic, groupId, es: fx.es, index: alias, logger: testLogger }));
  await current.start();
  return current;
}

async function allDocs(): Promise<Map<string, { source: StockDocument; version: number }>> {
  const ids = [...sim.stocks.keys()];
  const result = await fx.es.mget<StockDocument>({ index: alias, ids });
  const out = new Map<string, { source: StockDocument; version: number }>();
  for (const d of result.docs) if ("found" in d && d.found) out.set(d._id, { source: d._source!, version: d._version! });
  return out;
}

describe("projector-search", () => {
  test("creates the index behind the alias and converges to the write side", async () => {
    events = generateWorkload(sim, { count: 5_000, stockCount: 30, prefix: uniqueName("st"), totalPerStock: 500 });
    await produceEvents(fx.producer, topic, events);
    await startProjector();
    expect(await indicesOfAlias(fx.es, alias)).toEqual([`${alias}-v1`]);

    const mismatches = await waitForConvergence({ expected: async () => sim.expectedCounters(), es: fx.es, index: alias, timeoutMs: 20_000 });
    expect(mismatches).toEqual([]);
    const docs = await allDocs();
    const [id, stock] = [...sim.stocks.entries()][0]!;
    expect(docs.get(id)!.source).toMatchObject({ name: stock.name, description: stock.description, price: stock.price, complete: true });
    expect(docs.get(id)!.version).toBe(stock.version); // the ES version is the stock version
  }, 60_000);

  test("out-of-order and duplicate deliveries never move a document back in time", async () => {
    const before = await allDocs();
    // Watch every document while old events are delivered again, shuffled, through Kafka.
    let wentBack: string | null = null;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const [id, doc] of await allDocs()) {
          if (doc.version < before.get(id)!.version) wentBack = `${id}: ${doc.version} < ${before.get(id)!.version}`;
        }
        await Bun.sleep(20);
      }
    })();
    const stale = [...events].sort(() => Math.random() - 0.5).slice(0, 2_000);
    await produceEvents(fx.producer, topic, stale);

    // Straight to the writer too: the oldest events of a stock, after its newest was applied.
    const stockId = events[0]!.aggregateId;
    const old = events.filter((e) => e.aggregateId === stockId).slice(0, 5).reverse();
    const direct = await applyEventsToSearch({ es: fx.es, index: alias, requireAlias: true }, old);
    expect(direct.applied).toHaveLength(0);
    expect(direct.duplicates).toBe(old.length);

    await eventually(async () => {
      const lag = await current.consumer.fetchLag();
      return [...lag.values()].every((n) => n === 0);
    }, { what: "stale deliveries consumed", timeoutMs: 20_000 });
    watching = false;
    await watcher;
    expect(wentBack).toBeNull();
    const after = await allDocs();
    for (const [id, doc] of before) expect(after.get(id)).toEqual(doc);
  }, 60_000);

  test("a counters event before its StockCreated: indexed incomplete, completed when the creation arrives", async () => {
    const local = new StockSim();
    const id = uniqueName("orphan");
    const created = local.create(id, { total: 5, name: "Late creation lamp" });
    const a1 = local.allocate(id, "u1", 2)!;
    const a2 = local.allocate(id, "u2", 1)!;
    const target = { es: fx.es, index: alias, requireAlias: true };
    expect((await applyEventsToSearch(target, [a2])).applied).toHaveLength(1);
    let [doc] = (await fx.es.mget<StockDocument>({ index: alias, ids: [id] })).docs;
    expect(doc && "found" in doc && doc._source).toMatchObject({ complete: false, available: 2, version: 3 });
    await applyEventsToSearch(target, [created, a1]); // older versions, but the statics were missing
    [doc] = (await fx.es.mget<StockDocument>({ index: alias, ids: [id] })).docs;
    expect(doc && "found" in doc && doc._source).toMatchObject({ complete: true, name: "Late creation lamp", available: 2, held: 3, version: 3 });
  });

  test("replay from the earliest offset leaves every document identical (I3)", async () => {
    const before = await allDocs();
    await fx.stopProjectors();
    const admin = fx.kafka.admin();
    await admin.connect();
    await admin.resetOffsets({ groupId, topic, earliest: true });
    await admin.disconnect();
    const projector = await startProjector();
    await eventually(async () => [...(await projector.consumer.fetchLag()).values()].every((n) => n === 0), { what: "replay drained", timeoutMs: 30_000 });
    expect((await projector.metrics.eventsApplied.get()).values[0]?.value ?? 0).toBe(0);
    expect(await allDocs()).toEqual(before);
  }, 60_000);

  test("a poison message goes to the DLQ and the events after it are indexed", async () => {
    const id = uniqueName("p");
    const created = sim.create(id, { total: 3 });
    const a = sim.allocate(id, "u1", 1)!;
    await fx.producer.send({
      topic,
      messages: [
        { key: id, value: JSON.stringify(created) },
        { key: id, value: JSON.stringify({ ...a, eventType: "StockTeleported" }) },
        { key: id, value: JSON.stringify(a) },
      ],
    });
    const found = await eventually(async () => (await readSearchCounters(fx.es, alias, [id])).get(id)?.version === a.version, { what: "event after poison" });
    expect(found).toBe(true);
    await eventually(async () => ((await current.metrics.dlqMessages.get()).values[0]?.value ?? 0) >= 1, { what: "DLQ count" });
  }, 30_000);
});
