/**
 * For the front-door tests (test/front-door.test.ts): a private redis-server (its INFO commandstats
 * counts only our commands, unlike the shared 6379) and real api processes (services/api/main.ts)
 * started and stopped by pid. Ports come from the frontdoor range 3100-3199.
 */
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Redis } from "ioredis";

const ROOT = resolve(import.meta.dir, "..", "..");
export const FD_ADMIN_TOKEN = "frontdoor-admin-token-0123456789";
export const FD_JWT_SECRET = "frontdoor-jwt-secret-0123456789abcdef0123456789";

export interface Proc {
  proc: Bun.Subprocess;
  stop(): Promise<void>;
}

async function stopProc(proc: Bun.Subprocess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const done = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => null)]);
  if (done === null) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

async function waitFor(check: () => Promise<boolean>, proc: Bun.Subprocess, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited early with ${proc.exitCode}`);
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    await Bun.sleep(100);
  }
  throw new Error(`${what} not ready within ${ms} ms`);
}

/** redis-server on `port`, no persistence, in a throwaway directory. */
export async function startPrivateRedis(port: number): Promise<Proc & { url: string; client: Redis }> {
  const dir = mkdtempSync(join(tmpdir(), "fs-frontdoor-redis-"));
  const proc = Bun.spawn(["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
    stdout: "ignore",
    stderr: "inherit",
  });
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on("error", () => {}); // refused until the server is up; waitFor retries
  await waitFor(async () => {
    if (client.status !== "ready") await client.connect();
    return (await client.ping()) === "PONG";
  }, proc, `redis-server :${port}`);
  return {
    proc,
    url,
    client,
    async stop() {
      client.disconnect();
      await stopProc(proc);
    },
  };
}

/** services/api/main.ts with the test's secrets, admin port = port + 10; resolves once /readyz answers 200. */
export async function startApi(port: number, env: Record<string, string>): Promise<Proc & { url: string }> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "services", "api", "main.ts")], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", PORT: String(port), ADMIN_PORT: String(port + 10), ADMIN_TOKEN: FD_ADMIN_TOKEN, JWT_SECRET: FD_JWT_SECRET, ...env },
    stdout: "inherit",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) })).status === 200, proc, `api :${port}`);
  // The released-channel subscription is asynchronous: give it a moment before the cache is relied on.
  await Bun.sleep(300);
  return { proc, url, stop: () => stopProc(proc) };
}

/** Calls of every command since the server started, except INFO itself (which this counting uses). */
export async function commandCalls(redis: Redis): Promise<{ total: number; evalsha: number; byCommand: Record<string, number> }> {
  const info = await redis.info("commandstats");
  const byCommand: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) byCommand[m[1]!] = Number(m[2]);
  const total = Object.entries(byCommand).reduce((sum, [name, calls]) => (name === "info" ? sum : sum + calls), 0);
  return { total, evalsha: (byCommand.evalsha ?? 0) + (byCommand.eval ?? 0), byCommand };
}

/** Pids whose parent is `pid`, from /proc (no procps needed). */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) children.push(Number(entry));
    } catch {
      // gone
    }
  }
  return children;
}

/** Runs `count` calls of `fn` with at most `concurrency` in flight; returns their results in order. */
export async function inParallel<T>(count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        const i = next++;
        results[i] = await fn(i);
      }
    }),
  );
  return results;
}
