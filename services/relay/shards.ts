/**
 * Which shards this relay reads right now, and how each one is in: `recovering` (its pending
 * entries are re-sent first, oldest first) or `live` (read with `>`). Applies the lease decisions
 * of ownership.ts between batches, claims what other consumers left pending, and removes dead
 * consumers from the group now and then.
 */
import { relayClaimCall, relayDeleteIdleConsumersCall } from "../../shared/redis/calls.ts";
import { runScript } from "../../shared/redis/scripts.ts";
import { freezeForTest, type RelayContext } from "./context.ts";
import { ShardOwnership } from "./ownership.ts";
import { RELAY_GROUP } from "./stream.ts";

/** Consumers with nothing pending and idle this long are removed from the group (dead relays). */
const DEAD_CONSUMER_IDLE_MS = 3_600_000;

/** What the other parts do when a shard changes hands. */
export interface ShardHooks {
  /**
   * Shards just acquired, before anything is read from them: make this relay's Kafka producer ready
   * and fence the relays named (previous holders that lost their lease without a clean release).
   * False when that could not be done: the shards are released, their holder records kept.
   */
  fence(previousHolders: readonly string[]): Promise<boolean>;
  /** Acquired, fenced and confirmed: about to claim what is pending on it. */
  acquired(shard: number): void;
  /** No longer read with `>` (recovering, released or lost): drop its read in flight. */
  leftLive(shard: number): void;
  /** After each heartbeat, with the shards held (trim the quiet ones). */
  beat(held: ReadonlySet<number>): void;
}

export class ShardState {
  readonly ownership: ShardOwnership;
  /** Owned shards whose pending entries are being re-sent; read with `>` once done. */
  private readonly recovering = new Set<number>();
  /** Owned shards read with `>`. */
  private readonly live = new Set<number>();
  private nextAcquireAt = 0;
  private nextClaimAt = 0;
  private nextConsumerCleanupAt = 0;

  constructor(
    private readonly ctx: RelayContext,
    private readonly hooks: ShardHooks,
  ) {
    this.ownership = new ShardOwnership(ctx.redis, ctx.keys, ctx.consumerName, ctx.cfg.RELAY_LEASE_MS, ctx.log, (err) => ctx.redisState.markDown(err), (held) => hooks.beat(held));
  }

  owned(): number[] {
    return [...this.live, ...this.recovering].sort((a, b) => a - b);
  }

  liveShards(): number[] {
    return [...this.live];
  }

  /** The shards whose pending entries still have to be re-sent. */
  recoveringShards(): number[] {
    return [...this.recovering];
  }

  isHeld(shard: number): boolean {
    return this.ownership.held.has(shard);
  }

  /** Its pending entries are re-sent: read it with `>` from now on. */
  markLive(shard: number): void {
    this.recovering.delete(shard);
    this.live.add(shard);
  }

  /** After a failed call or an abandoned read: re-read our own pending entries before anything newer. */
  recoverAllLive(): void {
    for (const s of this.live) {
      this.recovering.add(s);
      this.hooks.leftLive(s);
    }
    this.live.clear();
  }

  /** Another relay owns the shard now (found by a read or a claim). Stop reading it at once (its lease is not ours to release). */
  lose(shard: number): void {
    this.ownership.held.delete(shard);
    this.live.delete(shard);
    this.recovering.delete(shard);
    this.hooks.leftLive(shard);
    this.ctx.metrics.ownedShards.set(this.ownership.held.size);
  }

  /**
   * Our Kafka producer was fenced (or had to be replaced): it spans every shard, so stop reading all
   * of them. Leases still ours are acquired again by the next reconcile, after the new producer is
   * initialised (which aborts whatever the old one left open), and their pending entries re-sent.
   */
  loseAll(): void {
    for (const s of this.owned()) this.lose(s);
    this.ownership.held.clear();
    this.ctx.metrics.ownedShards.set(0);
  }

  clear(): void {
    this.live.clear();
    this.recovering.clear();
    this.ctx.metrics.ownedShards.set(0);
  }

  /** True when nothing but reading and relaying is due. */
  steady(): boolean {
    const now = Date.now();
    if (this.recovering.size > 0 || now >= this.nextClaimAt || now >= this.nextConsumerCleanupAt) return false;
    const o = this.ownership;
    if (o.held.size !== this.live.size) return false;
    for (const s of this.live) if (!o.held.has(s) || !o.desired.has(s)) return false;
    if (now >= this.nextAcquireAt) for (const s of o.desired) if (!o.held.has(s)) return false;
    return true;
  }

