/**
 * Read-your-writes on demand (docs/api.md, issue 23 item 4), through the whole pipeline on the real
 * stores: api (Lua in Redis) → relay → Kafka → projectors → PostgreSQL / Elasticsearch → read api.
 * Every write answers a Consistency-Token; a read that sends it back waits (bounded) for its store
 * and says `fresh` (and shows the write) or `stale` (the wait ran out, current data, still 200).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createReadConsistency } from "../services/api/consistency/stores.ts";
import { decodeConsistencyToken, encodeConsistencyToken } from "../shared/domain/consistency-token.ts";
import { notifyProgress } from "../shared/stores/postgres/progress.ts";
import { testLogger } from "./support/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { startPipeline, type Pipeline } from "./support/pipeline.ts";

let p: Pipeline;
const json = { "content-type": "application/json" };
const as = (userId: string) => p.as(userId);
const request = (path: string, init?: RequestInit) => p.app.request(path, init);

async function createStock(name: string, quantity: number): Promise<{ id: string; token: string }> {
  const res = await request("/api/stocks", {
    method: "POST",
    headers: { ...p.admin, ...json },
    body: JSON.stringify({ id: uniqueName("ryw"), name, description: "read your writes", price: 300, quantity, perUserLimit: quantity }),
  });
  expect(res.status).toBe(201);
  const token = res.headers.get("Consistency-Token");
  expect(token).toBeTruthy();
  return { id: ((await res.json()) as { id: string }).id, token: token! };
}

async function allocate(stockId: string, userId: string): Promise<{ allocationId: string; token: string }> {
  const res = await request(`/api/stocks/${stockId}/allocate`, { method: "POST", headers: { ...(await as(userId)), ...json }, body: "{}" });
  expect(res.status).toBe(201);
  const token = res.headers.get("Consistency-Token");
  expect(token).toBeTruthy();
  return { allocationId: ((await res.json()) as { allocationId: string }).allocationId, token: token! };
}

type Order = { allocationId: string; status: string };
async function history(userId: string, headers: Record<string, string> = {}) {
  const res = await request(`/api/orders/user/${userId}?limit=5`, { headers: { ...(await as(userId)), ...headers } });
  return { res, items: res.status === 200 ? ((await res.json()) as { items: Order[] }).items : [] };
}

beforeAll(async () => {
  // Search refreshed after each bulk (PROJECTOR_SEARCH_REFRESH=after-write), as in the freshness bench.
  p = await startPipeline("ryw", { searchRefresh: "after-write" });
}, 60_000);

afterAll(async () => {
  await p?.cleanup();
}, 30_000);

describe("with the projectors running", () => {
  test("allocate, then at once the history with the token: the hold is there and fresh, 1,000 times in a row", async () => {
    const { id: stockId } = await createStock("Token toaster", 1_000);
    const users = Array.from({ length: 20 }, (_, i) => uniqueName(`ryw${i}`));
    const waits: number[] = [];
    const serverWaits: number[] = [];
    const failures: string[] = [];
    // 20 users side by side, each allocating and reading back 50 times in a row (1,000 in all).
    await Promise.all(
      users.map(async (userId) => {
        for (let i = 0; i < 50; i++) {
          const { allocationId, token } = await allocate(stockId, userId);
          const started = performance.now();
          const { res, items } = await history(userId, { "Consistency-Token": token });
          waits.push(performance.now() - started);
          const status = res.headers.get("Consistency-Status");
          serverWaits.push(Number(/consistency-wait;dur=([\d.]+)/.exec(res.headers.get("Server-Timing") ?? "")?.[1] ?? NaN));
          if (res.status !== 200 || status !== "fresh" || !items.some((o) => o.allocationId === allocationId && o.status === "held")) {
            failures.push(`${userId}#${i}: ${res.status} ${status} ${items.length} items`);
          }
        }
      }),
    );
    waits.sort((a, b) => a - b);
    const pct = (q: number) => waits[Math.min(waits.length - 1, Math.floor(q * waits.length))]!.toFixed(0);
    serverWaits.sort((a, b) => a - b);
    const server = (q: number) => serverWaits[Math.min(serverWaits.length - 1, Math.floor(q * serverWaits.length))]!.toFixed(0);
    console.log(
      `history with token: ${waits.length} reads, whole read p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms; ` +
        `wait (Server-Timing) p50 ${server(0.5)} ms, p99 ${server(0.99)} ms; store reads ${p.consistency.postgresProgress.reads}`,
    );
    expect(serverWaits.every((ms) => ms >= 0 && ms <= 1_100)).toBe(true);
    expect(failures).toEqual([]);
    expect(waits.length).toBe(1_000);
  }, 180_000);

  test("purchase and cancel answer tokens too: the history shows the new status, fresh", async () => {
    const { id: stockId } = await createStock("Token teapot", 10);
    const userId = uniqueName("rywpc");
    const bought = await allocate(stockId, userId);
    const dropped = await allocate(stockId, userId);
    const purchase = await request(`/api/allocations/${bought.allocationId}/purchase`, { method: "POST", headers: await as(userId) });
    const cancel = await request(`/api/allocations/${dropped.allocationId}/cancel`, { method: "POST", headers: await as(userId) });
    expect([purchase.status, cancel.status]).toEqual([200, 200]);
    const purchaseToken = decodeConsistencyToken(purchase.headers.get("Consistency-Token") ?? "")!;
    const cancelToken = decodeConsistencyToken(cancel.headers.get("Consistency-Token") ?? "")!;
    // Four writes on one stock: versions 1 (create), 2, 3 (holds), 4 (purchase), 5 (cancel).
    expect([purchaseToken.stockId, purchaseToken.version, cancelToken.version]).toEqual([stockId, 4, 5]);
    const { res, items } = await history(userId, { "Consistency-Token": cancel.headers.get("Consistency-Token")! });
    expect(res.headers.get("Consistency-Status")).toBe("fresh");
    expect(new Map(items.map((o) => [o.allocationId, o.status]))).toEqual(
      new Map([
        [bought.allocationId, "purchased"],
        [dropped.allocationId, "cancelled"],
      ]),
    );
    // A repeated purchase answers the hold again, and a token at least as late.
    const again = await request(`/api/allocations/${bought.allocationId}/purchase`, { method: "POST", headers: await as(userId) });
    expect(decodeConsistencyToken(again.headers.get("Consistency-Token") ?? "")!.version).toBeGreaterThanOrEqual(4);
  }, 30_000);

  test("search and analytics with the token: fresh, and they show the write", async () => {
    const name = `Token kettle ${uniqueName("k")}`;
    const created = await createStock(name, 20);
    // Up to 5 s: right after the 1,000 allocations above, the search projector may still be indexing them.
    const wait = { Prefer: "wait=5" };
    const search = await request(`/api/stocks/search?q=${encodeURIComponent(name)}`, { headers: { ...wait, "Consistency-Token": created.token } });
    expect(search.status).toBe(200);
    expect(search.headers.get("Consistency-Status")).toBe("fresh");
    expect(((await search.json()) as { items: Array<{ id: string }> }).items.map((i) => i.id)).toContain(created.id);

    const { token } = await allocate(created.id, uniqueName("rywsa"));
    const { version } = decodeConsistencyToken(token)!;
    const again = await request(`/api/stocks/search?q=${encodeURIComponent(name)}`, { headers: { ...wait, "Consistency-Token": token } });
    expect(again.headers.get("Consistency-Status")).toBe("fresh");
    const hit = ((await again.json()) as { items: Array<{ id: string; version: number; held: number }> }).items.find((i) => i.id === created.id);
    expect(hit?.version).toBeGreaterThanOrEqual(version);
    expect(hit?.held).toBe(1);

    const analytics = await request(`/api/analytics/sales?stockId=${created.id}`, { headers: { ...p.admin, ...wait, "Consistency-Token": token } });
    expect(analytics.status).toBe(200);
    expect(analytics.headers.get("Consistency-Status")).toBe("fresh");
    const report = (await analytics.json()) as { stocks: Array<{ stockId: string; held: number; holdsPlaced: number }> };
    expect(report.stocks.map((s) => [s.stockId, s.held, s.holdsPlaced])).toEqual([[created.id, 1, 1]]);
  }, 30_000);

  test("the api learns PostgreSQL's progress from the projector's NOTIFY, not by reading again", async () => {
    // A tracker whose backstop read never comes in this test: only the first (batched) check and NOTIFY can answer.
    const own = createReadConsistency({ sql: p.readerSql, es: p.readerEs, esAlias: p.alias, logger: testLogger, postgresBackstopMs: 600_000 });
    try {
      const point = { stockId: uniqueName("nostock"), version: 7 };
      const waiting = own.postgres.waitFor(point, 5_000);
      // The first check finds no such stock, then the notification of a "commit" answers the wait.
      await Bun.sleep(200);
      expect(own.postgresProgress.waiting).toBe(1);
      const started = performance.now();
      await notifyProgress(p.db.sql, [{ aggregateId: point.stockId, version: 7 }]);
      expect(await waiting).toBe(true);
      expect(performance.now() - started).toBeLessThan(500);
      expect(own.postgresProgress.reads).toBe(1);
    } finally {
      await own.close();
    }
  }, 30_000);

  test("projector-postgres notifies each committed batch: a waiter with no backstop read is woken by it", async () => {
    const own = createReadConsistency({ sql: p.readerSql, es: p.readerEs, esAlias: p.alias, logger: testLogger, postgresBackstopMs: 600_000 });
    try {
      const { id: stockId } = await createStock("Notified needle", 50);
      await own.postgres.waitFor({ stockId, version: 1 }, 5_000); // the LISTEN is up (opened by the first wait)
      const readsBefore = own.postgresProgress.reads;
      const results: boolean[] = [];
      for (let i = 0; i < 10; i++) {
        const { token } = await allocate(stockId, uniqueName("rywn"));
        results.push(await own.postgres.waitFor(decodeConsistencyToken(token)!, 5_000));
      }
      expect(results.every(Boolean)).toBe(true);
      // At most the first check of each wait: the answers came from the projector's notifications.
      expect(own.postgresProgress.reads - readsBefore).toBeLessThanOrEqual(10);
    } finally {
      await own.close();
    }
  }, 90_000);

  test("without a token, reads are as before (no consistency headers)", async () => {
    const { res } = await history("nobody");
    expect(res.status).toBe(200);
    expect(res.headers.get("Consistency-Status")).toBeNull();
    expect(res.headers.get("Preference-Applied")).toBeNull();
  });
});

describe("a malformed token", () => {
  const valid = encodeConsistencyToken({ stockId: "abc", version: 3 });
  const malformed = [
    "not a token!",
    "",
    "x".repeat(500),
    `${valid}=`, // padding: not the canonical spelling
    Buffer.from("2:abc:3").toString("base64url"), // a format this api does not know
    Buffer.from("1:abc:0").toString("base64url"),
    Buffer.from("1:abc:007").toString("base64url"),
    Buffer.from("1:a/b:3").toString("base64url"),
    Buffer.from("1:abc:99999999999999999").toString("base64url"),
    Buffer.from("1:abc:3:extra").toString("base64url"),
  ];

  test.each(malformed)("%p is 400 invalid_consistency_token on every read, as problem+json", async (token) => {
    for (const [path, headers] of [
      ["/api/orders/user/mallory", await as("mallory")],
      ["/api/stocks/search", {}],
      ["/api/analytics/sales", p.admin],
    ] as const) {
      const res = await request(path, { headers: { ...headers, "Consistency-Token": token } });
      expect(res.status).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      const body = (await res.json()) as { code: string; status: number; type: string; title: string };
      expect(body).toMatchObject({ code: "invalid_consistency_token", status: 400, title: "Invalid consistency token" });
    }
  });

  test("authentication runs first: no credentials with a malformed token is 401", async () => {
    const res = await request("/api/orders/user/mallory", { headers: { "Consistency-Token": "garbage!" } });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe("unauthorized");
  });
});

describe("with the projectors stopped", () => {
  test("a read with a token answers 200 with the current data and stale, within its wait", async () => {
    const { id: stockId } = await createStock("Stale stool", 10);
    const userId = uniqueName("rywstale");
    const first = await allocate(stockId, userId);
    expect((await history(userId, { "Consistency-Token": first.token })).res.headers.get("Consistency-Status")).toBe("fresh");
    await p.stopProjectors();
    try {
      const second = await allocate(stockId, userId);
      const timed = async (headers: Record<string, string>, run: (headers: Record<string, string>) => Promise<Response>) => {
        const started = performance.now();
        const res = await run(headers);
        return { res, ms: performance.now() - started };
      };
      // Default wait: 1 s.
      const plain = await timed({ "Consistency-Token": second.token }, async (hd) => (await history(userId, hd)).res);
      expect(plain.res.status).toBe(200);
      expect(plain.res.headers.get("Consistency-Status")).toBe("stale");
      expect(plain.res.headers.get("Preference-Applied")).toBeNull();
      expect(plain.ms).toBeGreaterThanOrEqual(990);
      expect(plain.ms).toBeLessThan(1_800);
      // The current data: the first hold, not the second.
      const { items } = await history(userId);
      expect(items.map((o) => o.allocationId)).toEqual([first.allocationId]);

      // Prefer: wait=2 is honoured and said so; wait=0 answers at once.
      const two = await timed({ "Consistency-Token": second.token, Prefer: "wait=2" }, async (hd) => (await history(userId, hd)).res);
      expect([two.res.status, two.res.headers.get("Consistency-Status"), two.res.headers.get("Preference-Applied")]).toEqual([200, "stale", "wait=2"]);
      expect(two.ms).toBeGreaterThanOrEqual(1_990);
      expect(two.ms).toBeLessThan(2_800);
      const none = await timed({ "Consistency-Token": second.token, Prefer: "respond-async, wait=0" }, async (hd) => (await history(userId, hd)).res);
      expect([none.res.status, none.res.headers.get("Consistency-Status"), none.res.headers.get("Preference-Applied")]).toEqual([200, "stale", "wait=0"]);
      expect(none.ms).toBeLessThan(500);

      // More than 5 s is capped at 5 (search and analytics wait the same way).
      const search = await timed({ "Consistency-Token": second.token, Prefer: "wait=30" }, async (hd) => await request("/api/stocks/search?q=stool", { headers: hd }));
      expect([search.res.status, search.res.headers.get("Consistency-Status"), search.res.headers.get("Preference-Applied")]).toEqual([200, "stale", "wait=5"]);
      expect(search.ms).toBeGreaterThanOrEqual(4_990);
      expect(search.ms).toBeLessThan(5_800);
      const analytics = await timed({ ...p.admin, "Consistency-Token": second.token, Prefer: "wait=1" }, async (hd) => await request(`/api/analytics/sales?stockId=${stockId}`, { headers: hd }));
      expect([analytics.res.status, analytics.res.headers.get("Consistency-Status")]).toEqual([200, "stale"]);
      expect(analytics.ms).toBeLessThan(1_800);

      // Projectors back: the same token is fresh, and the second hold is there.
      await p.startProjectors();
      const back = await history(userId, { "Consistency-Token": second.token, Prefer: "wait=5" });
      expect(back.res.headers.get("Consistency-Status")).toBe("fresh");
      expect(back.items.map((o) => o.allocationId).sort()).toEqual([first.allocationId, second.allocationId].sort());
    } finally {
      if (!p.projectorsRunning) await p.startProjectors();
    }
  }, 60_000);
});
