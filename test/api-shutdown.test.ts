/**
 * The api exits 0 within its grace period with event streams open (issue 20). A stream lives as
 * long as its client and Bun's server.stop() waits for every response in flight, so before the fix
 * one open dashboard held SIGTERM until the 20 s deadline, and the api exited 1.
 * The api is a real process (services/api/main.ts) on the stack's Redis, under its own key prefix.
 */
import { afterEach, expect, test } from "bun:test";
import { freePort, spawnService, uniqueName, type ServiceProcess } from "../shared/dev/env.ts";
import { mintUserToken } from "../shared/dev/token.ts";

const ADMIN_TOKEN = "shutdown-test-admin-token";
const JWT_SECRET = "shutdown-test-jwt-secret-of-at-least-32-chars";
let api: ServiceProcess | undefined;
afterEach(() => {
  api?.child.kill("SIGKILL");
  api = undefined;
});

async function untilReady(adminPort: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await fetch(`http://127.0.0.1:${adminPort}/readyz`).then((r) => r.ok, () => false))) {
    if (Date.now() > deadline) throw new Error("api not ready within 20 s");
    await Bun.sleep(100);
  }
}

/** Opens an event stream and waits for its first event (the stream is really open). */
async function openStream(url: string, headers: Record<string, string>, firstEvent: string) {
  const response = await fetch(url, { headers: { Accept: "text/event-stream", ...headers } });
  expect(response.headers.get("content-type")).toContain("text/event-stream");
  const reader = response.body!.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toContain(`event: ${firstEvent}`);
  return reader;
}

/** A waiting-room ticket's stream on the public port: a stock whose sale starts in an hour, one buyer in its pre-queue. */
async function openTicketStream(port: number) {
  const base = `http://127.0.0.1:${port}`;
  const created = await fetch(`${base}/api/stocks`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "Queued", price: 100, quantity: 5, perUserLimit: 1, startsAt: new Date(Date.now() + 3_600_000).toISOString(), waitingRoom: { enabled: true } }),
  });
  expect(created.status).toBe(201);
  const { id } = (await created.json()) as { id: string };
  const user = { Authorization: `Bearer ${await mintUserToken("shutdown-buyer", JWT_SECRET)}` };
  expect((await fetch(`${base}/api/stocks/${id}/queue`, { method: "POST", headers: user })).status).toBeLessThan(300);
  return openStream(`${base}/api/stocks/${id}/queue/me`, user, "ticket");
}

test("SIGTERM with event streams open on both ports: the streams end, the api exits 0 well within the 20 s deadline", async () => {
  const port = freePort();
  api = spawnService("api", {
    PORT: String(port),
    REDIS_KEY_PREFIX: uniqueName("shutdown"),
    ADMIN_TOKEN,
    JWT_SECRET,
    API_WORKERS: "1",
  });
  await untilReady(api.adminPort);
  const dashboard = () => openStream(`http://127.0.0.1:${api!.adminPort}/dashboard/events`, { Authorization: `Bearer ${ADMIN_TOKEN}` }, "snapshot");
  const streams = [await dashboard(), await dashboard(), await openTicketStream(port)];

  const signalledAt = performance.now();
  api.child.kill("SIGTERM");
  const code = await api.child.exited;
  const tookMs = performance.now() - signalledAt;
  console.log(`[api shutdown] exit ${code} ${Math.round(tookMs)} ms after SIGTERM with ${streams.length} streams open`);
  expect(code).toBe(0);
  expect(tookMs).toBeLessThan(5_000);
  // Each stream was ended by the server (done), not left hanging or reset.
  for (const reader of streams) {
    let done = false;
    for (let i = 0; i < 100 && !done; i++) done = (await reader.read().catch(() => ({ done: true }))).done;
    expect(done).toBe(true);
  }
}, 40_000);
