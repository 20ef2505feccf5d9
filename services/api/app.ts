/**
 * The api as a Hono app, built from its dependencies so tests run it in-process (`app.request`)
 * and main.ts only wires real clients. Write side from Redis; read side routes are mounted
 * when their stores are configured.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { isRedisUnavailable, type RedisClient } from "../../shared/redis/client.ts";
import type { Registry } from "prom-client";
import { DomainError } from "../../shared/domain/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { DEFAULT_JWT_MAX_LIFETIME_SECONDS, DEFAULT_SSE_MAX_CLIENTS } from "../../shared/domain/policy.ts";
import type { StockCommands } from "../../shared/redis/commands.ts";
import { authenticate } from "./auth.ts";
import { contractRoutes } from "./contract-routes.ts";
import type { ContractOptions } from "../../shared/kafka/contract.ts";
import { docsRoutes } from "./docs.ts";
import type { AppEnv } from "./env.ts";
import { createApiMetrics } from "./metrics.ts";
import { allowedMethods } from "./method-not-allowed.ts";
import { ApiProblem, problemFromDomain, problemResponse } from "./problem.ts";
import { ipRateLimit, userRateLimit, type RateLimits } from "./rate-limit.ts";
import { front } from "./front.ts";
import { StreamSlots } from "./sse-limit.ts";
import { createRouter } from "./router.ts";
import { allocationRoutes } from "./routes/allocations.ts";
import { stockRoutes } from "./routes/stocks.ts";
import { allocateRoutes } from "./allocate/route.ts";
import { createAllocator } from "./allocate/allocator.ts";
import type { RefusalCache } from "./allocate/sold-out-cache.ts";
import { queueRoutes } from "./routes/queue.ts";
import { createRoomCommands } from "../../shared/redis/room.ts";
import { registerRoomMetrics } from "./room-metrics.ts";

export interface AppDeps {
  commands: StockCommands;
  /** Refusals from memory for allocate (allocate/sold-out-cache.ts, fed by released-subscriber.ts); none: every allocate goes to Redis. */
  refusals?: RefusalCache;
  redis: RedisClient;
  logger: Logger;
  registry: Registry;
  adminToken: string;
  jwtSecret: string;
  /** JWT_ISSUER / JWT_AUDIENCE: enforced when set. */
  jwtIssuer?: string;
  jwtAudience?: string;
  /** JWT_MAX_LIFETIME_SECONDS; default DEFAULT_JWT_MAX_LIFETIME_SECONDS. */
  jwtMaxLifetimeSeconds?: number;
  maxBodyBytes: number;
  /** Request headers over this many bytes (names + values) are refused with 431; default 8 KiB. */
  maxHeaderBytes?: number;
  /** Read-side routes (order history, search, analytics), mounted under /api before the write side. */
  readRoutes?: OpenAPIHono<AppEnv>;
  /** Webhook endpoint admin routes (/api/webhooks, routes/webhooks.ts), when the api has a writable database. */
  webhookRoutes?: OpenAPIHono<AppEnv>;
  /** Request-rate limits (docs/design.md §12); none when absent (in-process tests). */
  rateLimits?: RateLimits;
  /** The topic the published event contract describes (default: flashsale.stock-events, 12 partitions). */
  eventContract?: ContractOptions;
  /** Returns a reason while the process should not get traffic (e.g. shutting down). */
  notReadyReason?: () => string | null;
  /** SSE_MAX_CLIENTS for the public port's event streams (default 100). */
  sseMaxClients?: number;
  /** The public port's stream slots, when the caller ends them on shutdown (main.ts); else the app's own. */
  streams?: StreamSlots;
}

/** Errors of a client that cannot reach Redis: the request was fine, the store was not. */
// (On a cluster also a slot without a master during a failover: shared/redis/client.ts.)
const isStoreUnavailable = isRedisUnavailable;

function toProblem(err: unknown, c: Context<AppEnv>): ApiProblem {
  if (err instanceof ApiProblem) return err;
  if (err instanceof DomainError) return problemFromDomain(err);
  if (err instanceof HTTPException) {
    // Raised by Hono itself: malformed JSON, body too large.
    if (err.status === 413) return new ApiProblem(413, "payload_too_large", "request body is too large");
    if (err.status < 500) return new ApiProblem(400, "invalid_request", err.message || "malformed request");
  }
  if (isStoreUnavailable(err)) {
    c.get("log").warn({ err }, "store unavailable");
    return new ApiProblem(503, "store_unavailable", "a backing store is unavailable, try again shortly");
  }
  c.get("log").error({ err }, "unhandled error");
  return new ApiProblem(500, "internal_error", "unexpected error; it has been logged with this request id");
}

const DEFAULT_MAX_HEADER_BYTES = 8 * 1024;
const JSON_TYPE = /^application\/([\w.+-]*\+)?json\b/i;

/**
 * The project is private (package.json): no open-source licence is granted. An SPDX LicenseRef names
 * a licence outside the SPDX list (linters and generators want an identifier or a url). OpenAPI 3.1
 * has `identifier`; doc31's info type is the 3.0 one, hence a variable rather than a literal.
 */
const LICENSE: { name: string; identifier: string } = { name: "Proprietary", identifier: "LicenseRef-Proprietary" };

