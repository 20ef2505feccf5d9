/**
 * The stack's Redis Cluster (`bash scripts/stack.sh up redis-cluster`, which scripts/test.sh runs): what stack.sh
 * reports about it, and the shard → slot → master table of README "Redis Cluster" (docs/design.md §11).
 * Read-only: the shared cluster is never changed here (test/redis-cluster-failover.test.ts has its own).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { createRedis, parseClusterNodes, type RedisClient } from "../shared/redis/client.ts";
import { stackEnv } from "./support/env.ts";

const REPO_ROOT = join(import.meta.dir, "..");
const redis = createRedis({ REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(stackEnv.REDIS_CLUSTER_NODES) }) as RedisClient;
afterAll(() => redis.disconnect());

/** README: shard → slot with the default 16 shards. */
const DOCUMENTED_SLOTS = [13907, 9842, 5649, 1584, 14039, 9974, 5781, 1716, 14171, 10106, 247, 4310, 8373, 12436, 115, 4178];

async function stack(...args: string[]): Promise<string> {
  const child = Bun.spawn(["bash", "scripts/stack.sh", ...args], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
  const [out, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  expect(code).toBe(0);
  return out;
}

describe("the stack's Redis Cluster", () => {
  test("env prints REDIS_CLUSTER_NODES (only on request), status shows 3 masters and 3 replicas, cluster_state:ok", async () => {
    expect((await stack("env", "redis-cluster")).trim()).toBe(
      "REDIS_CLUSTER_NODES=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005",
    );
    expect(await stack("env")).toMatch(/^# REDIS_CLUSTER_NODES=/m);
    const status = await stack("status", "redis-cluster");
    expect(status.match(/redis-cluster-70\d\d: .*\bmaster\b/g)?.length).toBe(3);
    expect(status.match(/redis-cluster-70\d\d: .*\bslave\b/g)?.length).toBe(3);
    expect(status).toContain("redis-cluster: cluster_state:ok");
  });

  test("the 16 shard tags sit on the documented slots, every master owns some, whatever the key prefix", async () => {
    const keys = createKeyLayout("any-prefix", 16);
    const slots = await Promise.all(keys.allShards().map(async (s) => Number(await redis.call("CLUSTER", "KEYSLOT", keys.outbox(s)))));
    expect(slots).toEqual(DOCUMENTED_SLOTS);
    expect(Number(await redis.call("CLUSTER", "KEYSLOT", createKeyLayout("fs", 16).stock("x")))).toBe(DOCUMENTED_SLOTS[keys.shardOf("x")]!);
    const ranges = (await redis.call("CLUSTER", "SLOTS")) as Array<[number, number, [string, number]]>;
    const owners = new Set(slots.map((slot) => ranges.find(([a, b]) => slot >= a && slot <= b)?.[2][1]));
    expect(owners.size).toBe(3);
  });
});
