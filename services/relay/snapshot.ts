/**
 * Outbox length, pending count and lag of every shard, read from Redis (for the gauges in
 * metrics.ts, which read it once per scrape). Lag = now − occurredAt of the oldest entry not yet
 * relayed: the oldest pending one, else the first one after the group's last-delivered id.
 */
import type { Redis } from "ioredis";
import { OUTBOX_EVENT_FIELD } from "../../shared/domain/events.ts";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import type { ShardSnapshot } from "./metrics.ts";
import { fieldValue, idTimeMs, pairs, RELAY_GROUP, sniffField } from "./stream.ts";

export async function readSnapshot(redis: Redis, keys: KeyLayout): Promise<ShardSnapshot[]> {
  const shards = keys.allShards();
  const p = redis.pipeline();
  for (const s of shards) {
    const key = keys.outbox(s);
    p.call("XLEN", key);
    p.call("XPENDING", key, RELAY_GROUP);
    p.call("XINFO", "GROUPS", key);
  }
  const first = (await withTimeout(p.exec(), 1_000)) ?? [];
  const stats = shards.map((shard, i) => {
    const [, length] = first[i * 3]!;
    const [pendingErr, summary] = first[i * 3 + 1]!;
    const [, groups] = first[i * 3 + 2]!;
    const pending = pendingErr ? 0 : Number((summary as [number])[0]);
    const group = ((groups as unknown[]) ?? []).map(pairs).find((g) => g.name === RELAY_GROUP);
    const oldest = pending > 0 ? `${(summary as [number, string])[1]}` : group ? `(${String(group["last-delivered-id"])}` : "-";
    return { shard, length: Number(length ?? 0), pending, oldest };
  });
  const q = redis.pipeline();
  for (const s of stats) q.call("XRANGE", keys.outbox(s.shard), s.oldest, "+", "COUNT", 1);
  const second = (await withTimeout(q.exec(), 1_000)) ?? [];
  const now = Date.now();
  return stats.map((s, i) => {
    const entry = (second[i]?.[1] as [string, string[]][] | undefined)?.[0];
    let lagSeconds = 0;
    if (entry) {
      const occurredAt = Date.parse(sniffField(fieldValue(entry[1], OUTBOX_EVENT_FIELD), "occurredAt") ?? "");
      const at = Number.isFinite(occurredAt) ? occurredAt : idTimeMs(entry[0]);
      lagSeconds = Math.max(0, (now - at) / 1000);
    }
    return { shard: s.shard, length: s.length, pending: s.pending, lagSeconds };
  });
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
