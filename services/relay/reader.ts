/**
 * Reading the outbox, and holding back what the replicas do not have yet.
 *
 * - New entries (`>`) of the live shards go through the relay_read script: XREADGROUP only while
 *   the caller holds the shard's lease, checked atomically with the read, so a relay that resumes
 *   after a pause past its lease takes nothing from under the new owner (the script says so, and
 *   the relay drops the shard). Scripts cannot BLOCK: when nothing is new, the reader waits with a
 *   plain `XREAD BLOCK` from the stream's newest id (it takes nothing, so even a paused relay's
 *   outstanding XREAD is harmless) and reads again when it wakes.
 * - This consumer's own pending entries of a shard (history, oldest first) go through the
 *   relay_read_pending script, lease-checked in the same step like every read and every claim.
 * - Both on dedicated connections, so a block never delays acks, lease renewals or scrapes. A
 *   shard's recovery read goes on the same connection as its new-entry reads, so it runs after an
 *   abandoned read and sees what that read delivered.
 * - Single node: one connection, one round trip for every live shard (a pipeline of relay_read).
 * - Redis Cluster: each shard is read on its own connection to the master that owns its slot (the
 *   reads of all shards run at once and each returns as soon as it has entries). One blocking call
 *   per node over its shards is impossible: a multi-key command is CROSSSLOT whenever the keys are
 *   in different slots, even on the same node. MOVED (after a reshard or failover) moves the
 *   shard's connection to the named node and repeats the call; ASK repeats it there once, after
 *   ASKING; TRYAGAIN (keys of the slot half migrated) repeats it after a moment; a lost connection
 *   refreshes the slot map and the caller retries.
 * - Replicas (docs/design.md §11): with RELAY_MIN_REPLICAS = n > 0, entries are handed over only
 *   after `WAIT n` on the very connection that read them returns ≥ n. The read (XREADGROUP moves
 *   the group's cursor and PEL) is a write, replicated after the XADDs it returned, so WAIT covers
 *   them. A history read is not a write, so relay_read_pending follows it with XCLAIM … JUSTID of the
 *   same entries (to ourselves: a no-op that is a write), in the script: a separate XCLAIM sent by a
 *   relay that paused between the two would take back entries the shard's new owner had claimed. WAIT is repeated until enough replicas have it; the
 *   entries stay pending meanwhile.
 *   Why WAIT on our own connection: WAIT waits for the caller connection's last write. On an ioredis
 *   Cluster client a keyless WAIT would go to a random node, not to the master that served the read.
 */
import { Cluster, Redis } from "ioredis";
import { sleep } from "../../shared/lifecycle.ts";
import { isCluster } from "../../shared/redis/client.ts";
import { freezeForTest, type RelayContext } from "./context.ts";
import { errorMessage } from "./health.ts";
import { relayReadCall, relayReadPendingCall } from "../../shared/redis/calls.ts";
import { queueScript, type ScriptCall } from "../../shared/redis/scripts.ts";
import { SCRIPT_COMMANDS } from "../../shared/redis/script-sources.ts";
import { RELAY_GROUP, type OutboxEntry } from "./stream.ts";

/** New entries read, and the shards whose lease turned out not to be ours (nothing was read from them). */
export interface ReadResult {
  entries: OutboxEntry[];
  lost: number[];
}

interface ShardRead {
  done: boolean;
  promise: Promise<void>;
  result?: ReadResult;
  error?: unknown;
}

type RawEntry = [string, string[] | null];
type GuardedReply = [0] | [1, RawEntry[]] | [2, string];

/** Where a shard is read on a cluster: its slot, the master's address, a connection to it. */
interface ShardLink {
  slot: number;
  address?: string;
  conn?: Redis;
}

const MAX_REDIRECTS = 5;

export class OutboxReader {
  /** Single node: the one blocking connection. */
  private readonly blocking: Redis | undefined;
  private readonly cluster: Cluster | undefined;
  private readonly links = new Map<number, ShardLink>();
  /** Cluster: the read in flight per shard (at most one, so a shard's entries come in order). */
  private readonly inFlight = new Map<number, ShardRead>();
  /** Resolved by init(). */
  minReplicas = 0;

