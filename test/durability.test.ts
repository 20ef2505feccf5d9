/**
 * Issue 21 item 11: REDIS_DURABILITY (shared/redis/durability.ts, docs/design.md §3 "Durability").
 * A private Redis master with one replica (shared/dev/private-redis.ts, free loopback ports), so the
 * replica can be paused and the master reconfigured without touching the shared stack.
 * - replica: an allocation is answered only once the replica has it. The replica is paused with
 *   SIGSTOP while an allocation is under way and resumed 500 ms later: the answer comes after the
 *   resume, and the replica holds the hold. (Under fast, the profile of before, the answer came at once.)
 * - replica with no replica acknowledging (a new master without one after a failover): bounded. The
 *   answer comes after REDIS_DURABILITY_TIMEOUT_MS, counted as `timeout`; the next writes for 5 s
 *   are answered at once and counted as `degraded`, so a shard never stalls on WAIT.
 * - fsync: this machine's Redis (7.0) has no WAITAOF, so the profile needs `appendfsync always` on the
 *   server: refused at start (api exit 1, one clear line, as for any bad config) while it runs everysec, accepted with always.
 *   On Redis 7.2+ the barrier is WAITAOF 1 0 (counted in the wait histogram).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Registry } from "prom-client";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { createRedis, deleteKeysByPrefix, parseClusterNodes } from "../shared/redis/client.ts";
import { createStockCommands } from "../shared/redis/commands.ts";
import { createDurability, DEGRADED_MS, DurabilityUnsupportedError, type DurabilityProfile } from "../shared/redis/durability.ts";
import { startPrivateRedis, type PrivateRedis } from "../shared/dev/private-redis.ts";
import { freePort, stackEnv, uniqueName } from "../shared/dev/env.ts";
import { Redis } from "ioredis";

let pr: PrivateRedis;
beforeAll(async () => {
  pr = await startPrivateRedis({ replica: true });
}, 30_000);
afterAll(async () => {
  await pr?.stop();
});

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => name.startsWith(m.name)) as { values: { value: number; labels: Record<string, string>; metricName?: string }[] } | undefined;
  return (metric?.values ?? []).filter((v) => (v.metricName ?? name) === name && Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);
}

async function setUp(profile: DurabilityProfile, timeoutMs: number) {
  const redis = createRedis(pr.url);
  const registry = createMetricsRegistry("api");
  const durability = await createDurability(redis, { profile, timeoutMs, registry });
  const keys = createKeyLayout(uniqueName("dur"), 2);
  const commands = createStockCommands(redis, keys, { durability });
  await commands.createStock({ id: "durable", name: "Durable", price: 100, quantity: 1_000, perUserLimit: 1_000 });
  return { redis, registry, keys, commands };
}

describe("REDIS_DURABILITY", () => {
  test("replica: an allocation is answered only after the replica has it (replica paused, then resumed)", async () => {
    const { redis, registry, keys, commands } = await setUp("replica", 5_000);
    const replicaPort = Number(/slave0:ip=[^,]+,port=(\d+)/.exec(await redis.info("replication"))?.[1]);
    const replica = new Redis(replicaPort, "127.0.0.1");
    try {
      pr.pauseReplica();
      let answeredAt = 0;
      const allocating = commands.allocate({ stockId: "durable", userId: "u1", quantity: 1 }).then((r) => ((answeredAt = Date.now()), r));
      await Bun.sleep(500); // the replica cannot acknowledge anything meanwhile
      const resumedAt = Date.now();
      pr.resumeReplica();
      const { allocation } = await allocating;
      console.log(`[durability replica] answered ${answeredAt - resumedAt} ms after the replica resumed`);
      expect(answeredAt).toBeGreaterThanOrEqual(resumedAt);
      expect(await replica.exists(keys.hold(allocation.allocationId))).toBe(1);
      expect(await counter(registry, "flashsale_redis_durability_unconfirmed_total", {})).toBe(0);
      expect(await counter(registry, "flashsale_redis_durability_wait_seconds_count", { profile: "replica" })).toBeGreaterThan(0);
    } finally {
      pr.resumeReplica();
      replica.disconnect();
      redis.disconnect();
    }
  }, 30_000);

  test("replica, none acknowledging (as after a failover to a master without one): answered after the timeout, counted, then answered at once while degraded", async () => {
    const { redis, registry, commands } = await setUp("replica", 300);
    try {
      pr.pauseReplica();
      const started = Date.now();
      await commands.allocate({ stockId: "durable", userId: "u2", quantity: 1 });
      const firstMs = Date.now() - started;
      const next = Date.now();
      await Promise.all(Array.from({ length: 10 }, (_, i) => commands.allocate({ stockId: "durable", userId: `u3-${i}`, quantity: 1 })));
      const degradedMs = Date.now() - next;
      const timeouts = await counter(registry, "flashsale_redis_durability_unconfirmed_total", { reason: "timeout" });
      const degraded = await counter(registry, "flashsale_redis_durability_unconfirmed_total", { reason: "degraded" });
      console.log(`[durability replica, no ack] first answer after ${firstMs} ms (timeout 300), 10 more in ${degradedMs} ms; unconfirmed: ${timeouts} timeout, ${degraded} degraded`);
      expect(firstMs).toBeGreaterThanOrEqual(300);
      expect(firstMs).toBeLessThan(300 + 2_000);
      expect(timeouts).toBe(1);
      expect(degradedMs).toBeLessThan(DEGRADED_MS);
      expect(degraded).toBe(10);
    } finally {
      pr.resumeReplica();
      redis.disconnect();
    }
  }, 30_000);

  test("replica on the stack's Redis Cluster: each write waits on the master that owns its slot (WAIT on that master's connection)", async () => {
    const redis = createRedis({ REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(stackEnv.REDIS_CLUSTER_NODES) });
    const keys = createKeyLayout(uniqueName("durc"), 16);
    try {
      const registry = createMetricsRegistry("api");
      const durability = await createDurability(redis, { profile: "replica", timeoutMs: 2_000, registry });
      const commands = createStockCommands(redis, keys, { durability });
      const stocks = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
      await Promise.all(stocks.map((id) => commands.createStock({ id, name: id, price: 1, quantity: 100 })));
      await Promise.all(stocks.flatMap((id) => Array.from({ length: 20 }, (_, i) => commands.allocate({ stockId: id, userId: `u${i}`, quantity: 1 }))));
      const waits = await counter(registry, "flashsale_redis_durability_wait_seconds_count", { profile: "replica" });
      console.log(`[durability replica, cluster] 168 writes over ${new Set(stocks.map((s) => keys.shardOf(s))).size} shards confirmed by ${waits} barriers`);
      expect(waits).toBeGreaterThan(0);
      expect(await counter(registry, "flashsale_redis_durability_unconfirmed_total", {})).toBe(0);
    } finally {
      await deleteKeysByPrefix(redis, keys.prefix);
      redis.disconnect();
    }
  }, 30_000);

  test("fsync: WAITAOF where the server has it; on Redis < 7.2 only with appendfsync always (refused at start otherwise, the api exits 1)", async () => {
    const redis = createRedis(pr.url);
    try {
      const version = /redis_version:(\d+)\.(\d+)/.exec(await redis.info("server"))!;
      if (Number(version[1]) > 7 || (Number(version[1]) === 7 && Number(version[2]) >= 2)) {
        const { registry, commands, redis: own } = await setUp("fsync", 2_000);
        try {
          await commands.allocate({ stockId: "durable", userId: "u4", quantity: 1 });
          expect(await counter(registry, "flashsale_redis_durability_wait_seconds_count", { profile: "fsync" })).toBeGreaterThan(0);
        } finally {
          own.disconnect();
        }
        return;
      }
      expect(await redis.config("GET", "appendfsync")).toEqual(["appendfsync", "everysec"]);
      const refused = await createDurability(redis, { profile: "fsync", timeoutMs: 500 }).catch((e: Error) => e);
      expect(refused).toBeInstanceOf(DurabilityUnsupportedError);
      expect((refused as Error).message).toContain("appendfsync always");
      // The api refuses to start with it: one clear line, exit 2.
      const api = Bun.spawn([process.execPath, "services/api/main.ts"], {
        cwd: new URL("..", import.meta.url).pathname,
        env: { ...process.env, REDIS_URL: pr.url, REDIS_DURABILITY: "fsync", PORT: String(freePort()), ADMIN_PORT: String(freePort()), ADMIN_TOKEN: "x".repeat(16), JWT_SECRET: "y".repeat(32), SOLD_OUT_CACHE_MS: "0" },
        stdout: "pipe",
        stderr: "pipe",
      });
      const err = await new Response(api.stderr).text();
      expect(await api.exited).toBe(1);
      expect(err).toContain("REDIS_DURABILITY cannot be kept by this Redis");
      await redis.config("SET", "appendfsync", "always");
      const always = await setUp("fsync", 500);
      try {
        expect((await always.commands.allocate({ stockId: "durable", userId: "u5", quantity: 1 })).allocation.status).toBe("held");
      } finally {
        always.redis.disconnect(); // else it reconnects to the stopped private server for the rest of the run
      }
    } finally {
      await redis.config("SET", "appendfsync", "everysec");
      redis.disconnect();
    }
  }, 60_000);
});
