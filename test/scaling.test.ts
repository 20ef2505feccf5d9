/**
 * Consumer-group scaling (issue 13): the whole pipeline as real processes under a steady load —
 * three relays sharing the shards, two projector-postgres and two projector-search sharing their
 * groups. Mid-load one of each kind is killed with SIGKILL and a fresh one is started, so the
 * shard leases move twice and each consumer group rebalances twice. Afterwards the read side
 * converges with Redis, stock by stock, in both stores, and analytics counts no event twice.
 */
import { expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { readRedisCounters, waitForConvergence } from "../shared/verify/convergence.ts";
import { freePort } from "../shared/dev/env.ts";
import { brokers, readSideFixtures } from "./support/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { createHarness, REPO_ROOT } from "./support/relay-harness.ts";

const fx = readSideFixtures({ database: "scaling", search: true });
const children: Subprocess[] = [];

function spawnService(name: string, env: Record<string, string>): Subprocess {
  const child = Bun.spawn([process.execPath, `services/${name}/main.ts`], {
    cwd: REPO_ROOT,
    env: { ...(process.env as Record<string, string>), ...env, ADMIN_PORT: String(freePort()), LOG_LEVEL: process.env.SCALING_LOG_LEVEL ?? "error" },
    stdout: "ignore",
    stderr: "inherit",
  });
  children.push(child);
  return child;
}

test(
  "3 relays, 2+2 projectors; one of each killed -9 and replaced mid-load: the read side converges, analytics counts no event twice",
  async () => {
    const h = createHarness("scale");
    const alias = fx.alias("scalestocks");
    const pgGroup = uniqueName("scalepg");
    const esGroup = uniqueName("scalees");
    try {
      const stocks = Array.from({ length: 24 }, (_, i) => `sc${i}`);
      for (const id of stocks) await h.commands.createStock({ id, name: `scaling stock ${id}`, price: 250, quantity: 100_000, perUserLimit: 100_000, holdSeconds: 3_600 });
      const relayEnv = h.env({ KAFKA_PARTITIONS: "6", RELAY_LEASE_MS: "2000", LOG_LEVEL: "error" });
      const relay = () => spawnService("relay", relayEnv);
      const pg = () => spawnService("projector-postgres", { DATABASE_URL: fx.db.url, KAFKA_BROKERS: brokers.join(","), KAFKA_TOPIC: h.topic, PROJECTOR_GROUP_ID: pgGroup });
      const es = () => spawnService("projector-search", { KAFKA_BROKERS: brokers.join(","), KAFKA_TOPIC: h.topic, PROJECTOR_GROUP_ID: esGroup, ELASTICSEARCH_INDEX_ALIAS: alias });
      const relays = [relay(), relay(), relay()];
      await Bun.sleep(3_000); // the relays create the topic (6 partitions)
      const pgs = [pg(), pg()];
      const ess = [es(), es()];

      // A steady load: allocations, and every 4th hold bought, every 7th cancelled.
      let writing = true;
      let allocations = 0;
      let purchases = 0;
      let cancels = 0;
      const writer = (async () => {
        for (let i = 0; writing; i++) {
          await Promise.all(
            Array.from({ length: 20 }, async (_, j) => {
              const n = i * 20 + j;
              const userId = `u${n}`;
              const { allocation } = await h.commands.allocate({ stockId: stocks[n % stocks.length]!, userId, quantity: 1 + (n % 3) });
              allocations++;
              if (n % 4 === 0) {
                await h.commands.purchase({ allocationId: allocation.allocationId, userId });
                purchases++;
              } else if (n % 7 === 0) {
                await h.commands.cancel({ allocationId: allocation.allocationId, userId });
                cancels++;
              }
            }),
          );
          await Bun.sleep(50);
        }
      })();

      await Bun.sleep(8_000);
      for (const victim of [relays[0]!, pgs[0]!, ess[0]!]) victim.kill("SIGKILL");
      await Bun.sleep(4_000);
      relays.push(relay());
      pgs.push(pg());
      ess.push(es());
      await Bun.sleep(8_000);
      writing = false;
      await writer;

      const expected = async () => [...(await readRedisCounters(h.redis, h.keys, stocks)).values()];
      const mismatches = await waitForConvergence({ expected, sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 90_000, intervalMs: 500 });
      expect(mismatches).toEqual([]);

      const versions = (await expected()).reduce((n, s) => n + s.version, 0);
      const [events] = await fx.db.sql`SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS distinct_ids FROM stock_events WHERE aggregate_id = ANY(${stocks})`;
      const [totals] = await fx.db.sql`
        SELECT sum(holds_placed)::int AS placed, sum(purchases)::int AS purchases, sum(holds_cancelled)::int AS cancelled
        FROM sales_by_minute WHERE stock_id = ANY(${stocks})`;
      console.log(
        `[scaling] ${allocations} allocations, ${purchases} purchases, ${cancels} cancels; ${versions} events in Redis, ` +
          `${events!.n} rows in stock_events; analytics ${JSON.stringify(totals)}`,
      );
      expect(events).toEqual({ n: versions, distinct_ids: versions });
      expect(totals).toEqual({ placed: allocations, purchases, cancelled: cancels });
    } finally {
      for (const child of children) child.kill("SIGKILL");
      await Promise.all(children.map((c) => c.exited));
      await h.cleanup();
    }
  },
  240_000,
);
