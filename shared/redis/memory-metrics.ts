/**
 * Redis memory as Prometheus sees it, per master (INFO memory, read when scraped): what the
 * RedisMemoryHigh / RedisMemoryCritical / RedisMaxmemoryUnsafe alerts read (ops/prometheus/alerts.yml).
 *
 * Redis is the write side's truth, so it runs with `maxmemory` and `maxmemory-policy noeviction`
 * (docs/design.md §3): an evicting policy would silently drop holds, stocks or outbox entries (an
 * oversell, a lost event); noeviction refuses writes instead, once the limit is reached. The alerts
 * give operators the time to act before that (raise the limit, add a master, find the leak). The
 * expirer exports these (one Redis client per deployment that is always connected, off the hot path).
 */
import type { Registry } from "prom-client";
import { prom } from "../metrics.ts";
import { keyHolders, type RedisClient } from "./client.ts";

/** A scrape never waits on a Redis that does not answer longer than this. */
const INFO_TIMEOUT_MS = 1_000;

export interface RedisMemoryInfo {
  usedBytes: number;
  maxBytes: number;
  policy: string;
}

/** The fields we need from `INFO memory`. */
export function parseMemoryInfo(info: string): RedisMemoryInfo {
  const field = (name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
  return { usedBytes: Number(field("used_memory") ?? NaN), maxBytes: Number(field("maxmemory") ?? NaN), policy: field("maxmemory_policy") ?? "unknown" };
}

async function readNodes(redis: RedisClient): Promise<Array<{ node: string; info: RedisMemoryInfo }>> {
  const nodes = await keyHolders(redis);
  const read = await Promise.all(
    nodes.map(async (node) => {
      const info = await node.info("memory");
      return { node: `${node.options.host}:${node.options.port}`, info: parseMemoryInfo(info) };
    }),
  );
  return read;
}

export function registerRedisMemoryGauges(registry: Registry, redis: RedisClient): void {
  let last: Promise<Array<{ node: string; info: RedisMemoryInfo }>> | undefined;
  // One INFO per node per scrape, shared by the three gauges' collect().
  const sample = () => {
    last ??= Promise.race([
      readNodes(redis),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("INFO timed out")), INFO_TIMEOUT_MS)),
    ])
      .catch(() => [])
      .finally(() => setTimeout(() => (last = undefined), 100));
    return last;
  };
  /** A gauge per master, read from its INFO when scraped (a value INFO did not give is left out). */
  const perMaster = (name: string, help: string, value: (info: RedisMemoryInfo) => number) =>
    new prom.Gauge({
      name,
      help,
      labelNames: ["node"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const { node, info } of await sample()) if (Number.isFinite(value(info))) this.set({ node }, value(info));
      },
    });
  perMaster("flashsale_redis_used_memory_bytes", "Redis used_memory per master (INFO memory), read when scraped", (info) => info.usedBytes);
  perMaster("flashsale_redis_maxmemory_bytes", "Redis maxmemory per master (0: no limit), read when scraped", (info) => info.maxBytes);
  new prom.Gauge({
    name: "flashsale_redis_maxmemory_policy_info",
    help: "1 for each master's maxmemory-policy (noeviction expected)",
    labelNames: ["node", "policy"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const { node, info } of await sample()) this.set({ node, policy: info.policy }, 1);
    },
  });
}
