/**
 * The one Redis client factory: an ioredis `Cluster` when REDIS_CLUSTER_NODES is set, else a
 * single-node client from REDIS_URL (docs/design.md §11). Both run the same commands and the same
 * Lua scripts: every script's keys share one hash tag, so the Cluster client sends each EVALSHA to
 * the master of that slot. What a cluster cannot do in one command (SCAN over the keyspace, a
 * pipeline or UNLINK across slots) goes through the helpers below, on either client.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import { SCRIPT_COMMANDS } from "./script-sources.ts";

/** Either client; code that takes this works on a single node and on a cluster. */
export type RedisClient = Redis | Cluster;

export interface ClusterNode {
  host: string;
  port: number;
}

/** Where Redis is: the config's REDIS_URL and, when set, REDIS_CLUSTER_NODES (which wins). */
export interface RedisTarget {
  REDIS_URL: string;
  REDIS_CLUSTER_NODES?: readonly ClusterNode[] | undefined;
}

const SINGLE_NODE_DEFAULTS: RedisOptions = {
  // Commands issued in the same tick go out as one pipeline: under a stampede this turns
  // thousands of EVALSHA round trips into a few writes, at no cost when traffic is light.
  enableAutoPipelining: true,
  // Every Lua script is a command from the constructor on, before any auto-pipeline exists (one
  // opened before a script was defined breaks on it: scripts.ts, ensureDefined).
  scripts: SCRIPT_COMMANDS,
  maxRetriesPerRequest: 2,
  connectTimeout: 2_000,
  enableOfflineQueue: true,
  // Never send again, after a reconnect, a command whose reply was lost with its connection: Redis
  // may have run it, and a script that writes would run twice (an outside run with CLIENT KILL under
  // load saw 58 units held that no 201 answered). The caller gets the error instead; allocate
  // retries with the same request id, which the script recognises (retryLostReply, allocate.lua).
  autoResendUnfulfilledCommands: false,
};

/**
 * Cluster settings, and why:
 * - auto-pipelining groups the commands of a tick per node (ioredis does it by slot owner);
 * - a failover or a reshard answers CLUSTERDOWN / TRYAGAIN / MOVED / ASK for a moment: ioredis
 *   retries them, all from one budget of maxRedirections. A script that creates a key (every
 *   allocation does) gets TRYAGAIN for as long as its slot migrates, and ioredis retries that via a
 *   random node and its MOVED (two or three hops per 250 ms): 32 hides a migration of ~3 s. A slot
 *   without a master (CLUSTERDOWN) is retried for ~3 s (32 × 100 ms), then the caller gets the error
 *   and the api answers 503 store_unavailable;
 * - slotsRefreshInterval re-reads the slot map every few seconds, so a promoted replica is found
 *   even by a client that sends nothing to the failed node;
 * - commandTimeout: a command sent to a master that died without closing its sockets would wait for
 *   the kernel's TCP timeout; 2 s turns it into an error (503) and the client moves on.
 */
const CLUSTER_DEFAULTS: ClusterOptions = {
  enableAutoPipelining: true,
  scripts: SCRIPT_COMMANDS,
  enableReadyCheck: true,
  enableOfflineQueue: true,
  maxRedirections: 32,
  retryDelayOnFailover: 100,
  retryDelayOnClusterDown: 100,
  retryDelayOnTryAgain: 250,
  retryDelayOnMoved: 0,
  slotsRefreshTimeout: 2_000,
  slotsRefreshInterval: 2_000,
  clusterRetryStrategy: (times) => Math.min(100 * times, 2_000),
};

const CLUSTER_NODE_DEFAULTS: ClusterOptions["redisOptions"] = {
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 2,
  connectTimeout: 2_000,
  commandTimeout: 2_000,
};

/**
 * A client for `target`. A plain URL always gives a single-node client (tests and tools that
 * address one node on purpose); a RedisTarget gives a Cluster when it names cluster nodes.
 * `options` are per-connection settings (lazyConnect, maxRetriesPerRequest, …); on a cluster the
 * ones that only make sense for the whole client (lazyConnect, enableOfflineQueue) apply to it.
 */
export function createRedis(target: string, options?: RedisOptions): Redis;
export function createRedis(target: RedisTarget, options?: RedisOptions): RedisClient;
export function createRedis(target: string | RedisTarget, options: RedisOptions = {}): RedisClient {
  if (typeof target === "string") return failUnfulfilledOnReconnect(new Redis(target, { ...SINGLE_NODE_DEFAULTS, ...options }));
  const nodes = target.REDIS_CLUSTER_NODES;
  if (!nodes || nodes.length === 0) return failUnfulfilledOnReconnect(new Redis(target.REDIS_URL, { ...SINGLE_NODE_DEFAULTS, ...options }));
  const { lazyConnect, enableOfflineQueue, retryStrategy: _perNodeRetry, enableAutoPipelining, ...perNode } = options;
  return new Cluster(
    nodes.map((n) => ({ host: n.host, port: n.port })),
    {
      ...CLUSTER_DEFAULTS,
      ...(lazyConnect === undefined ? {} : { lazyConnect }),
      ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
      ...(enableAutoPipelining === undefined ? {} : { enableAutoPipelining }),
      redisOptions: { ...CLUSTER_NODE_DEFAULTS, ...perNode },
    },
  );
}

