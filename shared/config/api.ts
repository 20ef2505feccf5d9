/**
 * The api's section of the typed config (re-exported by shared/config.ts, the entry): the HTTP front
 * door's limits, tokens, durability, the sold-out cache, the rate limits and the dashboard's scrape list.
 */
import { z } from "zod";
import { DEFAULT_JWT_MAX_LIFETIME_SECONDS, DEFAULT_OUTBOX_MAX_LENGTH, DEFAULT_SSE_MAX_CLIENTS } from "../domain/policy.ts";
import { DURABILITY_PROFILES } from "../redis/durability.ts";
import { SERVICES, WORKER_NAMES } from "../services.ts";
import { adminPort, common, elasticsearch, holds, kafka, port, positiveInt, postgres, rateLimitSpec, webhookSecurity } from "./fields.ts";

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