  constructor(private readonly ctx: RelayContext) {
    if (isCluster(ctx.redis)) {
      this.cluster = ctx.redis;
    } else {
      // The scripts as commands from the constructor on, as createRedis gives them (its reads are pipelines).
      this.blocking = ctx.redis.duplicate({ enableAutoPipelining: false, lazyConnect: true, autoResendUnfulfilledCommands: false, scripts: SCRIPT_COMMANDS });
      this.blocking.on("error", () => {}); // failures surface on the commands; logged once by redisState
    }
  }

  /** Decides RELAY_MIN_REPLICAS (unset: 1 on a cluster with replicas, 0 on a single node) and learns the shards' slots. */
  async init(): Promise<void> {
    const { cfg, keys, log } = this.ctx;
    if (this.cluster) {
      const slots = await Promise.all(keys.allShards().map((s) => this.cluster!.call("CLUSTER", "KEYSLOT", keys.outbox(s)) as Promise<number>));
      slots.forEach((slot, s) => this.links.set(s, { slot: Number(slot) }));
    }
    if (cfg.RELAY_MIN_REPLICAS !== undefined) this.minReplicas = cfg.RELAY_MIN_REPLICAS;
    else if (this.cluster) {
      const nodes = String(await this.cluster.call("CLUSTER", "NODES"));
      this.minReplicas = /\b(slave|replica)\b/.test(nodes) ? 1 : 0;
    }
    log.info({ minReplicas: this.minReplicas, cluster: Boolean(this.cluster) }, "outbox reader ready");
  }

  /**
   * New entries of `shards`, each shard's in stream order. Waits up to RELAY_BLOCK_MS when there are
   * none; after a short read, lingers RELAY_LINGER_MS and reads once more.
   */
  async readNew(shards: readonly number[]): Promise<ReadResult> {
    const { cfg, stop } = this.ctx;
    if (shards.length === 0) {
      await stop.pause(cfg.RELAY_BLOCK_MS);
      return { entries: [], lost: [] };
    }
    if (this.cluster) return this.readNewPerShard(shards);
    return this.readRound(this.blocking!, shards, false);
  }

  /**
   * Up to RELAY_BATCH_SIZE of this consumer's pending entries of `shard` after id `from`, oldest first
   * (on enough replicas), or null when the shard's lease is not ours any more (nothing was read).
   */
  async readPending(shard: number, from: string): Promise<OutboxEntry[] | null> {
    const { keys, consumerName, cfg } = this.ctx;
    const run = async (conn: Redis, asking: boolean) => {
      freezeForTest(this.ctx, "pending-claim", shard);
      const call = relayReadPendingCall(keys, shard, { group: RELAY_GROUP, consumer: consumerName, count: cfg.RELAY_BATCH_SIZE, from, claim: this.minReplicas > 0 });
      const reply = (await guarded(conn, asking, call)) as [0] | [1, RawEntry[]];
      if (reply[0] === 0) return null;
      const entries = reply[1].map(([id, fields]) => ({ shard, id, fields }));
      if (entries.length > 0) await this.replicated(conn, [shard]);
      return entries;
    };
    return this.cluster ? this.onShard(shard, run) : run(this.blocking!, false);
  }

  /** The shard is no longer read with `>` here: drop its read in flight (what it delivers stays pending on us). */
  forget(shard: number): void {
    const read = this.inFlight.get(shard);
    if (!read) return;
    read.promise.catch(() => {});
    this.inFlight.delete(shard);
  }

  disconnect(): void {
    this.blocking?.disconnect();
    for (const link of this.links.values()) link.conn?.disconnect();
  }

  // ---------------------------------------------------------------- shared steps

  /** relay_read for each shard (one round trip), split into entries, lost shards and the idle shards' newest ids. */
  private async guardedRead(conn: Redis, shards: readonly number[], count: number, asking: boolean): Promise<ReadResult & { idle: Map<number, string> }> {
    const { keys, consumerName } = this.ctx;
    const p = conn.pipeline();
    if (asking) p.call("ASKING");
    for (const s of shards) queueScript(p, relayReadCall(keys, s, RELAY_GROUP, consumerName, count));
    const results = ((await p.exec()) ?? []).slice(asking ? 1 : 0);
    const out = { entries: [] as OutboxEntry[], lost: [] as number[], idle: new Map<number, string>() };
    shards.forEach((shard, i) => {
      const [err, reply] = results[i] ?? [new Error("no reply")];
      if (err) throw err;
      const r = reply as GuardedReply;
      if (r[0] === 0) out.lost.push(shard);
      else if (r[0] === 2) out.idle.set(shard, r[1]);
      else for (const [id, fields] of r[1]) out.entries.push({ shard, id, fields });
    });
    return out;
  }

