/**
 * The operators' ports (issue 21 item 4): they bind ADMIN_HOST (loopback by default), answer
 * /healthz, /readyz and /metrics to anyone there and everything else only with the admin token,
 * bound the dashboard's pinned stocks per view, and cap open event streams on both sides of the api
 * (SSE_MAX_CLIENTS, 503 with Retry-After). Real Redis behind the api; a real worker binary for the bind.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { Registry } from "prom-client";
import { createAdminApp, startAdminServer } from "../shared/admin-server.ts";
import { parseConfig, relaySchema } from "../shared/config.ts";
import { MAX_PINNED_PER_VIEW } from "../services/api/dashboard/routes.ts";
import { createTestApi, TEST_ADMIN_TOKEN, type TestApi } from "./support/api.ts";
import { killChild } from "./support/processes.ts";
import { spawnService, stackEnv, uniqueName } from "../shared/dev/env.ts";

/**
 * Another address of the loopback range: a port bound to 0.0.0.0 answers there too, one bound to
 * 127.0.0.1 does not. So the test tells the two binds apart without a packet leaving loopback.
 */
const OTHER_LOOPBACK = "127.0.0.2";

async function reachable(url: string): Promise<boolean> {
  return fetch(url, { signal: AbortSignal.timeout(2_000) }).then(
    () => true,
    () => false,
  );
}

describe("ADMIN_HOST", () => {
  test("defaults to loopback in every binary's config", () => {
    expect(parseConfig(relaySchema, {}).ADMIN_HOST).toBe("127.0.0.1");
    expect(parseConfig(relaySchema, { ADMIN_HOST: "0.0.0.0" }).ADMIN_HOST).toBe("0.0.0.0");
  });

  test("a worker binary (the expirer) answers on 127.0.0.1 only, not on every address (0.0.0.0)", async () => {
    // The check has teeth: a server bound to 0.0.0.0 does answer on the other loopback address.
    const wide = Bun.serve({ hostname: "0.0.0.0", port: 0, fetch: () => new Response("ok") });
    try {
      expect(await reachable(`http://${OTHER_LOOPBACK}:${wide.port}/`)).toBe(true);
    } finally {
      await wide.stop(true);
    }
    const { child, adminPort } = spawnService("expirer", { REDIS_URL: stackEnv.REDIS_URL, REDIS_KEY_PREFIX: uniqueName("adm"), OUTBOX_SHARDS: "1" });
    try {
      let up = false;
      for (let i = 0; i < 100 && !up; i++) {
        up = await reachable(`http://127.0.0.1:${adminPort}/healthz`);
        if (!up) await Bun.sleep(100);
      }
      expect(up).toBe(true);
      expect(await reachable(`http://${OTHER_LOOPBACK}:${adminPort}/healthz`)).toBe(false);
    } finally {
      await killChild(child);
    }
  });

  test("startAdminServer binds loopback unless told otherwise", async () => {
    const server = startAdminServer({ port: 0, registry: new Registry(), notReadyReason: () => null });
    try {
      expect(server.hostname).toBe("127.0.0.1");
    } finally {
      await server.stop(true);
    }
  });
});

