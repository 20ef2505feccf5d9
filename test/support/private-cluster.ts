/**
 * A private Redis Cluster for tests that kill, freeze or fail over nodes (never the shared one on
 * 7000-7005): `nodes` redis-server processes of the apt package on 127.0.0.1:<base>…, in a temp
 * directory, no persistence, created with `redis-cli --cluster create --cluster-replicas 1`.
 * Port plan: the relay-cluster tests use 7100-7199.
 */
import type { Subprocess } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

export interface NodeInfo {
  id: string;
  port: number;
  role: "master" | "replica";
  /** For a replica: its master's id. */
  masterId?: string;
  /** For a master: its slot ranges. */
  slots: [number, number][];
}

export class PrivateCluster {
  readonly ports: number[];
  private readonly dir: string;
  private readonly procs = new Map<number, Subprocess>();
  private readonly frozen = new Set<number>();

  constructor(
    basePort: number,
    nodes = 6,
    private readonly nodeTimeoutMs = 2_000,
  ) {
    this.ports = Array.from({ length: nodes }, (_, i) => basePort + i);
    this.dir = mkdtempSync(join(tmpdir(), "fs-private-cluster-"));
  }

  /** REDIS_CLUSTER_NODES for it. */
  get nodesEnv(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(",");
  }

  async start(): Promise<void> {
    for (const port of this.ports) this.startNode(port);
    for (const port of this.ports) await this.waitPing(port);
    const create = Bun.spawn(
      ["redis-cli", "--cluster", "create", ...this.ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "1", "--cluster-yes"],
      { stdout: "pipe", stderr: "pipe" },
    );
    if ((await create.exited) !== 0) throw new Error(`redis-cli --cluster create failed: ${await new Response(create.stdout).text()}`);
    await this.waitOk(60_000);
    await this.waitReplicasAttached(60_000);
    await this.waitReplicasSynced(60_000);
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
      const nodes = (await this.topology()).filter((n) => this.procs.has(n.port) && !this.frozen.has(n.port));
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

  private startNode(port: number): void {
    const dir = join(this.dir, String(port));
    Bun.spawnSync(["mkdir", "-p", dir]);
    const proc = Bun.spawn(
      [
        "redis-server",
        "--port", String(port),
        "--bind", "127.0.0.1",
        "--dir", dir,
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", String(this.nodeTimeoutMs),
        // Other shards keep working while one slot range has no master.
        "--cluster-require-full-coverage", "no",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--loglevel", "warning",
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    this.procs.set(port, proc);
  }

  private async waitPing(port: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      r.on("error", () => {});
      const ok = await r.connect().then(() => r.ping()).then(() => true, () => false);
      r.disconnect();
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`redis node ${port} did not start`);
      await Bun.sleep(100);
    }
  }

  async cli(port: number, ...args: (string | number)[]): Promise<unknown> {
    const r = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 1_000 });
    r.on("error", () => {});
    try {
      await r.connect();
      return await r.call(String(args[0]), ...args.slice(1).map(String));
    } finally {
      r.disconnect();
    }
  }

  /** Every live (not killed, not frozen) node reports cluster_state:ok. */
  async waitOk(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const live = this.ports.filter((p) => this.procs.has(p) && !this.frozen.has(p));
      const states = await Promise.all(live.map((p) => this.cli(p, "CLUSTER", "INFO").then((i) => /cluster_state:ok/.test(String(i)), () => false)));
      if (states.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error("private cluster did not reach cluster_state:ok");
      await Bun.sleep(200);
    }
  }

  /** The topology as one live node sees it. */
  async topology(fromPort?: number): Promise<NodeInfo[]> {
    const port = fromPort ?? this.ports.find((p) => this.procs.has(p) && !this.frozen.has(p))!;
    const text = String(await this.cli(port, "CLUSTER", "NODES"));
    return text
      .trim()
      .split("\n")
      .map((line) => {
        const [id, addr, flags, master, , , , , ...slots] = line.split(" ");
        return {
          id: id!,
          port: Number(addr!.split("@")[0]!.split(":")[1]),
          role: flags!.includes("master") ? ("master" as const) : ("replica" as const),
          masterId: master === "-" ? undefined : master,
          slots: slots.filter((s) => /^\d/.test(s)).map((s) => {
            const [a, b] = s.split("-").map(Number);
            return [a!, b ?? a!] as [number, number];
          }),
        };
      });
  }

  /** The master and (first) replica ports that serve `slot` right now. */
  async ownerOf(slot: number): Promise<{ master: number; replica: number | undefined }> {
    const nodes = await this.topology();
    const master = nodes.find((n) => n.role === "master" && n.slots.some(([a, b]) => slot >= a && slot <= b));
    if (!master) throw new Error(`no master for slot ${slot}`);
    return { master: master.port, replica: nodes.find((n) => n.role === "replica" && n.masterId === master.id)?.port };
  }

  /** Moves one slot to the master on `toPort` the way redis-cli --cluster reshard does (keys in batches); returns the keys moved. */
  async migrateSlot(slot: number, toPort: number): Promise<number> {
    const nodes = await this.topology();
    const from = nodes.find((n) => n.role === "master" && n.slots.some(([a, b]) => slot >= a && slot <= b))!;
    const to = nodes.find((n) => n.port === toPort)!;
    await this.cli(to.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", from.id);
    await this.cli(from.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", to.id);
    let moved = 0;
    for (;;) {
      const keys = (await this.cli(from.port, "CLUSTER", "GETKEYSINSLOT", slot, 10)) as string[];
      if (keys.length === 0) break;
      await this.cli(from.port, "MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", ...keys);
      moved += keys.length;
      await Bun.sleep(50); // let traffic meet the half-migrated slot (ASK, TRYAGAIN)
    }
    // The new owner first, then the old one, then everyone else (as redis-cli does).
    await this.cli(to.port, "CLUSTER", "SETSLOT", slot, "NODE", to.id);
    await this.cli(from.port, "CLUSTER", "SETSLOT", slot, "NODE", to.id);
    for (const n of nodes.filter((x) => x.role === "master" && x.port !== from.port && x.port !== to.port)) await this.cli(n.port, "CLUSTER", "SETSLOT", slot, "NODE", to.id);
    return moved;
  }

  freeze(port: number): void {
    this.procs.get(port)!.kill("SIGSTOP");
    this.frozen.add(port);
  }

  thaw(port: number): void {
    this.procs.get(port)!.kill("SIGCONT");
    this.frozen.delete(port);
  }

  async kill(port: number): Promise<void> {
    const proc = this.procs.get(port)!;
    proc.kill("SIGKILL");
    await proc.exited;
    this.procs.delete(port);
    this.frozen.delete(port);
  }

  /** Starts a killed node again from its nodes.conf (it rejoins; a failed-over master comes back as a replica). */
  async restart(port: number): Promise<void> {
    this.startNode(port);
    await this.waitPing(port);
  }

  async destroy(): Promise<void> {
    for (const [port, proc] of this.procs) {
      if (this.frozen.has(port)) proc.kill("SIGCONT");
      proc.kill("SIGKILL");
      await proc.exited;
    }
    this.procs.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
