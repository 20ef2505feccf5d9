/**
 * The write side under a stampede, against the real Redis (issue 2): no oversell (I1),
 * per-user limit (I4), idempotency (I5), one event per change with versions +1 (I2).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createTestApi, describeEachRedis } from "./support/api.ts";
import { conservationBreach, outboxLength, readCounters, readOutbox } from "./support/invariants.ts";

describeEachRedis((target) => {
  const api = createTestApi({ shards: 16, redis: target.target });
  afterAll(() => api.close());
  async function createStock(body: Record<string, unknown>): Promise<string> {
    const res = await api.request("POST", "/api/stocks", { headers: api.admin, body: { name: "Limited sneaker", price: 12_900, ...body } });
    expect(res.status).toBe(201);
    return ((await res.json()) as { id: string }).id;
  }

  describe("stampede", () => {
    test("1,000 buyers, 100 units over real HTTP: exactly 100 held, 900 sold_out, I1 holds, 100 events", async () => {
      const stockId = await createStock({ id: "stampede", quantity: 100, perUserLimit: 1 });
      const base = api.listen();
      const headers = await Promise.all(Array.from({ length: 1000 }, (_, i) => api.user(`buyer-${i}`)));

      const responses = await Promise.all(
        headers.map((h) => fetch(`${base}/api/stocks/${stockId}/allocate`, { method: "POST", headers: h })),
      );
      const bodies = (await Promise.all(responses.map((r) => r.json()))) as Array<{ code?: string; allocationId?: string }>;

      const held = responses.filter((r) => r.status === 201).length;
      const soldOut = bodies.filter((b, i) => responses[i]!.status === 409 && b.code === "sold_out").length;
      expect(held).toBe(100);
      expect(soldOut).toBe(900);
      expect(new Set(bodies.map((b) => b.allocationId).filter(Boolean)).size).toBe(100);

      const counters = await readCounters(api.redis, api.keys, stockId);
      expect(conservationBreach(counters)).toBeNull();
      expect(counters).toMatchObject({ total: 100, available: 0, held: 100, sold: 0, version: 101 });

      const events = (await readOutbox(api.redis, api.keys)).filter((e) => e.aggregateId === stockId);
      expect(events.filter((e) => e.eventType === "StockAllocated")).toHaveLength(100);
      expect(events.at(-1)?.payload).toMatchObject({ available: 0, held: 100, sold: 0 });
    });

    test("50 concurrent requests from one user with perUserLimit 2: exactly 2 units held (I4)", async () => {
      const stockId = await createStock({ quantity: 100, perUserLimit: 2 });
      const alice = await api.user("alice");
      const responses = await Promise.all(
        Array.from({ length: 50 }, () => api.request("POST", `/api/stocks/${stockId}/allocate`, { headers: alice })),
      );
      const statuses = responses.map((r) => r.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(2);
      const rejected = await Promise.all(responses.filter((r) => r.status !== 201).map((r) => r.json() as Promise<{ code: string }>));
      expect(rejected.every((b) => b.code === "limit_exceeded")).toBe(true);
      expect(await readCounters(api.redis, api.keys, stockId)).toMatchObject({ available: 98, held: 2 });
      expect(await api.redis.hget(api.keys.stockBuyers(stockId), "alice")).toBe("2");
    });

    test("a quantity larger than the per-user limit is refused as limit_exceeded", async () => {
      const stockId = await createStock({ quantity: 10, perUserLimit: 2 });
      const res = await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers: await api.user("bob"), body: { quantity: 3 } });
      expect(res.status).toBe(409);
      expect(await res.json()).toMatchObject({ code: "limit_exceeded", remaining: 2 });
    });
  });

  describe("idempotency (I5)", () => {
    test("the same key twice returns the same allocation and appends one event", async () => {
      const stockId = await createStock({ quantity: 10, perUserLimit: 5 });
      const headers = { ...(await api.user("carol")), "Idempotency-Key": '"order-1"' };
      const before = await outboxLength(api.redis, api.keys);

      const first = await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers, body: { quantity: 2 } });
      const again = await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers, body: { quantity: 2 } });
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.headers.get("Idempotent-Replayed")).toBe("true");
      expect(await again.json()).toEqual(await first.json());
      expect(await outboxLength(api.redis, api.keys)).toBe(before + 1);
      expect(await readCounters(api.redis, api.keys, stockId)).toMatchObject({ available: 8, held: 2 });
    });

    test("concurrent requests with one key apply once", async () => {
      const stockId = await createStock({ quantity: 10, perUserLimit: 10 });
      const headers = { ...(await api.user("dave")), "Idempotency-Key": "burst-1" };
      const responses = await Promise.all(Array.from({ length: 20 }, () => api.request("POST", `/api/stocks/${stockId}/allocate`, { headers })));
      const ids = new Set(await Promise.all(responses.map(async (r) => ((await r.json()) as { allocationId: string }).allocationId)));
      expect(responses.every((r) => r.status === 201)).toBe(true);
      expect(ids.size).toBe(1);
      expect(await readCounters(api.redis, api.keys, stockId)).toMatchObject({ available: 9, held: 1, version: 2 });
    });

    test("a key is never replayed to another user, even when user and key join to the same text", async () => {
      // alice + "x:order-1" and alice:x + "order-1" both read "alice:x:order-1" once joined with ':'.
      const stockId = await createStock({ quantity: 10, perUserLimit: 5 });
      const first = await api.request("POST", `/api/stocks/${stockId}/allocate`, {
        headers: { ...(await api.user("alice")), "Idempotency-Key": "x:order-1" },
      });
      const second = await api.request("POST", `/api/stocks/${stockId}/allocate`, {
        headers: { ...(await api.user("alice:x")), "Idempotency-Key": "order-1" },
      });
      expect(first.status).toBe(201);
      expect(second.status).toBe(201);
      expect(second.headers.get("Idempotent-Replayed")).toBeNull();
      const [a, b] = [(await first.json()) as { allocationId: string; userId: string }, (await second.json()) as { allocationId: string; userId: string }];
      expect(a.userId).toBe("alice");
      expect(b.userId).toBe("alice:x");
      expect(b.allocationId).not.toBe(a.allocationId);
      expect(await readCounters(api.redis, api.keys, stockId)).toMatchObject({ available: 8, held: 2 });
    });

    test("the same key with a different body is 422 and changes nothing", async () => {
      const stockId = await createStock({ quantity: 10, perUserLimit: 5 });
      const headers = { ...(await api.user("erin")), "Idempotency-Key": "order-2" };
      expect((await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers, body: { quantity: 1 } })).status).toBe(201);
      const counters = await readCounters(api.redis, api.keys, stockId);
      const events = await outboxLength(api.redis, api.keys);

      const res = await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers, body: { quantity: 3 } });
      expect(res.status).toBe(422);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(await res.json()).toMatchObject({ code: "idempotency_key_reused", status: 422 });
      expect(await readCounters(api.redis, api.keys, stockId)).toEqual(counters);
      expect(await outboxLength(api.redis, api.keys)).toBe(events);
    });
  });

  describe("outbox events (I2)", () => {
    test("every event parses with the shared schema and each stock's versions rise by exactly 1", async () => {
      const stockId = await createStock({ quantity: 5, perUserLimit: 5 });
      const user = await api.user("frank");
      const a = (await (await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers: user })).json()) as { allocationId: string };
      const b = (await (await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers: user })).json()) as { allocationId: string };
      expect((await api.request("POST", `/api/allocations/${a.allocationId}/purchase`, { headers: user })).status).toBe(200);
      expect((await api.request("POST", `/api/allocations/${b.allocationId}/cancel`, { headers: user })).status).toBe(200);

      const events = await readOutbox(api.redis, api.keys); // throws if any entry fails the schema
      const byStock = Map.groupBy(events, (e) => e.aggregateId);
      expect(byStock.size).toBeGreaterThan(1);
      for (const [stock, list] of byStock) {
        expect({ stock, versions: list.map((e) => e.version) }).toEqual({ stock, versions: list.map((_, i) => i + 1) });
        expect(list[0]?.eventType).toBe("StockCreated");
      }
      const types = byStock.get(stockId)!.map((e) => e.eventType);
      expect(types).toEqual(["StockCreated", "StockAllocated", "StockAllocated", "PurchaseCompleted", "StockReleased"]);
      const counters = await readCounters(api.redis, api.keys, stockId);
      expect(byStock.get(stockId)!.at(-1)).toMatchObject({ version: counters.version, payload: { available: 4, held: 0, sold: 1 } });
    });
  });
});
