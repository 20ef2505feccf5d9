/**
 * Helpers for the relay tests: an isolated key prefix and topic per test, events produced through
 * the real Lua scripts, relays in-process or as processes. Reading the topic and checking what it
 * holds (nothing missing, per-stock order, duplicates counted): ./topic-reader.ts.
 */
import { afterEach } from "bun:test";
import type { Subprocess } from "bun";
import type { Kafka } from "kafkajs";
import { parseConfig, relaySchema } from "../../shared/config.ts";
import { OUTBOX_EVENT_FIELD, SCHEMA_VERSION, type EventOf } from "../../shared/domain/events.ts";
import { createKeyLayout, type KeyLayout } from "../../shared/domain/keys.ts";
import pino from "pino";
import { createLogger, type Logger } from "../../shared/logger.ts";
import { createRedis, deleteKeysByPrefix, parseClusterNodes, type RedisClient } from "../../shared/redis/client.ts";
import { createStockCommands, type StockCommands } from "../../shared/redis/commands.ts";
import { createKafka, deleteTopics } from "../../shared/kafka/client.ts";
import { createRelay, type Relay, type RelaySettings } from "../../services/relay/relay.ts";
import { RELAY_GROUP } from "../../services/relay/stream.ts";
import { childLogFile, freePort, stackEnv, uniqueName } from "../../shared/dev/env.ts";
import { killChild } from "./processes.ts";
import { PARTITIONS, TopicReader } from "./topic-reader.ts";

export const SHARDS = 4;
export const REPO_ROOT = new URL("../..", import.meta.url).pathname;

export interface Harness {
  prefix: string;
  topic: string;
  keys: KeyLayout;
  redis: RedisClient;
  commands: StockCommands;
  kafka: Kafka;
  settings(overrides?: Record<string, string>): RelaySettings;
  relay(overrides?: Record<string, string>, logger?: Logger): Relay;
  /** Env for a relay child process (`bun services/relay/main.ts`). */
  env(overrides?: Record<string, string>): Record<string, string>;
  cleanup(): Promise<void>;
}

export interface HarnessOptions {
  /** REDIS_CLUSTER_NODES of a Redis Cluster to run on (e.g. stackEnv.REDIS_CLUSTER_NODES); the single node when absent. */
  clusterNodes?: string;
  shards?: number;
  /** KAFKA_BROKERS (comma-separated) of another Kafka, e.g. a private three-broker cluster; the stack's when absent. */
  brokers?: string;
}

export function createHarness(label: string, options: HarnessOptions = {}): Harness {
  const prefix = uniqueName(label);
  const topic = uniqueName(`${label}_topic`);
  const shards = options.shards ?? SHARDS;
  const keys = createKeyLayout(prefix, shards);
  const redis = createRedis({ REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(options.clusterNodes) });
  redis.on("error", () => {});
  const logger = createLogger("relay-test", process.env.LOG_LEVEL ?? "silent");
  const brokers = options.brokers ?? stackEnv.KAFKA_BROKERS;
  const kafka = createKafka({ brokers: brokers.split(","), clientId: "relay-test", logger });
  const relays: Relay[] = [];
  const baseEnv = {
    REDIS_URL: stackEnv.REDIS_URL,
    KAFKA_BROKERS: brokers,
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: String(PARTITIONS),
    OUTBOX_SHARDS: String(shards),
    ...(options.clusterNodes ? { REDIS_CLUSTER_NODES: options.clusterNodes } : {}),
    REDIS_KEY_PREFIX: prefix,
    RELAY_LEASE_MS: "2000",
    RELAY_CLAIM_IDLE_MS: "3000",
  };
  const settings = (overrides: Record<string, string> = {}) => parseConfig(relaySchema, { ...baseEnv, ...overrides });
  return {
    prefix,
    topic,
    keys,
    redis,
    commands: createStockCommands(redis, keys),
    kafka,
    settings,
    relay(overrides = {}, relayLogger = logger) {
      const relay = createRelay({ redis, kafka, keys, config: settings(overrides), logger: relayLogger });
      relays.push(relay);
      return relay;
    },
    env: (overrides = {}) => ({
      ...(process.env as Record<string, string>),
      ...baseEnv,
      ADMIN_PORT: String(freePort()),
      LOG_LEVEL: process.env.RELAY_CHILD_LOG_LEVEL ?? "warn",
      ...overrides,
    }),
    async cleanup() {
      await Promise.all(relays.map((r) => r.stop().catch(() => {})));
      await deleteKeysByPrefix(redis, prefix);
      await deleteTopics(kafka, [topic], { withDlq: true });
      redis.disconnect();
    },
  };
}