  /**
   * One read on one connection over `shards` (all served by that node): guarded read; when nothing
   * is new, XREAD BLOCK until something is (or RELAY_BLOCK_MS), then read again; after a short read,
   * linger and read once more; then WAIT for the replicas.
   */
  private async readRound(conn: Redis, shards: readonly number[], asking: boolean): Promise<ReadResult> {
    const { cfg, keys, stop } = this.ctx;
    const batch = cfg.RELAY_BATCH_SIZE;
    const first = await this.guardedRead(conn, shards, batch, asking);
    const entries = first.entries;
    const lost = first.lost;
    const owned = shards.filter((s) => !lost.includes(s));
    if (entries.length === 0 && first.idle.size > 0 && !stop.stopping) {
      const idle = [...first.idle.keys()];
      const woke = await call(conn, asking, ["XREAD", "COUNT", 1, "BLOCK", cfg.RELAY_BLOCK_MS, "STREAMS", ...idle.map((s) => keys.outbox(s)), ...idle.map((s) => first.idle.get(s)!)]);
      if (woke) {
        const again = await this.guardedRead(conn, owned, batch, asking);
        entries.push(...again.entries);
        lost.push(...again.lost);
      }
    }
    if (entries.length > 0 && entries.length < batch && cfg.RELAY_LINGER_MS > 0 && !stop.stopping) {
      await sleep(cfg.RELAY_LINGER_MS);
      const more = await this.guardedRead(conn, owned.filter((s) => !lost.includes(s)), batch - entries.length, asking);
      entries.push(...more.entries);
      lost.push(...more.lost);
    }
    // Keep each shard's entries together and in order (the second read may add to the first's shards).
    entries.sort((a, b) => a.shard - b.shard);
    if (entries.length > 0) await this.replicated(conn, [...new Set(entries.map((e) => e.shard))]);
    return { entries, lost: [...new Set(lost)] };
  }

  /** Returns once RELAY_MIN_REPLICAS replicas have every write this connection made (WAIT, repeated). */
  private async replicated(conn: Redis, shards: readonly number[]): Promise<void> {
    const n = this.minReplicas;
    if (n === 0) return;
    const { cfg, log, metrics, stop } = this.ctx;
    const started = performance.now();
    let warned = false;
    for (;;) {
      const acked = Number(await conn.call("WAIT", n, cfg.RELAY_REPLICA_WAIT_MS));
      if (acked >= n) break;
      if (!warned) {
        warned = true;
        metrics.replicaStalls.inc();
        log.warn({ shards, acked, wanted: n }, "outbox entries are not on enough replicas yet; holding them back (they stay pending)");
      }
      if (stop.stopping) throw new Error("stopping while waiting for replicas");
    }
    const seconds = (performance.now() - started) / 1000;
    metrics.replicaWaitSeconds.observe(seconds);
    if (warned) log.info({ shards, waitedMs: Math.round(seconds * 1000) }, "replicas caught up; relaying the held-back entries");
  }

  // ---------------------------------------------------------------- cluster

  private readNewPerShard(shards: readonly number[]): Promise<ReadResult> {
    for (const s of shards) {
      if (this.inFlight.has(s)) continue;
      const read: ShardRead = { done: false, promise: Promise.resolve() };
      read.promise = this.onShard(s, (conn, asking) => this.readRound(conn, [s], asking)).then(
        (r) => void (read.result = r),
        (e) => void (read.error = e),
      );
      read.promise = read.promise.finally(() => (read.done = true));
      this.inFlight.set(s, read);
    }
    const mine = shards.map((s) => this.inFlight.get(s)!);
    return Promise.race(mine.map((r) => r.promise)).then(() => {
      const out: ReadResult = { entries: [], lost: [] };
      let error: unknown;
      for (const s of shards) {
        const read = this.inFlight.get(s);
        if (!read?.done) continue;
        this.inFlight.delete(s);
        if (read.error !== undefined) error ??= read.error;
        else {
          out.entries.push(...read.result!.entries);
          out.lost.push(...read.result!.lost);
        }
      }
      if (error !== undefined) throw error;
      return out;
    });
  }

