/**
 * The one place configuration comes from: environment variables, validated at start.
 *
 * Each binary calls the loader for its own section. A missing or malformed variable
 * stops the process before it touches any store, with a message naming the variable.
 */
import { z } from "zod";

const port = z.coerce.number().int().min(1).max(65535);
const positiveInt = z.coerce.number().int().positive();

const common = {
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  /** Number of shards the stocks (and their outbox streams) are spread over. Fixed for the life of a deployment. */
  OUTBOX_SHARDS: positiveInt.max(1024).default(4),
  /** Prefix of every Redis key; lets tests and side-by-side deployments share one Redis. */
  REDIS_KEY_PREFIX: z.string().regex(/^[a-z0-9_-]{1,32}$/i).default("fs"),
};

const kafka = {
  KAFKA_BROKERS: z
    .string()
    .default("127.0.0.1:9092")
    .transform((s) => s.split(",").map((b) => b.trim()).filter(Boolean)),
  KAFKA_TOPIC: z.string().min(1).default("flashsale.stock-events"),
  KAFKA_DLQ_TOPIC: z.string().min(1).optional(),
  KAFKA_PARTITIONS: positiveInt.max(1000).default(12),
};

const postgres = {
  DATABASE_URL: z.string().url().default("postgres://flashsale:flashsale@127.0.0.1:5432/flashsale"),
};

const elasticsearch = {
  ELASTICSEARCH_URL: z.string().url().default("http://127.0.0.1:9200"),
  ELASTICSEARCH_INDEX_ALIAS: z.string().min(1).default("stocks"),
};

const adminPort = (fallback: number) => ({ ADMIN_PORT: port.default(fallback) });

export const apiSchema = z.object({
  ...common,
  ...postgres,
  ...elasticsearch,
  PORT: port.default(3000),
  ADMIN_TOKEN: z.string().min(16, "ADMIN_TOKEN must be at least 16 characters"),
  JWT_SECRET: z.string().min(32, "JWT_SECRET must be at least 32 characters (HS256 key)"),
  /** Largest request body the api accepts, in bytes. */
  MAX_BODY_BYTES: positiveInt.default(16 * 1024),
  /**
   * Request headers (names + values) above this get a 431 problem+json from the app. It must stay
   * below the HTTP server's own limit, where Bun answers a bare 431 before the app runs: 16 KiB by
   * default, 64 KiB for the api as started by `bun run api` and the built binary (--max-http-header-size).
   */
  MAX_HEADER_BYTES: positiveInt.min(1024).max(60 * 1024).default(8 * 1024),
  /** The workers' /metrics the dashboard scrapes (comma-separated); default: the ports `bun run up` gives them. */
  WORKER_METRICS_URLS: z
    .string()
    .default("http://127.0.0.1:9101/metrics,http://127.0.0.1:9102/metrics,http://127.0.0.1:9103/metrics,http://127.0.0.1:9104/metrics")
    .transform((s) => s.split(",").map((u) => u.trim()).filter(Boolean))
    .pipe(z.array(z.string().url("WORKER_METRICS_URLS must be comma-separated http(s) URLs"))),
});

export const expirerSchema = z.object({
  ...common,
  ...adminPort(9102),
  EXPIRER_INTERVAL_MS: positiveInt.max(1000).default(200),
  EXPIRER_BATCH_SIZE: positiveInt.max(10_000).default(500),
});

export const relaySchema = z.object({
  ...common,
  ...kafka,
  ...adminPort(9101),
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
});

const projector = {
  /** Consumer group; defaults to the projector's name. Tests and side-by-side deployments override it. */
  PROJECTOR_GROUP_ID: z.string().min(1).optional(),
  /** Partition batches in flight at once; a projector merges them into one transaction / bulk. */
  PROJECTOR_CONCURRENCY: positiveInt.max(64).default(16),
  /** Longest a Kafka fetch waits on the broker when nothing new is there (kafkajs maxWaitTimeInMs). */
  PROJECTOR_FETCH_MAX_WAIT_MS: z.coerce.number().int().min(0).max(10_000).default(250),
  /** Bytes the broker gathers before it answers a fetch (1 = answer as soon as anything is there). */
  PROJECTOR_FETCH_MIN_BYTES: positiveInt.max(16 * 1024 * 1024).default(1),
};

export const projectorPostgresSchema = z.object({
  ...common,
  ...kafka,
  ...postgres,
  ...projector,
  ...adminPort(9103),
});

export const projectorSearchSchema = z.object({
  ...common,
  ...kafka,
  ...elasticsearch,
  ...projector,
  /** after-write: a coalesced refresh after each bulk (searchable sooner, visibility measured); interval: the index's own. */
  PROJECTOR_SEARCH_REFRESH: z.enum(["after-write", "interval"]).default("after-write"),
  /** Least time between two refreshes the projector starts (after-write). */
  PROJECTOR_SEARCH_REFRESH_SPACING_MS: z.coerce.number().int().min(0).max(10_000).default(0),
  /** The index's refresh_interval, applied at start (with after-write, a backstop for other writers). */
  ELASTICSEARCH_REFRESH_INTERVAL: z.string().regex(/^(-1|\d+(ms|s|m))$/, "an Elasticsearch time value such as 250ms or 1s").default("250ms"),
  ...adminPort(9104),
});

export type ApiConfig = z.infer<typeof apiSchema>;
export type ExpirerConfig = z.infer<typeof expirerSchema>;
export type RelayConfig = z.infer<typeof relaySchema>;
export type ProjectorPostgresConfig = z.infer<typeof projectorPostgresSchema>;
export type ProjectorSearchConfig = z.infer<typeof projectorSearchSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** Parses `env` with `schema`; throws ConfigError listing every bad variable. */
export function parseConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined> = process.env): z.infer<S> {
  // Treat empty strings as unset so `FOO=` in a compose file falls back to the default.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = schema.safeParse(cleaned);
  if (result.success) return result.data;
  throw new ConfigError(result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`));
}

/** For main.ts: parse or print the problems and exit 1 (fail fast, before connecting anywhere). */
export function loadConfigOrExit<S extends z.ZodType>(schema: S, service: string): z.infer<S> {
  try {
    return parseConfig(schema);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(JSON.stringify({ level: "fatal", service, msg: err.message, problems: err.problems }));
    process.exit(1);
  }
}