/** Creates `count` stocks spread so that every shard has at least one. */
export async function createStocks(h: Harness, count: number, quantity: number): Promise<string[]> {
  const ids: string[] = [];
  const perShard = new Map<number, number>();
  for (let i = 0; ids.length < count; i++) {
    const id = `stk${i}`;
    const shard = h.keys.shardOf(id);
    // fill shards round-robin so each gets ~count/SHARDS stocks
    if ((perShard.get(shard) ?? 0) >= Math.ceil(count / h.keys.shards)) continue;
    perShard.set(shard, (perShard.get(shard) ?? 0) + 1);
    ids.push(id);
  }
  await Promise.all(ids.map((id) => h.commands.createStock({ id, name: `stock ${id}`, price: 1999, quantity, perUserLimit: quantity })));
  return ids;
}

/** `total` allocations of 1 unit, round-robin over the stocks, `concurrency` in flight (auto-pipelined). */
export async function allocate(h: Harness, stocks: string[], total: number, options: { concurrency?: number; start?: number } = {}): Promise<void> {
  const concurrency = options.concurrency ?? 200;
  const start = options.start ?? 0;
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = start + next++;
      await h.commands.allocate({ stockId: stocks[i % stocks.length]!, userId: `u${i}`, quantity: 1 });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Allocations in the background until `stop()`: rounds of `batch` allocations (allocate(),
 * `concurrency` in flight), `pauseMs` apart, the user ids going on from round to round. `written`
 * counts the allocations of the rounds done; `stop()` lets the current round finish.
 */
export function steadyAllocations(
  h: Harness,
  stocks: string[],
  options: { batch: number; concurrency: number; pauseMs: number },
): { readonly written: number; stop(): Promise<void> } {
  let running = true;
  let written = 0;
  const done = (async () => {
    while (running) {
      await allocate(h, stocks, options.batch, { start: written, concurrency: options.concurrency });
      written += options.batch;
      await Bun.sleep(options.pauseMs);
    }
  })();
  return {
    get written() {
      return written;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

/** Final version of each stock in Redis (events per stock = version). */
export async function stockVersions(h: Harness, stocks: string[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const id of stocks) out.set(id, (await h.commands.getStock(id))!.version);
  return out;
}

/** Every outbox entry currently in the streams (id → raw event text). */
export async function outboxContents(h: Harness): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const s of h.keys.allShards()) {
    for (const [id, fields] of await h.redis.xrange(h.keys.outbox(s), "-", "+")) {
      const i = fields.indexOf("event");
      out.set(`${s}/${id}`, fields[i + 1]!);
    }
  }
  return out;
}

export async function outboxStats(h: Harness): Promise<{ length: number; pending: number }> {
  let length = 0;
  let pending = 0;
  for (const s of h.keys.allShards()) {
    length += await h.redis.xlen(h.keys.outbox(s));
    const summary = (await h.redis.call("XPENDING", h.keys.outbox(s), RELAY_GROUP).catch(() => [0])) as [number];
    pending += Number(summary[0]);
  }
  return { length, pending };
}

/** Who holds each shard's lease right now (index = shard; null = nobody): the record a takeover is observed from. */
export async function leaseHolders(h: Harness): Promise<(string | null)[]> {
  return Promise.all(h.keys.allShards().map((s) => h.redis.get(h.keys.relayLease(s))));
}

/** A well-formed StockAllocated event for a (fake) stock, as the Lua scripts would write it. */
export function allocatedEvent(stockId: string, version: number): string {
  const event: EventOf<"StockAllocated"> = {
    eventId: Bun.randomUUIDv7(),
    eventType: "StockAllocated",
    schemaVersion: SCHEMA_VERSION,
    aggregateType: "Stock",
    aggregateId: stockId,
    version,
    occurredAt: new Date().toISOString(),
    payload: { allocationId: `s0-${Bun.randomUUIDv7()}`, userId: "ghost", quantity: 1, expiresAt: new Date(Date.now() + 60_000).toISOString(), available: 1, held: 1, sold: 0 },
  };
  return JSON.stringify(event);
}

/**
 * Appends `event` to `outbox` and has a consumer named "ghost" read it (pending, never acknowledged), in
 * one step so no relay can read it first: a relay that hung mid-batch, as the trim tests need it.
 */
export async function holdForeignEntry(h: Harness, outbox: string, event: string): Promise<string> {
  return (await h.redis.eval(
    `local id = redis.call('XADD', KEYS[1], '*', '${OUTBOX_EVENT_FIELD}', ARGV[1])
     redis.call('XREADGROUP', 'GROUP', ARGV[2], 'ghost', 'COUNT', 1, 'STREAMS', KEYS[1], '>')
     return id`,
    1,
    outbox,
    event,
    RELAY_GROUP,
  )) as string;
}

/** Spawns `bun services/relay/main.ts` with the harness env. */
export function spawnRelay(env: Record<string, string>): Subprocess {
  return Bun.spawn([process.execPath, "services/relay/main.ts"], {
    cwd: REPO_ROOT,
    env,
    stdout: childLogFile("relay") ?? (process.env.RELAY_CHILD_LOG_LEVEL ? "inherit" : "ignore"),
    stderr: "inherit",
  });
}

/** A relay child process whose JSON log lines are kept (to see what it did after a SIGCONT); `track` kills it after the test. */
export function spawnLogged(track: (child: Subprocess) => Subprocess, env: Record<string, string>): { child: Subprocess; lines: Record<string, unknown>[] } {
  const child = Bun.spawn([process.execPath, "services/relay/main.ts"], { cwd: REPO_ROOT, env: { ...env, LOG_LEVEL: "info" }, stdout: "pipe", stderr: "inherit" });
  const lines: Record<string, unknown>[] = [];
  void (async () => {
    let buffered = "";
    for await (const chunk of child.stdout as ReadableStream<Uint8Array>) {
      buffered += new TextDecoder().decode(chunk);
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      for (const line of parts) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  })();
  return { child: track(child), lines };
}

/** A process's state letter from /proc (`T` = stopped by SIGSTOP). */
export async function processState(pid: number): Promise<string> {
  const stat = await Bun.file(`/proc/${pid}/stat`).text();
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

export const disruptiveSkipped = process.env.SKIP_DISRUPTIVE === "1";

/** A logger that keeps its JSON lines in memory, for asserting what a relay logged. */
export function memoryLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

/**
 * For a test file: registers an afterEach that runs every cleanup registered during the test,
 * newest first, and returns `setup` (a harness plus a reader of its topic, both cleaned up),
 * `track` for a child process (killed after the test if it still runs, frozen or not) and
 * `onCleanup` for anything else the test starts.
 */
export function relayTestFixtures(): {
  setup: (label: string, options?: HarnessOptions) => { h: Harness; reader: TopicReader };
  track: (child: Subprocess) => Subprocess;
  onCleanup: (...fns: (() => Promise<void>)[]) => void;
} {
  let cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    cleanups = [];
  }, 60_000); // a private cluster (relay-replicas) is stopped here too
  const onCleanup = (...fns: (() => Promise<void>)[]) => void cleanups.push(...fns);
  return {
    onCleanup,
    track(child) {
      onCleanup(() => killChild(child));
      return child;
    },
    setup(label, options) {
      const h = createHarness(label, options);
      const reader = new TopicReader(h.topic, options?.brokers);
      onCleanup(() => h.cleanup(), () => reader.stop());
      return { h, reader };
    },
  };
}
