/**
 * Processes that tests and benches start and stop by pid: a private redis-server (its INFO
 * commandstats counts only our commands, unlike the shared 6379), waiting for readiness, and the
 * children of a pid (an api with API_WORKERS forks). Never imported by a service.
 */
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

export interface Proc {
  proc: Bun.Subprocess;
  stop(): Promise<void>;
}

export async function stopProc(proc: Bun.Subprocess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const done = await Promise.race([proc.exited, Bun.sleep(10_000).then(() => null)]);
  if (done === null) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

export async function waitFor(check: () => Promise<boolean>, proc: Bun.Subprocess, what: string, ms = 20_000): Promise<void> {
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
