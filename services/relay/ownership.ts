/**
 * Which relay reads which shard.
 *
 * All relays share one consumer group per shard stream, but a shard is *read* by one relay at a
 * time: the holder of its lease. Without that, two relays reading `>` on the same stream get
 * interleaved slices of it and their Kafka sends race, so a stock's version 7 can land before its
 * version 6 (docs/design.md §5 wants each stock's events in order on its partition). With it, a shard is
 * relayed strictly in stream order, and a new owner first re-sends whatever its predecessor left
 * pending, before anything newer.
 *
 * - Membership: every relay heartbeats into a sorted set (score = expiry, in Redis time); the live
 *   members, sorted by name, split the shards round-robin (shard s → member s mod n). Everyone
 *   computes the same split from the same set, so the shards spread evenly with no coordinator.
 * - Leases: `SET lease <consumer> NX PX lease_ms`, renewed every lease_ms/3 while held, released
 *   (compare-and-delete) when the split says another member should have the shard or on shutdown.
 *   A relay that dies stops renewing: its member entry and leases expire after lease_ms and the
 *   survivors take its shards over.
 *
 * - Holder record (fencing, sender.ts): `keys.relayLeaseHolder(shard)` names the relay that holds or
 *   last held the lease and has not released it cleanly. A relay that acquires a shard whose record
 *   names another relay fences that relay's Kafka producer before it reads the shard, then records
 *   itself (relay_lease_confirm, which checks the lease again after the fence).
 *
 * Keys: `keys.relayMembers()` and, per shard, `keys.relayLease(shard)` and `keys.relayLeaseHolder(shard)`,
 * which carry the shard's hash tag like the stream they guard. Scripts: shared/redis/scripts/relay_*.lua.
 */
import type { RedisClient } from "./context.ts";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import { relayHeartbeatCall, relayLeaseAcquireCall, relayLeaseConfirmCall, relayLeaseReleaseCall, relayLeaseRenewCall } from "../../shared/redis/calls.ts";
import { runScript } from "../../shared/redis/scripts.ts";

/** Shards assigned to `me` given the live members (same answer on every relay for the same set). */
function assignedShards(members: readonly string[], me: string, shards: number): Set<number> {
  const sorted = [...members].sort();
  const index = sorted.indexOf(me);
  const mine = new Set<number>();
  if (index < 0) return mine;
  for (let s = 0; s < shards; s++) if (s % sorted.length === index) mine.add(s);
  return mine;
}

/** How often a relay heartbeats (membership, lease renewals): a third of the lease, at least 200 ms. */
export const heartbeatMs = (leaseMs: number) => Math.max(200, Math.floor(leaseMs / 3));

export class ShardOwnership {
  /** Shards the membership split gives this relay (last successful heartbeat). */
  desired = new Set<number>();
  /** Shards whose lease this relay holds (as far as it knows; a failed renewal removes one). */
  readonly held = new Set<number>();
  members: string[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private beating: Promise<void> | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeyLayout,
    readonly consumer: string,
    readonly leaseMs: number,
    private readonly logger: Logger,
    private readonly onError: (err: unknown) => void,
    /** After each successful heartbeat, with the shards still held (the relay trims its quiet shards then). */
    private readonly afterBeat: (held: ReadonlySet<number>) => void = () => {},
  ) {}

  /** Heartbeats now, then every lease/3 in the background until stopTimer(). */
  async startTimer(): Promise<void> {
    await this.heartbeat();
    this.timer = setInterval(() => void this.heartbeat().catch(this.onError), heartbeatMs(this.leaseMs));
  }

  stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Registers this relay as live, refreshes the split, renews the held leases (drops the lost ones). */
  heartbeat(): Promise<void> {
    // Never two at once (a slow Redis must not stack them up).
    this.beating ??= this.beat().finally(() => (this.beating = undefined));
    return this.beating;
  }

  private async beat(): Promise<void> {
    const members = await runScript(this.redis, relayHeartbeatCall(this.keys, this.consumer, this.leaseMs));
    const desired = assignedShards(members, this.consumer, this.keys.shards);
    if (members.join(",") !== this.members.join(",")) {
      this.logger.info({ members, shards: [...desired] }, "relay membership changed");
    }
    this.members = [...members].sort();
    this.desired = desired;
    const held = [...this.held];
    const renewed = await Promise.all(held.map((s) => runScript(this.redis, relayLeaseRenewCall(this.keys, s, this.consumer, this.leaseMs))));
    held.forEach((s, i) => {
      if (renewed[i] === 1 || !this.held.has(s)) return;
      this.held.delete(s);
      this.logger.warn({ shard: s }, "shard lease lost (not renewed in time); another relay may own it now");
    });
    this.afterBeat(this.held);
  }

  /**
   * Takes the shard's lease if it is free (or already ours). `previous` names the relay that held it
   * last and did not release it cleanly ("" for none or us): the caller fences that relay's Kafka
   * producer, then confirmHolder(), before reading the shard.
   */
  async acquire(shard: number): Promise<{ ok: boolean; previous: string }> {
    const reply = await runScript(this.redis, relayLeaseAcquireCall(this.keys, shard, this.consumer, this.leaseMs));
    if (reply[0] !== 1) return { ok: false, previous: "" };
    this.held.add(shard);
    return { ok: true, previous: reply[1] };
  }

  /** After fencing the previous holder: the lease is still ours (renewed) and we are recorded as its holder. False (and forgotten) otherwise. */
  async confirmHolder(shard: number): Promise<boolean> {
    const ok = (await runScript(this.redis, relayLeaseConfirmCall(this.keys, shard, this.consumer, this.leaseMs))) === 1;
    if (!ok) this.held.delete(shard);
    return ok;
  }

  /**
   * Gives the lease up. `clean`: this relay has no Kafka transaction open with the shard's entries
   * (every send is settled) and sends none without acquiring it again, so the next owner need not
   * fence it. Otherwise the holder record stays, and the next owner fences this relay first.
   */
  async release(shard: number, clean = true): Promise<void> {
    this.held.delete(shard);
    await runScript(this.redis, relayLeaseReleaseCall(this.keys, shard, this.consumer, clean));
  }

  /** Releases every lease and leaves the membership, so the others take over at once. */
  async leave(clean: boolean): Promise<void> {
    this.stopTimer();
    await Promise.all([...this.held].map((s) => this.release(s, clean)));
    await this.redis.zrem(this.keys.relayMembers(), this.consumer);
  }

  /** Who holds each shard's lease right now (for tests and diagnostics). */
  async holders(): Promise<(string | null)[]> {
    return Promise.all(this.keys.allShards().map((s) => this.redis.get(this.keys.relayLease(s))));
  }
}
