/**
 * A third read model, defined here only, through the registry's shapes (shared/read-models.ts): its
 * store is a hash per stock in the real Redis, under a unique prefix. It writes nothing outside this
 * file and gets from the shared code, for free:
 *   - a projector: createProjector with its sink (batches, dedupe, DLQ, offsets, metrics);
 *   - verify: the verifier's I6 comparison (compareReadModels via a reader) finds it converged, and
 *     names it when one of its stocks drifts;
 *   - lag: the dashboard's worker panel reads its consumer lag and freshness from its /metrics;
 *   - rebuild: `bun run rebuild`'s own path (rebuildModel → rebuildReadModel: the temporary group from
 *     the earliest offset, the catch-up, the swap, the group's deletion); its store part is a new key
 *     prefix filled by the same sink and a pointer moved in one SET.
 * docs/design.md §14 (c) counts what a real one adds beyond this (its binary and compose service).
 */
import { afterAll, expect, test } from "bun:test";
import { Redis } from "ioredis";
import type { StockEvent } from "../shared/domain/events.ts";
import type { StockCounters } from "../shared/domain/views.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";
import { withKafkaAdmin } from "../shared/kafka/client.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { createProjector } from "../shared/projection/projector.ts";
import type { ProjectionSinkWithPing } from "../shared/projection/consumer.ts";
import { rebuildReadModel } from "../shared/projection/rebuild.ts";
import { rebuildModel } from "../scripts/rebuild.ts";
import { defineReadModel, READ_MODELS, type ReadModelReader } from "../shared/read-models.ts";
import { compareReadModels, waitForConvergence } from "../shared/verify/convergence.ts";
import { WorkerScraper } from "../services/api/dashboard/workers.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";

const fx = readSideFixtures();
const topic = fx.topic("memotopic");
const prefix = uniqueName("memo");
const redis = new Redis(stackEnv.REDIS_URL);
afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

const FIELDS = ["available", "held", "sold", "version"] as const;
/** Readers and the live projector find the current copy through this pointer (a rebuild moves it). */
const pointer = `${prefix}:current`;
const currentCopy = async () => (await redis.get(pointer)) ?? `${prefix}:v0`;
const keyOf = async (stockId: string, copy?: string) => `${copy ?? (await currentCopy())}:${stockId}`;

/** The store: one hash per stock, written only by an event newer than what it holds (the version guard). */
function memoSink(copy?: string): ProjectionSinkWithPing {
  return {
    async apply(events) {
      const applied: StockEvent[] = [];
      for (const event of events) {
        const key = await keyOf(event.aggregateId, copy);
        const have = Number((await redis.hget(key, "version")) ?? 0);
        if (event.version <= have) continue;
        const { available, held, sold } = event.payload;
        await redis.hset(key, { available, held, sold, version: event.version });
        applied.push(event);
      }
      return { applied, duplicates: events.length - applied.length };
    },
    isOutage: (err) => err instanceof Error && /ECONNREFUSED|Connection is closed/.test(err.message),
    probe: async () => void (await redis.ping()),
    ping: async () => void (await redis.ping()),
  };
}

function memoReader(): ReadModelReader {
  return {
    name: "memo",
    async counters(stockIds) {
      const out = new Map<string, StockCounters>();
      for (const stockId of stockIds) {
        const [available, held, sold, version] = await redis.hmget(await keyOf(stockId), ...FIELDS);
        if (version !== null) out.set(stockId, { stockId, available: Number(available), held: Number(held), sold: Number(sold), version: Number(version) });
      }
      return out;
    },
    close: async () => {},
  };
}

