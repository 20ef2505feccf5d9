/**
 * Durability profiles (REDIS_DURABILITY, docs/design.md §3 "Durability"): what an answered write has
 * survived before the client hears of it.
 *
 *   fast     the reply as Redis gives it: in memory, in the AOF within a second (appendfsync everysec),
 *            on a replica within its lag. A crash of the node may lose the last second of acknowledged writes.
 *   fsync    the write is in the master's AOF on disk first: `WAITAOF 1 0 <timeout>` on Redis ≥ 7.2; on an
 *            older Redis there is no WAITAOF, so the server itself must run `appendfsync always` (then every
 *            reply already follows the fsync) and the api refuses to start when it does not.
 *   replica  the write has reached a replica first: `WAIT 1 <timeout>` (a replica's memory, not its disk).
 *
 * The wait is a barrier, not a command per write: WAIT and WAITAOF cover every earlier write of the
 * connection they are sent on, so the writes that finish while one barrier is out share the next one
 * (group commit). It goes on the connection that carried the writes (on a cluster, the pool connection
 * to the master that owns the write's slot): on another connection it would cover nothing.
 *
 * Bounded, never stalling: a barrier that times out (no replica acknowledged, e.g. a new master right
 * after a failover, or a disk that does not finish the fsync) still lets the writes be answered: they
 * are applied and visible on the master, cannot be undone, and a 5xx would leave a hold nobody was told
 * of. Each is counted (flashsale_redis_durability_unconfirmed_total{profile,reason}) and alerted on
 * (RedisDurabilityUnconfirmed, ops/prometheus/alerts.yml). After a timeout the master is taken as
 * degraded for DEGRADED_MS: writes are answered at once (reason "degraded") instead of each group
 * waiting out the timeout again, then the barrier is tried again.
 */
import type { Redis } from "ioredis";
import { prom } from "../metrics.ts";
import type { Registry } from "prom-client";
import type { Logger } from "../logger.ts";
import { isCluster, type RedisClient } from "./client.ts";
import { backoffMs, sleep } from "../lifecycle.ts";

export const DURABILITY_PROFILES = ["fast", "fsync", "replica"] as const;
export type DurabilityProfile = (typeof DURABILITY_PROFILES)[number];

/** After a barrier timed out, writes to that master are answered without waiting for this long. */
export const DEGRADED_MS = 5_000;

export interface Durability {
  readonly profile: DurabilityProfile;
  /** Resolves once the writes this client made so far to `key`'s master are as durable as the profile promises (or that was given up, counted). */
  afterWrite(key: string): Promise<void>;
}

export const FAST: Durability = { profile: "fast", afterWrite: () => Promise.resolve() };

interface DurabilityOptions {
  profile: DurabilityProfile;
  /** Longest one WAIT / WAITAOF blocks (REDIS_DURABILITY_TIMEOUT_MS). */
  timeoutMs: number;
  registry?: Registry;
  logger?: Logger;
}

/** Thrown at start when the server cannot keep the profile's promise (a configuration error: exit, do not retry). */
export class DurabilityUnsupportedError extends Error {
  override name = "DurabilityUnsupportedError";
}