export function createApp(deps: AppDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  const metrics = createApiMetrics(deps.registry);

  // Request id, trace context, 431 for oversized headers (before anything reads them: auth, logging;
  // Bun's own limit sits above ours, see MAX_HEADER_BYTES) and access metrics, in one layer (front.ts).
  const streams = deps.streams ?? new StreamSlots(deps.sseMaxClients ?? DEFAULT_SSE_MAX_CLIENTS);
  app.use(front({ logger: deps.logger, metrics, maxHeaderBytes: deps.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES, streams }));

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    const reason = deps.notReadyReason?.() ?? null;
    if (reason) return c.json({ status: "not_ready", reason }, 503);
    try {
      await deps.redis.ping();
      return c.json({ status: "ready" });
    } catch {
      return c.json({ status: "not_ready", reason: "redis unreachable" }, 503);
    }
  });
  // No /metrics here: it is served on ADMIN_PORT by main.ts (shared/admin-server.ts), off the public port.

  // Before anything else under /api: a client over its rate costs one map look-up, not a JWT verify.
  if (deps.rateLimits?.ip) app.use("/api/*", ipRateLimit(deps.rateLimits.ip, deps.rateLimits.trustedProxies));

  const tooLarge = () => new ApiProblem(413, "payload_too_large", `request body over ${deps.maxBodyBytes} bytes`);
  const streamingLimit = bodyLimit({
    maxSize: deps.maxBodyBytes,
    onError: () => {
      throw tooLarge();
    },
  });
  // Body size, then media type (one layer: each layer of Hono's compose costs a frame per request).
  app.use("/api/*", async (c, next) => {
    // With a Content-Length the check is one comparison; only chunked bodies need bodyLimit,
    // which wraps the body stream (measured ~10 µs per request). Bun enforces the length it was told.
    const length = c.req.header("content-length");
    if (length !== undefined && Number(length) > deps.maxBodyBytes) throw tooLarge();
    const hasBody = length !== undefined && length !== "0";
    const type = c.req.header("content-type");
    if ((hasBody || type) && c.req.method !== "GET" && !JSON_TYPE.test(type ?? "")) {
      throw new ApiProblem(415, "unsupported_media_type", "send the body as application/json");
    }
    if (length === undefined) return streamingLimit(c, next);
    await next();
  });
  const auth = authenticate({
    adminToken: deps.adminToken,
    jwtSecret: deps.jwtSecret,
    issuer: deps.jwtIssuer,
    audience: deps.jwtAudience,
    maxLifetimeSeconds: deps.jwtMaxLifetimeSeconds ?? DEFAULT_JWT_MAX_LIFETIME_SECONDS,
  });
  app.use("/api/*", auth);
  if (deps.rateLimits) {
    // Per user, after authentication and before validation: a user over the rate is refused cheaply.
    // (A limit that is off mounts nothing: even a pass-through layer costs a frame per request.)
    if (deps.rateLimits.allocate) app.use("/api/stocks/:id/allocate", userRateLimit("allocate", deps.rateLimits.allocate));
    if (deps.rateLimits.purchase) app.use("/api/allocations/:id/purchase", userRateLimit("purchase", deps.rateLimits.purchase));
    if (deps.rateLimits.cancel) app.use("/api/allocations/:id/cancel", userRateLimit("cancel", deps.rateLimits.cancel));
    // Waiting-room polls have their own budget, sized for >= 5 polls/s per buyer (they only read).
    if (deps.rateLimits.queuePoll) app.use("/api/stocks/:id/queue/me", userRateLimit("queue_poll", deps.rateLimits.queuePoll));
  }

  // Read routes first: /api/stocks/search must win over /api/stocks/{id}.
  if (deps.readRoutes) app.route("/api", deps.readRoutes);
  if (deps.webhookRoutes) app.route("/api", deps.webhookRoutes);
  app.route("/api", stockRoutes(deps.commands));
  app.route("/api", allocateRoutes(createAllocator(deps.commands, deps.redis, deps.refusals), metrics));
  const rooms = createRoomCommands(deps.redis, deps.commands.keys, deps.commands.durability);
  registerRoomMetrics(deps.registry, rooms, deps.commands.keys);
  app.route("/api", queueRoutes(rooms, metrics));
  app.route("/api", allocationRoutes(deps.commands));

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "ADMIN_TOKEN for admin routes; a JWT (HS256, sub = user id) for user routes",
  });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "flash-sale api",
      version: "1",
      description: "Allocation of scarce stock under a stampede. Errors are RFC 9457 problem+json.",
      license: LICENSE,
    },
    // Relative: the document describes the server that serves it, wherever it runs (generators resolve
    // it against the document's own URL). `bun run up` serves it on http://127.0.0.1:3000.
    servers: [{ url: "/", description: "the api that serves this document" }],
  });
  app.route("/", docsRoutes("/openapi.json"));
  app.route("/", contractRoutes(deps.eventContract ?? { topic: "flashsale.stock-events", dlqTopic: "flashsale.stock-events.dlq", partitions: 12 }));

  const allowed = allowedMethods(app);
  app.notFound((c) => {
    const allow = allowed(c.req.path);
    if (allow.length === 0) return problemResponse(c, new ApiProblem(404, "not_found", `no route for ${c.req.method} ${c.req.path}`));
    c.header("Allow", allow.join(", "));
    return problemResponse(c, new ApiProblem(405, "method_not_allowed", `${c.req.method} is not served on ${c.req.path}; allowed: ${allow.join(", ")}`));
  });
  app.onError((err, c) => problemResponse(c, toProblem(err, c)));
  return app;
}
