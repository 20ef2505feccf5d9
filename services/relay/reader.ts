/**
 * Reading the outbox: new entries of the live shards (`>`, blocking, on a dedicated connection so
 * the block never delays acks, lease renewals or scrapes) and this consumer's own pending entries
 * of one shard (history, oldest first).
 */
import type { Redis } from "ioredis";
import { sleep } from "../../shared/lifecycle.ts";
import type { RelayContext } from "./context.ts";
import { parseStreams, RELAY_GROUP, type OutboxEntry } from "./stream.ts";

export class OutboxReader {
  private readonly blocking: Redis;
  private readonly shardOfKey = new Map<string, number>();

  constructor(private readonly ctx: RelayContext) {
    for (const s of ctx.keys.allShards()) this.shardOfKey.set(ctx.keys.outbox(s), s);
    this.blocking = ctx.redis.duplicate({ enableAutoPipelining: false, lazyConnect: true });
    this.blocking.on("error", () => {}); // failures surface on the commands; logged once by redisState
  }

  /**
   * New entries of `shards`, each shard's in stream order. Blocks up to RELAY_BLOCK_MS when there are
   * none; after a short read, lingers RELAY_LINGER_MS and reads once more without blocking.
   */
  async readNew(shards: readonly number[]): Promise<OutboxEntry[]> {
    const { cfg, keys, consumerName, stop } = this.ctx;
    if (shards.length === 0) {
      await stop.pause(cfg.RELAY_BLOCK_MS);
      return [];
    }
    const streams = shards.map((s) => keys.outbox(s));
    const ids = streams.map(() => ">");
    const batch = cfg.RELAY_BATCH_SIZE;
    // One call over every owned shard (single Redis node; see docs/relay.md for Cluster).
    // COUNT is per stream, so this returns up to batch × shards entries; the caller splits them.
    const reply = await this.blocking.call("XREADGROUP", "GROUP", RELAY_GROUP, consumerName, "COUNT", batch, "BLOCK", cfg.RELAY_BLOCK_MS, "STREAMS", ...streams, ...ids);
    const entries = parseStreams(reply, this.shardOfKey);
    if (entries.length > 0 && entries.length < batch && cfg.RELAY_LINGER_MS > 0 && !stop.stopping) {
      await sleep(cfg.RELAY_LINGER_MS);
      const more = await this.blocking.call("XREADGROUP", "GROUP", RELAY_GROUP, consumerName, "COUNT", batch - entries.length, "STREAMS", ...streams, ...ids);
      for (const e of parseStreams(more, this.shardOfKey)) entries.push(e);
    }
    return entries;
  }

  /** Up to RELAY_BATCH_SIZE of this consumer's pending entries of `shard` after id `from`, oldest first. */
  async readPending(shard: number, from: string): Promise<OutboxEntry[]> {
    const { redis, keys, consumerName, cfg } = this.ctx;
    const reply = await redis.call("XREADGROUP", "GROUP", RELAY_GROUP, consumerName, "COUNT", cfg.RELAY_BATCH_SIZE, "STREAMS", keys.outbox(shard), from);
    return parseStreams(reply, this.shardOfKey);
  }

  disconnect(): void {
    this.blocking.disconnect();
  }
}