  /** Applies lease changes between batches (never while a batch of the shard is in flight). */
  async reconcile(): Promise<void> {
    const { log, cfg, metrics } = this.ctx;
    const o = this.ownership;
    for (const s of [...this.live, ...this.recovering]) {
      if (o.held.has(s)) continue;
      this.live.delete(s);
      this.recovering.delete(s);
      this.hooks.leftLive(s);
    }
    for (const s of [...o.held]) {
      if (o.desired.has(s)) continue;
      this.live.delete(s);
      this.recovering.delete(s);
      this.hooks.leftLive(s);
      // Clean: reconcile runs with every send settled and acknowledged, so no transaction holds its entries.
      await o.release(s, true);
      log.info({ shard: s }, "shard handed over to another relay");
    }
    if (Date.now() >= this.nextAcquireAt) {
      this.nextAcquireAt = Date.now() + Math.min(1_000, Math.floor(cfg.RELAY_LEASE_MS / 10));
      const taken: { shard: number; previous: string }[] = [];
      for (const s of o.desired) {
        if (o.held.has(s)) continue;
        const { ok, previous } = await o.acquire(s);
        if (ok) taken.push({ shard: s, previous });
      }
      const fencedFrom = new Map(taken.map((t) => [t.shard, t.previous]));
      for (const s of await this.takeOver(taken)) {
        this.hooks.acquired(s);
        freezeForTest(this.ctx, "acquire-claim", s);
        // The lease says the previous owner is gone (or handed over): take over all it left pending.
        const claimed = await this.claim(s, 0);
        if (claimed === null) {
          // Paused between the acquire and the claim, past the lease: another relay owns it now.
          this.lose(s);
          continue;
        }
        this.recovering.add(s);
        log.info({ shard: s, claimed, fencedPrevious: fencedFrom.get(s) || undefined }, "shard acquired");
      }
    }
    metrics.ownedShards.set(o.held.size);
  }

  /**
   * Fences the previous holders of the shards just acquired (once each, after all the acquisitions:
   * a fence before an acquisition would not stop that holder from initialising again and taking
   * the shard back meanwhile), then confirms each lease in Redis, which also records us as the
   * holder. Returns the shards that are safe to read; the others are released (holder records kept,
   * so the next try fences again) or were lost meanwhile.
   */
  private async takeOver(taken: readonly { shard: number; previous: string }[]): Promise<number[]> {
    if (taken.length === 0) return [];
    const o = this.ownership;
    const previous = [...new Set(taken.map((t) => t.previous).filter((p) => p !== ""))];
    if (!(await this.hooks.fence(previous))) {
      await Promise.all(taken.map((t) => o.release(t.shard, false)));
      return [];
    }
    const confirmed = await Promise.all(taken.map((t) => o.confirmHolder(t.shard)));
    const ready = taken.filter((_, i) => confirmed[i]).map((t) => t.shard);
    for (const t of taken) if (!ready.includes(t.shard)) this.ctx.log.warn({ shard: t.shard }, "shard lease is no longer ours (found after fencing); shard dropped");
    return ready;
  }

  /**
   * XAUTOCLAIM (ids only) every entry of the shard idle for at least minIdleMs into our PEL, 1,000 at
   * a time, each step lease-checked in Redis (relay_claim.lua). Null when the lease turned out not to
   * be ours: this relay was paused past it, and the new owner's entries are left alone.
   */
  private async claim(shard: number, minIdleMs: number): Promise<number | null> {
    const { redis, keys, consumerName, stop, metrics, log } = this.ctx;
    let cursor = "0-0";
    let claimed = 0;
    do {
      const reply = await runScript(redis, relayClaimCall(keys, shard, { group: RELAY_GROUP, consumer: consumerName, minIdleMs, cursor, count: 1000 }));
      if (reply[0] === 0) {
        log.warn({ shard, claimedBefore: claimed }, "shard lease is no longer ours (found by the claim); shard dropped");
        if (claimed > 0) metrics.claimed.inc(claimed);
        return null;
      }
      cursor = reply[1];
      claimed += reply[2];
    } while (cursor !== "0-0" && !stop.stopping);
    if (claimed > 0) metrics.claimed.inc(claimed);
    return claimed;
  }

  /** Periodic: claim entries idle on other consumers; now and then drop dead consumers. */
  async housekeeping(): Promise<void> {
    const { redis, keys, consumerName, cfg, log } = this.ctx;
    const now = Date.now();
    if (now >= this.nextClaimAt) {
      this.nextClaimAt = now + Math.min(30_000, Math.max(1_000, Math.floor(cfg.RELAY_CLAIM_IDLE_MS / 2)));
      for (const s of [...this.live]) {
        const claimed = await this.claim(s, cfg.RELAY_CLAIM_IDLE_MS);
        if (claimed === null) {
          this.lose(s);
          continue;
        }
        if (claimed === 0) continue;
        log.warn({ shard: s, claimed, idleMs: cfg.RELAY_CLAIM_IDLE_MS }, "claimed entries left pending by another consumer");
        this.live.delete(s);
        this.recovering.add(s);
        this.hooks.leftLive(s);
      }
    }
    if (now >= this.nextConsumerCleanupAt) {
      this.nextConsumerCleanupAt = now + 300_000;
      for (const s of this.live) {
        await runScript(redis, relayDeleteIdleConsumersCall(keys, s, RELAY_GROUP, DEAD_CONSUMER_IDLE_MS, consumerName));
      }
    }
  }
}
