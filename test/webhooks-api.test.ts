/**
 * /api/webhooks (admin) against a real PostgreSQL: add (secret generated or given, shown once), list
 * (never a secret), remove (the configured endpoint is refused); bad input and missing or wrong
 * tokens answer problem+json with a stable code, never a 500. SSRF: URLs whose host is, or resolves to,
 * an inside address are refused with 400 webhook_url_not_allowed and nothing is stored (names resolve
 * through an injected resolver: no lookup leaves the process).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { webhookRoutes } from "../services/api/routes/webhooks.ts";
import { createApp } from "../services/api/app.ts";
import { createLogger } from "../shared/logger.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { createRedis } from "../shared/redis/client.ts";
import { createStockCommands } from "../shared/redis/commands.ts";
import { createKeyLayout } from "../shared/domain/keys.ts";
import type { Resolver } from "../shared/webhooks/address-policy.ts";
import { generateSecret, syncConfiguredEndpoint } from "../shared/webhooks/endpoints.ts";
import { createSecretBox } from "../shared/webhooks/secret-box.ts";
import { testSecretsKey } from "../shared/dev/webhook-receiver.ts";
import { mintUserToken } from "../shared/dev/token.ts";
import { createTestDatabase, type TestDatabase } from "./support/read-side.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";

const ADMIN = "webhooks-test-admin-token-0123456789";
const JWT_SECRET = "webhooks-test-jwt-secret-0123456789abcdef0123";
let db: TestDatabase;
const redis = createRedis(stackEnv.REDIS_URL);
let app: ReturnType<typeof createApp>;

/** DNS for this file: no packet leaves loopback, and no name resolves by luck. */
const dns = new Map<string, string[]>([
  ["fulfilment.example", ["93.184.215.14"]],
  ["crm.example", ["2606:4700::1111"]],
  ["internal.example", ["10.1.2.3"]],
  ["metadata.example", ["169.254.169.254"]],
  ["rebind.example", ["93.184.215.14", "192.168.0.10"]],
  ["mapped.example", ["::ffff:127.0.0.1"]],
  ["localhost", ["127.0.0.1", "::1"]],
]);
const resolve: Resolver = async (host) => {
  const found = dns.get(host);
  if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  return found;
};
const box = await createSecretBox(testSecretsKey());

/** The api with the webhook routes on `sql`. */
function appOn(sql: Parameters<typeof webhookRoutes>[0], allowPrivate = false): ReturnType<typeof createApp> {
  return createApp({
    commands: createStockCommands(redis, createKeyLayout(uniqueName("wh").slice(0, 30), 4)),
    redis,
    logger: createLogger("test", "silent"),
    registry: createMetricsRegistry("api"),
    adminToken: ADMIN,
    jwtSecret: JWT_SECRET,
    maxBodyBytes: 16 * 1024,
    webhookRoutes: webhookRoutes(sql, { box, allowPrivate, resolve }),
  });
}

beforeAll(async () => {
  db = await createTestDatabase("whapi");
  app = appOn(db.sql);
});
afterAll(async () => {
  await redis.quit();
  await db.drop();
});

