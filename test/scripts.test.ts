/**
 * The write-side Lua scripts against real Redis, where their contract is subtle: they check every
 * value before their first write (Lua has no rollback), cope with a hold whose stock is gone, stop
 * writing when the shard's outbox is full (503 outbox_full), and keep every amount exact.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { DomainError } from "../shared/domain/errors.ts";
import { MAX_PRICE, MAX_QUANTITY_PER_REQUEST } from "../shared/domain/policy.ts";
import { createTestApi, describeEachRedis } from "./support/api.ts";
import { readOutbox, snapshotKeys } from "./support/invariants.ts";

describeEachRedis((target) => {
  // One shard: every stock of this file shares one outbox, so its length is easy to steer.
  const api = createTestApi({ shards: 1, redis: target.target });
  afterAll(() => api.close());

  /** Every key under the prefix with its content: what "changed nothing" is compared with. */
  const snapshot = (on: typeof api = api) => snapshotKeys(on.redis, on.keys);

  async function rejects(work: Promise<unknown>): Promise<unknown> {
    try {
      await work;
    } catch (err) {
      return err;
    }
    throw new Error("expected a rejection");
  }

  let n = 0;
  const newStock = (extra: Partial<Parameters<typeof api.commands.createStock>[0]> = {}) =>
    api.commands.createStock({ id: `st-${++n}`, name: "Item", price: 1000, quantity: 10, perUserLimit: 5, holdSeconds: 600, ...extra });

  describe("validate before the first write", () => {
    test("allocate on a stock whose holdSeconds is unreadable writes nothing (it used to decrement first)", async () => {
      const stock = await newStock();
      await api.redis.hdel(api.keys.stock(stock.id), "holdSeconds");
      const before = await snapshot();
      expect(String(await rejects(api.commands.allocate({ stockId: stock.id, userId: "u1", quantity: 1 })))).toContain("corrupt");
      expect(await snapshot()).toBe(before);
    });

    test("purchase on a stock whose currency is unreadable writes nothing (it used to move units first)", async () => {
      const stock = await newStock();
      const { allocation } = await api.commands.allocate({ stockId: stock.id, userId: "u2", quantity: 2 });
      await api.redis.hdel(api.keys.stock(stock.id), "currency");
      const before = await snapshot();
      expect(String(await rejects(api.commands.purchase({ allocationId: allocation.allocationId, userId: "u2" })))).toContain("corrupt");
      expect(await snapshot()).toBe(before);
    });

    test("create with only an endsAt that Redis' clock has passed is invalid_request (a 400), and writes nothing", async () => {
      const before = await snapshot();
      const err = await rejects(api.commands.createStock({ id: "late", name: "Late", price: 1, quantity: 1, endsAt: Date.now() - 1 }));
      expect(err).toBeInstanceOf(DomainError);
      expect((err as DomainError).code).toBe("invalid_request");
      expect(await snapshot()).toBe(before);
    });
  });

  describe("a hold whose stock is gone", () => {
    test("cancel answers not_found and does not re-create the stock hash", async () => {
      const stock = await newStock();
      const { allocation } = await api.commands.allocate({ stockId: stock.id, userId: "u3", quantity: 1 });
      await api.redis.del(api.keys.stock(stock.id));
      const before = await snapshot();
      const err = await rejects(api.commands.cancel({ allocationId: allocation.allocationId, userId: "u3" }));
      expect((err as DomainError).code).toBe("not_found");
      expect(await snapshot()).toBe(before);
      expect(await api.redis.exists(api.keys.stock(stock.id))).toBe(0);
    });

    test("expire drops the due entry, gives the hold the retention TTL, and does not re-create the stock hash", async () => {
      const stock = await newStock({ holdSeconds: 1 });
      const { allocation } = await api.commands.allocate({ stockId: stock.id, userId: "u4", quantity: 1 });
      await api.redis.del(api.keys.stock(stock.id));
      await Bun.sleep(1_050);
      const outbox = await api.redis.xlen(api.keys.outbox(0));
      expect(await api.commands.expire(allocation.allocationId, stock.id)).toBe("stock_missing");
      expect(await api.redis.exists(api.keys.stock(stock.id))).toBe(0);
      expect(await api.redis.zscore(api.keys.holdsDue(0), allocation.allocationId)).toBeNull();
      expect(await api.redis.ttl(api.keys.hold(allocation.allocationId))).toBeGreaterThan(0);
      expect(await api.redis.xlen(api.keys.outbox(0))).toBe(outbox);
    });
  });

  describe("outbox_full (OUTBOX_MAX_LENGTH)", () => {
    test("at the limit allocate and create answer 503 outbox_full with Retry-After and change nothing; replays, purchases and cancels still work", async () => {
      const small = createTestApi({ shards: 1, redis: target.target, commands: { outboxMaxLength: 5 } });
      try {
        const alice = await small.user("alice");
        const create = (id: string) => small.request("POST", "/api/stocks", { headers: small.admin, body: { id, name: "Small", price: 100, quantity: 10, perUserLimit: 10 } });
        const allocate = (key: string) => small.request("POST", "/api/stocks/small/allocate", { headers: { ...alice, "Idempotency-Key": key } });
        expect((await create("small")).status).toBe(201); // outbox: 1
        const held: string[] = [];
        for (let i = 0; i < 4; i++) {
          const res = await allocate(`k${i}`); // outbox: 2..5
          expect(res.status).toBe(201);
          held.push(((await res.json()) as { allocationId: string }).allocationId);
        }
        expect(await small.redis.xlen(small.keys.outbox(0))).toBe(5);

        const before = await snapshot(small);
        const full = await allocate("k-full");
        expect(full.status).toBe(503);
        expect(full.headers.get("content-type")).toBe("application/problem+json");
        expect(Number(full.headers.get("retry-after"))).toBeGreaterThan(0);
        expect(await full.json()).toMatchObject({ status: 503, code: "outbox_full" });
        const fullCreate = await create("other");
        expect(fullCreate.status).toBe(503);
        expect(await fullCreate.json()).toMatchObject({ code: "outbox_full" });
        expect(await snapshot(small)).toBe(before);

        // A replay writes nothing, so it is still answered.
        const replay = await allocate("k0");
        expect(replay.status).toBe(201);
        expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
        // Purchase and cancel finish holds admitted under the limit (one event each): not refused.
        expect((await small.request("POST", `/api/allocations/${held[0]}/purchase`, { headers: alice })).status).toBe(200);
        expect((await small.request("POST", `/api/allocations/${held[1]}/cancel`, { headers: alice })).status).toBe(200);

        // Once the relay has trimmed, allocation works again.
        await small.redis.xtrim(small.keys.outbox(0), "MAXLEN", 0);
        expect((await allocate("k-after")).status).toBe(201);
      } finally {
        await small.close();
      }
    });
  });

  describe("money", () => {
    test("the largest price and quantity give an exact amount, in the answer and in the event", async () => {
      const stock = await newStock({ price: MAX_PRICE, quantity: MAX_QUANTITY_PER_REQUEST, perUserLimit: MAX_QUANTITY_PER_REQUEST });
      const quantity = MAX_QUANTITY_PER_REQUEST - 1; // 99,899,999,999,001: 14 significant digits, none of them zero to hide rounding
      const { allocation } = await api.commands.allocate({ stockId: stock.id, userId: "rich", quantity });
      const { allocation: bought } = await api.commands.purchase({ allocationId: allocation.allocationId, userId: "rich" });
      const exact = BigInt(MAX_PRICE) * BigInt(quantity);
      expect(exact).toBeLessThan(10n ** 14n);
      expect(BigInt(bought.amount!)).toBe(exact);
      const event = (await readOutbox(api.redis, api.keys)).find((e) => e.eventType === "PurchaseCompleted" && e.payload.allocationId === allocation.allocationId);
      expect(BigInt((event!.payload as { amount: number }).amount)).toBe(exact);
    });
  });

  describe("every key has a TTL or an owner (docs/design.md §3)", () => {
    test("a sale with an end, and its buyers, expire once no hold can refer to them; a sale without an end is kept", async () => {
      const own = createTestApi({ shards: 1, redis: target.target, commands: { holdRetentionSeconds: 3600 } });
      try {
        const endsAt = Date.now() + 60_000;
        const ending = await own.commands.createStock({ id: "ending", name: "Ends", price: 1, quantity: 5, holdSeconds: 600, endsAt });
        const forever = await own.commands.createStock({ id: "forever", name: "Open", price: 1, quantity: 5 });
        await own.commands.allocate({ stockId: ending.id, userId: "b1", quantity: 1 });
        await own.commands.allocate({ stockId: forever.id, userId: "b1", quantity: 1 });
        const expected = endsAt + (600 + 3600) * 1000; // endsAt + holdSeconds + HOLD_RETENTION_SECONDS
        for (const key of [own.keys.stock(ending.id), own.keys.stockBuyers(ending.id)]) {
          const at = Date.now() + (await own.redis.pttl(key));
          expect(Math.abs(at - expected)).toBeLessThan(5_000);
        }
        expect(await own.redis.pttl(own.keys.stock(forever.id))).toBe(-1);
        // The ending sale still reads as before.
        expect(await own.commands.getStock(ending.id)).toMatchObject({ id: "ending", available: 4, status: "live" });
      } finally {
        await own.close();
      }
    });
  });
});
