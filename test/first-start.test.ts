/**
 * The first hour (issue 20), as a new user meets it: `bash scripts/up.sh` on empty servers, then at once
 * the README's quick start (create a stock, allocate, read the history back with the allocation's
 * Consistency-Token, and purchase, with a user token minted by `bun run token`); the purchase must be in order history and analytics within 2 s, with no manual
 * step. Then the supervision `up` promises: a worker killed -9 is back within 10 s and its restart is
 * counted by `status`; `status` exits non-zero while a service is stopped, and `stop` is not fought.
 *
 * Everything runs on a private stack (fresh Kafka, empty Redis, PostgreSQL and Elasticsearch) in a
 * temporary FLASHSALE_STACK_DIR, on free ports for the servers (FLASHSALE_*_PORT) and the services
 * (PORT, FLASHSALE_ADMIN_PORT_OFFSET), so the shared stack and the services on 3000/9101-9106 are
 * never touched; `up.sh reset --yes` removes it at the end. About 2 minutes, most of it Elasticsearch.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiWorkerAdminPort, SERVICE_NAMES, SERVICES, type ServiceName } from "../shared/services.ts";
import { freePort } from "../shared/dev/env.ts";

const REPO_ROOT = join(import.meta.dir, "..");
const ADMIN_TOKEN = "dev-admin-token-0123456789";
const JWT_SECRET = "dev-jwt-secret-0123456789abcdef0123456789abcdef";
const API_WORKERS = 2;
const LONG = 420_000;

/** A free run of ports: every port base + o for o in offsets is free right now (Bun.listen probes). */
function freeBase(from: number, to: number, offsets: number[]): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = from + Math.floor(Math.random() * (to - from));
    const listeners: { stop(closeActive?: boolean): void }[] = [];
    try {
      for (const o of offsets) listeners.push(Bun.listen({ hostname: "127.0.0.1", port: base + o, socket: { data() {} } }));
      return base;
    } catch {
      // one is taken: another base
    } finally {
      for (const l of listeners) l.stop(true);
    }
  }
  throw new Error(`no free ports in ${from}-${to}`);
}

// The services' admin ports are the registry's plus an offset (api workers: + 100 each); kept below
// the kernel's ephemeral range (32768+), where client connections would take ports at random.
const adminOffsets = SERVICE_NAMES.flatMap((n) =>
  n === "api" ? Array.from({ length: API_WORKERS }, (_, i) => apiWorkerAdminPort(SERVICES.api.adminPort, i)) : [SERVICES[n].adminPort],
);
const ADMIN_OFFSET = freeBase(10_000, 20_000, adminOffsets);
const adminPort = (name: ServiceName) => SERVICES[name].adminPort + ADMIN_OFFSET;
const API_PORT = freePort();
const dir = mkdtempSync(join(tmpdir(), "fs-first-start-"));
chmodSync(dir, 0o755); // PostgreSQL and Elasticsearch run as their own OS users and must traverse it

const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
// The test runner may point clients at the shared stack: up.sh must derive everything from the private one.
for (const k of ["REDIS_URL", "REDIS_CLUSTER_NODES", "DATABASE_URL", "KAFKA_BROKERS", "ELASTICSEARCH_URL", "WORKER_METRICS_URLS", "API_ADMIN_PORT", "ADMIN_PORT"]) delete env[k];
Object.assign(env, {
  FLASHSALE_STACK_DIR: dir,
  FLASHSALE_REDIS_PORT: String(freePort()),
  FLASHSALE_PG_PORT: String(freePort()),
  FLASHSALE_KAFKA_PORT: String(freePort()),
  FLASHSALE_KAFKA_CONTROLLER_PORT: String(freePort()),
  FLASHSALE_ES_PORT: String(freePort()),
  FLASHSALE_ES_TRANSPORT_PORT: String(freePort()),
  FLASHSALE_PROMETHEUS_PORT: String(freePort()),
  // Not started here, but `down` and `reset` look at them: never the shared 7000-7005 and 9192-9197.
  FLASHSALE_REDIS_CLUSTER_BASE_PORT: String(freeBase(20_000, 30_000, [0, 1, 2, 3, 4, 5])),
  FLASHSALE_KAFKA_CLUSTER_BASE_PORT: String(freeBase(20_000, 30_000, [0, 1, 2, 3, 4, 5])),
  FLASHSALE_ES_HEAP: "512m",
  PORT: String(API_PORT),
  FLASHSALE_ADMIN_PORT_OFFSET: String(ADMIN_OFFSET),
  API_WORKERS: String(API_WORKERS),
  ADMIN_TOKEN,
  JWT_SECRET,
  LOG_LEVEL: "info", // the logs up.sh tails when a service is not ready
  FLASHSALE_UP_TIMEOUT: "90", // ready takes ~15 s once the servers answer; a failing run should not hold the suite for long
});