const admin = { Authorization: `Bearer ${ADMIN}` };
function call(method: string, path: string, body?: unknown, headers: Record<string, string> = admin) {
  return app.request(path, {
    method,
    headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function expectProblem(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/problem+json");
  const body = (await res.json()) as Record<string, unknown>;
  expect(body.code).toBe(code);
  expect(body.status).toBe(status);
  return body;
}

test("add, list and remove endpoints", async () => {
  await syncConfiguredEndpoint(db.sql, box, { url: "http://127.0.0.1:3201/config", secret: generateSecret() });
  const created = await call("POST", "/api/webhooks", { url: "https://fulfilment.example/hooks", eventTypes: ["PurchaseCompleted"], description: "fulfilment" });
  expect(created.status).toBe(201);
  const a = (await created.json()) as Record<string, unknown>;
  expect(a).toMatchObject({ url: "https://fulfilment.example/hooks", eventTypes: ["PurchaseCompleted"], description: "fulfilment", source: "api" });
  expect(String(a.id)).toMatch(/^ep_[0-9a-f]{32}$/);
  expect(String(a.secret)).toMatch(/^whsec_/);

  const secret = generateSecret();
  const b = (await (await call("POST", "/api/webhooks", { url: "http://crm.example:3202/crm", secret })).json()) as Record<string, unknown>;
  expect(b.secret).toBe(secret);
  expect(b.eventTypes).toBeNull();

  const list = await call("GET", "/api/webhooks");
  expect(list.status).toBe(200);
  const text = await list.text();
  expect(text).not.toContain("whsec_"); // secrets are shown once, at creation
  const items = (JSON.parse(text) as { items: { id: string; source: string }[] }).items;
  expect(items.map((i) => i.id)).toEqual(["config", a.id as string, b.id as string]);

  expect((await call("DELETE", `/api/webhooks/${a.id}`)).status).toBe(204);
  await expectProblem(await call("DELETE", `/api/webhooks/${a.id}`), 404, "not_found");
  await expectProblem(await call("DELETE", "/api/webhooks/config"), 409, "webhook_configured");
  const after = (await (await call("GET", "/api/webhooks")).json()) as { items: { id: string }[] };
  expect(after.items.map((i) => i.id)).toEqual(["config", b.id as string]);
  const [row] = await db.sql`SELECT removed_at FROM webhook_endpoints WHERE endpoint_id = ${a.id as string}`;
  expect(row!.removed_at).toBeInstanceOf(Date); // history kept, deliveries stopped
});

test("bad input and auth answer problem+json", async () => {
  for (const body of [
    { url: "ftp://a.example/x" },
    { url: "file:///etc/passwd" },
    { url: "not a url" },
    { url: "https://user:pw@a.example/x" },
    { url: "https://a.example/x", secret: "not-whsec" },
    { url: "https://a.example/x", eventTypes: ["Nope"] },
    { url: "https://a.example/x", eventTypes: [] },
    { url: "https://a.example/x", extra: 1 },
    { url: "https://a.example/x", description: "a\u0000b" }, // PostgreSQL text cannot hold NUL: a 500 before
    { url: "https://a.example/\u0000x" },
    {},
  ]) {
    await expectProblem(await call("POST", "/api/webhooks", body), 400, "invalid_request");
  }
  await expectProblem(await call("POST", "/api/webhooks", "{not json"), 400, "invalid_request");
  await expectProblem(await call("DELETE", "/api/webhooks/bad%20id"), 400, "invalid_request");
  await expectProblem(await call("GET", "/api/webhooks", undefined, {}), 401, "unauthorized");
  const user = { Authorization: `Bearer ${await mintUserToken("u1", JWT_SECRET)}` };
  await expectProblem(await call("GET", "/api/webhooks", undefined, user), 403, "forbidden");
  await expectProblem(await call("POST", "/api/webhooks", { url: "https://a.example/x" }, user), 403, "forbidden");
  await expectProblem(await call("DELETE", "/api/webhooks/config", undefined, user), 403, "forbidden");
});

test("a database that is down answers 503 store_unavailable", async () => {
  const postgres = (await import("postgres")).default;
  const dead = postgres("postgres://flashsale:flashsale@127.0.0.1:1/none", { max: 1, connect_timeout: 1, onnotice: () => {} });
  const down = appOn(dead);
  const res = await down.request("/api/webhooks", { headers: admin });
  await expectProblem(res, 503, "store_unavailable");
  await dead.end({ timeout: 1 });
});

test("SSRF: an inside address, literal or behind a name, is refused with 400 webhook_url_not_allowed and nothing is stored", async () => {
  const [before] = await db.sql`SELECT count(*)::int AS n FROM webhook_endpoints`;
  const refused = [
    "http://127.0.0.1:3201/x", // loopback
    "http://127.9.9.9/x",
    "http://localhost:8080/x",
    "http://[::1]/x",
    "http://169.254.169.254/latest/meta-data/", // link-local: cloud metadata
    "http://[fe80::1]/x",
    "http://10.0.0.5/x", // private
    "http://172.16.3.4/x",
    "http://172.31.255.255/x",
    "http://192.168.1.1/x",
    "http://[fc00::1]/x", // unique local
    "http://[fd12:3456::1]/x",
    "http://0.0.0.0/x", // unspecified
    "http://[::]/x",
    "http://224.0.0.1/x", // multicast
    "http://[ff02::1]/x",
    "http://255.255.255.255/x", // broadcast
    "http://[::ffff:127.0.0.1]/x", // IPv4-mapped IPv6 forms
    "http://[::ffff:a9fe:a9fe]/x",
    "http://[::ffff:10.0.0.1]/x",
    "http://[64:ff9b::7f00:1]/x", // NAT64 of loopback
    "http://2130706433/x", // 127.0.0.1 in decimal, as the URL parser reads it
    "http://0x7f.1/x",
    "https://internal.example/x", // names that resolve inside
    "https://metadata.example/x",
    "https://rebind.example/x", // one private record among public ones
    "https://mapped.example/x",
    "https://nowhere.example/x", // does not resolve
  ];
  for (const url of refused) {
    const body = await expectProblem(await call("POST", "/api/webhooks", { url }), 400, "webhook_url_not_allowed");
    expect(String(body.detail)).toStartWith("webhook URL not allowed: ");
  }
  const [after] = await db.sql`SELECT count(*)::int AS n FROM webhook_endpoints`;
  expect(after!.n).toBe(before!.n);

  // Next to the refused ranges, and public names: accepted.
  for (const url of ["http://172.32.0.1/x", "http://11.0.0.1/x", "http://[2606:4700::1111]/x", "https://fulfilment.example/x", "http://[::ffff:8.8.8.8]/x"]) {
    expect((await call("POST", "/api/webhooks", { url })).status).toBe(201);
  }
  // WEBHOOK_ALLOW_PRIVATE_NETWORKS=true: a local receiver is allowed (development, tests).
  const open = appOn(db.sql, true);
  const res = await open.request("/api/webhooks", { method: "POST", headers: { ...admin, "content-type": "application/json" }, body: JSON.stringify({ url: "http://127.0.0.1:3201/x" }) });
  expect(res.status).toBe(201);
});
