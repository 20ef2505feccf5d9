/**
 * Outbox length, pending count and lag of every shard, read from Redis (for the gauges in
 * metrics.ts, which read it once per scrape). Lag = now − occurredAt of the oldest entry not yet
 * relayed: the oldest pending one, else the first one after the group's last-delivered id.
 */
import type { RedisClient } from "../../shared/redis/client.ts";
import { OUTBOX_EVENT_FIELD } from "../../shared/domain/events.ts";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import type { ShardSnapshot } from "./metrics.ts";
import { fieldValue, idTimeMs, pairs, RELAY_GROUP, sniffField } from "./stream.ts";

export async function readSnapshot(redis: RedisClient, keys: KeyLayout): Promise<ShardSnapshot[]> {
  // One pipeline per shard (its keys share the shard's slot, so this works on a cluster too).
  return Promise.all(keys.allShards().map((shard) => readShard(redis, keys, shard)));
}

async function readShard(redis: RedisClient, keys: KeyLayout, shard: number): Promise<ShardSnapshot> {
  const key = keys.outbox(shard);
  const p = redis.pipeline();
  p.call("XLEN", key);
  p.call("XPENDING", key, RELAY_GROUP);
  p.call("XINFO", "GROUPS", key);
  const [[, length] = [], [pendingErr, summary] = [], [, groups] = []] = (await withTimeout(p.exec(), 1_000)) ?? [];
  const pendingCount = pendingErr ? 0 : Number((summary as [number] | undefined)?.[0] ?? 0);
  const group = ((groups as unknown[]) ?? []).map(pairs).find((g) => g.name === RELAY_GROUP);
  const oldest = pendingCount > 0 ? `${(summary as [number, string])[1]}` : group ? `(${String(group["last-delivered-id"])}` : "-";
  const range = (await withTimeout(redis.call("XRANGE", key, oldest, "+", "COUNT", 1), 1_000)) as [string, string[]][] | undefined;
  const entry = range?.[0];
  let lagSeconds = 0;
  if (entry) {
    const occurredAt = Date.parse(sniffField(fieldValue(entry[1], OUTBOX_EVENT_FIELD), "occurredAt") ?? "");
    const at = Number.isFinite(occurredAt) ? occurredAt : idTimeMs(entry[0]);
    lagSeconds = Math.max(0, (Date.now() - at) / 1000);
  }
  return { shard, length: Number(length ?? 0), pending: pendingCount, lagSeconds };
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
