/**
 * A throwaway Redis Cluster for tests that kill or reshard nodes: 3 masters + 3 replicas started by
 * the same code as the stack's (`bash scripts/stack.sh up redis-cluster`) in a temporary stack dir,
 * on ports of the cluster helper's range (7006-7011 by default), never the shared 7000-7005 one.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import type { RedisTarget } from "../../shared/redis/client.ts";
import { stackEnv } from "./env.ts";

const REPO_ROOT = join(import.meta.dir, "..", "..");

export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: "master" | "replica";
  masterId: string | null;
  failed: boolean;
  slots: Array<[number, number]>;
}

export interface PrivateCluster {
  ports: number[];
  target: RedisTarget;
  /** A plain connection to one node (caller disconnects it). */
  node(port: number): Redis;
  /** CLUSTER NODES as seen from `port` (default: the first node that answers). */
  nodes(port?: number): Promise<ClusterNodeInfo[]>;
  /** The master that owns `slot`, as the surviving nodes see it. */
  ownerOf(slot: number, exceptPort?: number): Promise<ClusterNodeInfo | undefined>;
  pidOf(port: number): number;
  kill9(port: number): void;
  /** Waits until every live node reports cluster_state:ok and `check` holds. */
  waitOk(timeoutMs: number, check?: (nodes: ClusterNodeInfo[]) => boolean): Promise<void>;
  stop(): Promise<void>;
}

async function stack(env: Record<string, string>, ...args: string[]): Promise<string> {
  const child = Bun.spawn(["bash", "scripts/stack.sh", ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`stack.sh ${args.join(" ")} exited ${code}:\n${out}\n${err}`);
  return out;
}

function parseNodes(text: string): ClusterNodeInfo[] {
  return text
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [id, addr, flags, master, , , , , ...slotSpecs] = line.split(" ");
      const slots = slotSpecs
        .filter((s) => !s.startsWith("["))
        .map((s) => {
          const [a, b] = s.split("-");
          return [Number(a), Number(b ?? a)] as [number, number];
        });
      return {
        id: id!,
        port: Number(addr!.split("@")[0]!.split(":")[1]),
        role: flags!.includes("master") ? "master" : "replica",
        masterId: master === "-" ? null : master!,
        failed: /fail(?!\?)/.test(flags!) || flags!.includes("fail?") || flags!.includes("noaddr"),
        slots,
      } satisfies ClusterNodeInfo;
    });
}

/** Starts the cluster (about 3 s). `nodeTimeoutMs` is how long a dead master goes unnoticed. */
export async function startPrivateCluster(options: { basePort?: number; nodeTimeoutMs?: number } = {}): Promise<PrivateCluster> {
  const basePort = options.basePort ?? 7006;
  const dir = mkdtempSync(join(tmpdir(), "flashsale-cluster-"));
  const env = {
    FLASHSALE_STACK_DIR: dir,
    FLASHSALE_REDIS_CLUSTER_BASE_PORT: String(basePort),
    FLASHSALE_REDIS_CLUSTER_NODE_TIMEOUT: String(options.nodeTimeoutMs ?? 2000),
  };
  const ports = Array.from({ length: 6 }, (_, i) => basePort + i);
  try {
    await stack(env, "up", "redis-cluster");
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const dead = new Set<number>();
  const node = (port: number) => new Redis({ host: "127.0.0.1", port, lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => null });
  const ask = async <T>(port: number, f: (r: Redis) => Promise<T>): Promise<T> => {
    const r = node(port);
    r.on("error", () => {});
    try {
      return await f(r);
    } finally {
      r.disconnect();
    }
  };
  const live = () => ports.filter((p) => !dead.has(p));
  const nodes = async (port?: number) => parseNodes(String(await ask(port ?? live()[0]!, (r) => r.call("CLUSTER", "NODES"))));
  const cluster: PrivateCluster = {
    ports,
    target: { REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: ports.map((port) => ({ host: "127.0.0.1", port })) },
    node,
    nodes,
    async ownerOf(slot, exceptPort) {
      const from = live().find((p) => p !== exceptPort)!;
      return (await nodes(from)).find((n) => n.role === "master" && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
    },
    pidOf(port) {
      return Number(readFileSync(join(dir, "run", `redis-cluster-${port}.pid`), "utf8").split(" ")[0]);
    },
    kill9(port) {
      process.kill(cluster.pidOf(port), "SIGKILL");
      dead.add(port);
    },
    async waitOk(timeoutMs, check = () => true) {
      const until = Date.now() + timeoutMs;
      let last = "";
      while (Date.now() < until) {
        try {
          const states = await Promise.all(live().map((p) => ask(p, (r) => r.call("CLUSTER", "INFO")).then(String)));
          const view = await nodes();
          if (states.every((s) => s.includes("cluster_state:ok")) && check(view)) return;
          last = states.map((s) => /cluster_state:(\w+)/.exec(s)?.[1]).join(",");
        } catch (err) {
          last = (err as Error).message;
        }
        await Bun.sleep(200);
      }
      throw new Error(`private cluster not ok within ${timeoutMs} ms (${last})`);
    },
    async stop() {
      try {
        await stack(env, "down", "redis-cluster");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return cluster;
}
