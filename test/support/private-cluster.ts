/**
 * A private Redis Cluster for tests that kill, freeze, fail over or reshard nodes (never the shared
 * one on 7000-7005): 3 masters + 3 replicas started by the operators' own route,
 * `bash scripts/stack.sh up redis-cluster`, in a temporary stack dir, so the tests cover that script
 * too (docs/stack.md). Port plan: redis-cluster-failover (and redis-cluster.test.ts's own `up`/`down`
 * checks, through runStack) use 7006-7011, relay-replicas 7100-7199, waiting-room-failover 7200-7205.
 *
 * `up` returns once every node is ok and every replica's link is up; startPrivateCluster also waits until the
 * nodes' own view gives every master with slots its replica and every replica has its master's
 * offset (cluster_state:ok came first once, and a test that asked for a master's replica found none).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import type { RedisTarget } from "../../shared/redis/client.ts";
import { stackEnv } from "../../shared/dev/env.ts";

const REPO_ROOT = join(import.meta.dir, "..", "..");

export interface ClusterNode {
  id: string;
  port: number;
  role: "master" | "replica";
  /** For a replica: its master's id. */
  masterId: string | undefined;
  /** Flagged fail, fail? or noaddr by the node asked. */
  failed: boolean;
  /** For a master: its slot ranges. */
  slots: [number, number][];
}

