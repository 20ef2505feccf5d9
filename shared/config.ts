/**
 * The one place configuration comes from: environment variables, validated at start.
 *
 * Each binary calls the loader for its own section. A missing or malformed variable
 * stops the process before it touches any store, with a message naming the variable.
 * This is the entry every binary and tool imports; the shared variable groups and parsers are in
 * config/fields.ts, the two largest sections (the api's, the notifier's) in config/api.ts and
 * config/notifier.ts, re-exported here.
 */
import { z } from "zod";
import { SERVICES } from "./services.ts";
import { parseConfig } from "./config/parse.ts";
import { adminPort, common, elasticsearch, flag, holds, kafka, positiveInt, postgres, projector, secretsKey, webhookSecurity } from "./config/fields.ts";

export { apiSchema } from "./config/api.ts";
export { ConfigError, loadConfigOrExit, parseConfig, usageOnConfigError } from "./config/parse.ts";
export { notifierSchema, WEBHOOK_SECRET_PATTERN } from "./config/notifier.ts";
export type { RateLimitSpec } from "./config/fields.ts";

export const expirerSchema = z.object({
  ...common,
  ...holds,
  ...adminPort(SERVICES.expirer.adminPort),
  EXPIRER_INTERVAL_MS: positiveInt.max(1000).default(200),
  EXPIRER_BATCH_SIZE: positiveInt.max(10_000).default(500),
});

export const relaySchema = z.object({
  ...common,
  ...kafka,
  ...adminPort(SERVICES.relay.adminPort),
  /** Max events per Kafka request (also capped at ~900 kB) and XREADGROUP COUNT per stream. 2000 drains ~1.5x faster than 1000 on 2 cores (docs/relay.md). */
  RELAY_BATCH_SIZE: positiveInt.max(10_000).default(2000),
  RELAY_LINGER_MS: z.coerce.number().int().min(0).max(1000).default(5),
  RELAY_BLOCK_MS: positiveInt.max(10_000).default(100),
  RELAY_CLAIM_IDLE_MS: positiveInt.default(30_000),
  RELAY_CONSUMER_NAME: z.string().min(1).optional(),
  /**
   * Shard lease time: a relay owns the shards it reads (so each shard, hence each stock, is relayed
   * in order by one process at a time); a lease not renewed for this long passes to another relay.
   */
  RELAY_LEASE_MS: positiveInt.min(1000).max(120_000).default(10_000),
  /** Kafka compression of relayed batches (kafkajs supports gzip natively). */
  RELAY_COMPRESSION: z.enum(["none", "gzip"]).default("none"),
  /**
   * Publish an outbox entry only once this many replicas have it (`WAIT n` after the read), so a
   * failover cannot forget an event Kafka already carries (docs/design.md §11). Unset: 1 on a
   * Redis Cluster that has replicas, 0 on a single node.
   */
  RELAY_MIN_REPLICAS: z.coerce.number().int().min(0).max(16).optional(),
  /** Timeout of one `WAIT`; the relay repeats it (logging once) until the replicas have caught up. */
  RELAY_REPLICA_WAIT_MS: positiveInt.max(60_000).default(1_000),
  /**
   * Kafka transactions with a transactionalId per shard, so a relay that lost its lease (e.g. paused
   * past it) is fenced by the new owner and cannot publish. `false` = plain idempotent producer.
   */
  RELAY_TRANSACTIONS: flag("true"),
  /**
   * Tests only: the relay freezes itself (SIGSTOP to its own pid) once, just before that step, so a
   * test can pass the shard's lease to another relay inside the window and then SIGCONT it
   * (test/relay-claim-fencing.test.ts, test/relay-fencing.test.ts). `acquire-claim`: taking over what
   * a shard's previous owner left pending; `pending-claim`: re-reading (and, with replicas,
   * re-claiming) its own pending entries; `send`: sending its first transaction (entries read, nothing sent yet).
   */
  RELAY_TEST_FREEZE_BEFORE: z.enum(["acquire-claim", "pending-claim", "send"]).optional(),
});

export const projectorPostgresSchema = z.object({
  ...common,
  ...kafka,
  ...postgres,
  ...projector,
  ...adminPort(SERVICES["projector-postgres"].adminPort),
});

export const projectorSearchSchema = z.object({
  ...common,
  ...kafka,
  ...elasticsearch,
  ...projector,
  /**
   * interval: the index's refresh_interval only (default: on two shared cores the extra refreshes of
   * after-write cost PostgreSQL and the relay more than they gain, docs/read-side.md); after-write: a
   * coalesced refresh after each bulk (searchable ~100 ms sooner, visibility measured).
   */
  PROJECTOR_SEARCH_REFRESH: z.enum(["after-write", "interval"]).default("interval"),
  /** Least time between two refreshes the projector starts (after-write). */
  PROJECTOR_SEARCH_REFRESH_SPACING_MS: z.coerce.number().int().min(0).max(10_000).default(0),
  /** The index's refresh_interval, applied at start (with after-write, a backstop for other writers). */
  ELASTICSEARCH_REFRESH_INTERVAL: z.string().regex(/^(-1|\d+(ms|s|m))$/, "an Elasticsearch time value such as 250ms or 1s").default("250ms"),
  ...adminPort(SERVICES["projector-search"].adminPort),
});

/** `bun run webhook-secrets`: the database and the keys (the new one required). */
export const webhookSecretsToolSchema = z.object({ ...postgres, ...webhookSecurity, WEBHOOK_SECRETS_KEY: secretsKey });

/** `bun run retention` (shared/stores/postgres/retention.ts): how long what grows for ever is kept; 0 = for ever. */
export const retentionSchema = z.object({
  ...postgres,
  RETENTION_STOCK_EVENTS_DAYS: z.coerce.number().int().min(0).max(36_500).default(90),
  RETENTION_WEBHOOK_DAYS: z.coerce.number().int().min(0).max(36_500).default(30),
  RETENTION_BATCH: positiveInt.max(100_000).default(5_000),
});

/** Just where Redis is, for tools (verify, benches, load runner) that need nothing else from the config. */
export const redisTargetSchema = z.object({ REDIS_URL: common.REDIS_URL, REDIS_CLUSTER_NODES: common.REDIS_CLUSTER_NODES });

/** Where the downstream stores are, for the operator's tools that read them (verify, repair). */
export const downstreamSchema = z.object({ KAFKA_BROKERS: kafka.KAFKA_BROKERS, KAFKA_TOPIC: kafka.KAFKA_TOPIC, ...postgres, ...elasticsearch });

/** `bun run rebuild <read model>`: the stores, the topic and its DLQ, and the live projector's group (default its name). */
export const rebuildSchema = downstreamSchema.extend({ KAFKA_DLQ_TOPIC: kafka.KAFKA_DLQ_TOPIC, PROJECTOR_GROUP_ID: projector.PROJECTOR_GROUP_ID });

/** The Kafka and projector variables, as parsed: what every projector binary shares (runProjector). */
export type KafkaEnv = z.infer<z.ZodObject<typeof kafka>>;
export type ProjectorEnv = z.infer<z.ZodObject<typeof projector>>;
export type RelayConfig = z.infer<typeof relaySchema>;

/** REDIS_URL / REDIS_CLUSTER_NODES from `env` (validated; throws ConfigError), for createRedis. */
export function redisTargetFromEnv(env: Record<string, string | undefined> = process.env): z.infer<typeof redisTargetSchema> {
  return parseConfig(redisTargetSchema, env);
}
