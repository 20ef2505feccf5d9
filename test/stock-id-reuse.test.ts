/**
 * Issue 21 item 7: a stock id is never reused. A sale with an end is deleted by Redis at keepUntil
 * (endsAt + holdSeconds + retention); its id stays taken (`<p>:{s}:stock-ids`, no TTL). A second
 * life of the id would start again at version 1, which the read models' version guards take for the
 * old stock's past, and a hold of the first life could release its units into the second.
 * Both paths, through the api: creating the id again is refused (409 stock_id_taken, nothing
 * written), and the old hold cannot release into anything (cancel 404, expire stock_missing, no
 * stock hash re-created). Before the fix the second create answered 201 with a new stock at
 * version 1, and cancelling the old hold gave its unit to it (available above total).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createTestApi, type TestApi } from "./support/api.ts";
import { waitUntil } from "./support/topic-reader.ts";

let api: TestApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

describe("a stock id used once", () => {
  test(
    "is refused after the stock expired (409 stock_id_taken), and an old hold cannot release into a new stock of the id",
    async () => {
      // A retention of 1 s, so the sale's keys expire ~3 s after its start (keepUntil = endsAt + (hold + retention) s).
      api = createTestApi({ shards: 2, commands: { holdRetentionSeconds: 1 } });
      const t = api;
      const body = { id: "once", name: "Once", price: 500, quantity: 10, holdSeconds: 1, endsAt: new Date(Date.now() + 1_500).toISOString() };
      expect((await t.request("POST", "/api/stocks", { headers: t.admin, body })).status).toBe(201);
      const buyer = await t.user("early-buyer");
      const held = await t.request("POST", "/api/stocks/once/allocate", { headers: buyer });
      expect(held.status).toBe(201);
      const { allocationId } = (await held.json()) as { allocationId: string };

      // The first life ends: Redis deletes the stock hash at keepUntil (the hold, still 'held', stays).
      await waitUntil(async () => (await t.redis.exists(t.keys.stock("once"))) === 0, 15_000, "the stock hash expired");
      const outbox = t.keys.outbox(t.keys.shardOf("once"));
      const eventsBefore = await t.redis.xlen(outbox);

      // Path 1: the id cannot be created again, and the refusal writes nothing.
      const again = await t.request("POST", "/api/stocks", { headers: t.admin, body: { ...body, endsAt: new Date(Date.now() + 60_000).toISOString() } });
      const problem = (await again.json()) as { code?: string; detail?: string };
      console.log(`[stock id reuse] create again: ${again.status} ${problem.code}: ${problem.detail}`);
      expect(again.status).toBe(409);
      expect(again.headers.get("content-type")).toStartWith("application/problem+json");
      expect(problem.code).toBe("stock_id_taken");
      expect(await t.redis.exists(t.keys.stock("once"))).toBe(0);
      expect(await t.redis.xlen(outbox)).toBe(eventsBefore);

      // Path 2: the first life's hold releases into nothing: no stock is (re)created, no event.
      const cancel = await t.request("POST", `/api/allocations/${allocationId}/cancel`, { headers: buyer });
      expect(cancel.status).toBe(404);
      expect(await t.commands.expire(allocationId, "once")).toBe("stock_missing");
      expect(await t.redis.exists(t.keys.stock("once"))).toBe(0);
      expect((await t.request("GET", "/api/stocks/once")).status).toBe(404);
      expect(await t.redis.xlen(outbox)).toBe(eventsBefore);
    },
    30_000,
  );

  test("a live stock's id answers 409 stock_exists, as before (the two refusals stay apart)", async () => {
    api = createTestApi({ shards: 2 });
    const body = { id: "live", name: "Live", price: 500, quantity: 10 };
    expect((await api.request("POST", "/api/stocks", { headers: api.admin, body })).status).toBe(201);
    const again = await api.request("POST", "/api/stocks", { headers: api.admin, body });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { code: string }).code).toBe("stock_exists");
  });
});
