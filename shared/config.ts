/**
 * The one place configuration comes from: environment variables, validated at start.
 *
 * Each binary calls the loader for its own section. A missing or malformed variable
 * stops the process before it touches any store, with a message naming the variable.
 */
import { z } from "zod";
import { SERVICES, WORKER_NAMES } from "./services.ts";
import { DEFAULT_JWT_MAX_LIFETIME_SECONDS, DEFAULT_OUTBOX_MAX_LENGTH, DEFAULT_SSE_MAX_CLIENTS, IDEMPOTENCY_TTL_SECONDS } from "./domain/policy.ts";
import { DURABILITY_PROFILES } from "./redis/durability.ts";
import { EVENT_TYPES } from "./domain/events.ts";

const port = z.coerce.number().int().min(1).max(65535);
const positiveInt = z.coerce.number().int().positive();

/**
 * `host:port,host:port,…`: some nodes of a Redis Cluster (any of them; the client discovers the
 * rest). Set, it replaces REDIS_URL (docs/design.md §11).
 */
const redisClusterNodes = z
  .string()
  .transform((s, ctx) => {
    const nodes = s.split(",").map((n) => n.trim()).filter(Boolean).map((n) => {
      const m = /^([^:\s]+):(\d{1,5})$/.exec(n);
      const p = m ? Number(m[2]) : 0;
      if (!m || p < 1 || p > 65535) ctx.addIssue({ code: "custom", message: `"${n}" is not host:port` });
      return { host: m?.[1] ?? n, port: p };
    });
    if (nodes.length === 0) ctx.addIssue({ code: "custom", message: "no host:port in the list" });
    return nodes;
  });

