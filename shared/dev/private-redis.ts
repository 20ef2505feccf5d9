/**
 * A private single Redis node, optionally with one replica, for tests and benches that must pause,
 * reconfigure or measure a server on its own (never the shared one on 6379): `redis-server` on free
 * loopback ports, AOF on (`appendfsync everysec`, the stack's setting), data in a temporary dir, stopped
 * and removed by stop(). Used by test/durability.test.ts and bench:allocate's durability target.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Redis } from "ioredis";
import { freePort } from "./env.ts";

export interface PrivateRedis {
  /** redis://127.0.0.1:<port> of the master. */
  url: string;
  masterPid: number;
  replicaPid: number | undefined;
  /** SIGSTOP / SIGCONT the replica (a replica that stops acknowledging, as after a failover to a master without one). */
  pauseReplica(): void;
  resumeReplica(): void;
  stop(): Promise<void>;
}

function startServer(port: number, dir: string, extra: string[]): Subprocess {
  return Bun.spawn(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no", ...extra],
    { stdout: "ignore", stderr: "inherit" },
  );
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`private redis: timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

export async function startPrivateRedis(options: { replica?: boolean } = {}): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), "flashsale-redis-"));
  const port = freePort();
  const master = startServer(port, join(dir), ["--dbfilename", "master.rdb", "--appendfilename", "master.aof"]);
  let replica: Subprocess | undefined;
  const probe = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 100 });
  probe.on("error", () => {});
  const stop = async () => {
    probe.disconnect();
    for (const p of [replica, master]) p?.kill("SIGCONT");
    for (const p of [replica, master]) p?.kill("SIGKILL");
    await Promise.all([master.exited, replica?.exited]);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => (await probe.ping()) === "PONG", "the master");
    if (options.replica) {
      const replicaPort = freePort();
      replica = startServer(replicaPort, dir, ["--dbfilename", "replica.rdb", "--appendfilename", "replica.aof", "--replicaof", "127.0.0.1", String(port)]);
      await waitFor(async () => /connected_slaves:1\b/.test(await probe.info("replication")) && /state=online/.test(await probe.info("replication")), "the replica online");
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    masterPid: master.pid,
    replicaPid: replica?.pid,
    pauseReplica: () => void replica?.kill("SIGSTOP"),
    resumeReplica: () => void replica?.kill("SIGCONT"),
    stop,
  };
}
