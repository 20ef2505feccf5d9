/**
 * The stack's Redis Cluster (`bash scripts/stack.sh up redis-cluster`, which scripts/test.sh runs): what stack.sh
 * reports about it, and the shard → slot → master table of README "Redis Cluster" (docs/design.md §11).
 * Read-only: the shared cluster is never changed here; what `up`/`down` do to nodes is checked on a
 * private cluster (ports 7006-7011, temporary stack dir), like test/redis-cluster-failover.test.ts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { createRedis, parseClusterNodes, type RedisClient } from "../shared/redis/client.ts";
import { stackEnv } from "../shared/dev/env.ts";
import { runStack as run } from "./support/private-cluster.ts";

const redis = createRedis({ REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(stackEnv.REDIS_CLUSTER_NODES) }) as RedisClient;
afterAll(() => redis.disconnect());

/** README: shard → slot with the default 16 shards. */
const DOCUMENTED_SLOTS = [13907, 9842, 5649, 1584, 14039, 9974, 5781, 1716, 14171, 10106, 247, 4310, 8373, 12436, 115, 4178];

async function stack(...args: string[]): Promise<string> {
  const { code, out, err } = await run(args);
  expect({ code, err: code === 0 ? "" : err }).toEqual({ code: 0, err: "" });
  return out;
}

const portOpen = (port: number) =>
  Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
    (s) => (s.end(), true),
    () => false,
  );

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

  test("private cluster: down then up re-forms it from nodes.conf; a port taken by something else fails the up, which stops the nodes it started", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flashsale-cluster-stack-"));
    const env = { FLASHSALE_STACK_DIR: dir, FLASHSALE_REDIS_CLUSTER_BASE_PORT: "7006" };
    try {
      const first = await run(["up", "redis-cluster"], env);
      expect(first.code).toBe(0);
      expect(first.err).toContain("creating the cluster");
      expect((await run(["down", "redis-cluster"], env)).code).toBe(0);
      for (const p of [7006, 7011]) expect(await portOpen(p)).toBe(false);
      const again = await run(["up", "redis-cluster"], env);
      expect(again.code).toBe(0);
      expect(again.err).not.toContain("creating the cluster"); // the same cluster, from nodes.conf
      expect(again.out).toContain("cluster_state:ok");
      expect((await run(["down", "redis-cluster"], env)).code).toBe(0);
      rmSync(join(dir, "redis-cluster"), { recursive: true, force: true });

      // Something that is not Redis on the fourth port: the first three nodes start, then the up fails and stops them.
      const squatter = createServer((c) => c.end()).listen(7009, "127.0.0.1");
      await new Promise((r) => squatter.once("listening", r));
      try {
        const failed = await run(["up", "redis-cluster"], env);
        expect(failed.code).not.toBe(0);
        expect(failed.err).toContain("127.0.0.1:7009 but is not a cluster-enabled Redis");
        expect(failed.err).toContain("stopping redis-cluster-7006, which this failed run started");
        for (const p of [7006, 7007, 7008]) expect(await portOpen(p)).toBe(false);
      } finally {
        squatter.close();
      }
    } finally {
      await run(["down", "redis-cluster"], env);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
