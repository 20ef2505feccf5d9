/**
 * For the front-door tests (test/front-door.test.ts): a private redis-server (its INFO commandstats
 * counts only our commands, unlike the shared 6379) and real api processes (services/api/main.ts)
 * started and stopped by pid. Ports come from the frontdoor range 3100-3199.
 */
import { join, resolve } from "node:path";
import type { Redis } from "ioredis";
import { stopProc, waitFor, type Proc } from "../../shared/dev/processes.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
export const FD_ADMIN_TOKEN = "frontdoor-admin-token-0123456789";
export const FD_JWT_SECRET = "frontdoor-jwt-secret-0123456789abcdef0123456789";

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
