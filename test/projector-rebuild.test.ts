/**
 * `bun run rebuild postgres|search` while the live projectors run, events keep arriving and readers
 * keep reading: readers never fail and never see a counter go back; afterwards everything matches.
 */
import { expect, test } from "bun:test";
import { rebuildPostgres } from "../shared/stores/postgres/rebuild.ts";
import { rebuildSearch } from "../shared/stores/search/rebuild.ts";
import { createPostgresProjector } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import { waitForConvergence } from "../shared/verify/convergence.ts";
import { readPostgresCounters } from "../shared/stores/postgres/analytics.ts";
import { readSearchCounters } from "../shared/stores/search/queries.ts";
import { createReaderSql } from "../shared/stores/postgres/client.ts";
import { listOrdersForUser } from "../shared/stores/postgres/orders.ts";
import { indicesOfAlias } from "../shared/stores/search/mapping.ts";
import { searchStocks } from "../shared/stores/search/queries.ts";
import { brokers, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ database: "rb", search: true });
const topic = fx.topic("rbtopic");
const alias = fx.alias("rbstocks");
const pgGroup = uniqueName("rbpg");
const esGroup = uniqueName("rbes");

test("rebuild postgres and search under traffic: no reader errors, no going back, same result", async () => {
  const sim = new StockSim();
  const prefix = uniqueName("r");
  const initial = generateWorkload(sim, { count: 6_000, stockCount: 20, prefix, totalPerStock: 1_000_000 });
  await produceEvents(fx.producer, topic, initial);
  const pg = fx.track(createPostgresProjector({ brokers, topic, groupId: pgGroup, sql: fx.db.sql, logger: testLogger }));
  const search = fx.track(createSearchProjector({ brokers, topic, groupId: esGroup, es: fx.es, index: alias, logger: testLogger }));
  await Promise.all([pg.start(), search.start()]);
  const expected = async () => sim.expectedCounters();
  expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);
  // Convergence reads documents by id (realtime); a search sees them only after a refresh, which a
  // busy machine can delay past the readers' first round.
  await fx.es.indices.refresh({ index: alias });

  // Traffic: allocations and purchases keep coming during the rebuilds.
  const ids = [...sim.stocks.keys()];
  let producing = true;
  let produced = initial.length;
  const traffic = (async () => {
    let n = 0;
    while (producing) {
      const batch = [];
      for (let i = 0; i < 50; i++) {
        const e = sim.allocate(ids[n++ % ids.length]!, `u${n % 7}`, 1)!;
        batch.push(e);
        if (n % 3 === 0) batch.push(sim.purchase(e.payload.allocationId));
      }
      await produceEvents(fx.producer, topic, batch);
      produced += batch.length;
      await Bun.sleep(25);
    }
  })();

  // Readers: the api's queries, continuously; a failure or a version going back is recorded.
  const reader = createReaderSql(fx.db.url);
  const problems: string[] = [];
  const seenPg = new Map<string, number>();
  const seenEs = new Map<string, number>();
  let reading = true;
  let reads = 0;
  const readers = (async () => {
    while (reading) {
      try {
        for (const [id, c] of await readPostgresCounters(reader, ids)) {
          if (c.version < (seenPg.get(id) ?? 0)) problems.push(`pg ${id} went back ${seenPg.get(id)} → ${c.version}`);
          seenPg.set(id, c.version);
        }
        await listOrdersForUser(reader, "u1", { limit: 5 });
        for (const [id, c] of await readSearchCounters(fx.es, alias, ids)) {
          if (c.version < (seenEs.get(id) ?? 0)) problems.push(`es ${id} went back ${seenEs.get(id)} → ${c.version}`);
          seenEs.set(id, c.version);
        }
        const page = await searchStocks(fx.es, alias, { q: "limited", limit: 5 });
        if (page.items.length === 0) problems.push("search found nothing");
        reads++;
      } catch (err) {
        problems.push(`read failed: ${String(err)}`);
      }
      await Bun.sleep(5);
    }
  })();

  let pgResult: Awaited<ReturnType<typeof rebuildPostgres>>;
  let esResult: Awaited<ReturnType<typeof rebuildSearch>>;
  try {
    pgResult = await rebuildPostgres({ brokers, topic, liveGroupId: pgGroup, databaseUrl: fx.db.url, logger: testLogger, timeoutMs: 60_000 });
    esResult = await rebuildSearch({ brokers, topic, liveGroupId: esGroup, es: fx.es, alias, logger: testLogger, timeoutMs: 60_000 });
  } finally {
    producing = false;
    await traffic;
  }
  try {
    expect(await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 30_000 })).toEqual([]);
  } finally {
    reading = false;
    await readers;
    await reader.end();
  }

  expect(problems).toEqual([]);
  expect(reads).toBeGreaterThan(10);
  expect(pgResult.retiredSchema).toMatch(/^retired_/);
  expect(esResult.index).toBe(`${alias}-v2`);
  expect(esResult.previous).toEqual([`${alias}-v1`]);
  expect(await indicesOfAlias(fx.es, alias)).toEqual([`${alias}-v2`]);
  const [events] = await fx.db.sql`SELECT count(*)::int AS n FROM stock_events`;
  expect(events!.n).toBe(produced);
  const [orders] = await fx.db.sql`SELECT count(*)::int AS n FROM orders`;
  expect(orders!.n).toBe(sim.holds.size);
  // The live projector kept writing into the swapped-in tables (names resolved again after the move).
  const [retiredEvents] = await fx.db.sql.unsafe(`SELECT count(*)::int AS n FROM ${pgResult.retiredSchema}.stock_events`);
  expect(retiredEvents!.n).toBeLessThan(produced);
  console.log(`rebuild: postgres ${pgResult.seconds.toFixed(1)} s (${pgResult.copiedAtSwap} copied at swap), search ${esResult.seconds.toFixed(1)} s, ${reads} reader rounds, ${produced} events`);
}, 150_000);
