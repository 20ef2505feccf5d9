/**
 * A store that goes down is an outage, not poison: the projector retries with backoff, commits
 * nothing, sends nothing to the DLQ, reports not-ready, and catches up when the store is back.
 * The outage is made with a TCP proxy in front of the real PostgreSQL / Elasticsearch.
 */
import { describe, expect, test } from "bun:test";
import { createPostgresProjector } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import type { StockEvent } from "../shared/domain/events.ts";
import { fetchGroupOffsets, fetchHighWatermarks, remaining } from "../shared/projection/offsets.ts";
import type { Projector } from "../shared/projection/projector.ts";
import { waitForConvergence } from "../shared/verify/convergence.ts";
import { createProjectorSql } from "../shared/stores/postgres/client.ts";
import { createSearchClient } from "../shared/stores/search/mapping.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";
import { CuttableProxy } from "./support/proxy.ts";

const fx = readSideFixtures({ database: "outage", search: true });

/** More allocations and purchases on the stocks the sim already has. */
function moreEvents(sim: StockSim, count: number): StockEvent[] {
  const ids = [...sim.stocks.keys()];
  const out: StockEvent[] = [];
  for (let i = 0; out.length < count; i++) {
    const e = sim.allocate(ids[i % ids.length]!, `late${i % 17}`, 1);
    if (!e) continue;
    out.push(e);
    if (i % 3 === 0) out.push(sim.purchase(e.payload.allocationId));
  }
  return out;
}

async function scenario(
  label: string,
  target: { host: string; port: number },
  makeProjector: (proxyPort: number, topic: string, groupId: string) => Projector,
  converged: (sim: StockSim) => Promise<unknown[]>,
) {
  const topic = await fx.createTopic(`${label}topic`, 3);
  const groupId = uniqueName(`${label}group`);
  const proxy = new CuttableProxy(target);
  await proxy.open();
  const projector = fx.track(makeProjector(proxy.port, topic, groupId));
  const sim = new StockSim();
  const first: StockEvent[] = generateWorkload(sim, { count: 1_000, stockCount: 10, prefix: uniqueName("o") });
  await produceEvents(fx.producer, topic, first);
  await projector.start();
  expect(await converged(sim)).toEqual([]);
  const committedBefore = await fetchGroupOffsets(fx.kafka, groupId, topic);

  await proxy.cut();
  const second = moreEvents(sim, 1_000);
  await produceEvents(fx.producer, topic, second);
  // Retrying, not ready, nothing committed, nothing dead-lettered.
  await eventually(async () => ((await projector.metrics.storeRetries.get()).values[0]?.value ?? 0) >= 3, { timeoutMs: 15_000, what: "outage retries" });
  expect(await projector.notReadyReason()).toMatch(/store (unavailable|unreachable)/);
  expect(await fetchGroupOffsets(fx.kafka, groupId, topic)).toEqual(committedBefore);
  expect((await projector.metrics.dlqMessages.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0);

  await proxy.open(); // same port
  expect(await converged(sim)).toEqual([]);
  await eventually(async () => remaining(await fetchGroupOffsets(fx.kafka, groupId, topic), await fetchHighWatermarks(fx.kafka, topic)) === 0, { what: "all committed" });
  expect((await projector.metrics.dlqMessages.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0);
  expect(await projector.notReadyReason()).toBeNull();
  await proxy.cut();
}

describe("store outage", () => {
  test("PostgreSQL down: retried without commit or DLQ, then caught up", async () => {
    const url = new URL(fx.db.url);
    let sql: ReturnType<typeof createProjectorSql> | undefined;
    await scenario(
      "pgout",
      { host: url.hostname, port: Number(url.port || 5432) },
      (port, topic, groupId) => {
        const proxied = new URL(fx.db.url);
        proxied.port = String(port);
        sql = createProjectorSql(proxied.toString(), { max: 3 });
        return createPostgresProjector({ brokers, topic, groupId, sql, logger: testLogger, maxOutageBackoffMs: 500 });
      },
      (sim) => waitForConvergence({ expected: async () => sim.expectedCounters(), sql: fx.db.sql, timeoutMs: 30_000 }),
    );
    await sql?.end({ timeout: 1 });
  }, 90_000);

  test("Elasticsearch down: retried without commit or DLQ, then caught up", async () => {
    const alias = fx.alias("outstocks");
    const target = new URL(stackEnv.ELASTICSEARCH_URL);
    let proxiedEs: ReturnType<typeof createSearchClient> | undefined;
    try {
      await scenario(
        "esout",
        { host: target.hostname, port: Number(target.port || 9200) },
        (port, topic, groupId) => {
          proxiedEs = createSearchClient(`http://127.0.0.1:${port}`, { requestTimeoutMs: 2_000, maxRetries: 0 });
          return createSearchProjector({ brokers, topic, groupId, es: proxiedEs, index: alias, logger: testLogger, maxOutageBackoffMs: 500 });
        },
        (sim) => waitForConvergence({ expected: async () => sim.expectedCounters(), es: fx.es, index: alias, timeoutMs: 30_000 }),
      );
    } finally {
      await proxiedEs?.close();
    }
  }, 90_000);
});
