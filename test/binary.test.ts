/**
 * The api as a compiled binary (docs/design.md §7): `bun build --compile` of services/api/main.ts runs on its
 * own — from a directory outside the repo, so the Lua scripts must be embedded — against the stack's
 * Redis, answers /healthz, creates a stock (which runs a Lua script), and exits 0 on SIGTERM.
 * Without its required configuration it exits 1 naming the variable.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Redis from "ioredis";
import { deleteKeysByPrefix } from "../shared/redis/client.ts";
import { buildService, REPO_ROOT } from "../scripts/build.ts";
import { freePort, stackEnv, uniqueName } from "../shared/dev/env.ts";

const hasApi = existsSync(join(REPO_ROOT, "services", "api", "main.ts"));
const ADMIN_TOKEN = "binary-test-admin-token-0123456789";
const JWT_SECRET = "binary-test-jwt-secret-0123456789abcdef0123456789";

let workDir = "";
let binary = "";
const prefix = uniqueName("bin").slice(0, 32);
const redis = new Redis(stackEnv.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2 });

async function waitFor(url: string, ms: number, proc: Bun.Subprocess): Promise<Response> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`binary exited early with ${proc.exitCode}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.status === 200) return res;
      last = res.status;
    } catch (e) {
      last = e;
    }
    await Bun.sleep(100);
  }
  throw new Error(`${url} did not answer 200 within ${ms} ms (last: ${String(last)})`);
}

beforeAll(async () => {
  if (!hasApi) return;
  workDir = await mkdtemp(join(tmpdir(), "fs-binary-"));
  binary = (await buildService("api", workDir)).outfile;
  await redis.connect();
}, 120_000);

afterAll(async () => {
  if (redis.status === "ready") {
    await deleteKeysByPrefix(redis, prefix);
    await redis.quit();
  } else {
    redis.disconnect();
  }
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe.skipIf(!hasApi)("compiled api binary", () => {
  test("serves /healthz, runs its embedded Lua, and exits 0 on SIGTERM", async () => {
    const port = freePort();
    const adminPort = freePort();
    const proc = Bun.spawn([binary], {
      cwd: workDir, // outside the repo: nothing can be read from services/ or shared/
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
        ADMIN_TOKEN,
        JWT_SECRET,
        REDIS_URL: stackEnv.REDIS_URL,
        REDIS_KEY_PREFIX: prefix,
        LOG_LEVEL: "info",
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    try {
      const health = await waitFor(`http://127.0.0.1:${port}/healthz`, 20_000, proc);
      expect(health.status).toBe(200);
      // Prometheus metrics on the admin port only (they reveal sales velocity).
      const metrics = await waitFor(`http://127.0.0.1:${adminPort}/metrics`, 5_000, proc);
      expect(await metrics.text()).toContain("flashsale_http_requests_total");
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);

      // Creating a stock runs a Lua script through EVALSHA: proves the scripts are inside the binary.
      const created = await fetch(`http://127.0.0.1:${port}/api/stocks`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "Binary test sneaker", price: 1999, currency: "EUR", quantity: 5 }),
      });
      expect(created.status).toBe(201);
      const stock = (await created.json()) as { id: string; available: number };
      expect(stock.available).toBe(5);

      // The runtime flag baked into the binary (--max-http-header-size=65536): 30 kB of headers, over
      // Bun's default 16 KiB, still reach the app and get its problem+json instead of a bare 431.
      const oversized = await fetch(`http://127.0.0.1:${port}/api/stocks/${stock.id}`, { headers: { "x-padding": "x".repeat(30_000) } });
      expect(oversized.status).toBe(431);
      expect(await oversized.json()).toMatchObject({ code: "headers_too_large" });
    } finally {
      proc.kill("SIGTERM");
    }
    const code = await Promise.race([proc.exited, Bun.sleep(25_000).then(() => "timeout" as const)]);
    if (code === "timeout") proc.kill("SIGKILL");
    const [out, err] = await output;
    if (code !== 0) console.error(out, err);
    expect(code).toBe(0);
  }, 60_000);

  test("without ADMIN_TOKEN it exits 1 before connecting anywhere, naming the variable", async () => {
    const proc = Bun.spawn([binary], {
      cwd: workDir,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PORT: String(freePort()), JWT_SECRET, REDIS_URL: "redis://127.0.0.1:1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    expect(code).toBe(1);
    expect(out + err).toContain("ADMIN_TOKEN");
  }, 30_000);
});
