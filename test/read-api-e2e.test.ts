/**
 * The seed scenarios through the whole pipeline: api (Lua scripts in Redis) → relay → Kafka →
 * projectors → PostgreSQL / Elasticsearch → read API.
 *   1. allocate → within 2 s the order is in the history and search counters match Redis;
 *   2. right after allocating the history may lag; it converges;
 *   3. projectors stopped, 5,000 allocations, purchases and cancels, projectors started → all there.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readRedisCounters, waitForConvergence } from "../shared/verify/convergence.ts";
import { eventually } from "./support/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { startPipeline, type Pipeline } from "./support/pipeline.ts";

let p: Pipeline;
const json = { "content-type": "application/json" };
const as = (userId: string) => p.as(userId);

async function createStock(name: string, quantity: number): Promise<string> {
  const res = await p.app.request("/api/stocks", {
    method: "POST",
    headers: { ...p.admin, ...json },
    body: JSON.stringify({ id: uniqueName("e"), name, description: "end to end", price: 250, quantity, perUserLimit: quantity }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

async function allocate(stockId: string, userId: string): Promise<string> {
  const res = await p.app.request(`/api/stocks/${stockId}/allocate`, { method: "POST", headers: { ...(await as(userId)), ...json }, body: "{}" });
  expect(res.status).toBe(201);
  return ((await res.json()) as { allocationId: string }).allocationId;
}

async function history(userId: string): Promise<Array<{ allocationId: string; status: string }>> {
  const items: Array<{ allocationId: string; status: string }> = [];
  let cursor: string | null = null;
  do {
    const res: Response = await p.app.request(`/api/orders/user/${userId}?limit=100${cursor ? `&cursor=${cursor}` : ""}`, { headers: p.admin });
    expect(res.status).toBe(200);
    const page = (await res.json()) as { items: typeof items; nextCursor: string | null };
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

beforeAll(async () => {
  p = await startPipeline("e2e");
}, 60_000);

afterAll(async () => {
  await p?.cleanup();
}, 30_000);

test("1. allocate → within 2 s the order is in the history and the search counters match Redis", async () => {
  const name = `Espresso machine ${uniqueName("x")}`;
  const stockId = await createStock(name, 50);
  const started = performance.now();
  const allocationId = await allocate(stockId, "erin");
  await eventually(async () => (await history("erin")).some((o) => o.allocationId === allocationId), { timeoutMs: 2_000, intervalMs: 20, what: "order in history" });
  const inHistoryMs = performance.now() - started;

  const strong = (await (await p.app.request(`/api/stocks/${stockId}`)).json()) as { available: number; held: number; sold: number; version: number };
  await eventually(
    async () => {
      const res = await p.app.request(`/api/stocks/search?q=${encodeURIComponent(name)}`);
      const page = (await res.json()) as { items: Array<{ id: string; available: number; held: number; sold: number; version: number }> };
      const hit = page.items.find((i) => i.id === stockId);
      return hit && hit.available === strong.available && hit.held === strong.held && hit.sold === strong.sold && hit.version === strong.version;
    },
    { timeoutMs: 2_000, intervalMs: 20, what: "search counters = Redis" },
  );
  const inSearchMs = performance.now() - started;
  expect(inHistoryMs).toBeLessThan(2_000);
  expect(inSearchMs).toBeLessThan(2_000);
  console.log(`allocate → history ${inHistoryMs.toFixed(0)} ms, → search ${inSearchMs.toFixed(0)} ms`);
}, 30_000);

test("2. right after allocating the history may lag; it converges", async () => {
  const stockId = await createStock("Lagging lamp", 10);
  const allocationId = await allocate(stockId, "lars");
  const immediately = (await history("lars")).some((o) => o.allocationId === allocationId); // either is fine
  const converged = await eventually(async () => (await history("lars")).find((o) => o.allocationId === allocationId), { what: "converged" });
  expect(converged.status).toBe("held");
  // A purchase shows up the same way.
  const res = await p.app.request(`/api/allocations/${allocationId}/purchase`, { method: "POST", headers: await as("lars") });
  expect(res.status).toBe(200);
  await eventually(async () => (await history("lars")).find((o) => o.allocationId === allocationId)?.status === "purchased", { what: "purchase projected" });
  console.log(`history had the order immediately: ${immediately}`);
}, 30_000);

test("3. projectors stopped, 5,000 allocations + purchases + cancels, projectors restarted → nothing lost", async () => {
  const stocks = await Promise.all(Array.from({ length: 20 }, (_, i) => createStock(`Bulk item ${i}`, 1_000)));
  await eventually(async () => (await readRedisCounters(p.h.redis, p.h.keys, stocks)).size === stocks.length);
  await p.stopProjectors();

  const expected = new Map<string, { userId: string; status: string }>();
  const users = Array.from({ length: 50 }, (_, i) => `bulk${i}`);
  let n = 0;
  const worker = async () => {
    while (n < 5_000) {
      const i = n++;
      const userId = users[i % users.length]!;
      const allocationId = await allocate(stocks[i % stocks.length]!, userId);
      let status = "held";
      if (i % 5 < 2) {
        const res = await p.app.request(`/api/allocations/${allocationId}/purchase`, { method: "POST", headers: await as(userId) });
        expect(res.status).toBe(200);
        status = "purchased";
      } else if (i % 5 === 2) {
        const res = await p.app.request(`/api/allocations/${allocationId}/cancel`, { method: "POST", headers: await as(userId) });
        expect(res.status).toBe(200);
        status = "cancelled";
      }
      expected.set(allocationId, { userId, status });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  expect(expected.size).toBe(5_000);

  await p.startProjectors();
  const mismatches = await waitForConvergence({
    expected: async () => [...(await readRedisCounters(p.h.redis, p.h.keys, stocks)).values()],
    sql: p.readerSql,
    es: p.readerEs,
    index: p.alias,
    timeoutMs: 60_000,
  });
  expect(mismatches).toEqual([]);

  const rows = await p.db.sql<{ allocation_id: string; user_id: string; status: string }[]>`
    SELECT allocation_id, user_id, status FROM orders WHERE stock_id = ANY(${stocks})`;
  expect(rows.length).toBe(5_000);
  for (const row of rows) expect({ userId: row.user_id, status: row.status }).toEqual(expected.get(row.allocation_id)!);
  // And through the API, for one user.
  const bulk0 = await history("bulk0");
  expect(bulk0.length).toBe([...expected.values()].filter((e) => e.userId === "bulk0").length);
}, 120_000);