const common = {
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  REDIS_URL: z.string().url().default("redis://127.0.0.1:6379"),
  REDIS_CLUSTER_NODES: redisClusterNodes.optional(),
  /**
   * Number of shards the stocks (and their outbox streams) are spread over. Fixed for the life of a
   * deployment. 16 spreads over the masters of a cluster (each shard is one slot, docs/design.md §11).
   */
  OUTBOX_SHARDS: positiveInt.max(1024).default(16),
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

/**
 * Every binary's operators' listener (shared/admin-server.ts). ADMIN_HOST is the address it binds:
 * loopback by default, so health, metrics and the dashboard are not on the network unless an operator
 * says so (a container sets 0.0.0.0 and publishes the port where it wants it). Whatever the host,
 * only /healthz, /readyz and /metrics answer without `Authorization: Bearer <ADMIN_TOKEN>`.
 */
const adminPort = (fallback: number) => ({ ADMIN_PORT: port.default(fallback), ADMIN_HOST: z.string().min(1).default("127.0.0.1") });

const flag = (fallback: "true" | "false") =>
  z
    .enum(["true", "false", "1", "0"])
    .default(fallback)
    .transform((v) => v === "true" || v === "1");

/** A WEBHOOK_SECRETS_KEY: the base64 of 32 random bytes (`openssl rand -base64 32`), an AES-256-GCM key. */
const secretsKey = z
  .string()
  .trim()
  .refine((k) => /^[A-Za-z0-9+/]{43}=$/.test(k) && Buffer.from(k, "base64").length === 32, "must be the base64 of 32 bytes (openssl rand -base64 32)");

/** What the api and the notifier share about webhooks: where they may go, and how their secrets are kept (docs/webhooks.md). */
const webhookSecurity = {
  /**
   * Off: webhook URLs that are, or resolve to, loopback, link-local, private, unspecified, multicast
   * or broadcast addresses are refused at registration (400 webhook_url_not_allowed) and at every
   * send (SSRF). On: local receivers are allowed (development, tests); the notifier warns at start.
   */
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: flag("false"),
  /**
   * Encrypts webhook secrets at rest (AES-256-GCM, key id stored beside each ciphertext). Unset: new
   * secrets are stored in plain text, with a warning at start; set it in production.
   */
  WEBHOOK_SECRETS_KEY: secretsKey.optional(),
  /** Earlier keys, comma-separated, still accepted for decryption during a rotation (`bun run webhook-secrets`). */
  WEBHOOK_SECRETS_OLD_KEYS: z
    .string()
    .transform((s) => s.split(",").map((k) => k.trim()).filter(Boolean))
    .pipe(z.array(secretsKey))
    .optional(),
};

/**
 * A request-rate limit: `<requests>/<seconds>s` (a token bucket holding that many requests, refilled
 * evenly over the window, e.g. `20/10s`), or `off`. Parsed once into { limit, windowSeconds } | null.
 */
const rateLimitSpec = (fallback: string) =>
  z
    .string()
    .regex(/^(off|\d{1,7}\/\d{1,5}s)$/, "a rate limit is `<requests>/<seconds>s` (e.g. 20/10s) or `off`")
    .default(fallback)
    .transform((s) => {
      if (s === "off") return null;
      const [limit, window] = s.split("/") as [string, string];
      return { limit: Number(limit), windowSeconds: Number(window.slice(0, -1)) };
    })
    .refine((r) => r === null || (r.limit >= 1 && r.windowSeconds >= 1), "requests and seconds must be at least 1");
export type RateLimitSpec = z.infer<ReturnType<typeof rateLimitSpec>>;

/** Written by the api (purchase, cancel) and the expirer: one value for both. */
const holds = {
  /**
   * Seconds a finished (purchased, cancelled, expired) hold stays readable; then Redis deletes it. At
   * least the Idempotency-Key window (a replay must never name a hold that is gone); the default is
   * exactly that (shared/domain/policy.ts).
   */
  HOLD_RETENTION_SECONDS: positiveInt
    .min(IDEMPOTENCY_TTL_SECONDS, `HOLD_RETENTION_SECONDS must be at least ${IDEMPOTENCY_TTL_SECONDS} (IDEMPOTENCY_TTL_SECONDS: an Idempotency-Key replay names the hold)`)
    .max(365 * 24 * 3600)
    .default(IDEMPOTENCY_TTL_SECONDS),
};

export const apiSchema = z.object({
  ...common,
  ...postgres,
  ...webhookSecurity,
  ...elasticsearch,
  ...holds,
  // The topic the event contract (/asyncapi.json) describes; the api itself never talks to Kafka.
  KAFKA_BROKERS: kafka.KAFKA_BROKERS,
  KAFKA_TOPIC: kafka.KAFKA_TOPIC,
  KAFKA_DLQ_TOPIC: kafka.KAFKA_DLQ_TOPIC,
  KAFKA_PARTITIONS: kafka.KAFKA_PARTITIONS,
  PORT: port.default(3000),
  /** /metrics (and /healthz, /readyz) for operators, off the public port: metrics reveal sales velocity. */
  ...adminPort(SERVICES.api.adminPort),
  ADMIN_TOKEN: z.string().min(16, "ADMIN_TOKEN must be at least 16 characters"),
  JWT_SECRET: z.string().min(32, "JWT_SECRET must be at least 32 characters (HS256 key)"),
  /** When set, user tokens must carry this `iss`. */
  JWT_ISSUER: z.string().min(1).optional(),
  /** When set, user tokens must carry this `aud`. */
  JWT_AUDIENCE: z.string().min(1).optional(),
  /** Tokens whose lifetime (exp - iat, or exp - now without iat) is longer are refused. */
  JWT_MAX_LIFETIME_SECONDS: positiveInt.max(30 * 24 * 3600).default(DEFAULT_JWT_MAX_LIFETIME_SECONDS),
  /** A shard whose outbox holds more entries answers allocations and stock creation with 503 outbox_full. */
  OUTBOX_MAX_LENGTH: positiveInt.default(DEFAULT_OUTBOX_MAX_LENGTH),
  /**
   * What a write has survived before it is answered (shared/redis/durability.ts, docs/design.md §3):
   * fast = Redis' reply (AOF fsync within a second); fsync = in the master's AOF on disk (WAITAOF 1 0 on
   * Redis 7.2+, else the server must run appendfsync always); replica = on a replica (WAIT 1).
   */
  REDIS_DURABILITY: z.enum(DURABILITY_PROFILES).default("fast"),
  /** Longest one WAIT / WAITAOF blocks; past it the writes are answered anyway, counted and alerted on. */
  REDIS_DURABILITY_TIMEOUT_MS: positiveInt.max(10_000).default(500),
  /** Largest request body the api accepts, in bytes. */
  MAX_BODY_BYTES: positiveInt.default(16 * 1024),
  /**
   * Request headers (names + values) above this get a 431 problem+json from the app. It must stay
   * below the HTTP server's own limit, where Bun answers a bare 431 before the app runs: 16 KiB by
   * default, 64 KiB for the api as started by `bun run api` and the built binary (--max-http-header-size).
   */
  MAX_HEADER_BYTES: positiveInt.min(1024).max(60 * 1024).default(8 * 1024),
  /**
   * docs/design.md §12: how long an api instance answers `sold_out` from memory without hearing from
   * Redis. Releases normally arrive by pub/sub within milliseconds; this bounds the staleness when a
   * message is lost, and costs Redis ~1000/SOLD_OUT_CACHE_MS scripts per second per sold-out stock
   * per instance. 250 ms, measured: at 100 ms a sold-out stampede of ~2,000 req/s on this 2-core box
   * sent 1.1% of its requests to Redis (the goal is < 1%); at 250 ms 0.4%. 0 turns the cache off
   * (not_started / ended included).
   */
  SOLD_OUT_CACHE_MS: z.coerce.number().int().min(0).max(10_000).default(250),
  /** api processes sharing PORT (SO_REUSEPORT); `scripts/up.sh` starts one per core. */
  API_WORKERS: positiveInt.max(64).default(1),
  /**
   * Request-rate limits (docs/design.md §12), each a token bucket per api process: per client IP on
   * every /api request, checked before authentication (so bad tokens cost no verify); per user on the
   * three write routes. With N processes a client whose requests spread over them gets up to N times
   * the rate (one keep-alive connection stays on one process). See README "Request-rate limits".
   */
  RATE_LIMIT_IP: rateLimitSpec("2000/1s"),
  RATE_LIMIT_ALLOCATE: rateLimitSpec("20/10s"),
  RATE_LIMIT_PURCHASE: rateLimitSpec("20/10s"),
  RATE_LIMIT_CANCEL: rateLimitSpec("20/10s"),
  /** Waiting-room polls per user (GET /api/stocks/:id/queue/me): read only, so 10/s sustained, bursts of 100. */
  RATE_LIMIT_QUEUE_POLL: rateLimitSpec("100/10s"),
  /**
   * Proxies whose X-Forwarded-For is believed (comma-separated IPs or IPv4 CIDRs, e.g.
   * `127.0.0.1,10.0.0.0/8`). The client IP is the right-most X-Forwarded-For entry that is not one
   * of them; from any other peer the header is ignored. Empty: the socket's peer address.
   */
  TRUSTED_PROXIES: z
    .string()
    .default("")
    .transform((s) => s.split(",").map((p) => p.trim()).filter(Boolean)),
  /**
   * Server-sent-event streams open at once, per process and per side (the dashboard on the admin
   * port; any stream on the public port): one more is refused with 503 `too_many_streams` and
   * Retry-After. Each stream costs a snapshot serialization per second and a socket.
   */
  SSE_MAX_CLIENTS: positiveInt.max(100_000).default(DEFAULT_SSE_MAX_CLIENTS),
  /** The workers' /metrics the dashboard scrapes (comma-separated); default: the ports `bun run up` gives them. */
  WORKER_METRICS_URLS: z
    .string()
    .default(WORKER_NAMES.map((n) => `http://127.0.0.1:${SERVICES[n].adminPort}/metrics`).join(","))
    .transform((s) => s.split(",").map((u) => u.trim()).filter(Boolean))
    .pipe(z.array(z.string().url("WORKER_METRICS_URLS must be comma-separated http(s) URLs"))),
});

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
   * Tests only: the relay freezes itself (SIGSTOP to its own pid) once, just before that claim step,
   * so a test can pass the shard's lease to another relay inside the window and then SIGCONT it
   * (test/relay-claim-fencing.test.ts). `acquire-claim`: taking over what a shard's previous owner
   * left pending; `pending-claim`: re-reading (and, with replicas, re-claiming) its own pending entries.
   */
  RELAY_TEST_FREEZE_BEFORE: z.enum(["acquire-claim", "pending-claim"]).optional(),
});

