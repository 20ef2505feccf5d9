/**
 * The real system the simulation drives: the api in-process (createApp on its own Redis client, as
 * services/api/main.ts wires it, so an "api restart" is a new app with new connections and an empty
 * memory), a relay as its own process (so kill -9 is real), the expirer's sweep (tick), a read_committed
 * reader of the topic, and an operator connection for what no client may do: move a hold's deadline,
 * end a sale, kill a connection.
 *
 * Time: the scripts read Redis' TIME, which the test cannot move. The simulation moves deadlines
 * instead: a hold "whose time passed" gets expiresAt (hash and due index) far in the past, in the
 * order the simulation passed them; a sale that "ended" gets endsAt in the past. Production code is
 * untouched; the scripts see exactly what they would see once the clock got there.
 */
import type { Subprocess } from "bun";
import { Redis } from "ioredis";
import { createApp } from "../../services/api/app.ts";
import { createExpirer, type Expirer } from "../../services/expirer/expirer.ts";
import { createKeyLayout, type KeyLayout } from "../../shared/domain/keys.ts";
import { createKafka, deleteTopics } from "../../shared/kafka/client.ts";
import { createLogger } from "../../shared/logger.ts";
import { prom } from "../../shared/metrics.ts";
import { createRedis, deleteKeysByPrefix, type RedisClient, type RedisTarget } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { mintUserToken } from "../../shared/dev/token.ts";
import { TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from "../support/api.ts";
import { freePort, stackEnv, uniqueName } from "../../shared/dev/env.ts";
import { killChild } from "../support/processes.ts";
import { spawnRelay } from "../support/relay-harness.ts";
import { TopicReader } from "../support/topic-reader.ts";

const SHARDS = 4;
const silent = createLogger("sim", process.env.LOG_LEVEL ?? "silent");

/**
 * A registry without the runtime's default metrics: createMetricsRegistry starts an event-loop-delay
 * monitor and GC observers per registry that nothing stops, and an api restart makes two registries;
 * dozens of restarts a run left dozens of monitors running in this process.
 */
const bareRegistry = () => new prom.Registry();

export interface SimSystemOptions {
  redis: RedisTarget;
  /** REDIS_CLUSTER_NODES for the relay process, when `redis` is a cluster. */
  clusterNodes?: string;
}

export class SimSystem {
  readonly prefix = uniqueName("sim");
  readonly topic = uniqueName("sim_topic");
  readonly keys: KeyLayout = createKeyLayout(this.prefix, SHARDS);
  /** The operator's connection (never the api's): deadlines, CLIENT LIST/KILL, checks. */
  readonly ops: RedisClient;
  reader: TopicReader;
  private api!: { app: ReturnType<typeof createApp>; redis: RedisClient };
  private expirer!: Expirer;
  private relay: Subprocess | undefined;
  private readonly tokens = new Map<string, string>();
  /** How many api restarts and relay kills happened (printed with the run). */
  readonly counts = { apiRestarts: 0, relayKills: 0, clientKills: 0 };
  private deadlineSeq = 0;

  constructor(private readonly options: SimSystemOptions) {
    this.ops = createRedis(options.redis);
    this.ops.on("error", () => {});
    this.reader = new TopicReader(this.topic);
  }

  async start(): Promise<void> {
    this.startApi();
    await this.reader.start();
    this.startRelay();
  }

  private startApi(): void {
    const redis = createRedis(this.options.redis, { connectionName: `simapi-${this.prefix}` });
    redis.on("error", () => {});
    const commands = createStockCommands(redis, this.keys);
    const app = createApp({
      commands,
      redis,
      logger: silent,
      registry: bareRegistry(),
      adminToken: TEST_ADMIN_TOKEN,
      jwtSecret: TEST_JWT_SECRET,
      maxBodyBytes: 16 * 1024,
    });
    this.api = { app, redis };
    this.expirer = createExpirer({ redis, keys: this.keys, logger: silent, registry: bareRegistry(), intervalMs: 60_000, batchSize: 100 });
  }

  /** A new api: new connections, nothing remembered in memory. The old one's connections are closed first. */
  async restartApi(): Promise<void> {
    this.api.redis.disconnect();
    this.startApi();
    this.counts.apiRestarts++;
  }

  private startRelay(): void {
    this.relay = spawnRelay({
      ...(process.env as Record<string, string>),
      REDIS_URL: stackEnv.REDIS_URL,
      ...(this.options.clusterNodes ? { REDIS_CLUSTER_NODES: this.options.clusterNodes } : {}),
      KAFKA_BROKERS: stackEnv.KAFKA_BROKERS,
      KAFKA_TOPIC: this.topic,
      KAFKA_PARTITIONS: "4",
      OUTBOX_SHARDS: String(SHARDS),
      REDIS_KEY_PREFIX: this.prefix,
      RELAY_LEASE_MS: "1500",
      RELAY_CLAIM_IDLE_MS: "2000",
      ADMIN_PORT: String(freePort()),
      LOG_LEVEL: process.env.RELAY_CHILD_LOG_LEVEL ?? "error",
    });
  }

  /** kill -9 of the relay and a new one: the next owner of each shard re-sends what was pending. */
  async killRelay(): Promise<void> {
    if (this.relay) await killChild(this.relay);
    this.startRelay();
    this.counts.relayKills++;
  }

  async token(userId: string): Promise<string> {
    let t = this.tokens.get(userId);
    if (!t) this.tokens.set(userId, (t = await mintUserToken(userId, TEST_JWT_SECRET)));
    return t;
  }

  async request(method: string, path: string, options: { userId?: string; admin?: boolean; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
    const headers: Record<string, string> = { "content-type": "application/json", ...options.headers };
    if (options.admin) headers.Authorization = `Bearer ${TEST_ADMIN_TOKEN}`;
    if (options.userId) headers.Authorization = `Bearer ${await this.token(options.userId)}`;
    const res = await this.api.app.request(path, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** Moves a hold's deadline into the past (hash and due index), later passes sorting after earlier ones. */
  async passDeadline(allocationId: string, stockId: string): Promise<void> {
    const at = 1_000 + ++this.deadlineSeq;
    await this.ops.hset(this.keys.hold(allocationId), "expiresAt", at);
    await this.ops.zadd(this.keys.holdsDue(this.keys.shardOf(stockId)), at, allocationId);
  }

  async endSale(stockId: string): Promise<void> {
    await this.ops.hset(this.keys.stock(stockId), "endsAt", 1_000);
  }

  expire(): Promise<number> {
    return this.expirer.tick();
  }

  /**
   * Kills the api's Redis connection(s) on the node(s) it is connected to, in the same tick as
   * `during` starts (which sends a command on it): whichever reaches Redis first wins, so the command
   * is before, in flight, or after the kill. Returns what `during` returned.
   */
  async killApiConnectionDuring<T>(during: () => Promise<T>): Promise<T> {
    const victims: { node: Redis; id: string }[] = [];
    for (const node of this.nodes()) {
      const list = String(await node.call("CLIENT", "LIST"));
      for (const line of list.split("\n")) if (line.includes(`name=simapi-${this.prefix}`)) victims.push({ node, id: /\bid=(\d+)/.exec(line)![1]! });
    }
    const result = during();
    await Promise.all(victims.map((v) => v.node.call("CLIENT", "KILL", "ID", v.id).catch(() => 0)));
    this.counts.clientKills++;
    return result;
  }

  /** One plain connection per node (the single node, or every master of the cluster). */
  private nodes(): Redis[] {
    const ops = this.ops as RedisClient & { nodes?: (role: string) => Redis[] };
    return typeof ops.nodes === "function" ? ops.nodes("master") : [this.ops as Redis];
  }

  async stop(): Promise<void> {
    if (this.relay) await killChild(this.relay);
    await this.reader.stop();
    this.api.redis.disconnect();
    await deleteKeysByPrefix(this.ops, this.prefix).catch(() => {});
    await deleteTopics(createKafka({ brokers: stackEnv.KAFKA_BROKERS.split(","), clientId: "sim-cleanup", logger: silent }), [this.topic]);
    this.ops.disconnect();
  }
}
