/**
 * The read routes (services/api/read-routes.ts) mounted in the real api app: order history,
 * search, analytics, auth guards, cursors, problem+json, and 503 when a read store is down while
 * allocation keeps working. Data is projected from events produced straight to Kafka.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Client } from "@elastic/elasticsearch";
import type postgres from "postgres";
import { mintUserToken } from "../shared/dev/token.ts";
import { createApp } from "../services/api/app.ts";
import { createReadRoutes } from "../services/api/read-routes.ts";
import { createPostgresProjector } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../shared/stores/search/sink.ts";
import type { StockEvent } from "../shared/domain/events.ts";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { waitForConvergence } from "../shared/verify/convergence.ts";
import { createReaderSql } from "../shared/stores/postgres/client.ts";
import { createReaderSearchClient } from "../shared/stores/search/mapping.ts";
import { createRedis } from "../shared/redis/client.ts";
import { createStockCommands } from "../shared/redis/commands.ts";
import { TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from "./support/api.ts";
import { deleteKeysByPrefix } from "../shared/redis/client.ts";
import { brokers, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ database: "api", search: true });
let readerSql: postgres.Sql;
let readerEs: Client;
const topic = fx.topic("apitopic");
const alias = fx.alias("apistocks");
const prefix = uniqueName("apikeys");
const redis = createRedis(stackEnv.REDIS_URL);
const sim = new StockSim();
const tag = uniqueName("w"); // a word only this run's stocks contain
const admin = { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` };
const userHeaders = async (userId: string) => ({ Authorization: `Bearer ${await mintUserToken(userId, TEST_JWT_SECRET)}` });

function appWith(read: { sql: postgres.Sql; es: Client }) {
  return createApp({
    commands: createStockCommands(redis, createKeyLayout(prefix, 4)),
    redis,
    logger: testLogger,
    registry: createMetricsRegistry("api"),
    adminToken: TEST_ADMIN_TOKEN,
    jwtSecret: TEST_JWT_SECRET,
    maxBodyBytes: 16 * 1024,
    readRoutes: createReadRoutes({ sql: read.sql, es: read.es, esAlias: alias }),
  });
}
let app: ReturnType<typeof appWith>;

beforeAll(async () => {
  // Three stocks: a sold-out umbrella, a live kettle, an upcoming lamp. Alice has many orders.
  const hour = 3_600_000;
  const events: StockEvent[] = [
    sim.create("umbrella", { name: `Yellow umbrella ${tag}`, description: "Keeps the rain away", total: 3, price: 1500 }),
    sim.create("kettle", { name: `Copper kettle ${tag}`, description: "Boils water with style", total: 100, price: 4200 }),
    sim.create("lamp", { name: `Desk lamp ${tag}`, description: "Bright, limited edition", total: 10, price: 999, startsAt: new Date(Date.now() + hour).toISOString() }),
  ];
  for (let i = 0; i < 3; i++) events.push(sim.allocate("umbrella", i === 0 ? "alice" : `bob${i}`, 1)!);
  for (const hold of sim.liveHolds("umbrella")) events.push(sim.purchase(hold.allocationId));
  for (let i = 0; i < 25; i++) events.push(sim.allocate("kettle", "alice", 1)!);
  const aliceKettles = sim.liveHolds("kettle");
  events.push(sim.purchase(aliceKettles[0]!.allocationId), sim.release(aliceKettles[1]!.allocationId, "cancelled"));
  events.push(sim.release(aliceKettles[2]!.allocationId, "expired"));
  await produceEvents(fx.producer, topic, events);

  const projectors = [
    fx.track(createPostgresProjector({ brokers, topic, groupId: uniqueName("apipg"), sql: fx.db.sql, logger: testLogger })),
    fx.track(createSearchProjector({ brokers, topic, groupId: uniqueName("apies"), es: fx.es, index: alias, logger: testLogger })),
  ];
  await Promise.all(projectors.map((p) => p.start()));
  const mismatches = await waitForConvergence({ expected: async () => sim.expectedCounters(), sql: fx.db.sql, es: fx.es, index: alias, timeoutMs: 20_000 });
  if (mismatches.length > 0) throw new Error(`not converged: ${JSON.stringify(mismatches)}`);
  await fx.es.indices.refresh({ index: alias });

  readerSql = createReaderSql(fx.db.url);
  readerEs = createReaderSearchClient(stackEnv.ELASTICSEARCH_URL);
  app = appWith({ sql: readerSql, es: readerEs });
}, 60_000);

afterAll(async () => {
  await readerEs?.close();
  await readerSql?.end();
  await deleteKeysByPrefix(redis, prefix);
  redis.disconnect();
});

describe("GET /api/orders/user/:userId", () => {
  test("the owner pages through their history, newest first, each order once", async () => {
    const headers = await userHeaders("alice");
    const seen: Array<{ allocationId: string; placedAt: string; status: string }> = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: Response = await app.request(`/api/orders/user/alice?limit=10${cursor ? `&cursor=${cursor}` : ""}`, { headers });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { items: typeof seen; nextCursor: string | null };
      seen.push(...body.items);
      cursor = body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen.length).toBe(26);
    expect(new Set(seen.map((o) => o.allocationId)).size).toBe(26);
    const times = seen.map((o) => Date.parse(o.placedAt));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    const statuses = seen.map((o) => o.status).sort();
    expect(statuses.filter((s) => s === "purchased")).toHaveLength(2); // umbrella + one kettle
    expect(statuses.filter((s) => s === "cancelled")).toHaveLength(1);
    expect(statuses.filter((s) => s === "expired")).toHaveLength(1);
  });

  test("an order carries its stock name, amount and times", async () => {
    const res = await app.request("/api/orders/user/alice?limit=100", { headers: admin });
    const body = (await res.json()) as { items: Array<Record<string, unknown>> };
    const purchased = body.items.find((o) => o.stockId === "umbrella")!;
    expect(purchased).toMatchObject({ status: "purchased", amount: 1500, currency: "EUR", quantity: 1, stockName: `Yellow umbrella ${tag}` });
    expect(typeof purchased.purchasedAt).toBe("string");
    expect(typeof purchased.expiresAt).toBe("string");
  });

  test("guards: another user 403, no token 401, admin 200; bad cursor and limit 400 problem+json", async () => {
    expect((await app.request("/api/orders/user/alice", { headers: await userHeaders("mallory") })).status).toBe(403);
    expect((await app.request("/api/orders/user/alice")).status).toBe(401);
    expect((await app.request("/api/orders/user/alice", { headers: admin })).status).toBe(200);
    const bad = await app.request("/api/orders/user/alice?cursor=bm9wZQ", { headers: admin });
    expect(bad.status).toBe(400);
    expect(bad.headers.get("content-type")).toContain("application/problem+json");
    expect(((await bad.json()) as { code: string }).code).toBe("invalid_request");
    expect((await app.request("/api/orders/user/alice?limit=1000", { headers: admin })).status).toBe(400);
    const empty = await app.request("/api/orders/user/nobody", { headers: admin });
    expect(await empty.json()).toEqual({ items: [], nextCursor: null });
  });

  test("a cursor with an out-of-range timestamp is 400 invalid_request, not a 500", async () => {
    const cursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    for (const t of ["99999999999999999999", "9223372036854775807", "253402300800000000"]) {
      const res = await app.request(`/api/orders/user/alice?cursor=${cursor({ t, id: "x" })}`, { headers: admin });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ status: 400, code: "invalid_request" });
    }
    // The latest instant a real cursor can carry still works.
    expect((await app.request(`/api/orders/user/alice?cursor=${cursor({ t: "253402300799999999", id: "x" })}`, { headers: admin })).status).toBe(200);
  });
});

describe("GET /api/stocks/search", () => {
  type Page = { items: Array<{ id: string; status: string; available: number; sold: number; version: number; name: string }>; nextCursor: string | null };
  const search = async (query: string) => {
    const res = await app.request(`/api/stocks/search?${query}`);
    expect(res.status).toBe(200);
    return (await res.json()) as Page;
  };

  test("full text on name and description, counters as projected, no token needed", async () => {
    const kettle = await search(`q=${tag}+kettle`);
    expect(kettle.items.map((i) => i.id)).toEqual(["kettle"]);
    const k = sim.stocks.get("kettle")!;
    expect(kettle.items[0]).toMatchObject({ available: k.available, sold: k.sold, version: k.version, status: "live" });
    const rain = await search(`q=${tag}+rain`);
    expect(rain.items.map((i) => i.id)).toEqual(["umbrella"]);
  });

  test("status filter uses the clock: sold_out, live, upcoming", async () => {
    expect((await search(`q=${tag}&status=sold_out`)).items.map((i) => i.id)).toEqual(["umbrella"]);
    expect((await search(`q=${tag}&status=live`)).items.map((i) => i.id)).toEqual(["kettle"]);
    expect((await search(`q=${tag}&status=upcoming`)).items.map((i) => i.id)).toEqual(["lamp"]);
    expect((await search(`q=${tag}&status=ended`)).items).toEqual([]);
  });

  test("cursor pagination visits every match once", async () => {
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Page = await search(`q=${tag}&limit=1${cursor ? `&cursor=${cursor}` : ""}`);
      ids.push(...page.items.map((i) => i.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(ids.sort()).toEqual(["kettle", "lamp", "umbrella"]);
  });

  test("is not shadowed by GET /api/stocks/{id}; bad input is a 400 problem", async () => {
    expect((await app.request("/api/stocks/search?status=melted")).status).toBe(400);
    expect((await app.request("/api/stocks/search?cursor=%21%21")).status).toBe(400);
  });

  test("a tampered cursor is 400 invalid_request, never Elasticsearch's 400 passed on as a 500", async () => {
    const cursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    // Without q the sort is [startsAt, stockId]; with q it is [_score, stockId].
    for (const [query, value] of [
      ["", ["not-a-date", "kettle"]],
      ["", [1.5e300, "kettle"]],
      ["", [12.5, "kettle"]],
      [`q=${tag}&`, ["high", "kettle"]],
      [`q=${tag}&`, [1, 2]],
    ] as const) {
      const res = await app.request(`/api/stocks/search?${query}cursor=${cursor(value)}`);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ status: 400, code: "invalid_request" });
    }
  });
});

describe("GET /api/analytics/sales", () => {
  test("admin only; per stock figures and a per-minute series", async () => {
    expect((await app.request("/api/analytics/sales", { headers: await userHeaders("alice") })).status).toBe(403);
    expect((await app.request("/api/analytics/sales")).status).toBe(401);
    const res = await app.request("/api/analytics/sales", { headers: admin });
    expect(res.status).toBe(200);
    const report = (await res.json()) as {
      stocks: Array<Record<string, unknown> & { stockId: string }>;
      series: Array<{ unitsSold: number; revenue: Record<string, number>; holdsPlaced: number }>;
    };
    const umbrella = report.stocks.find((s) => s.stockId === "umbrella")!;
    expect(umbrella).toMatchObject({ unitsSold: 3, revenue: 4500, sellThrough: 1, holdsReleased: { expired: 0, cancelled: 0 } });
    expect(typeof umbrella.timeToSellOutSeconds).toBe("number");
    const kettle = report.stocks.find((s) => s.stockId === "kettle")!;
    expect(kettle).toMatchObject({ unitsSold: 1, revenue: 4200, holdsPlaced: 25, holdsReleased: { expired: 1, cancelled: 1 }, timeToSellOutSeconds: null });
    expect(report.stocks[0]!.stockId).toBe("umbrella"); // by revenue
    const sold = report.series.reduce((n, p) => n + p.unitsSold, 0);
    const eur = report.series.reduce((n, p) => n + (p.revenue.EUR ?? 0), 0);
    expect([sold, eur]).toEqual([4, 8700]);
    const one = await app.request("/api/analytics/sales?stockId=kettle", { headers: admin });
    expect(((await one.json()) as { stocks: unknown[] }).stocks).toHaveLength(1);
    expect((await app.request("/api/analytics/sales?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z", { headers: admin })).status).toBe(400);
    // Instants PostgreSQL cannot store (no year 0) are refused at the edge.
    const yearZero = await app.request("/api/analytics/sales?from=0000-01-01T00:00:00Z&to=0000-01-01T01:00:00Z", { headers: admin });
    expect(yearZero.status).toBe(400);
    expect(await yearZero.json()).toMatchObject({ code: "invalid_request" });
  });
});

describe("read stores down", () => {
  test("503 store_unavailable fast, while allocation keeps working", async () => {
    const deadSql = createReaderSql("postgres://flashsale:flashsale@127.0.0.1:1/flashsale");
    const deadEs = createReaderSearchClient("http://127.0.0.1:1");
    const broken = appWith({ sql: deadSql, es: deadEs });
    try {
      const started = performance.now();
      for (const [path, headers] of [
        ["/api/orders/user/alice", admin],
        ["/api/stocks/search?q=kettle", {}],
        ["/api/analytics/sales", admin],
      ] as const) {
        const res = await broken.request(path, { headers });
        expect(res.status).toBe(503);
        const body = (await res.json()) as { code: string };
        expect(body.code).toBe("store_unavailable");
      }
      expect(performance.now() - started).toBeLessThan(6_000);

      const created = await broken.request("/api/stocks", {
        method: "POST",
        headers: { ...admin, "content-type": "application/json" },
        body: JSON.stringify({ id: uniqueName("live"), name: "Still selling", price: 100, quantity: 5 }),
      });
      expect(created.status).toBe(201);
      const { id } = (await created.json()) as { id: string };
      const allocated = await broken.request(`/api/stocks/${id}/allocate`, {
        method: "POST",
        headers: { ...(await userHeaders("alice")), "content-type": "application/json" },
        body: JSON.stringify({ quantity: 1 }),
      });
      expect(allocated.status).toBe(201);
    } finally {
      await deadSql.end({ timeout: 1 });
      await deadEs.close();
    }
  }, 20_000);
});
