/**
 * Who may call what: JWT claims the api insists on (exp, sub, lifetime, issuer and audience when
 * configured), authentication before validation on every protected route, and /metrics kept off
 * the public port.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createSigner } from "fast-jwt";
import { createReadRoutes } from "../services/api/read-routes.ts";
import { webhookRoutes } from "../services/api/routes/webhooks.ts";
import { createSecretBox } from "../shared/webhooks/secret-box.ts";
import { createReaderSql } from "../shared/stores/postgres/client.ts";
import { createReaderSearchClient } from "../shared/stores/search/mapping.ts";
import { mintUserToken } from "../shared/dev/token.ts";
import { TEST_JWT_SECRET, createTestApi } from "./support/api.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";

// The read routes are mounted so their guards are tested too; the refused requests never reach the stores.
const sql = createReaderSql(stackEnv.DATABASE_URL);
const es = createReaderSearchClient(stackEnv.ELASTICSEARCH_URL);
const readRoutes = createReadRoutes({ sql, es, esAlias: uniqueName("auth") });
const api = createTestApi({ shards: 2, app: { jwtMaxLifetimeSeconds: 3600, readRoutes, webhookRoutes: webhookRoutes(sql, { box: await createSecretBox(undefined), allowPrivate: false }) } });
const strict = createTestApi({ shards: 2, app: { jwtIssuer: "https://id.example", jwtAudience: "flash-sale" } });
afterAll(async () => {
  await api.close();
  await strict.close();
  await Promise.allSettled([sql.end({ timeout: 1 }), es.close()]);
});

const now = () => Math.floor(Date.now() / 1000);
/** Signs exactly the claims given (no defaults added), HS256 with the test secret. */
const signRaw = (claims: Record<string, unknown>, secret = TEST_JWT_SECRET) => createSigner({ key: secret, algorithm: "HS256", noTimestamp: true })(claims);
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

async function expectProblem(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toBe("application/problem+json");
  expect(await res.json()).toMatchObject({ status, code });
}

describe("JWT claims", () => {
  const stockPath = () => "/api/stocks/nope/allocate";

  test("a token without exp is refused", async () => {
    await expectProblem(await api.request("POST", stockPath(), { headers: bearer(signRaw({ sub: "alice", iat: now() })) }), 401, "unauthorized");
  });

  test("a token without sub is refused", async () => {
    await expectProblem(await api.request("POST", stockPath(), { headers: bearer(signRaw({ iat: now(), exp: now() + 60 })) }), 401, "unauthorized");
  });

  test("a token living longer than the maximum is refused, with or without iat", async () => {
    await expectProblem(await api.request("POST", stockPath(), { headers: bearer(signRaw({ sub: "alice", iat: now(), exp: now() + 7200 })) }), 401, "unauthorized");
    await expectProblem(await api.request("POST", stockPath(), { headers: bearer(signRaw({ sub: "alice", exp: now() + 7200 })) }), 401, "unauthorized");
    // An iat in the future must not stretch a one-hour token over years.
    const later = now() + 10 * 365 * 86_400;
    await expectProblem(await api.request("POST", stockPath(), { headers: bearer(signRaw({ sub: "alice", iat: later, exp: later + 3000 })) }), 401, "unauthorized");
  });

  test("a well-formed token within the lifetime passes authentication (404 for the unknown stock)", async () => {
    await expectProblem(await api.request("POST", stockPath(), { headers: bearer(signRaw({ sub: "alice", iat: now(), exp: now() + 3000 })) }), 404, "not_found");
    await expectProblem(await api.request("POST", stockPath(), { headers: await api.user("alice") }), 404, "not_found");
  });

  test("with JWT_ISSUER and JWT_AUDIENCE set, both are enforced", async () => {
    const claims = { sub: "alice", iat: now(), exp: now() + 600 };
    const path = stockPath();
    await expectProblem(await strict.request("POST", path, { headers: bearer(signRaw(claims)) }), 401, "unauthorized");
    await expectProblem(await strict.request("POST", path, { headers: bearer(signRaw({ ...claims, iss: "https://id.example" })) }), 401, "unauthorized");
    await expectProblem(await strict.request("POST", path, { headers: bearer(signRaw({ ...claims, aud: "flash-sale" })) }), 401, "unauthorized");
    await expectProblem(await strict.request("POST", path, { headers: bearer(signRaw({ ...claims, iss: "https://evil.example", aud: "flash-sale" })) }), 401, "unauthorized");
    await expectProblem(await strict.request("POST", path, { headers: bearer(signRaw({ ...claims, iss: "https://id.example", aud: "other" })) }), 401, "unauthorized");
    await expectProblem(await strict.request("POST", path, { headers: bearer(signRaw({ ...claims, iss: "https://id.example", aud: "flash-sale" })) }), 404, "not_found");
    // The dev minter puts them in when asked (bun run token reads JWT_ISSUER / JWT_AUDIENCE).
    const minted = await mintUserToken("alice", TEST_JWT_SECRET, 600, { issuer: "https://id.example", audience: "flash-sale" });
    await expectProblem(await strict.request("POST", path, { headers: bearer(minted) }), 404, "not_found");
  });
});

