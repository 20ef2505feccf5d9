/**
 * Bad input gets a 4xx problem+json with a stable code and changes nothing in Redis:
 * no counter moves, no event is appended, no key is created.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sign } from "hono/jwt";
import { TEST_JWT_SECRET, createTestApi, describeEachRedis } from "./support/api.ts";
import { outboxLength, snapshotKeys } from "./support/invariants.ts";

describeEachRedis((target) => {
  const api = createTestApi({ shards: 16, redis: target.target });
  afterAll(() => api.close());
  let live: string; // a live stock
  let alice: Record<string, string>;
  let bob: Record<string, string>;
  let aliceHold: string;
  let expiredHold: string;

  beforeAll(async () => {
    live = (await api.commands.createStock({ id: "live", name: "Live", price: 1000, quantity: 10, perUserLimit: 3 })).id;
    await api.commands.createStock({ id: "upcoming", name: "Soon", price: 1000, quantity: 10, startsAt: Date.now() + 3_600_000 });
    await api.commands.createStock({ id: "over", name: "Past", price: 1000, quantity: 10, startsAt: Date.now() - 7_200_000, endsAt: Date.now() - 3_600_000 });
    await api.commands.createStock({ id: "shortlived", name: "Short", price: 1000, quantity: 10, holdSeconds: 1 });
    alice = await api.user("alice");
    bob = await api.user("bob");
    aliceHold = (await api.commands.allocate({ stockId: live, userId: "alice", quantity: 1 })).allocation.allocationId;
    expiredHold = (await api.commands.allocate({ stockId: "shortlived", userId: "alice", quantity: 1 })).allocation.allocationId;
    await Bun.sleep(1_050);
  });

  /** Everything a request could change: every key under the prefix with its content, and the outbox length. */
  async function snapshot(): Promise<string> {
    return JSON.stringify({ values: await snapshotKeys(api.redis, api.keys), outbox: await outboxLength(api.redis, api.keys) });
  }

  type Case = {
    name: string;
    method?: string;
    path: () => string;
    headers?: () => Record<string, string>;
    body?: unknown;
    status: number;
    code: string;
  };

  const long = (n: number) => "x".repeat(n);
  const allocate = () => `/api/stocks/${live}/allocate`;

  const cases: Case[] = [
    { name: "malformed JSON", path: allocate, headers: () => alice, body: '{"quantity":', status: 400, code: "invalid_request" },
    { name: "quantity as a string", path: allocate, headers: () => alice, body: { quantity: "1" }, status: 400, code: "invalid_request" },
    { name: "negative quantity", path: allocate, headers: () => alice, body: { quantity: -1 }, status: 400, code: "invalid_request" },
    { name: "zero quantity", path: allocate, headers: () => alice, body: { quantity: 0 }, status: 400, code: "invalid_request" },
    { name: "fractional quantity", path: allocate, headers: () => alice, body: { quantity: 1.5 }, status: 400, code: "invalid_request" },
    { name: "huge quantity", path: allocate, headers: () => alice, body: { quantity: 1e12 }, status: 400, code: "invalid_request" },
    { name: "unknown field", path: allocate, headers: () => alice, body: { quantity: 1, price: 0 }, status: 400, code: "invalid_request" },
    { name: "body is an array", path: allocate, headers: () => alice, body: [1], status: 400, code: "invalid_request" },
    { name: "unknown stock", path: () => "/api/stocks/nope/allocate", headers: () => alice, status: 404, code: "not_found" },
    { name: "stock id with bad characters", path: () => "/api/stocks/a%20b:c/allocate", headers: () => alice, status: 400, code: "invalid_request" },
    { name: "sale not started", path: () => "/api/stocks/upcoming/allocate", headers: () => alice, status: 409, code: "not_started" },
    { name: "sale ended", path: () => "/api/stocks/over/allocate", headers: () => alice, status: 409, code: "ended" },
    { name: "no token", path: allocate, status: 401, code: "unauthorized" },
    { name: "garbage token", path: allocate, headers: () => ({ Authorization: "Bearer not-a-jwt" }), status: 401, code: "unauthorized" },
    { name: "not a bearer scheme", path: allocate, headers: () => ({ Authorization: "Basic YWxpY2U6cHc=" }), status: 401, code: "unauthorized" },
    { name: "admin token on a user route", path: allocate, headers: () => api.admin, status: 403, code: "forbidden" },
    { name: "user token on an admin route", path: () => "/api/stocks", headers: () => alice, body: { name: "x", price: 1, quantity: 1 }, status: 403, code: "forbidden" },
    { name: "wrong content type", path: allocate, headers: () => ({ ...alice, "content-type": "text/plain" }), body: "quantity=1", status: 415, code: "unsupported_media_type" },
    { name: "oversized headers (over MAX_HEADER_BYTES)", path: allocate, headers: () => ({ ...alice, "X-Padding": long(9_000) }), status: 431, code: "headers_too_large" },
    { name: "oversized body", path: allocate, headers: () => alice, body: { quantity: 1, pad: long(20_000) }, status: 413, code: "payload_too_large" },
    { name: "Idempotency-Key too long", path: allocate, headers: () => ({ ...alice, "Idempotency-Key": long(300) }), status: 400, code: "invalid_request" },
    { name: "Idempotency-Key with a control character", path: allocate, headers: () => ({ ...alice, "Idempotency-Key": "a\tb" }), status: 400, code: "invalid_request" },
    { name: "purchase someone else's hold", path: () => `/api/allocations/${aliceHold}/purchase`, headers: () => bob, status: 403, code: "forbidden" },
    { name: "cancel someone else's hold", path: () => `/api/allocations/${aliceHold}/cancel`, headers: () => bob, status: 403, code: "forbidden" },
    { name: "read someone else's hold", method: "GET", path: () => `/api/allocations/${aliceHold}`, headers: () => bob, status: 403, code: "forbidden" },
    { name: "purchase an expired hold", path: () => `/api/allocations/${expiredHold}/purchase`, headers: () => alice, status: 409, code: "hold_expired" },
    { name: "unknown allocation", path: () => "/api/allocations/s0-01a2007c-efdd-7485-b66a-9911269a1a0c/purchase", headers: () => alice, status: 404, code: "not_found" },
    { name: "malformed allocation id", path: () => "/api/allocations/garbage/cancel", headers: () => alice, status: 404, code: "not_found" },
    { name: "allocation id on a shard that does not exist", path: () => "/api/allocations/s99-01a2007c-efdd-7485-b66a-9911269a1a0c", method: "GET", headers: () => alice, status: 404, code: "not_found" },
    { name: "create stock: negative price", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: -1, quantity: 1 }, status: 400, code: "invalid_request" },
    { name: "create stock: zero quantity", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 1, quantity: 0 }, status: 400, code: "invalid_request" },
    { name: "create stock: no name", path: () => "/api/stocks", headers: () => api.admin, body: { price: 1, quantity: 1 }, status: 400, code: "invalid_request" },
    { name: "create stock: bad currency", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 1, quantity: 1, currency: "euro" }, status: 400, code: "invalid_request" },
    { name: "create stock: ends before it starts", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 1, quantity: 1, startsAt: "2030-01-02T00:00:00Z", endsAt: "2030-01-01T00:00:00Z" }, status: 400, code: "invalid_request" },
    { name: "create stock: date that is not a date", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 1, quantity: 1, startsAt: "tomorrow" }, status: 400, code: "invalid_request" },
    { name: "create stock: only an endsAt, in the past (startsAt defaults to now)", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 1, quantity: 1, endsAt: "2020-01-01T00:00:00Z" }, status: 400, code: "invalid_request" },
    { name: "create stock: NUL in the name", path: () => "/api/stocks", headers: () => api.admin, body: { name: "Sneaker\u0000 42", price: 1, quantity: 1 }, status: 400, code: "invalid_request" },
    { name: "create stock: NUL in the description", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", description: "a\u0000b", price: 1, quantity: 1 }, status: 400, code: "invalid_request" },
    { name: "create stock: a control character in the name", path: () => "/api/stocks", headers: () => api.admin, body: { name: "a\u001bb", price: 1, quantity: 1 }, status: 400, code: "invalid_request" },
    { name: "create stock: an unpaired surrogate in the name", path: () => "/api/stocks", headers: () => api.admin, body: '{"name":"a\\ud800b","price":1,"quantity":1}', status: 400, code: "invalid_request" },
    { name: "create stock: year 0000", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 1, quantity: 1, startsAt: "0000-01-01T00:00:00Z" }, status: 400, code: "invalid_request" },
    { name: "create stock: year 10000 by its offset", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 1, quantity: 1, startsAt: "2030-01-01T00:00:00Z", endsAt: "9999-12-31T23:00:00-05:00" }, status: 400, code: "invalid_request" },
    { name: "create stock: price whose amounts cjson would round (over 99,999,999,999)", path: () => "/api/stocks", headers: () => api.admin, body: { name: "x", price: 100_000_000_000, quantity: 1 }, status: 400, code: "invalid_request" },
    // GET /api/stocks/search is the search endpoint: a stock of that id could never be read.
    { name: "create stock: id reserved by a route", path: () => "/api/stocks", headers: () => api.admin, body: { id: "search", name: "x", price: 1, quantity: 1 }, status: 400, code: "invalid_request" },
    { name: "create stock: id already taken", path: () => "/api/stocks", headers: () => api.admin, body: { id: "live", name: "x", price: 1, quantity: 1 }, status: 409, code: "stock_exists" },
    { name: "unknown route", method: "GET", path: () => "/api/nothing-here", status: 404, code: "not_found" },
  ];

  describe("bad input changes nothing", () => {
    for (const c of cases) {
      test(`${c.name} → ${c.status} ${c.code}`, async () => {
        const before = await snapshot();
        const res = await api.request(c.method ?? "POST", c.path(), { headers: c.headers?.() ?? {}, body: c.body });
        expect(res.status).toBe(c.status);
        expect(res.headers.get("content-type")).toBe("application/problem+json");
        const body = (await res.json()) as Record<string, unknown>;
        expect(body).toMatchObject({ status: c.status, code: c.code });
        expect(typeof body.title).toBe("string");
        expect(typeof body.detail).toBe("string");
        expect(typeof body.requestId).toBe("string");
        expect(JSON.stringify(body)).not.toContain("    at "); // no stack trace
        expect(await snapshot()).toBe(before);
      });
    }

    test("an expired token is refused", async () => {
      const past = Math.floor(Date.now() / 1000) - 60;
      const token = await sign({ sub: "alice", exp: past }, TEST_JWT_SECRET, "HS256");
      const before = await snapshot();
      const res = await api.request("POST", allocate(), { headers: { Authorization: `Bearer ${token}` } });
      expect(res.status).toBe(401);
      expect(await snapshot()).toBe(before);
    });

    test("a token signed with another secret is refused", async () => {
      const token = await sign({ sub: "alice" }, "another-secret-another-secret-another", "HS256");
      const res = await api.request("POST", allocate(), { headers: { Authorization: `Bearer ${token}` } });
      expect(res.status).toBe(401);
    });

    test("over real HTTP, headers over MAX_HEADER_BYTES get the app's 431 problem+json", async () => {
      const base = api.listen();
      const before = await snapshot();
      const res = await fetch(`${base}${allocate()}`, { method: "POST", headers: { ...alice, "X-Padding": long(12_000) } });
      expect(res.status).toBe(431);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      expect(await res.json()).toMatchObject({ status: 431, code: "headers_too_large" });
      expect(await snapshot()).toBe(before);
    });

    test("headers over the HTTP server's own limit are refused before the app (431)", async () => {
      const base = api.listen();
      const before = await snapshot();
      const res = await fetch(`${base}${allocate()}`, { method: "POST", headers: { ...alice, "X-Padding": long(20_000) } });
      expect(res.status).toBe(431);
      expect(await snapshot()).toBe(before);
    });

    test("Redis unreachable answers 503 problem+json, not 500", async () => {
      const { createApp } = await import("../services/api/app.ts");
      const { createRedis } = await import("../shared/redis/client.ts");
      const { createStockCommands } = await import("../shared/redis/commands.ts");
      const { createLogger } = await import("../shared/logger.ts");
      const { createMetricsRegistry } = await import("../shared/metrics.ts");
      const dead = createRedis(target.deadTarget, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, lazyConnect: true });
      dead.on("error", () => {});
      const app = createApp({
        commands: createStockCommands(dead, api.keys),
        redis: dead,
        logger: createLogger("t", "silent"),
        registry: createMetricsRegistry("api"),
        adminToken: "x".repeat(16),
        jwtSecret: TEST_JWT_SECRET,
        maxBodyBytes: 1024,
      });
      const res = await app.request(allocate(), { method: "POST", headers: alice });
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ code: "store_unavailable" });
      dead.disconnect();
    });
  });
});