/** Runs scripts/stack.sh with this process's environment plus `env` (e.g. a cluster's `env`). */
export async function runStack(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const child = Bun.spawn(["bash", "scripts/stack.sh", ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, out, err };
}

/** runStack that throws, with both streams, unless stack.sh exits 0. */
async function stack(env: Record<string, string>, ...args: string[]): Promise<string> {
  const { out, err, code } = await runStack(args, env);
  if (code !== 0) throw new Error(`stack.sh ${args.join(" ")} exited ${code}:\n${out}\n${err}`);
  return out;
}

/** Starts the cluster (a few seconds). `nodeTimeoutMs` is how long a dead master goes unnoticed. */
export async function startPrivateCluster(options: { basePort: number; nodeTimeoutMs?: number }): Promise<PrivateCluster> {
  const cluster = new PrivateCluster(options.basePort, options.nodeTimeoutMs ?? 2_000);
  try {
    await stack(cluster.env, "up", "redis-cluster");
    await cluster.waitOk(60_000);
    await cluster.waitReplicasAttached(60_000);
    await cluster.waitReplicasSynced(60_000);
  } catch (err) {
    await cluster.stop().catch(() => {});
    throw err;
  }
  return cluster;
}

export class PrivateCluster {
  readonly ports: number[];
  /** FLASHSALE_* variables that point scripts/stack.sh at this cluster. */
  readonly env: Record<string, string>;
  private readonly dir: string;
  private readonly dead = new Set<number>();
  private readonly frozen = new Set<number>();

  constructor(basePort: number, nodeTimeoutMs: number) {
    this.ports = Array.from({ length: 6 }, (_, i) => basePort + i);
    this.dir = mkdtempSync(join(tmpdir(), "flashsale-cluster-"));
    this.env = {
      FLASHSALE_STACK_DIR: this.dir,
      FLASHSALE_REDIS_CLUSTER_BASE_PORT: String(basePort),
      FLASHSALE_REDIS_CLUSTER_NODE_TIMEOUT: String(nodeTimeoutMs),
    };
  }

  /** REDIS_CLUSTER_NODES for it (child processes, the relay harness). */
  get nodesEnv(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(",");
  }

  /** The clients' target (createRedis, createTestApi). */
  get target(): RedisTarget {
    return { REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: this.ports.map((port) => ({ host: "127.0.0.1", port })) };
  }

  /** Nodes that answer: neither killed nor frozen (a frozen node accepts a connection and never replies). */
  private live(): number[] {
    return this.ports.filter((p) => !this.dead.has(p) && !this.frozen.has(p));
  }

  /** A plain connection to one node (the caller disconnects it). */
  private connect(port: number): Redis {
    const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1_000 });
    r.on("error", () => {});
    return r;
  }

  /** One command on one node, on a connection of its own. */
  async cli(port: number, ...args: (string | number)[]): Promise<unknown> {
    const r = this.connect(port);
    try {
      await r.connect();
      return await r.call(String(args[0]), ...args.slice(1).map(String));
    } finally {
      r.disconnect();
    }
  }

  /** CLUSTER NODES as `fromPort` (default: the first live node) sees it. */
  async topology(fromPort?: number): Promise<ClusterNode[]> {
    const text = String(await this.cli(fromPort ?? this.live()[0]!, "CLUSTER", "NODES"));
    return text
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [id, addr, flags, master, , , , , ...slots] = line.split(" ");
        return {
          id: id!,
          port: Number(addr!.split("@")[0]!.split(":")[1]),
          role: flags!.includes("master") ? ("master" as const) : ("replica" as const),
          masterId: master === "-" ? undefined : master,
          failed: /fail|noaddr/.test(flags!),
          // Slot ranges; "[slot->-id]" entries are migrations in progress.
          slots: slots.filter((s) => /^\d/.test(s)).map((s) => {
            const [a, b] = s.split("-").map(Number);
            return [a!, b ?? a!] as [number, number];
          }),
        };
      });
  }

  /** The ports of the (not failed) master that serves `slot` right now and of its first replica. */
  async ownerOf(slot: number): Promise<{ master: number; replica: number | undefined }> {
    const nodes = await this.topology();
    const master = nodes.find((n) => n.role === "master" && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
    if (!master) throw new Error(`no master for slot ${slot}`);
    return { master: master.port, replica: nodes.find((n) => n.role === "replica" && !n.failed && n.masterId === master.id)?.port };
  }

  /** Every live node reports cluster_state:ok and `check` holds for the topology. */
  async waitOk(timeoutMs: number, check: (nodes: ClusterNode[]) => boolean = () => true): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      try {
        const states = await Promise.all(this.live().map((p) => this.cli(p, "CLUSTER", "INFO").then(String)));
        if (states.every((s) => s.includes("cluster_state:ok")) && check(await this.topology())) return;
        last = states.map((s) => /cluster_state:(\w+)/.exec(s)?.[1]).join(",");
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new Error(`private cluster not ok within ${timeoutMs} ms (${last})`);
      await Bun.sleep(200);
    }
  }

  /**
   * Every master that owns slots has its replica, as the nodes see it. cluster_state:ok can come
   * before a replica has attached: a test that asked for a master's replica then found none.
   */
  async waitReplicasAttached(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const nodes = await this.topology().catch(() => []);
      const masters = nodes.filter((n) => n.role === "master" && n.slots.length > 0);
      if (masters.length > 0 && masters.every((m) => nodes.some((n) => n.role === "replica" && n.masterId === m.id))) return;
      if (Date.now() > deadline) throw new Error("private cluster: not every master got its replica");
      await Bun.sleep(200);
    }
  }

  /**
   * Every live replica has finished its sync and has everything its master has (offsets equal).
   * cluster_state:ok says nothing about that: a replica frozen during its first full sync would
   * come back empty, not lagging.
   */
  async waitReplicasSynced(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const field = (info: string, name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
    for (;;) {
      const live = new Set(this.live());
      const nodes = (await this.topology()).filter((n) => live.has(n.port));
      let synced = true;
      for (const replica of nodes.filter((n) => n.role === "replica")) {
        const master = nodes.find((n) => n.id === replica.masterId);
        if (!master) continue;
        const r = String(await this.cli(replica.port, "INFO", "replication").catch(() => ""));
        const m = String(await this.cli(master.port, "INFO", "replication").catch(() => ""));
        if (field(r, "master_link_status") !== "up" || field(r, "master_sync_in_progress") !== "0" || field(r, "slave_repl_offset") !== field(m, "master_repl_offset")) synced = false;
      }
      if (synced) return;
      if (Date.now() > deadline) throw new Error("private cluster replicas did not finish syncing");
      await Bun.sleep(200);
    }
  }

  /**
   * Moves one slot to the master on `toPort` the way redis-cli --cluster reshard does (keys in
   * batches of `keysPerBatch`, `pauseMs` between batches to let traffic meet the half-migrated
   * slot: ASK, TRYAGAIN); returns the keys moved.
   */
  async migrateSlot(slot: number, toPort: number, options: { keysPerBatch?: number; pauseMs?: number } = {}): Promise<number> {
    const { keysPerBatch = 100, pauseMs = 0 } = options;
    const nodes = await this.topology();
    const from = nodes.find((n) => n.role === "master" && n.slots.some(([a, b]) => slot >= a && slot <= b))!;
    const to = nodes.find((n) => n.port === toPort)!;
    // One connection to each end for the whole move, as redis-cli keeps: the steps follow each
    // other as closely as they do in an operator's reshard.
    const src = this.connect(from.port);
    const dst = this.connect(to.port);
    let moved = 0;
    try {
      await Promise.all([src.connect(), dst.connect()]);
      await dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", from.id);
      await src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", to.id);
      for (;;) {
        const keys = (await src.call("CLUSTER", "GETKEYSINSLOT", slot, keysPerBatch)) as string[];
        if (keys.length === 0) break;
        await src.call("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", ...keys);
        moved += keys.length;
        if (pauseMs > 0) await Bun.sleep(pauseMs);
      }
      // The new owner first, then the old one, then everyone else (as redis-cli does).
      await dst.call("CLUSTER", "SETSLOT", slot, "NODE", to.id);
      await src.call("CLUSTER", "SETSLOT", slot, "NODE", to.id);
    } finally {
      src.disconnect();
      dst.disconnect();
    }
    for (const n of nodes.filter((x) => x.role === "master" && x.port !== from.port && x.port !== to.port)) await this.cli(n.port, "CLUSTER", "SETSLOT", slot, "NODE", to.id);
    return moved;
  }

  /** The node's pid, from the stack's pid file ("<pid> <start time>"). */
  pidOf(port: number): number {
    return Number(readFileSync(join(this.dir, "run", `redis-cluster-${port}.pid`), "utf8").split(" ")[0]);
  }

  freeze(port: number): void {
    process.kill(this.pidOf(port), "SIGSTOP");
    this.frozen.add(port);
  }

  thaw(port: number): void {
    process.kill(this.pidOf(port), "SIGCONT");
    this.frozen.delete(port);
  }

  /** kill -9, and wait until the process is gone (the nodes are daemons, not our children). */
  async kill(port: number): Promise<void> {
    const pid = this.pidOf(port);
    process.kill(pid, "SIGKILL");
    this.dead.add(port);
    this.frozen.delete(port);
    // Gone, or a zombie nobody has reaped yet (its sockets are closed either way).
    const gone = () => {
      try {
        return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
      } catch {
        return true;
      }
    };
    const deadline = Date.now() + 10_000;
    while (!gone()) {
      if (Date.now() > deadline) throw new Error(`redis node ${port} (pid ${pid}) did not die`);
      await Bun.sleep(20);
    }
  }

  /**
   * Starts the killed nodes again through `stack.sh up redis-cluster`, from their nodes.conf (they
   * rejoin; a failed-over master comes back as a replica). Returns once every node is ok and every
   * replica's link is up, so no node may be frozen.
   */
  async restart(): Promise<void> {
    if (this.frozen.size > 0) throw new Error(`thaw ${[...this.frozen].join(", ")} first`);
    await stack(this.env, "up", "redis-cluster");
    this.dead.clear();
  }

  async stop(): Promise<void> {
    try {
      // A frozen node would sit out stack.sh's SIGTERM until its SIGKILL, 30 s later.
      for (const port of this.frozen) this.thaw(port);
      await stack(this.env, "down", "redis-cluster");
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