describe("admin authentication", () => {
  let api: TestApi;
  let admin: string;
  const auth = { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` };

  beforeAll(async () => {
    api = createTestApi({ workerMetricsUrls: [], adminSseMaxClients: 2 });
    admin = api.listenAdmin();
    for (const id of ["adm-a", "adm-b"]) {
      expect((await api.request("POST", "/api/stocks", { headers: api.admin, body: { id, name: id, price: 100, quantity: 5 } })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await api?.close();
  });

  test("health, readiness and metrics are open; the dashboard's data, the stream and unknown paths need the token", async () => {
    for (const path of ["/healthz", "/readyz", "/metrics"]) expect((await fetch(`${admin}${path}`)).status).toBe(200);
    // The page is a login shell: no stock, no number in it.
    const page = await fetch(`${admin}/dashboard`);
    expect(page.status).toBe(200);
    expect(await page.text()).not.toContain("adm-a");

    for (const path of ["/dashboard/snapshot.json", "/dashboard/events", "/dashboard/", "/nothing-here"]) {
      for (const headers of [{}, { Authorization: "Bearer wrong-token-wrong-token" }, { Authorization: TEST_ADMIN_TOKEN }] as Array<Record<string, string>>) {
        const res = await fetch(`${admin}${path}`, { headers });
        expect({ path, status: res.status }).toEqual({ path, status: 401 });
        expect(res.headers.get("content-type")).toBe("application/problem+json");
        expect(res.headers.get("www-authenticate")).toContain("Bearer");
        expect(((await res.json()) as { code: string }).code).toBe("unauthorized");
      }
    }
    const snapshot = await fetch(`${admin}/dashboard/snapshot.json?stocks=adm-a`, { headers: auth });
    expect(snapshot.status).toBe(200);
    expect(((await snapshot.json()) as { stocks: Array<{ id: string }> }).stocks[0]?.id).toBe("adm-a");
    expect((await fetch(`${admin}/nothing-here`, { headers: auth })).status).toBe(404);
  });

  test("a binary without ADMIN_TOKEN cannot mount more than the three open endpoints", () => {
    const routes = new Hono();
    expect(() => createAdminApp({ registry: new Registry(), notReadyReason: () => null, routes })).toThrow(/ADMIN_TOKEN/);
  });

  test(`?stocks= pins at most ${MAX_PINNED_PER_VIEW} per view (400 beyond), and a view's pins go with it`, async () => {
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `adm-pin-${i}`).join(",");
    const over = await fetch(`${admin}/dashboard/snapshot.json?stocks=${ids(MAX_PINNED_PER_VIEW + 1)}`, { headers: auth });
    expect(over.status).toBe(400);
    expect(over.headers.get("content-type")).toBe("application/problem+json");
    expect(((await over.json()) as { code: string }).code).toBe("invalid_request");
    const overStream = await fetch(`${admin}/dashboard/events?stocks=${ids(MAX_PINNED_PER_VIEW + 1)}`, { headers: auth });
    expect(overStream.status).toBe(400);
    await overStream.body?.cancel();
    expect((await fetch(`${admin}/dashboard/snapshot.json?stocks=${ids(MAX_PINNED_PER_VIEW)}`, { headers: auth })).status).toBe(200);

    // Views come and go; what they pinned does not stay sampled (it was one set that only grew).
    expect(api.dashboard!.pinnedCount).toBe(0);
    const controller = new AbortController();
    const stream = await fetch(`${admin}/dashboard/events?stocks=${ids(MAX_PINNED_PER_VIEW)}`, { headers: auth, signal: controller.signal });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    await reader.read(); // the first snapshot: the view is open
    expect(api.dashboard!.pinnedCount).toBe(MAX_PINNED_PER_VIEW);
    controller.abort();
    await reader.read().catch(() => {});
    for (let i = 0; i < 50 && api.dashboard!.pinnedCount > 0; i++) await Bun.sleep(100);
    expect(api.dashboard!.pinnedCount).toBe(0);
  });

  test("SSE_MAX_CLIENTS streams on the admin side; one more is a 503 with Retry-After until one closes", async () => {
    const open = async () => {
      const controller = new AbortController();
      const res = await fetch(`${admin}/dashboard/events`, { headers: { ...auth, Accept: "text/event-stream" }, signal: controller.signal });
      if (res.status === 200) await res.body!.getReader().read(); // streaming
      return { res, close: () => controller.abort() };
    };
    const first = await open();
    const second = await open();
    expect([first.res.status, second.res.status]).toEqual([200, 200]);
    const third = await open();
    expect(third.res.status).toBe(503);
    expect(third.res.headers.get("retry-after")).toBe("5");
    expect(third.res.headers.get("content-type")).toBe("application/problem+json");
    expect(((await third.res.json()) as { code: string }).code).toBe("too_many_streams");
    // Snapshots are not streams and are not capped.
    expect((await fetch(`${admin}/dashboard/snapshot.json`, { headers: auth })).status).toBe(200);
    // A closed stream gives its slot back: a new one gets in (the server sees the close within moments).
    first.close();
    let again = await open();
    for (let i = 0; i < 50 && again.res.status !== 200; i++) {
      await Bun.sleep(100);
      again = await open();
    }
    expect(again.res.status).toBe(200);
    second.close();
    again.close();
  });
});

describe("SSE_MAX_CLIENTS on the public port", () => {
  test("a request for an event stream beyond the cap is refused with 503 and Retry-After; other requests are not", async () => {
    const api = createTestApi({ app: { sseMaxClients: 1 } });
    // The public api serves no stream of its own yet: a test route stands for the next one that will.
    api.app.get("/test-stream", (c) =>
      streamSSE(c, async (stream) => {
        await stream.writeSSE({ data: "hello" });
        while (!stream.aborted) await stream.sleep(50);
      }),
    );
    const base = api.listen();
    try {
      const controller = new AbortController();
      const first = await fetch(`${base}/test-stream`, { headers: { Accept: "text/event-stream" }, signal: controller.signal });
      expect(first.status).toBe(200);
      await first.body!.getReader().read();
      const second = await fetch(`${base}/test-stream`, { headers: { Accept: "text/event-stream" } });
      expect(second.status).toBe(503);
      expect(second.headers.get("retry-after")).toBe("5");
      expect(((await second.json()) as { code: string; requestId: string }).code).toBe("too_many_streams");
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      controller.abort();
      let third = await fetch(`${base}/test-stream`, { headers: { Accept: "text/event-stream" } });
      for (let i = 0; i < 50 && third.status !== 200; i++) {
        await Bun.sleep(100);
        third = await fetch(`${base}/test-stream`, { headers: { Accept: "text/event-stream" } });
      }
      expect(third.status).toBe(200);
      await third.body?.cancel();
    } finally {
      await api.close();
    }
  });
});
