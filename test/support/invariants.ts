/**
 * Reads the write side's state straight from Redis and checks the invariants of docs/design.md §2.
 * Shared by the tests and the load-test verifier.
 */
import { scanKeys, type RedisClient } from "../../shared/redis/client.ts";
import { parseEvent, type StockEvent } from "../../shared/domain/events.ts";
import type { KeyLayout } from "../../shared/domain/keys.ts";

export interface StockCounters {
  total: number;
  available: number;
  held: number;
  sold: number;
  version: number;
}

export async function readCounters(redis: RedisClient, keys: KeyLayout, stockId: string): Promise<StockCounters> {
  const [total, available, held, sold, version] = await redis.hmget(keys.stock(stockId), "total", "available", "held", "sold", "version");
  return { total: Number(total), available: Number(available), held: Number(held), sold: Number(sold), version: Number(version) };
}

/** I1: available + held + sold == total and available >= 0. Returns a description of the breach, or null. */
export function conservationBreach(c: StockCounters): string | null {
  if (c.available < 0) return `available ${c.available} < 0`;
  if (c.available + c.held + c.sold !== c.total) return `available ${c.available} + held ${c.held} + sold ${c.sold} != total ${c.total}`;
  return null;
}

/** Every event in every shard's outbox, parsed (throws on an entry the schema rejects). */
export async function readOutbox(redis: RedisClient, keys: KeyLayout): Promise<StockEvent[]> {
  const events: StockEvent[] = [];
  for (const shard of keys.allShards()) {
    for (const [id, fields] of await redis.xrange(keys.outbox(shard), "-", "+")) {
      const parsed = parseEvent(fields[1]);
      if (!parsed.ok) throw new Error(`outbox entry ${id} on shard ${shard}: ${parsed.error}`);
      events.push(parsed.event);
    }
  }
  return events;
}

export async function outboxLength(redis: RedisClient, keys: KeyLayout): Promise<number> {
  const lengths = await Promise.all(keys.allShards().map((s) => redis.xlen(keys.outbox(s))));
  return lengths.reduce((a, b) => a + b, 0);
}

/**
 * Every key under the key layout's prefix with its content (hashes, sorted sets with scores, a stream's
 * length), as one string: what "the request changed nothing" is compared with. Every master of a cluster.
 * Not the per-request allocation records (`…:req:…`): they expire by themselves 60 s after an allocation
 * (REQUEST_RECORD_TTL_SECONDS) and a slow run can see that between two snapshots.
 */
export async function snapshotKeys(redis: RedisClient, keys: KeyLayout): Promise<string> {
  const names = (await scanKeys(redis, `${keys.prefix}:*`)).filter((k) => !/:\{\d+\}:req:/.test(k)).sort();
  const values = await Promise.all(
    names.map(async (key) => {
      const type = await redis.type(key);
      if (type === "hash") return [key, await redis.hgetall(key)];
      if (type === "zset") return [key, await redis.zrange(key, 0, -1, "WITHSCORES")];
      if (type === "stream") return [key, await redis.xlen(key)];
      return [key, await redis.get(key)];
    }),
  );
  return JSON.stringify(values);
}
