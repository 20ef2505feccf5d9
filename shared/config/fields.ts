/**
 * The building blocks of the typed config (shared/config.ts is the entry every binary imports): the
 * variable groups several binaries share (Redis, Kafka, the stores, the admin port, webhook security,
 * the projectors) and the parsers for the shapes the environment writes (ports, flags, durations, rate
 * limits). A binary's own section is assembled from these in shared/config.ts or beside it.
 */
import { z } from "zod";
import { IDEMPOTENCY_TTL_SECONDS } from "../domain/policy.ts";

export const port = z.coerce.number().int().min(1).max(65535);
export const positiveInt = z.coerce.number().int().positive();

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

export const common = {
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

export const kafka = {
  KAFKA_BROKERS: z
    .string()
    .default("127.0.0.1:9092")
    .transform((s) => s.split(",").map((b) => b.trim()).filter(Boolean)),
  KAFKA_TOPIC: z.string().min(1).default("flashsale.stock-events"),
  KAFKA_DLQ_TOPIC: z.string().min(1).optional(),
  KAFKA_PARTITIONS: positiveInt.max(1000).default(12),
};

export const postgres = {
  DATABASE_URL: z.string().url().default("postgres://flashsale:flashsale@127.0.0.1:5432/flashsale"),
};

export const elasticsearch = {
  ELASTICSEARCH_URL: z.string().url().default("http://127.0.0.1:9200"),
  ELASTICSEARCH_INDEX_ALIAS: z.string().min(1).default("stocks"),
};

/**
 * Every binary's operators' listener (shared/admin-server.ts). ADMIN_HOST is the address it binds:
 * loopback by default, so health, metrics and the dashboard are not on the network unless an operator
 * says so (a container sets 0.0.0.0 and publishes the port where it wants it). Whatever the host,
 * only /healthz, /readyz and /metrics answer without `Authorization: Bearer <ADMIN_TOKEN>`.
 */
export const adminPort = (fallback: number) => ({ ADMIN_PORT: port.default(fallback), ADMIN_HOST: z.string().min(1).default("127.0.0.1") });

export const flag = (fallback: "true" | "false") =>
  z
    .enum(["true", "false", "1", "0"])
    .default(fallback)
    .transform((v) => v === "true" || v === "1");

/** A WEBHOOK_SECRETS_KEY: the base64 of 32 random bytes (`openssl rand -base64 32`), an AES-256-GCM key. */
export const secretsKey = z
  .string()
  .trim()
  .refine((k) => /^[A-Za-z0-9+/]{43}=$/.test(k) && Buffer.from(k, "base64").length === 32, "must be the base64 of 32 bytes (openssl rand -base64 32)");

/** What the api and the notifier share about webhooks: where they may go, and how their secrets are kept (docs/webhooks.md). */
export const webhookSecurity = {
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
export const rateLimitSpec = (fallback: string) =>
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
export const holds = {
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

/** "5s", "250ms", "1h", "2m" or a bare number of milliseconds. */
export const duration = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?(ms|s|m|h)?$/, "a duration like 250ms, 5s, 2m or 1h")
  .transform((s) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s)!;
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[(m[2] ?? "ms") as "ms" | "s" | "m" | "h"];
    return Math.round(Number(m[1]) * unit);
  });

export const projector = {
  /** Consumer group; defaults to the projector's name. Tests and side-by-side deployments override it. */
  PROJECTOR_GROUP_ID: z.string().min(1).optional(),
  /** Partition batches in flight at once; a projector merges them into one transaction / bulk. */
  PROJECTOR_CONCURRENCY: positiveInt.max(64).default(16),
  /**
   * Group members per process, each with its own fetch loop and transaction: one fetches while another's batch
   * is in the store. 2 drained ~40 % faster in an A/B; one freshness A/B under heavy load was far worse with 2,
   * though as bad with 1 in a later run (docs/read-side.md "Drain"): until measured quietly the default stays 1.
   */
  PROJECTOR_CONSUMERS: positiveInt.max(8).default(1),
  /** Longest a Kafka fetch waits on the broker when nothing new is there (kafkajs maxWaitTimeInMs). */
  PROJECTOR_FETCH_MAX_WAIT_MS: z.coerce.number().int().min(0).max(10_000).default(250),
  /** Bytes the broker gathers before it answers a fetch (1 = answer as soon as anything is there). */
  PROJECTOR_FETCH_MIN_BYTES: positiveInt.max(16 * 1024 * 1024).default(1),
};
