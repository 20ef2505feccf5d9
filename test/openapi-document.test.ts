/**
 * The OpenAPI document states what the server does (issue 9 §5): every status a route can answer
 * is documented with the problem schema, the Idempotency-Key format is the one the server applies,
 * and the cursor and analytics-window rules are in the parameters. test/openapi-fuzz.test.ts checks
 * the same against the running server with schemathesis; this file pins the shapes in-process.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createReadRoutes } from "../services/api/read-routes.ts";
import { webhookRoutes } from "../services/api/routes/webhooks.ts";
import { createSecretBox } from "../shared/webhooks/secret-box.ts";
import { createReaderSql } from "../shared/stores/postgres/client.ts";
import { createReaderSearchClient } from "../shared/stores/search/mapping.ts";
import { createTestApi, type TestApi } from "./support/api.ts";
import { stackEnv } from "../shared/dev/env.ts";

interface Operation {
  parameters?: Array<{ name: string; in: string; schema: { pattern?: string; maxLength?: number }; description?: string }>;
  description?: string;
  responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }>;
}

let api: TestApi;
let doc: { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, { properties: Record<string, unknown> }> } };
const sql = createReaderSql(stackEnv.DATABASE_URL);
const es = createReaderSearchClient(stackEnv.ELASTICSEARCH_URL);

beforeAll(async () => {
  // The read and webhook routes are mounted for the document; no test here reaches their stores.
  api = createTestApi({ app: { readRoutes: createReadRoutes({ sql, es, esAlias: "unused" }), webhookRoutes: webhookRoutes(sql, { box: await createSecretBox(undefined), allowPrivate: false }) } });
  doc = (await (await api.request("GET", "/openapi.json")).json()) as typeof doc;
  await api.request("POST", "/api/stocks", { headers: api.admin, body: { id: "idem", name: "Idem", price: 100, quantity: 100, perUserLimit: 100 } });
});

afterAll(async () => {
  await api.close();
  await sql.end({ timeout: 1 });
  await es.close();
});

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ name: `${method.toUpperCase()} ${path}`, method, op })));

test("every operation documents the statuses of the /api middleware and the stores, as problem+json", () => {
  expect(operations().length).toBe(16);
  for (const { name, method, op } of operations()) {
    const expected = ["401", "413", "429", "431", "503", ...(method === "get" ? [] : ["415"])];
    expect({ name, missing: expected.filter((s) => !(s in op.responses)) }).toEqual({ name, missing: [] });
    for (const [status, response] of Object.entries(op.responses)) {
      if (Number(status) < 400) continue;
      expect({ name, status, schema: response.content?.["application/problem+json"]?.schema.$ref }).toEqual({ name, status, schema: "#/components/schemas/Problem" });
    }
  }
});

test("admin-only webhook routes answer 401/403 before they look at the body", async () => {
  const invalid = { url: "not a url", surplus: true };
  expect((await api.request("POST", "/api/webhooks", { body: invalid })).status).toBe(401);
  expect((await api.request("POST", "/api/webhooks", { headers: await api.user("ann"), body: invalid })).status).toBe(403);
  expect((await api.request("DELETE", "/api/webhooks/bad%20id", { headers: await api.user("ann") })).status).toBe(403);
});

test("a method the document does not list on a path it does is 405 with Allow; an unknown path stays 404", async () => {
  for (const [method, path, allow] of [
    ["DELETE", "/api/stocks/idem", "GET, HEAD"],
    ["PUT", "/api/stocks", "POST"],
    ["TRACE", "/api/webhooks", "GET, HEAD, POST"],
    ["GET", "/api/allocations/x/purchase", "POST"],
  ] as const) {
    const res = await api.request(method, path, { headers: api.admin });
    expect({ method, path, status: res.status, allow: res.headers.get("Allow"), type: res.headers.get("content-type") }).toEqual({
      method,
      path,
      status: 405,
      allow,
      type: "application/problem+json",
    });
    expect(((await res.json()) as { code: string }).code).toBe("method_not_allowed");
  }
  expect((await api.request("GET", "/api/nothing-here", { headers: api.admin })).status).toBe(404);
});

test("an allocation id over 64 characters is a documented 400 on GET, purchase and cancel", async () => {
  const user = await api.user("ann");
  const long = "a".repeat(65);
  for (const [method, path, key] of [
    ["GET", `/api/allocations/${long}`, "/api/allocations/{id}"],
    ["POST", `/api/allocations/${long}/purchase`, "/api/allocations/{id}/purchase"],
    ["POST", `/api/allocations/${long}/cancel`, "/api/allocations/{id}/cancel"],
  ] as const) {
    const res = await api.request(method, path, { headers: user });
    expect(res.status).toBe(400);
    expect(doc.paths[key]![method.toLowerCase()]!.responses["400"]).toBeDefined();
  }
});

test("the Idempotency-Key schema states the format the server applies", async () => {
  const header = doc.paths["/api/stocks/{id}/allocate"]!.post!.parameters!.find((p) => p.name === "idempotency-key")!;
  expect(header.schema.maxLength).toBe(257);
  const pattern = new RegExp(header.schema.pattern!);
  const user = await api.user("ivy");
  const allocate = (key: string) => api.request("POST", "/api/stocks/idem/allocate", { headers: { ...user, "Idempotency-Key": key }, body: {} });
  for (const [key, valid] of [
    ['"order-1"', true],
    ["order-2", true],
    ["k".repeat(255), true],
    [`"${"k".repeat(255)}"`, true],
    ['""', false],
    ['a"b', false],
    ["k".repeat(256), false],
    ["a b", false],
  ] as const) {
    expect({ key, documented: pattern.test(key) }).toEqual({ key, documented: valid });
    expect({ key, status: (await allocate(key)).status }).toEqual({ key, status: valid ? 201 : 400 });
  }
  // The quoted and the bare spelling are the same key.
  const replay = await allocate('"order-2"');
  expect(replay.status).toBe(201);
  expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
});

test("the cursor and the analytics window rules are in the parameters", () => {
  for (const path of ["/api/orders/user/{userId}", "/api/stocks/search"]) {
    const cursor = doc.paths[path]!.get!.parameters!.find((p) => p.name === "cursor")!;
    expect(cursor.schema.pattern).toBe("^[A-Za-z0-9_-]{0,2048}$");
    expect(cursor.description).toContain("nextCursor");
  }
  const analytics = doc.paths["/api/analytics/sales"]!.get!;
  expect(analytics.description).toContain("at most 24 hours");
  for (const name of ["from", "to"]) expect(analytics.parameters!.find((p) => p.name === name)!.description).toMatch(/default/);
});

test("the problem schema names the extension members and keeps `status` an integer", () => {
  const props = doc.components.schemas.Problem!.properties;
  expect(Object.keys(props)).toEqual(expect.arrayContaining(["type", "title", "status", "detail", "code", "requestId", "errors", "holdStatus"]));
  expect(props.status).toMatchObject({ type: "integer" });
});
