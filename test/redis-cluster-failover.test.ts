/**
 * The write side on a Redis Cluster that changes under load (docs/design.md §11), on a private
 * 3 + 3 cluster (ports 7006-7011, started by scripts/stack.sh in a temporary stack dir):
 *   - resharding: the slots of two shards move to another master (CLUSTER SETSLOT + MIGRATE) while
 *     allocations run; the client follows ASK/MOVED/TRYAGAIN, every request succeeds, nothing is lost;
 *   - failover: kill -9 of a master; while no master owns its slots the api answers 503
 *     store_unavailable (problem+json), the replica is promoted, and the same api and expirer
 *     recover by themselves.
 * The verifier (shared/verify) checks I1, I2 and I4 on every stock afterwards, scanning every master.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createExpirer } from "../services/expirer/expirer.ts";
import { createLogger } from "../shared/logger.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { formatReport } from "../shared/verify/report.ts";
import { verify } from "../shared/verify/verify.ts";
import { createTestApi, type TestApi } from "./support/api.ts";
import { startPrivateCluster, type PrivateCluster } from "./support/private-cluster.ts";

const SHARDS = 16;
const STOCKS = 48;

let cluster: PrivateCluster;
let api: TestApi;
let stocks: string[];
let user: Record<string, string>;

beforeAll(async () => {
  // The node timeout is longer than the client's retry budget (~3 s), so the test sees the window in which
  // no master owns the slots (503), not only requests that waited it out.
  cluster = await startPrivateCluster({ basePort: 7006, nodeTimeoutMs: 6000 });
  api = createTestApi({ shards: SHARDS, redis: cluster.target });
  api.redis.on("error", () => {}); // a killed node is expected here
  stocks = [];
  for (let i = 0; i < STOCKS; i++) {
    stocks.push((await api.commands.createStock({ id: `c${i}`, name: `Item ${i}`, price: 100, quantity: 1_000_000, perUserLimit: 1_000_000 })).id);
  }
  // Every master holds some of the stocks (16 shards over 3 masters, docs/design.md §11).
  user = await api.user("loader");
}, 60_000);

afterAll(async () => {
  await api?.close().catch(() => {});
  await cluster?.stop();
});

/** The slot of shard n: every key of the shard carries the hash tag {n}. */
const slotOf = async (shard: number) => Number(await api.redis.call("CLUSTER", "KEYSLOT", `{${shard}}`));

interface Outcome {
  at: number;
  stockId: string;
  status: number;
  code?: string;
  contentType: string | null;
  allocationId?: string;
}

/**
 * A steady allocation load over all stocks (closed loop, `workers` in flight) until stopped, plus
 * one worker per `spare` list that only allocates on those stocks. A closed-loop worker that hits a
 * dead master's stock waits out the client's retries (~3 s) before its 503, so after a kill every
 * all-stocks worker soon waits on the victim: the spare workers are the clients of the other masters,
 * which must keep being served meanwhile.
 */
function startLoad(workers = 12, spare: string[][] = []) {
  const outcomes: Outcome[] = [];
  let running = true;
  const loop = async (w: number, over: string[]) => {
    let i = w;
    while (running) {
      const stockId = over[i++ % over.length]!;
      const res = await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers: user });
      const body = (await res.json()) as { code?: string; allocationId?: string };
      outcomes.push({ at: Date.now(), stockId, status: res.status, code: body.code, contentType: res.headers.get("content-type"), allocationId: body.allocationId });
      if (res.status !== 201) await Bun.sleep(25);
    }
  };
  const done = Promise.all([...Array.from({ length: workers }, (_, w) => loop(w, stocks)), ...spare.map((over, w) => loop(w, over))]);
  return {
    outcomes,
    async stop() {
      running = false;
      await done;
    },
  };
}

async function verifyClean(): Promise<void> {
  const report = await verify({ redis: api.redis, prefix: api.keys.prefix, layers: ["redis"], outbox: "full" });
  if (!report.ok) console.log(formatReport(report));
  expect(report.ok).toBe(true);
  expect(report.stocks).toBeGreaterThanOrEqual(STOCKS);
}