/**
 * With autoResendUnfulfilledCommands off, ioredis (5.9) keeps the commands that were on a lost
 * connection aside (`prevCommandQueue`) and, at the next ready, simply forgets them: their promises
 * never settle, and an HTTP request waits for ever (seen in test/allocate-connection-loss.test.ts).
 * They fail here instead, when the reconnect starts, with the error ioredis gives the rest of a lost
 * pipeline; the caller decides whether sending again is safe (retryLostReply).
 */
function failUnfulfilledOnReconnect(redis: Redis): Redis {
  if (redis.options.autoResendUnfulfilledCommands) return redis;
  redis.on("reconnecting", () => {
    const internals = redis as unknown as { prevCommandQueue: { length: number; shift(): { command: { reject(e: Error): void } } } | null };
    const queue = internals.prevCommandQueue;
    if (!queue) return;
    internals.prevCommandQueue = null;
    while (queue.length > 0) queue.shift().command.reject(Object.assign(new Error("Command aborted due to connection close"), { name: "AbortError" }));
  });
  return redis;
}

/** Parses `host:port,…` (as REDIS_CLUSTER_NODES is written) for tools that read env without the config module. */
export function parseClusterNodes(list: string | undefined): ClusterNode[] | undefined {
  if (!list?.trim()) return undefined;
  return list.split(",").map((n) => {
    const [host, port] = n.trim().split(":");
    if (!host || !port || !/^\d+$/.test(port)) throw new Error(`REDIS_CLUSTER_NODES: "${n}" is not host:port`);
    return { host, port: Number(port) };
  });
}

export const isCluster = (redis: RedisClient): redis is Cluster => redis instanceof Cluster;

/**
 * The nodes that hold keys: the masters of a cluster, or the one node. SCAN and KEYS must visit each.
 * A Cluster knows its masters only once it has read the slot map, so this waits for that (a fresh
 * client would otherwise list none, and a scan would find nothing).
 */
export async function keyHolders(redis: RedisClient): Promise<Redis[]> {
  if (!isCluster(redis)) return [redis];
  if (redis.status === "wait") await redis.connect();
  else if (redis.status !== "ready") {
    await new Promise<void>((resolve, reject) => {
      const onReady = () => (redis.off("end", onEnd), resolve());
      const onEnd = () => (redis.off("ready", onReady), reject(new Error("Cluster connection ended before it was ready")));
      redis.once("ready", onReady);
      redis.once("end", onEnd);
    });
  }
  return redis.nodes("master");
}

/**
 * Every key matching `match`, from every master (SCAN is per node on a cluster). A key may be seen
 * twice while a slot migrates between two masters; callers get each name once.
 */
export async function scanKeys(redis: RedisClient, match: string, count = 1000): Promise<string[]> {
  const seen = new Set<string>();
  for (const node of await keyHolders(redis)) {
    let cursor = "0";
    do {
      const [next, keys] = await node.scan(cursor, "MATCH", match, "COUNT", count);
      for (const k of keys) seen.add(k);
      cursor = next;
    } while (cursor !== "0");
  }
  return [...seen];
}

/**
 * Deletes every key under `prefix:` (a test's or benchmark's namespace). Never call it with the
 * production prefix: it is for throwaway namespaces only. One UNLINK per key, through the client:
 * keys of different slots cannot share a command on a cluster, and auto-pipelining batches them.
 */
export async function deleteKeysByPrefix(redis: RedisClient, prefix: string): Promise<void> {
  const keys = await scanKeys(redis, `${prefix}:*`);
  for (let i = 0; i < keys.length; i += 5_000) await Promise.all(keys.slice(i, i + 5_000).map((k) => redis.unlink(k)));
}

const REGROUP_ERROR = "All keys in the pipeline should belong to the same slots allocation group";
/** TRYAGAIN lasts while a slot's keys are half migrated: retried every 100 ms. */
const TRYAGAIN_DELAY_MS = 100;
const UNEXECUTED_ATTEMPTS = 100;
/** Never sends again after this long since the first try: each try may itself have waited out the client's retries (a dead master), and a caller must get its 503 in seconds. */
const UNEXECUTED_BUDGET_MS = 3_000;
/**
 * TRYAGAIN alone gets longer: Redis answers it at once (no client retry inside a try), and it lasts
 * as long as a slot is half migrated, which grows with the keys in the slot. A paced reshard
 * (10 keys per MIGRATE, as redis-cli) of slots holding ~1,600 keys (every allocation's 60 s request
 * record counts) took 3.4 s, past the 3 s budget: a CI-like run answered 98 allocations 503.
 */
const TRYAGAIN_BUDGET_MS = 10_000;