/** [major, minor] of a redis_version string. */
function parseVersion(info: string): [number, number] {
  const m = /redis_version:(\d+)\.(\d+)/.exec(info);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

const hasWaitAof = ([major, minor]: [number, number]) => major > 7 || (major === 7 && minor >= 2);

/**
 * The profile's barrier for `redis`, after checking that the server can keep its promise: fsync on a
 * Redis without WAITAOF needs `appendfsync always` (else DurabilityUnsupportedError).
 */
export async function createDurability(redis: RedisClient, options: DurabilityOptions): Promise<Durability> {
  const { profile, timeoutMs, registry, logger } = options;
  if (profile === "fast") return FAST;
  const nodes = isCluster(redis) ? redis.nodes("master") : [redis];
  const version = parseVersion(String(await (nodes[0] ?? (redis as Redis)).info("server")));
  let command: (string | number)[] | null;
  if (profile === "replica") command = ["WAIT", 1, timeoutMs];
  else if (hasWaitAof(version)) command = ["WAITAOF", 1, 0, timeoutMs];
  else {
    // Redis < 7.2: no WAITAOF. With appendfsync always the reply already follows the fsync.
    for (const node of nodes) {
      const setting = await node.config("GET", "appendfsync").catch((err: Error) => {
        throw new DurabilityUnsupportedError(`REDIS_DURABILITY=fsync: cannot read appendfsync (${err.message}); on Redis < 7.2 the server must run appendfsync always`);
      });
      if ((setting as string[])[1] !== "always") {
        throw new DurabilityUnsupportedError(
          `REDIS_DURABILITY=fsync: Redis ${version.join(".")} has no WAITAOF (7.2+) and ${node.options.host}:${node.options.port} runs appendfsync ${(setting as string[])[1]}; set appendfsync always there, or use Redis 7.2+`,
        );
      }
    }
    command = null;
  }
  const unconfirmed = registry
    ? new prom.Counter({
        name: "flashsale_redis_durability_unconfirmed_total",
        help: "Writes answered before the durability profile could confirm them: reason timeout (a WAIT/WAITAOF timed out) or degraded (answered without waiting, shortly after a timeout)",
        labelNames: ["profile", "reason"],
        registers: [registry],
      })
    : undefined;
  const waits = registry
    ? new prom.Histogram({
        name: "flashsale_redis_durability_wait_seconds",
        help: "Time one durability barrier (WAIT / WAITAOF) took; the writes of a group share it",
        labelNames: ["profile"],
        buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        registers: [registry],
      })
    : undefined;
  logger?.info({ profile, timeoutMs, redisVersion: version.join("."), barrier: command?.[0] ?? "appendfsync always" }, "redis durability profile");
  if (command === null) return { profile, afterWrite: () => Promise.resolve() };

  const wanted = 1;
  const barriers = new Map<Redis, Barrier>();
  const barrierOf = (conn: Redis) => {
    let b = barriers.get(conn);
    if (!b) barriers.set(conn, (b = new Barrier(conn, command, wanted, profile, timeoutMs, unconfirmed, waits, logger)));
    return b;
  };
  if (!isCluster(redis)) {
    const single = barrierOf(redis);
    return { profile, afterWrite: () => single.join() };
  }
  // Cluster: the barrier goes to the pool connection of the master that owns the key's slot.
  const slots = new Map<string, number>();
  return {
    profile,
    async afterWrite(key) {
      const tag = /\{[^}]*\}/.exec(key)?.[0] ?? key;
      let slot = slots.get(tag);
      if (slot === undefined) slots.set(tag, (slot = Number(await redis.call("CLUSTER", "KEYSLOT", key))));
      const address = redis.slots[slot]?.[0];
      const node = redis.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === address);
      if (!node) {
        unconfirmed?.inc({ profile, reason: "timeout" });
        return;
      }
      await barrierOf(node).join();
    },
  };
}

/**
 * createDurability for a binary's start: a Redis that is not there yet is waited for (capped backoff,
 * docs/design.md §13); a server that cannot keep the profile (DurabilityUnsupportedError) is not.
 */
export async function startDurability(redis: RedisClient, options: DurabilityOptions): Promise<Durability> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await createDurability(redis, options);
    } catch (err) {
      if (err instanceof DurabilityUnsupportedError) throw err;
      options.logger?.warn({ err: (err as Error).message, attempt }, "redis not ready for the durability check; retrying");
      await sleep(backoffMs(attempt));
    }
  }
}

/** Group commit on one connection: every join() is covered by a barrier sent after it was called. */
class Barrier {
  private waiting: (() => void)[] = [];
  private running = false;
  private degradedUntil = 0;
  private warnedAt = 0;

  constructor(
    private readonly conn: Redis,
    private readonly command: (string | number)[],
    private readonly wanted: number,
    private readonly profile: DurabilityProfile,
    private readonly timeoutMs: number,
    private readonly unconfirmed: prom.Counter<"profile" | "reason"> | undefined,
    private readonly waits: prom.Histogram<"profile"> | undefined,
    private readonly logger: Logger | undefined,
  ) {}

  join(): Promise<void> {
    if (Date.now() < this.degradedUntil) {
      this.unconfirmed?.inc({ profile: this.profile, reason: "degraded" });
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    while (this.waiting.length > 0) {
      const group = this.waiting;
      this.waiting = [];
      const started = performance.now();
      let confirmed = false;
      try {
        const [name, ...args] = this.command as [string, ...(string | number)[]];
        const reply = await this.conn.call(name, ...args);
        // WAIT answers the replicas that have the writes; WAITAOF [local fsynced, replicas fsynced].
        confirmed = Array.isArray(reply) ? Number(reply[0]) >= this.wanted : Number(reply) >= this.wanted;
      } catch (err) {
        this.logger?.warn({ err: (err as Error).message, profile: this.profile }, "durability barrier failed; writes answered unconfirmed");
      }
      this.waits?.observe({ profile: this.profile }, (performance.now() - started) / 1000);
      if (!confirmed) {
        this.unconfirmed?.inc({ profile: this.profile, reason: "timeout" }, group.length);
        this.degradedUntil = Date.now() + DEGRADED_MS;
        if (Date.now() - this.warnedAt > 10_000) {
          this.warnedAt = Date.now();
          this.logger?.warn(
            { profile: this.profile, timeoutMs: this.timeoutMs, writes: group.length, node: `${this.conn.options.host}:${this.conn.options.port}` },
            `durability not confirmed within the timeout (${this.profile}: no replica / no fsync ack); writes answered anyway, next ${DEGRADED_MS} ms answered without waiting`,
          );
        }
      }
      for (const resolve of group) resolve();
    }
    this.running = false;
  }
}