describe("authentication before validation", () => {
  // Each protected route with a body, query or header that would fail validation: without a token the
  // answer must be 401, and with the wrong kind of token 403, never a 400 that describes the schema.
  const bad = { name: "", price: -1, quantity: "many", extra: true };
  const routes: Array<{ name: string; method: string; path: string; body?: unknown; headers?: Record<string, string>; wrong?: "user" | "admin" }> = [
    { name: "POST /api/stocks, bad body", method: "POST", path: "/api/stocks", body: bad, wrong: "user" },
    { name: "POST /api/stocks, malformed JSON", method: "POST", path: "/api/stocks", body: '{"name":', wrong: "user" },
    { name: "POST /api/stocks/{id}/allocate, bad body and key", method: "POST", path: "/api/stocks/live/allocate", body: { quantity: -5 }, headers: { "Idempotency-Key": "x".repeat(300) }, wrong: "admin" },
    { name: "POST /api/stocks/{id}/allocate, bad stock id", method: "POST", path: "/api/stocks/a%20b/allocate", body: { quantity: 0 }, wrong: "admin" },
    { name: "POST /api/allocations/{id}/purchase, id too long", method: "POST", path: `/api/allocations/${"x".repeat(100)}/purchase`, wrong: "admin" },
    { name: "POST /api/allocations/{id}/cancel, id too long", method: "POST", path: `/api/allocations/${"x".repeat(100)}/cancel`, wrong: "admin" },
    { name: "GET /api/allocations/{id}, id too long", method: "GET", path: `/api/allocations/${"x".repeat(100)}` },
    { name: "GET /api/analytics/sales, bad window", method: "GET", path: "/api/analytics/sales?from=yesterday&limit=0", wrong: "user" },
    { name: "GET /api/orders/user/{userId}, bad query", method: "GET", path: "/api/orders/user/alice?limit=0" },
    { name: "POST /api/webhooks, bad body", method: "POST", path: "/api/webhooks", body: { url: "not a url", extra: 1 }, wrong: "user" },
    { name: "GET /api/webhooks", method: "GET", path: "/api/webhooks", wrong: "user" },
    { name: "DELETE /api/webhooks/{id}, bad id", method: "DELETE", path: "/api/webhooks/bad%20id", wrong: "user" },
  ];
  for (const r of routes) {
    test(`${r.name}: no token → 401`, async () => {
      await expectProblem(await api.request(r.method, r.path, { headers: r.headers, body: r.body }), 401, "unauthorized");
    });
    if (r.wrong) {
      test(`${r.name}: ${r.wrong} token → 403`, async () => {
        const token = r.wrong === "admin" ? api.admin : await api.user("alice");
        await expectProblem(await api.request(r.method, r.path, { headers: { ...token, ...r.headers }, body: r.body }), 403, "forbidden");
      });
    }
  }

  test("every route the OpenAPI document marks as secured answers 401 to an anonymous request with a bad body", async () => {
    // Catches a future route that forgets its guard middleware: each secured operation, called without
    // a token, with junk in the path, the query and the body, must say 401 and nothing about the schema.
    const doc = (await (await api.request("GET", "/openapi.json")).json()) as {
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    const secured = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => (op.security ?? []).length > 0)
        .map(([method, _op]) => ({ method: method.toUpperCase(), path: path.replace(/\{[^}]+\}/g, "x%20y") + "?limit=-1&from=never" })),
    );
    expect(secured.length).toBeGreaterThanOrEqual(9);
    for (const r of secured) {
      const body = r.method === "GET" || r.method === "DELETE" ? undefined : { junk: true, quantity: -1 };
      const res = await api.request(r.method, r.path, { body });
      expect(`${r.method} ${r.path} → ${res.status}`).toBe(`${r.method} ${r.path} → 401`);
    }
  });

  test("with the right token, the same bad body is a 400 with details", async () => {
    const res = await api.request("POST", "/api/stocks", { headers: api.admin, body: bad });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: unknown[] }).errors.length).toBeGreaterThan(0);
  });
});

describe("ops endpoints", () => {
  test("/metrics is not served on the public port; /healthz and /readyz are", async () => {
    const base = api.listen();
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });
});