const projector = {
  /** Consumer group; defaults to the projector's name. Tests and side-by-side deployments override it. */
  PROJECTOR_GROUP_ID: z.string().min(1).optional(),
  /** Partition batches in flight at once; a projector merges them into one transaction / bulk. */
  PROJECTOR_CONCURRENCY: positiveInt.max(64).default(16),
  /** Group members per process, each with its own fetch loop: one fetches while another's batch is in the store. */
  PROJECTOR_CONSUMERS: positiveInt.max(8).default(2),
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

/** "5s", "250ms", "1h", "2m" or a bare number of milliseconds. */
const duration = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?(ms|s|m|h)?$/, "a duration like 250ms, 5s, 2m or 1h")
  .transform((s) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s)!;
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[(m[2] ?? "ms") as "ms" | "s" | "m" | "h"];
    return Math.round(Number(m[1]) * unit);
  });

/** Standard Webhooks secret: "whsec_" + base64 of 24-64 random bytes. */
export const WEBHOOK_SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]{32,88}={0,2}$/;

export const notifierSchema = z
  .object({
    ...common,
    ...kafka,
    ...postgres,
    ...adminPort(SERVICES.notifier.adminPort),
    ...webhookSecurity,
    /** Consumer group on the stock-events topic (its own: it sees every event, whatever the projectors do). */
    NOTIFIER_GROUP_ID: z.string().min(1).default("notifier"),
    /** The endpoint from config (optional; more are added with POST /api/webhooks). http(s) only. */
    WEBHOOK_URL: z
      .string()
      .url()
      .refine((u) => /^https?:$/.test(URL.parse(u)?.protocol ?? ""), "WEBHOOK_URL must be http:// or https://")
      .optional(),
    WEBHOOK_SECRET: z.string().regex(WEBHOOK_SECRET_PATTERN, "WEBHOOK_SECRET must be whsec_ + base64 of 24-64 bytes").optional(),
    /** Comma-separated event types for the configured endpoint; unset = all. */
    WEBHOOK_EVENTS: z
      .string()
      .transform((s) => s.split(",").map((t) => t.trim()).filter(Boolean))
      .pipe(z.array(z.enum(EVENT_TYPES)).min(1))
      .optional(),
    /** Retry schedule: attempt n waits base·2^(n-1), capped, ±20 % jitter; dead after the last attempt. */
    WEBHOOK_RETRY_BASE: duration.default(5_000),
    WEBHOOK_RETRY_MAX: duration.default(3_600_000),
    /** Attempts in all (the first one included). 12 with 5 s → 1 h spans about 2.4 hours. */
    WEBHOOK_MAX_ATTEMPTS: positiveInt.max(100).default(12),
    /** Until the response headers (covers the connect; Bun's fetch has no separate connect phase). */
    WEBHOOK_CONNECT_TIMEOUT: duration.default(5_000),
    /** Whole attempt: connect, send, headers, the response excerpt. */
    WEBHOOK_TIMEOUT: duration.default(10_000),
    /** Requests in flight per endpoint (never two of the same stock at once). */
    WEBHOOK_CONCURRENCY: positiveInt.max(256).default(64),
    /** How often a delivery loop checks whether waiting retries are due. */
    WEBHOOK_POLL_INTERVAL: duration.default(250),
    /**
     * The delivery lease's window (services/notifier/lease.ts): 4 × p99 of the measured renewal time,
     * never below MIN nor above MAX. A paused holder is replaced after about the window.
     */
    NOTIFIER_LEASE_MIN: duration.default(5_000),
    NOTIFIER_LEASE_MAX: duration.default(60_000),
  })
  .refine((c) => (c.WEBHOOK_URL === undefined) === (c.WEBHOOK_SECRET === undefined), {
    message: "set WEBHOOK_URL and WEBHOOK_SECRET together",
    path: ["WEBHOOK_SECRET"],
  })
  .refine((c) => c.WEBHOOK_RETRY_MAX >= c.WEBHOOK_RETRY_BASE, { message: "WEBHOOK_RETRY_MAX must be >= WEBHOOK_RETRY_BASE", path: ["WEBHOOK_RETRY_MAX"] })
  .refine((c) => c.WEBHOOK_TIMEOUT >= c.WEBHOOK_CONNECT_TIMEOUT, { message: "WEBHOOK_TIMEOUT must be >= WEBHOOK_CONNECT_TIMEOUT", path: ["WEBHOOK_TIMEOUT"] })
  .refine((c) => c.NOTIFIER_LEASE_MIN >= 300 && c.NOTIFIER_LEASE_MAX >= c.NOTIFIER_LEASE_MIN, {
    message: "NOTIFIER_LEASE_MIN must be >= 300ms and NOTIFIER_LEASE_MAX >= NOTIFIER_LEASE_MIN",
    path: ["NOTIFIER_LEASE_MAX"],
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

/** The Kafka and projector variables, as parsed: what every projector binary shares (runProjector). */
export type KafkaEnv = z.infer<z.ZodObject<typeof kafka>>;
export type ProjectorEnv = z.infer<z.ZodObject<typeof projector>>;
export type RelayConfig = z.infer<typeof relaySchema>;

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

/** REDIS_URL / REDIS_CLUSTER_NODES from `env` (validated; throws ConfigError), for createRedis. */
export function redisTargetFromEnv(env: Record<string, string | undefined> = process.env): z.infer<typeof redisTargetSchema> {
  return parseConfig(redisTargetSchema, env);
}

/** For main.ts: parse or print the problems and exit 1 (fail fast, before connecting anywhere). */
/** For a command-line tool's entry point: a bad variable is a usage error (its message, exit 2, no stack trace). */
export function usageOnConfigError(err: unknown): number {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message);
  return 2;
}

export function loadConfigOrExit<S extends z.ZodType>(schema: S, service: string): z.infer<S> {
  try {
    return parseConfig(schema);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(JSON.stringify({ level: "fatal", service, msg: err.message, problems: err.problems }));
    process.exit(1);
  }
}
