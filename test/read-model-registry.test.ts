/**
 * A third read model, defined here only, through the registry's shapes (shared/read-models.ts): its
 * store is a hash per stock in the real Redis, under a unique prefix. It writes nothing outside this
 * file and gets from the shared code, for free:
 *   - a projector: createProjector with its sink (batches, dedupe, DLQ, offsets, metrics);
 *   - verify: the verifier's I6 comparison (compareReadModels via a reader) finds it converged, and
 *     names it when one of its stocks drifts;
 *   - lag: the dashboard's worker panel reads its consumer lag and freshness from its /metrics.
 * docs/design.md §14 (c) counts what a real one adds beyond this (its binary and compose service).
 */
import { afterAll, expect, test } from "bun:test";
import { Redis } from "ioredis";
import type { StockEvent } from "../shared/domain/events.ts";
import type { StockCounters } from "../shared/domain/views.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { createProjector } from "../shared/projection/projector.ts";
import type { ProjectionSinkWithPing } from "../shared/projection/consumer.ts";
import { READ_MODELS, type ReadModel, type ReadModelReader } from "../shared/read-models.ts";
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
const keyOf = (stockId: string) => `${prefix}:${stockId}`;

/** The store: one hash per stock, written only by an event newer than what it holds (the version guard). */
function memoSink(): ProjectionSinkWithPing {
  return {
    async apply(events) {
      const applied: StockEvent[] = [];
      for (const event of events) {
        const have = Number((await redis.hget(keyOf(event.aggregateId), "version")) ?? 0);
        if (event.version <= have) continue;
        const { available, held, sold } = event.payload;
        await redis.hset(keyOf(event.aggregateId), { available, held, sold, version: event.version });
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
        const [available, held, sold, version] = await redis.hmget(keyOf(stockId), ...FIELDS);
        if (version !== null) out.set(stockId, { stockId, available: Number(available), held: Number(held), sold: Number(sold), version: Number(version) });
      }
      return out;
    },
    close: async () => {},
  };
}

/** The fixture, in the registry's own shape: what a third entry of READ_MODELS would be. */
const memo: ReadModel<"projector-memo"> = {
  name: "memo",
  service: "projector-memo",
  adminPort: 9199,
  job: "Kafka → counters per stock in Redis (test fixture)",
  needs: ["kafka", "redis"],
  open: async () => memoReader(),
};

test("the registry names every read model once, with its projector binary and a distinct admin port", () => {
  const all = [...READ_MODELS, memo];
  expect(new Set(all.map((m) => m.name)).size).toBe(all.length);
  expect(new Set(all.map((m) => m.adminPort)).size).toBe(all.length);
  expect(READ_MODELS.map((m) => m.service)).toEqual(["projector-postgres", "projector-search"]);
});

test("a third read model from the registry's shapes gets its projector, verify and the dashboard's lag for free", async () => {
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
  await redis.hset(keyOf(drifted.stockId), "sold", drifted.sold + 1);
  const mismatches = await compareReadModels({ expected: sim.expectedCounters(), readers: [reader] });
  expect(mismatches.map((m) => [m.store, m.stockId])).toEqual([["memo", drifted.stockId]]);

  // lag: the dashboard's worker panel, scraping the fixture projector's /metrics.
  await eventually(async () => [...(await projector.consumer.fetchLag()).values()].every((lag) => lag === 0), { timeoutMs: 30_000, what: "lag 0" });
  const metrics = await registry.metrics();
  const scraper = new WorkerScraper(["http://127.0.0.1:9199/metrics"], (async () => new Response(metrics)) as unknown as typeof fetch);
  const panels = await scraper.collect(Date.now());
  expect(panels.projectors.map((p) => p.service)).toEqual(["projector-memo (9199)"]);
  expect(panels.projectors[0]!.consumerLag).toBe(0);
});
