/**
 * The time budget is observable (issue 10): each projector records every applied event's stages in
 * flashsale_projector_stage_seconds, and projector-search's refresh after write makes a document searchable
 * without waiting for the index's refresh_interval (set to 30 s here, so only the projector's own
 * refresh can explain a hit). Real Kafka, PostgreSQL and Elasticsearch.
 */
import { describe, expect, test } from "bun:test";
import { createPostgresProjector } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import { PROJECTOR_STAGES } from "../shared/projection/metrics.ts";
import type { Projector } from "../shared/projection/projector.ts";
import type { StockDocument } from "../shared/stores/search/mapping.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ database: "stages", search: true });

/** Per stage, the projector's stage histogram's observation count (`count`) or total seconds (`sum`). */
async function stageTotals(projector: Projector, which: "count" | "sum"): Promise<Record<string, number>> {
  const metric = await projector.metrics.stageSeconds.get();
  const totals: Record<string, number> = {};
  for (const v of metric.values) {
    if (v.metricName === `flashsale_projector_stage_seconds_${which}`) totals[String(v.labels.stage)] = v.value;
  }
  return totals;
}
const stageCounts = (projector: Projector) => stageTotals(projector, "count");
const stageSums = (projector: Projector) => stageTotals(projector, "sum");

describe("time budget per stage", () => {
  test("projector-postgres: every applied event is observed in each stage; visible at commit (0)", async () => {
    const topic = await fx.createTopic("stagespg", 2);
    const sim = new StockSim();
    const id = uniqueName("s");
    const events = [sim.create(id, { total: 50 }), ...Array.from({ length: 9 }, (_, i) => sim.allocate(id, `u${i}`, 1)!)];
    const projector = fx.track(createPostgresProjector({ brokers, topic, groupId: uniqueName("stagespg"), sql: fx.db.sql, logger: testLogger }));
    await projector.start();
    await produceEvents(fx.producer, topic, events);
    const counts = await eventually(async () => {
      const c = await stageCounts(projector);
      return PROJECTOR_STAGES.every((s) => c[s] === events.length) ? c : undefined;
    }, { what: "10 observations per stage", timeoutMs: 30_000 });
    expect(Object.keys(counts).sort()).toEqual([...PROJECTOR_STAGES].sort());
    const sums = await stageSums(projector);
    expect(sums.commit_to_visible).toBe(0);
    expect(sums.fetch_to_commit).toBeGreaterThan(0);
    await fx.stopProjectors();
  }, 60_000);

  test("projector-search: refresh after write makes documents searchable with a 30 s refresh_interval, and measures commit_to_visible", async () => {
    const topic = await fx.createTopic("stageses", 2);
    const alias = fx.alias("stagesstocks");
    const sim = new StockSim();
    const id = uniqueName("s");
    const events = [sim.create(id, { total: 50 }), sim.allocate(id, "u1", 2)!];
    const projector = fx.track(
      createSearchProjector({ brokers, topic, groupId: uniqueName("stageses"), es: fx.es, index: alias, logger: testLogger, refresh: "after-write", refreshInterval: "30s" }),
    );
    await projector.start();
    const started = Date.now();
    await produceEvents(fx.producer, topic, events);
    // A search (not a realtime GET, which would refresh the shard itself) sees the newest version.
    await eventually(async () => {
      const result = await fx.es.search<StockDocument>({ index: alias, query: { ids: { values: [id] } }, _source: ["version"] });
      return result.hits.hits[0]?._source?.version === 2;
    }, { what: "document searchable", timeoutMs: 20_000 });
    expect(Date.now() - started).toBeLessThan(20_000); // well before the 30 s interval could have helped
    const counts = await eventually(async () => {
      const c = await stageCounts(projector);
      return (c.commit_to_visible ?? 0) >= 1 ? c : undefined;
    }, { what: "commit_to_visible observed", timeoutMs: 10_000 });
    for (const stage of PROJECTOR_STAGES) expect(counts[stage] ?? 0).toBeGreaterThan(0);
    expect((await stageSums(projector)).commit_to_visible).toBeGreaterThan(0);
    await fx.stopProjectors();
  }, 60_000);
});