describe("Redis Cluster under change (private cluster 7006-7011)", () => {
  test("resharding two shards' slots under live allocations: only retried redirections, nothing lost", async () => {
    const shards = [0, 3]; // on different masters of the initial layout (slots 13907 and 1584)
    const slots = await Promise.all(shards.map(slotOf));
    const owners = await Promise.all(slots.map((s) => cluster.ownerOf(s)));
    const masters = (await cluster.topology()).filter((n) => n.role === "master");
    const load = startLoad();
    await Bun.sleep(1_000);
    const movedKeys: number[] = [];
    const migrationMs: number[] = [];
    for (const [i, slot] of slots.entries()) {
      // Any other master takes it.
      const to = masters.find((m) => m.port !== owners[i]!.master)!;
      const t = Date.now();
      // 10 keys per MIGRATE as redis-cli --cluster reshard does, paced, so the slot stays half migrated (TRYAGAIN) for ~1 s.
      movedKeys.push(await cluster.migrateSlot(slot, to.port, { keysPerBatch: 10, pauseMs: 20 }));
      migrationMs.push(Date.now() - t);
      expect((await cluster.ownerOf(slot)).master).toBe(to.port);
    }
    await Bun.sleep(1_000);
    await load.stop();

    console.log(`[reshard] slots ${slots.join(", ")}: ${movedKeys.join(" and ")} keys moved in ${migrationMs.join(" and ")} ms under ${load.outcomes.length} allocations`);
    const bad = load.outcomes.filter((o) => o.status !== 201);
    expect(bad).toEqual([]);
    const onMoved = load.outcomes.filter((o) => shards.includes(api.keys.shardOf(o.stockId)));
    expect(onMoved.length).toBeGreaterThan(50);
    expect(movedKeys.every((n) => n > 0)).toBe(true);
    // Nothing lost: every acknowledged hold is in Redis, on the slot's new owner.
    const holds = await Promise.all(load.outcomes.map((o) => api.redis.hget(api.keys.hold(o.allocationId!), "status")));
    expect(holds.filter((s) => s !== "held")).toEqual([]);
    await verifyClean();
  }, 120_000);

  test("failover: kill -9 of a master → 503 store_unavailable while its slots have no owner, then api and expirer recover", async () => {
    const expirer = createExpirer({
      redis: api.redis,
      keys: api.keys,
      logger: createLogger("expirer-test", "silent"),
      registry: createMetricsRegistry("expirer"),
      intervalMs: 200,
      batchSize: 100,
    });
    expirer.start();
    try {
      const victimSlot = await slotOf(0);
      const victim = (await cluster.ownerOf(victimSlot)).master;
      const victimShards = new Set<number>();
      for (let s = 0; s < SHARDS; s++) if ((await cluster.ownerOf(await slotOf(s))).master === victim) victimShards.add(s);
      const onVictim = (stockId: string) => victimShards.has(api.keys.shardOf(stockId));

      const others = stocks.filter((id) => !onVictim(id));
      const load = startLoad(12, [others, others]);
      await Bun.sleep(1_000);
      const killedAt = Date.now();
      await cluster.kill(victim);
      // The replica takes over after the node timeout (6 s) and an election.
      await cluster.waitOk(30_000, (nodes) =>
        nodes.some((n) => n.port !== victim && n.role === "master" && !n.failed && n.slots.some(([a, b]) => victimSlot >= a && victimSlot <= b)),
      );
      const promotedAt = Date.now();
      // Recovery by itself: the same api answers 201 again for the victim's stocks.
      const recoveredBy = promotedAt + 15_000;
      let recoveredAt = 0;
      while (!recoveredAt && Date.now() < recoveredBy) {
        await Bun.sleep(200);
        recoveredAt = load.outcomes.find((o) => o.at > promotedAt && onVictim(o.stockId) && o.status === 201)?.at ?? 0;
      }
      await Bun.sleep(1_500);
      await load.stop();

      const before = load.outcomes.filter((o) => o.at < killedAt);
      expect(before.length).toBeGreaterThan(50);
      expect(before.filter((o) => o.status !== 201)).toEqual([]);
      const outage = load.outcomes.filter((o) => o.status !== 201);
      // Never a 500, never anything but 201 or a 503 problem with its stable code.
      expect(outage.length).toBeGreaterThan(0);
      for (const o of outage) expect({ status: o.status, code: o.code, type: o.contentType }).toEqual({ status: 503, code: "store_unavailable", type: "application/problem+json" });
      expect(outage.filter((o) => onVictim(o.stockId)).length).toBeGreaterThan(0);
      expect(outage.filter((o) => !onVictim(o.stockId))).toEqual([]); // only the shards that lost their master
      // The other masters keep serving their shards meanwhile (cluster-require-full-coverage no).
      const othersServed = load.outcomes.filter((o) => o.at > killedAt + 500 && o.at < promotedAt && !onVictim(o.stockId) && o.status === 201);
      expect(othersServed.length).toBeGreaterThan(0);
      expect(recoveredAt).toBeGreaterThan(0);
      const after = load.outcomes.filter((o) => o.at > recoveredAt + 500);
      expect(after.filter((o) => o.status !== 201)).toEqual([]);
      expect(after.filter((o) => onVictim(o.stockId)).length).toBeGreaterThan(20);
      console.log(
        `[failover] ${before.length} ok before; ${outage.length} × 503 from ${Math.min(...outage.map((o) => o.at)) - killedAt} to ${Math.max(...outage.map((o) => o.at)) - killedAt} ms after kill -9; ` +
          `replica promoted after ${promotedAt - killedAt} ms; 201 again on the victim's stocks ${recoveredAt - killedAt} ms after the kill; ` +
          `${outage.filter((o) => onVictim(o.stockId)).length} of the 503s on the victim's shards; ${othersServed.length} × 201 on the other masters' shards before the promotion`,
      );

      // The expirer recovers too: a 1-second hold on the promoted master's shards is released.
      let shortId = "";
      for (let i = 0; !shortId; i++) if (onVictim(`short-${i}`)) shortId = `short-${i}`;
      await api.commands.createStock({ id: shortId, name: "Short", price: 1, quantity: 10, holdSeconds: 1 });
      const { allocationId } = (await api.commands.allocate({ stockId: shortId, userId: "late", quantity: 1 })).allocation;
      const until = Date.now() + 10_000;
      let status: string | undefined = "held";
      while (status === "held" && Date.now() < until) {
        await Bun.sleep(200);
        status = (await api.commands.getAllocation(allocationId))?.status;
      }
      expect(status).toBe("expired");
      expect(expirer.isHealthy()).toBe(true);
      await verifyClean();
    } finally {
      await expirer.stop();
    }
  }, 120_000);
});
