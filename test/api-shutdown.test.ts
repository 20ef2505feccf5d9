/**
 * The api exits 0 within its grace period with event streams open (issue 20). A stream lives as
 * long as its client and Bun's server.stop() waits for every response in flight, so before the fix
 * one open dashboard held SIGTERM until the 20 s deadline, and the api exited 1.
 * The api is a real process (services/api/main.ts) on the stack's Redis, under its own key prefix.
 */
import { afterEach, expect, test } from "bun:test";
import { freePort, spawnService, uniqueName, type ServiceProcess } from "../shared/dev/env.ts";

const ADMIN_TOKEN = "shutdown-test-admin-token";
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

/** Opens the dashboard's event stream and waits for its first event (the stream is really open). */
async function openStream(adminPort: number) {
  const response = await fetch(`http://127.0.0.1:${adminPort}/dashboard/events`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(response.headers.get("content-type")).toContain("text/event-stream");
  const reader = response.body!.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toContain("event: snapshot");
  return reader;
}

test("SIGTERM with two event streams open: the streams end, the api exits 0 well within the 20 s deadline", async () => {
  api = spawnService("api", {
    PORT: String(freePort()),
    REDIS_KEY_PREFIX: uniqueName("shutdown"),
    ADMIN_TOKEN,
    JWT_SECRET: "shutdown-test-jwt-secret-of-at-least-32-chars",
    API_WORKERS: "1",
  });
  await untilReady(api.adminPort);
  const streams = [await openStream(api.adminPort), await openStream(api.adminPort)];

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