/** The fixture, in the registry's own shape: what a third entry of READ_MODELS would be (its binary: projector-memo). */
const memo = defineReadModel("memo", {
  adminPort: 9199,
  job: "Kafka → counters per stock in Redis (test fixture)",
  needs: ["kafka", "redis"],
  open: async () => memoReader(),
  async rebuild(_config, common) {
    let copy = "";
    const run = await rebuildReadModel(common, (stamp) => ({
      prepare: async () => void (copy = `${prefix}:${stamp}`),
      projector: (kafka) => createProjector({ ...kafka, sink: memoSink(copy) }),
      stopBeforeSwap: false,
      swap: async () => void (await redis.set(pointer, copy)),
    }));
    return `memo rebuilt from ${run.eventsReplayed} events into ${copy}`;
  },
});

test("the registry names every read model once, with its projector binary and a distinct admin port", () => {
  const all = [...READ_MODELS, memo];
  expect(new Set(all.map((m) => m.name)).size).toBe(all.length);
  expect(new Set(all.map((m) => m.adminPort)).size).toBe(all.length);
  expect(READ_MODELS.map((m) => m.service)).toEqual(["projector-postgres", "projector-search"]);
});

test("a third read model from the registry's shapes gets its projector, verify, the dashboard's lag and rebuild for free", async () => {
  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 2_000, stockCount: 10, prefix: uniqueName("ms"), totalPerStock: 200 });
  await produceEvents(fx.producer, topic, events);
  const registry = createMetricsRegistry(memo.service);
  const projector = fx.track(createProjector({ brokers, topic, groupId: uniqueName("memogroup"), sink: memoSink(), logger: testLogger, registry }));
  await projector.start();

  // verify: the verifier's comparison, through the reader the registry's open() gives.
  const reader = await memo.open({ DATABASE_URL: "", ELASTICSEARCH_URL: "", ELASTICSEARCH_INDEX_ALIAS: "" });
  expect(await waitForConvergence({ expected: async () => sim.expectedCounters(), readers: [reader], timeoutMs: 30_000 })).toEqual([]);

  // ... and it names this read model when one of its stocks drifts.
  const drifted = sim.expectedCounters()[0]!;
  await redis.hset(await keyOf(drifted.stockId), "sold", drifted.sold + 1);
  const mismatches = await compareReadModels({ expected: sim.expectedCounters(), readers: [reader] });
  expect(mismatches.map((m) => [m.store, m.stockId])).toEqual([["memo", drifted.stockId]]);

  // lag: the dashboard's worker panel, scraping the fixture projector's /metrics.
  await eventually(async () => [...(await projector.consumer.fetchLag()).values()].every((lag) => lag === 0), { timeoutMs: 30_000, what: "lag 0" });
  const metrics = await registry.metrics();
  const scraper = new WorkerScraper(["http://127.0.0.1:9199/metrics"], (async () => new Response(metrics)) as unknown as typeof fetch);
  const panels = await scraper.collect(Date.now());
  expect(panels.projectors.map((p) => p.service)).toEqual(["projector-memo (9199)"]);
  expect(panels.projectors[0]!.consumerLag).toBe(0);

  // rebuild: the command's own path, with the stack's addresses from the typed config. The drifted stock
  // is right again in the rebuilt copy, readers see it through the moved pointer, the live one follows.
  const groupId = uniqueName("memogroup-live");
  const told = await rebuildModel(memo, { env: { KAFKA_BROKERS: brokers.join(","), KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: groupId }, logger: testLogger, timeoutMs: 60_000 });
  const [, replayed] = /^memo rebuilt from (\d+) events into /.exec(told) ?? [];
  expect(Number(replayed)).toBeGreaterThanOrEqual(events.length);
  expect(await redis.get(pointer)).not.toBe(`${prefix}:v0`);
  expect(await compareReadModels({ expected: sim.expectedCounters(), readers: [reader] })).toEqual([]);
  const groups = (await withKafkaAdmin(fx.kafka, (admin) => admin.listGroups())).groups.map((g) => g.groupId);
  expect(groups.filter((g) => g.startsWith(`${groupId}.rebuild-`))).toEqual([]);
});
