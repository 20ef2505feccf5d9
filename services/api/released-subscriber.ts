/**
 * Listens on every shard's "released" channel (docs/design.md §12), where cancel.lua and expire.lua
 * announce '<stock id> <version>' after giving units back, and feeds the refusal cache.
 *
 * Sharded pub/sub (SSUBSCRIBE, Redis >= 7): on a single node it behaves like classic pub/sub; on a
 * Redis Cluster each channel lives in its shard's hash slot, so a message only travels within the
 * master (and replicas) owning that shard instead of being broadcast over the whole cluster bus.
 * ioredis' Cluster needs `shardedSubscribers: true` for SSUBSCRIBE (one subscriber connection per
 * master, re-subscribed when slots move), and one SSUBSCRIBE per slot (no CROSSSLOT lists).
 * On Redis 6 (no SSUBSCRIBE) it falls back to SUBSCRIBE, which is what the scripts fall back to.
 *
 * Messages published while the subscription is down are lost, so the cache is cleared and turned
 * off until it is back; the cache's time bound covers the moments around that.
 */
import { Cluster, type Redis } from "ioredis";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import { retryStart } from "../../shared/retry.ts";
import type { RefusalCache } from "./allocate/sold-out-cache.ts";

export interface ReleasedSubscriber {
  /** Resolves once every channel is subscribed (waiting for Redis if it is not up yet); rejects only on what retrying cannot fix, or on close() meanwhile. */
  ready: Promise<void>;
  close(): Promise<void>;
}

export function subscribeReleased(client: Redis | Cluster, keys: KeyLayout, cache: RefusalCache, logger: Logger): ReleasedSubscriber {
  const channels = keys.allShards().map((s) => keys.released(s));
  const cluster = client instanceof Cluster;
  const sub = cluster ? (client as Cluster).duplicate(undefined, { shardedSubscribers: true }) : (client as Redis).duplicate();
  let sharded = true;
  let closing = false;

  const onMessage = (_channel: string, message: string) => {
    const space = message.lastIndexOf(" ");
    const version = Number(message.slice(space + 1));
    if (space > 0 && Number.isInteger(version)) cache.onReleased(message.slice(0, space), version);
  };
  sub.on("smessage", onMessage);
  sub.on("message", onMessage);
  sub.on("error", (err: Error) => logger.warn({ err: err.message }, "released-channel subscriber error"));
  // Lost connection: messages may be lost with it, so nothing cached can be trusted until we are back.
  sub.on("close", () => {
    if (!closing) cache.setLive(false);
  });

  async function subscribe(): Promise<void> {
    if (sharded) {
      try {
        // A cluster routes SSUBSCRIBE by slot: one call per channel. A single node takes them all at once.
        if (cluster) for (const channel of channels) await sub.ssubscribe(channel);
        else await sub.ssubscribe(...channels);
        return;
      } catch (err) {
        if (!/unknown command/i.test((err as Error).message)) throw err;
        sharded = false;
        logger.warn("Redis has no SSUBSCRIBE (< 7.0): using SUBSCRIBE for the released channels");
      }
    }
    await sub.subscribe(...channels);
  }

  // Redis not up yet at the api's start: wait for it (a line per attempt) instead of giving the cache up for good.
  const ready = retryStart(subscribe, { logger, what: "redis (released channels for the refusal cache)", stopped: () => closing }).then(() => {
    cache.setLive(true);
    // ioredis re-subscribes by itself after a reconnect, before "ready"; a PING answered after
    // those SSUBSCRIBEs (one connection, in order) says they are in place.
    sub.on("ready", () => {
      if (cluster) cache.setLive(true);
      else void (sub as Redis).ping().then(() => cache.setLive(true), () => {});
    });
    logger.info({ channels: channels.length, sharded }, "subscribed to released channels");
  });

  return {
    ready,
    async close() {
      closing = true;
      cache.setLive(false);
      sub.disconnect();
    },
  };
}
