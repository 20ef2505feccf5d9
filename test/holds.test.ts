/** Holds end: cancel and expiry give units back (I1 after each), expired holds cannot be bought. */
import { afterAll, describe, expect, setSystemTime, test } from "bun:test";
import { createExpirer } from "../services/expirer/expirer.ts";
import { createLogger } from "../shared/logger.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { IDEMPOTENCY_TTL_SECONDS } from "../shared/domain/policy.ts";
import { createTestApi, describeEachRedis } from "./support/api.ts";
import { conservationBreach, readCounters, readOutbox } from "./support/invariants.ts";

describeEachRedis((target) => {
  const api = createTestApi({ shards: 16, redis: target.target });
  afterAll(() => api.close());
  async function stockWithHold(userId: string, holdSeconds: number, quantity = 2) {
    const stock = await api.commands.createStock({ name: "Console", price: 49_900, quantity: 10, perUserLimit: 3, holdSeconds });
    const user = await api.user(userId);
    const res = await api.request("POST", `/api/stocks/${stock.id}/allocate`, { headers: user, body: { quantity } });
    expect(res.status).toBe(201);
    return { stockId: stock.id, user, hold: (await res.json()) as { allocationId: string; expiresAt: string } };
  }

  const expirerFor = (on: typeof api = api, options: { holdRetentionSeconds?: number } = {}) =>
    createExpirer({
      redis: on.redis,
      keys: on.keys,
      logger: createLogger("expirer-test", "silent"),
      registry: createMetricsRegistry("expirer"),
      intervalMs: 200,
      batchSize: 100,
      ...options,
    });

  describe("cancel", () => {
    test("gives the units and the user's limit back, once", async () => {
      const { stockId, user, hold } = await stockWithHold("gina", 600);
      const res = await api.request("POST", `/api/allocations/${hold.allocationId}/cancel`, { headers: user });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: "cancelled", quantity: 2 });
      const counters = await readCounters(api.redis, api.keys, stockId);
      expect(counters).toMatchObject({ available: 10, held: 0, sold: 0 });
      expect(conservationBreach(counters)).toBeNull();
      expect(await api.redis.hexists(api.keys.stockBuyers(stockId), "gina")).toBe(0);

      // Cancelling again answers the same view and changes nothing.
      const again = await api.request("POST", `/api/allocations/${hold.allocationId}/cancel`, { headers: user });
      expect(again.status).toBe(200);
      expect(await readCounters(api.redis, api.keys, stockId)).toEqual(counters);
      // A cancelled hold cannot be bought.
      const buy = await api.request("POST", `/api/allocations/${hold.allocationId}/purchase`, { headers: user });
      expect(buy.status).toBe(409);
      expect(await buy.json()).toMatchObject({ code: "hold_not_active", status: 409, holdStatus: "cancelled" });
    });

    test("cancelling a purchased hold is 409 hold_not_active: the problem's status stays 409, the hold's is holdStatus", async () => {
      const { user, hold } = await stockWithHold("hedy", 600);
      expect((await api.request("POST", `/api/allocations/${hold.allocationId}/purchase`, { headers: user })).status).toBe(200);
      const res = await api.request("POST", `/api/allocations/${hold.allocationId}/cancel`, { headers: user });
      expect(res.status).toBe(409);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({ status: 409, code: "hold_not_active", holdStatus: "purchased" });
      expect(body.type).toBe("https://flash-sale.dev/problems/hold-not-active");
    });

    test("purchase moves units from held to sold and records the amount", async () => {
      const { stockId, user, hold } = await stockWithHold("hank", 600);
      const res = await api.request("POST", `/api/allocations/${hold.allocationId}/purchase`, { headers: user });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ status: "purchased", amount: 99_800, currency: "EUR" });
      const counters = await readCounters(api.redis, api.keys, stockId);
      expect(counters).toMatchObject({ available: 8, held: 0, sold: 2 });
      expect(conservationBreach(counters)).toBeNull();
      const view = await api.request("GET", `/api/allocations/${hold.allocationId}`, { headers: user });
      expect(await view.json()).toMatchObject({ status: "purchased" });
    });
  });

  describe("expiry", () => {
    test("a hold of 1 s is released by the expirer within 2 s, with StockReleased(expired)", async () => {
      const expirer = expirerFor();
      expirer.start();
      try {
        const { stockId, hold } = await stockWithHold("ivy", 1);
        const deadline = Date.now() + 2_000;
        let status = "held";
        while (status === "held" && Date.now() < deadline) {
          await Bun.sleep(50);
          status = (await api.commands.getAllocation(hold.allocationId))?.status ?? "missing";
        }
        expect(status).toBe("expired");
        const counters = await readCounters(api.redis, api.keys, stockId);
        expect(counters).toMatchObject({ available: 10, held: 0 });
        expect(conservationBreach(counters)).toBeNull();
        const released = (await readOutbox(api.redis, api.keys)).find((e) => e.aggregateId === stockId && e.eventType === "StockReleased");
        expect(released?.payload).toMatchObject({ reason: "expired", allocationId: hold.allocationId, quantity: 2 });
        expect(await api.redis.zscore(api.keys.holdsDue(api.keys.shardOf(stockId)), hold.allocationId)).toBeNull();
      } finally {
        await expirer.stop();
      }
    });

    test("buying a hold past its expiry fails with hold_expired and changes nothing", async () => {
      const { stockId, user, hold } = await stockWithHold("jack", 1);
      await Bun.sleep(1_100);
      const before = await readCounters(api.redis, api.keys, stockId);
      const res = await api.request("POST", `/api/allocations/${hold.allocationId}/purchase`, { headers: user });
      expect(res.status).toBe(409);
      expect(await res.json()).toMatchObject({ code: "hold_expired" });
      expect(await readCounters(api.redis, api.keys, stockId)).toEqual(before);
    });

    test("after the expirer released it, buying answers hold_expired too (one code for one situation)", async () => {
      const { stockId, user, hold } = await stockWithHold("joan", 1);
      await Bun.sleep(1_100);
      await expirerFor().tick();
      expect((await api.commands.getAllocation(hold.allocationId))?.status).toBe("expired");
      const before = await readCounters(api.redis, api.keys, stockId);
      const res = await api.request("POST", `/api/allocations/${hold.allocationId}/purchase`, { headers: user });
      expect(res.status).toBe(409);
      expect(await res.json()).toMatchObject({ status: 409, code: "hold_expired" });
      expect(await readCounters(api.redis, api.keys, stockId)).toEqual(before);
    });

    test("an expirer whose clock is 10 s ahead of Redis does not spin: due means due by Redis time", async () => {
      const own = createTestApi({ shards: 1, redis: target.target });
      const expirer = expirerFor(own);
      try {
        const stock = await own.commands.createStock({ name: "Skew", price: 100, quantity: 250, perUserLimit: 1, holdSeconds: 5 });
        await Promise.all(Array.from({ length: 250 }, (_, i) => own.commands.allocate({ stockId: stock.id, userId: `skew-${i}`, quantity: 1 })));
        setSystemTime(new Date(Date.now() + 10_000)); // this process's clock only; Redis keeps its own
        const started = performance.now();
        // By the skewed clock all 250 are due; by Redis' none is. Full batches of not_due used to loop until they were.
        const outcome = await Promise.race([expirer.tick(), Bun.sleep(3_000).then(() => "still spinning after 3 s")]);
        setSystemTime();
        expect(outcome).toBe(0);
        expect(performance.now() - started).toBeLessThan(3_000);
        expect(await readCounters(own.redis, own.keys, stock.id)).toMatchObject({ available: 0, held: 250 });
      } finally {
        setSystemTime();
        await expirer.stop(); // ends a tick that is still looping (before the fix)
        await own.close();
      }
    });

    test("three expirers racing over 300 due holds release each exactly once", async () => {
      const stock = await api.commands.createStock({ name: "Race", price: 100, quantity: 300, perUserLimit: 1, holdSeconds: 1 });
      await Promise.all(Array.from({ length: 300 }, (_, i) => api.commands.allocate({ stockId: stock.id, userId: `racer-${i}`, quantity: 1 })));
      await Bun.sleep(1_050);
      const dueCounts = await Promise.all(api.keys.allShards().map((s) => api.redis.zcount(api.keys.holdsDue(s), "-inf", Date.now())));
      const due = dueCounts.reduce((a, b) => a + b, 0); // 300, plus any hold an earlier test left to expire
      expect(due).toBeGreaterThanOrEqual(300);
      const expirers = [expirerFor(), expirerFor(), expirerFor()];
      const released = await Promise.all(expirers.map((e) => e.tick()));
      expect(released.reduce((a, b) => a + b, 0)).toBe(due);
      expect(await readCounters(api.redis, api.keys, stock.id)).toMatchObject({ available: 300, held: 0, version: 601 });
      const events = (await readOutbox(api.redis, api.keys)).filter((e) => e.aggregateId === stock.id && e.eventType === "StockReleased");
      expect(events).toHaveLength(300);
    });
  });

  describe("retention (HOLD_RETENTION_SECONDS)", () => {
    test("by default a finished hold is kept exactly as long as idempotency needs it: IDEMPOTENCY_TTL_SECONDS, not a week", async () => {
      // The api's and the expirer's defaults, as a deployment that sets nothing has them.
      const stock = await api.commands.createStock({ name: "Churn", price: 100, quantity: 10, perUserLimit: 10, holdSeconds: 1 });
      const allocate = async (userId: string, key?: string) => {
        const headers = { ...(await api.user(userId)), ...(key ? { "Idempotency-Key": key } : {}) };
        const res = await api.request("POST", `/api/stocks/${stock.id}/allocate`, { headers, body: { quantity: 1 } });
        expect(res.status).toBe(201);
        return ((await res.json()) as { allocationId: string }).allocationId;
      };
      const cancelled = await allocate("churner", "churn-key-1");
      const bought = await allocate("buyer");
      const expired = await allocate("sleeper");
      expect((await api.request("POST", `/api/allocations/${cancelled}/cancel`, { headers: await api.user("churner") })).status).toBe(200);
      expect((await api.request("POST", `/api/allocations/${bought}/purchase`, { headers: await api.user("buyer") })).status).toBe(200);
      await Bun.sleep(1_100); // the 1 s hold is due
      expect(await expirerFor(api).tick()).toBe(1);
      const ttls = Object.fromEntries(
        await Promise.all(Object.entries({ cancelled, bought, expired }).map(async ([name, id]) => [name, await api.redis.ttl(api.keys.hold(id))] as const)),
      );
      console.log(`[retention] finished holds' TTL (s): ${JSON.stringify(ttls)}; IDEMPOTENCY_TTL_SECONDS = ${IDEMPOTENCY_TTL_SECONDS}`);
      for (const ttl of Object.values(ttls)) {
        expect(ttl).toBeGreaterThan(IDEMPOTENCY_TTL_SECONDS - 10);
        expect(ttl).toBeLessThanOrEqual(IDEMPOTENCY_TTL_SECONDS);
      }
      // The Idempotency-Key record that names the cancelled hold dies no later than the hold: a replay
      // always finds the hold it names (and a retried cancel answers it again, not 404).
      const recordTtl = await api.redis.ttl(api.keys.idempotency(stock.id, "churner", "churn-key-1"));
      expect(recordTtl).toBeGreaterThan(0);
      expect(recordTtl).toBeLessThanOrEqual(ttls.cancelled!);
      expect(await allocate("churner", "churn-key-1")).toBe(cancelled);
      const again = await api.request("POST", `/api/allocations/${cancelled}/cancel`, { headers: await api.user("churner") });
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ status: "cancelled" });
      const bytes = await api.redis.call("MEMORY", "USAGE", api.keys.hold(cancelled));
      console.log(`[retention] one cancelled hold: ${String(bytes)} bytes (MEMORY USAGE)`);
    });

    test("purchased, cancelled and expired holds get the configured TTL, from the api and from the expirer", async () => {
      const short = createTestApi({ shards: 2, redis: target.target, commands: { holdRetentionSeconds: 120 } });
      try {
        const stock = await short.commands.createStock({ name: "Retention", price: 100, quantity: 10, perUserLimit: 5, holdSeconds: 1 });
        const take = async (userId: string) => (await short.commands.allocate({ stockId: stock.id, userId, quantity: 1 })).allocation.allocationId;
        const [bought, cancelled, expired] = [await take("r1"), await take("r2"), await take("r3")];
        // A live hold has no TTL: its owner is the expirer (the due set), which finishes it.
        expect(await short.redis.ttl(short.keys.hold(expired))).toBe(-1);
        await short.commands.purchase({ allocationId: bought, userId: "r1" });
        await short.commands.cancel({ allocationId: cancelled, userId: "r2" });
        await Bun.sleep(1_100);
        expect(await expirerFor(short, { holdRetentionSeconds: 90 }).tick()).toBe(1);
        for (const [id, max] of [[bought, 120], [cancelled, 120], [expired, 90]] as const) {
          const ttl = await short.redis.ttl(short.keys.hold(id));
          expect(ttl).toBeGreaterThan(max - 10);
          expect(ttl).toBeLessThanOrEqual(max);
        }
      } finally {
        await short.close();
      }
    });
  });
});