/**
 * How long to wait before sending again a command that Redis (or ioredis) did not execute, or null
 * when the error may come from an executed command (never retried: a script that writes must not
 * run twice).
 * - ioredis refused to send it because the slot map changed under its auto-pipeline: commands are
 *   grouped by node when queued, and if a reshard or failover moves a slot before the batch goes
 *   out, ioredis rejects the whole batch before writing to a socket (redis/ioredis#1264, #2109).
 * - TRYAGAIN, MOVED, ASK: Redis refused to run it (keys of the slot half migrated, slot moved or
 *   moving). The cluster client follows these itself, but not inside an auto-pipeline in which
 *   another command succeeded: ioredis re-sends a cluster pipeline only when every command failed
 *   the same way or was a read (Pipeline.fillResult), so under load, during a reshard, one caller's
 *   allocation got the raw TRYAGAIN while its neighbour in the batch went through (seen as a 503 in
 *   test/redis-cluster-failover.test.ts). Sent again on its own, the cluster client follows it.
 * - READONLY: a replica ran the script and refused its first write (see below): nothing was written.
 */
export function unexecutedRetryDelayMs(err: unknown): number | null {
  const message = (err as Error | undefined)?.message ?? "";
  if (message === REGROUP_ERROR) return 0;
  if (message.startsWith("TRYAGAIN")) return TRYAGAIN_DELAY_MS;
  if (message.startsWith("MOVED ") || message.startsWith("ASK ")) return 10;
  // A replica refused the script's first write: after a node connection closed, ioredis' Cluster
  // client sends the command again to a random node, which may be a replica (READONLY on its
  // connection), and nothing can be written there. Seen under CLIENT KILL on the cluster
  // (test/allocate-connection-loss.test.ts: 41 of 7,407 answers were 500 before this).
  if (message.startsWith("READONLY")) return 50;
  return null;
}

/** Runs `send` again while it fails with an error that says it was not executed (see above), for at most `attempts` tries and `budgetMs`. */
export async function retryUnexecuted<T>(send: () => Promise<T>, attempts = UNEXECUTED_ATTEMPTS, budgetMs?: number): Promise<T> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      const delay = unexecutedRetryDelayMs(err);
      const tryAgain = ((err as Error | undefined)?.message ?? "").startsWith("TRYAGAIN");
      const deadline = started + (budgetMs ?? (tryAgain ? TRYAGAIN_BUDGET_MS : UNEXECUTED_BUDGET_MS));
      if (delay === null || attempt >= attempts || Date.now() + delay >= deadline) throw err;
      if (delay > 0) await Bun.sleep(delay);
    }
  }
}

/**
 * Errors after which a command may or may not have run: its connection went away before the reply
 * came (ioredis' AbortError, a closed connection, the retries of a reconnect used up). Only a command
 * that is safe to run twice may be sent again after one (see retryLostReply).
 */
function isLostReply(err: unknown): boolean {
  const e = err as { name?: string; code?: string; message?: string };
  return (
    e?.name === "MaxRetriesPerRequestError" ||
    ["ECONNRESET", "EPIPE"].includes(e?.code ?? "") ||
    /Command aborted due to connection close|Connection is closed|Stream isn't writeable/i.test(e?.message ?? "")
  );
}

/** How long allocate keeps retrying a lost reply before the caller answers 503 store_unavailable. */
const LOST_REPLY_RETRY_BUDGET_MS = 3_000;

/**
 * Runs `send` again while its reply is lost (isLostReply), with a short backoff, for at most
 * `budgetMs`. Only for a command that is idempotent as sent: allocate carries a request id, so its
 * second run answers the hold of the first. A connection that stays lost ends in the last error,
 * which isRedisUnavailable maps to 503.
 */
export async function retryLostReply<T>(send: () => Promise<T>, budgetMs = LOST_REPLY_RETRY_BUDGET_MS): Promise<T> {
  const deadline = Date.now() + budgetMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      const delay = Math.min(20 * 2 ** attempt, 250);
      if (!isLostReply(err) || Date.now() + delay >= deadline) throw err;
      await Bun.sleep(delay);
    }
  }
}

/**
 * Errors of a Redis that is (for a moment) not there: the request was fine, the store was not.
 * On a cluster that includes a slot without a master (CLUSTERDOWN after the retries, a failover
 * in progress) and a client that cannot reach any node. A MOVED or ASK that reaches the caller is
 * one ioredis could not follow (it retries them first): the slot's new owner is not reachable yet.
 * Also a Redis that is full (`OOM` at maxmemory with noeviction, docs/design.md §3): a script refused
 * for OOM wrote nothing, since Redis refuses a script's first write and our scripts check everything
 * before their first write.
 */
export function isRedisUnavailable(err: unknown): boolean {
  const e = err as { name?: string; code?: string; message?: string };
  return (
    e?.name === "MaxRetriesPerRequestError" ||
    e?.name === "ClusterAllFailedError" ||
    ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE"].includes(e?.code ?? "") ||
    /Connection is closed|Command aborted due to connection close|connect ECONNREFUSED|Stream isn't writeable|Command timed out|^CLUSTERDOWN|^TRYAGAIN|^MOVED |^ASK |^MASTERDOWN|^READONLY|^LOADING|^OOM |Too many Cluster redirections|same slots allocation group|Failed to refresh slots cache|None of startup nodes is available|Cluster isn't ready/i.test(
      e?.message ?? "",
    )
  );
}