async function run(args: string[], options: { stdin?: "ignore" } = {}) {
  const child = Bun.spawn(args, { cwd: REPO_ROOT, env, stdin: options.stdin ?? "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { out, err, code };
}
const up = (...args: string[]) => run(["bash", "scripts/up.sh", ...args]);

/** The row of `status`/`up`'s table for a service: pid, ready, restarts. */
function row(table: string, name: string) {
  const cells = table.split("\n").find((l) => l.startsWith(`${name} `))?.trim().split(/\s{2,}/);
  if (!cells) throw new Error(`no row for ${name} in:\n${table}`);
  return { pid: cells[1]!, ready: cells[3]!, restarts: Number(cells[4]) };
}
const pidFile = (name: string) => join(dir, "run", `svc-${name}.child.pid`);
const servicePid = (name: string) => (existsSync(pidFile(name)) ? Number(readFileSync(pidFile(name), "utf8").split(" ")[0]) : null);
/** Running: it exists and is not a zombie (an exited supervisor waits a moment for init to reap it). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};
async function answers(port: number, path: "/healthz" | "/readyz"): Promise<boolean> {
  return fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
}
/** Polls `check` every 50 ms; returns the milliseconds until it held, or throws if that was more than `budgetMs`. */
async function within(budgetMs: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now();
  const elapsed = () => Math.round(performance.now() - t0);
  for (;;) {
    const held = await check();
    if (elapsed() > budgetMs) throw new Error(`${what}: not within ${budgetMs} ms (${held ? "held" : "still not"} after ${elapsed()} ms)`);
    if (held) return elapsed();
    await Bun.sleep(50);
  }
}

const api = (path: string, init: RequestInit & { token: string }) =>
  fetch(`http://127.0.0.1:${API_PORT}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${init.token}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
  });

/** The README's quick start: allocate and purchase one unit; resolves when the purchase has answered 200. */
async function buy(stockId: string, userToken: string, key: string): Promise<string> {
  const held = await api(`/api/stocks/${stockId}/allocate`, { method: "POST", token: userToken, headers: { "idempotency-key": `"${key}"` }, body: '{"quantity":1}' });
  expect(held.status).toBe(201);
  const { allocationId } = (await held.json()) as { allocationId: string };
  // The quick start's read-your-writes: history read with the allocation's Consistency-Token shows the hold
  // (up to 5 s here: a first start's Kafka may still be creating its internal topics).
  const token = held.headers.get("consistency-token") ?? "";
  const read = await api("/api/orders/user/alice", { token: userToken, headers: { "consistency-token": token, prefer: "wait=5" } });
  expect([read.status, read.headers.get("consistency-status")]).toEqual([200, "fresh"]);
  expect(((await read.json()) as { items: { allocationId: string; status: string }[] }).items).toContainEqual(expect.objectContaining({ allocationId, status: "held" }));
  const bought = await api(`/api/allocations/${allocationId}/purchase`, { method: "POST", token: userToken });
  expect(bought.status).toBe(200);
  expect(await bought.json()).toMatchObject({ status: "purchased", amount: 12900, currency: "EUR" });
  return allocationId;
}
async function inHistory(userId: string, userToken: string, allocationId: string): Promise<boolean> {
  const res = await api(`/api/orders/user/${userId}`, { token: userToken });
  if (res.status !== 200) return false;
  const { items } = (await res.json()) as { items: { allocationId: string; status: string }[] };
  return items.some((o) => o.allocationId === allocationId && o.status === "purchased");
}
async function unitsSold(stockId: string): Promise<number> {
  const res = await api(`/api/analytics/sales?stockId=${stockId}`, { token: ADMIN_TOKEN });
  if (res.status !== 200) return -1;
  const { stocks } = (await res.json()) as { stocks: { stockId: string; unitsSold: number }[] };
  return stocks.find((s) => s.stockId === stockId)?.unitsSold ?? 0;
}

let userToken = "";
/** up ran to its end (ready or not): the supervision tests need the services started, not all of them ready. */
let upRan = false;

afterAll(async () => {
  const reset = await up("reset", "--yes");
  if (reset.code !== 0) console.error(`reset of the private stack failed:\n${reset.out}\n${reset.err}`);
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe("scripts/up.sh and stack.sh refuse what they cannot do", () => {
  test("reset without a terminal and without --yes deletes nothing; unknown names exit non-zero", async () => {
    const reset = await run(["bash", "scripts/up.sh", "reset"], { stdin: "ignore" });
    expect(reset.code).not.toBe(0);
    expect(reset.err).toContain("pass --yes");
    for (const cmd of ["up", "down"]) {
      const unknown = await run(["bash", "scripts/stack.sh", cmd, "nosuch"]);
      expect(unknown.code, `stack.sh ${cmd} nosuch`).toBe(1);
      expect(unknown.err).toContain("unknown server 'nosuch'");
    }
    const stop = await up("stop", "nosuch");
    expect(stop.code).not.toBe(0);
    expect(stop.err).toContain("unknown service 'nosuch'");
  }, 60_000);
});

describe("first start on empty servers", () => {
  test("up waits until every service is ready, then the quick start's purchase is in history and analytics within 2 s", async () => {
    expect(readdirSync(dir)).toEqual([]); // empty: no data, no logs, no pids
    const t0 = performance.now();
    const started = await up();
    upRan = true;
    const upSeconds = (performance.now() - t0) / 1000;
    console.log(`up from empty: ${upSeconds.toFixed(1)} s\n${started.out.split("\nSERVICE")[1] ?? started.out}`);
    expect(started.code, `${started.out}\n${started.err}`).toBe(0);
    for (const name of SERVICE_NAMES) expect(row(started.out, name).ready, name).toBe("yes");
    expect(started.out).toContain("flash-sale is up in");

    // At once, the README's commands: a token from `bun run token`, the stock, allocate, purchase.
    const minted = Bun.spawnSync(["bun", "run", "--silent", "token", "alice"], { cwd: REPO_ROOT, env });
    userToken = minted.stdout.toString().trim();
    expect(userToken.split(".")).toHaveLength(3);
    const created = await api("/api/stocks", {
      method: "POST",
      token: ADMIN_TOKEN,
      body: JSON.stringify({ id: "sneaker-42", name: "Sneaker 42", price: 12900, currency: "EUR", quantity: 100, perUserLimit: 2 }),
    });
    expect(created.status).toBe(201);
    const allocationId = await buy("sneaker-42", userToken, "order-7f3a");
    const historyMs = await within(2_000, "order in history", () => inHistory("alice", userToken, allocationId));
    const analyticsMs = await within(2_000, "purchase in analytics", async () => (await unitsSold("sneaker-42")) === 1);
    console.log(`first purchase: in order history after ${historyMs} ms, in analytics after ${analyticsMs} ms`);
  }, LONG);
});

describe("supervision under up", () => {
  test("a worker killed -9 is back within 10 s, ready, consuming, and its restart is counted by status", async () => {
    if (!upRan) throw new Error("up did not run");
    const name = "projector-postgres";
    const before = await up("status");
    expect(row(before.out, name).ready, before.out).toBe("yes");
    const restartsBefore = row(before.out, name).restarts;
    const victim = servicePid(name)!;
    expect(alive(victim)).toBe(true);

    process.kill(victim, "SIGKILL");
    const t0 = performance.now();
    // Back: a new process (the supervisor's record) answering on its admin port.
    await within(10_000, `${name} back`, async () => {
      const pid = servicePid(name);
      return pid !== null && pid !== victim && (await answers(adminPort(name), "/healthz"));
    });
    const backMs = Math.round(performance.now() - t0);
    await within(30_000, `${name} ready`, () => answers(adminPort(name), "/readyz"));
    const readyMs = Math.round(performance.now() - t0);
    console.log(`kill -9 of ${name}: back (new pid, /healthz) after ${backMs} ms, /readyz 200 after ${readyMs} ms`);
    expect(backMs).toBeLessThanOrEqual(10_000);

    const after = await up("status");
    expect(row(after.out, name)).toMatchObject({ pid: String(servicePid(name)), ready: "yes", restarts: restartsBefore + 1 });
    expect(readFileSync(join(dir, "logs", `${name}.log`), "utf8")).toContain(`${name} failed (killed by signal 9)`);
    // The new process consumes: a purchase made now reaches order history.
    const allocationId = await buy("sneaker-42", userToken, "order-after-kill");
    await within(2_000, "order in history after the restart", () => inHistory("alice", userToken, allocationId));
  }, 120_000);

  test("status exits non-zero while a service is stopped; stop is not fought by the supervisor, restart brings it back", async () => {
    if (!upRan) throw new Error("up did not run");
    const name = "projector-search";
    const supervisor = Number(readFileSync(join(dir, "run", `svc-${name}.pid`), "utf8").split(" ")[0]);
    const stopped = await up("stop", name);
    expect(stopped.code, stopped.err).toBe(0);
    // Not fought: the supervisor itself is gone, so nothing is left that could start it again.
    expect(alive(supervisor)).toBe(false);
    expect(servicePid(name)).toBeNull();
    expect(await answers(adminPort(name), "/healthz")).toBe(false);
    const status = await up("status");
    expect(status.code).toBe(1);
    expect(row(status.out, name).ready).toBe("no");
    expect(status.out).toContain(`${name}: stopped`);

    const restarted = await up("restart", name);
    expect(restarted.code, restarted.err).toBe(0);
    expect(row(restarted.out, name)).toMatchObject({ ready: "yes", restarts: 0 });
    expect((await up("status")).code).toBe(0);
  }, 120_000);

  test("reset --yes stops everything and deletes every store's data", async () => {
    const reset = await up("reset", "--yes");
    expect(reset.code, `${reset.out}\n${reset.err}`).toBe(0);
    for (const d of ["redis", "postgres", "kafka", "elasticsearch", "logs", "run"]) expect(existsSync(join(dir, d)), d).toBe(false);
    const leftovers = Bun.spawnSync(["pgrep", "-f", dir]).stdout.toString().trim();
    expect(leftovers).toBe("");
    expect(await answers(API_PORT, "/healthz")).toBe(false);
    for (const name of SERVICE_NAMES) expect(await answers(adminPort(name), "/healthz"), name).toBe(false);
  }, 120_000);
});