  /** Runs `fn` on the connection to the master of the shard's slot, following MOVED and ASK. */
  private async onShard<T>(shard: number, fn: (conn: Redis, asking: boolean) => Promise<T>): Promise<T> {
    const link = this.links.get(shard);
    if (!link) throw new Error(`outbox reader not initialised (shard ${shard})`);
    for (let redirects = 0; ; redirects++) {
      const conn = await this.connect(link);
      try {
        return await fn(conn, false);
      } catch (err) {
        const message = err instanceof Error ? err.message : "";
        if (message.startsWith("TRYAGAIN") && redirects < MAX_REDIRECTS) {
          await sleep(100); // a multi-key call while the slot's keys are half migrated
          continue;
        }
        const redirect = /^(MOVED|ASK) \d+ (\S+)/.exec(message);
        if (!redirect || redirects >= MAX_REDIRECTS) {
          if (!redirect) this.dropLink(link, err);
          throw err;
        }
        if (redirect[1] === "MOVED") {
          this.ctx.log.info({ shard, slot: link.slot, from: link.address, to: redirect[2] }, "shard moved to another node (MOVED)");
          link.conn?.disconnect();
          link.conn = undefined;
          link.address = redirect[2];
          this.cluster!.refreshSlotsCache();
          continue;
        }
        // ASK: this one call is served by the importing node, after ASKING (the slot is mid-migration).
        const target = this.open(redirect[2]!);
        try {
          return await fn(target, true);
        } catch (askErr) {
          // The lease and the stream are on different sides of the migration for a moment: try again.
          if (!(askErr instanceof Error && /^(TRYAGAIN|ASK|MOVED)/.test(askErr.message)) || redirects >= MAX_REDIRECTS) throw askErr;
          await sleep(100);
        } finally {
          target.disconnect();
        }
      }
    }
  }

  private async connect(link: ShardLink): Promise<Redis> {
    if (link.conn && link.conn.status !== "end") return link.conn;
    link.address ??= await this.masterOf(link.slot);
    link.conn = this.open(link.address);
    return link.conn;
  }

  /** A lost or failing connection: forget it and the address, so the next try asks the slot map again. */
  private dropLink(link: ShardLink, err: unknown): void {
    this.ctx.log.debug({ slot: link.slot, address: link.address, err: errorMessage(err) }, "shard connection failed; refreshing the slot map");
    link.conn?.disconnect();
    link.conn = undefined;
    link.address = undefined;
    this.cluster!.refreshSlotsCache();
  }

  private async masterOf(slot: number): Promise<string> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const address = this.cluster!.slots[slot]?.[0];
      if (address) return address;
      await new Promise<void>((resolve) => this.cluster!.refreshSlotsCache(() => resolve()));
      await sleep(50);
    }
    throw new Error(`no master known for slot ${slot}`);
  }

  private open(address: string): Redis {
    const colon = address.lastIndexOf(":");
    const conn = new Redis({
      ...(this.cluster!.options.redisOptions ?? {}),
      host: address.slice(0, colon),
      port: Number(address.slice(colon + 1)),
      enableAutoPipelining: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2_000,
      // Blocking XREAD and WAIT must not count as hung commands.
      commandTimeout: this.ctx.cfg.RELAY_BLOCK_MS + this.ctx.cfg.RELAY_REPLICA_WAIT_MS + 5_000,
      // Never reconnect to a node that went away: it may no longer own the slot; ask the slot map.
      retryStrategy: () => null,
      // The scripts as commands from the constructor on (the cluster's `scripts` is not a node option).
      scripts: SCRIPT_COMMANDS,
    });
    conn.on("error", () => {});
    return conn;
  }
}

/** One lease-guarded script, preceded by ASKING (in the same round trip) when following an ASK redirect. */
async function guarded(conn: Redis, asking: boolean, call: ScriptCall<unknown>): Promise<unknown> {
  const p = conn.pipeline();
  if (asking) p.call("ASKING");
  queueScript(p, call);
  const results = (await p.exec()) ?? [];
  const [err, reply] = results.at(-1) ?? [new Error("no reply")];
  if (err) throw err;
  return reply;
}

/** One command, preceded by ASKING (in the same round trip) when following an ASK redirect. */
async function call(conn: Redis, asking: boolean, args: (string | number)[]): Promise<unknown> {
  const [command, ...rest] = args as [string, ...(string | number)[]];
  if (!asking) return conn.call(command, ...rest);
  const results = (await conn.pipeline().call("ASKING").call(command, ...rest).exec()) ?? [];
  const [err, reply] = results[1] ?? [new Error("no reply")];
  if (err) throw err;
  return reply;
}
