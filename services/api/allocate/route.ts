/**
 * POST /api/stocks/{id}/allocate, the most important path in the product, read straight down:
 *   route.ts (this: the contract and the validated handler)
 *   → fast-path.ts (plainly valid requests answered before the validators; `allocateFor`, the outcome metrics)
 *   → allocator.ts (the refusal cache of sold-out-cache.ts, then the typed command, the answer taught back)
 *   → shared/redis/commands.ts `allocate` (its KEYS/ARGV from `allocateCall`, shared/redis/calls.ts)
 *   → shared/redis/scripts/allocate.lua (stock, hold, admission, outbox XADD, atomically).
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { bearer, requireUser, userOnly } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import type { ApiMetrics } from "../metrics.ts";
import { createRouter } from "../router.ts";
import { admissionHeader, allocateBody, allocationView, edgeProblems, idempotencyHeader, jsonContent, outboxFull, parseIdempotencyKey, problems, stockIdParam, userRateLimited } from "../schemas.ts";
import type { Allocator } from "./allocator.ts";
import { consistencyTokenResponseHeader } from "../consistency/token.ts";
import { allocateFastPath, allocateFor } from "./fast-path.ts";

const allocateRoute = (fastPath: MiddlewareHandler<AppEnv>) => createRoute({
  method: "post",
  path: "/stocks/{id}/allocate",
  operationId: "allocateStock",
  tags: ["allocations"],
  summary: "Hold units for the calling user; emits StockAllocated",
  description: "Answers 201 with the hold. A repeated Idempotency-Key answers the first response again (header Idempotent-Replayed: true); the same key with a different body is 422.",
  // The fast path answers plainly valid requests before the validators (fast-path.ts).
  ...bearer(userOnly, fastPath),
  request: {
    params: stockIdParam,
    headers: idempotencyHeader.merge(admissionHeader),
    body: { required: false, content: { "application/json": { schema: allocateBody } } },
  },
  responses: {
    201: {
      ...jsonContent(allocationView, "held (or, with a repeated Idempotency-Key, the first answer again)"),
      headers: {
        "Idempotent-Replayed": { description: "`true` when this is the remembered answer of an earlier request", schema: { type: "string", enum: ["true"] } },
        ...consistencyTokenResponseHeader,
      },
    },
    ...edgeProblems("post"),
    ...problems(
      400,
      [401, "`unauthorized`: no user token (checked before the body)"],
      [403, "`forbidden`: the admin token (holds belong to users); `not_admitted`: a waiting-room stock without a valid Admission-Token"],
      [404, "`not_found`: no such stock"],
      [409, "`sold_out` (`available`), `limit_exceeded` (`remaining`), `not_started`, `ended`"],
      422,
      userRateLimited("allocate"),
      outboxFull,
    ),
  },
});

export function allocateRoutes(allocator: Allocator, metrics: ApiMetrics): OpenAPIHono<AppEnv> {
  const app = createRouter();

  app.openapi(allocateRoute(allocateFastPath(allocator, metrics)), async (c) => {
    requireUser(c);
    // The body is optional: no body means one unit.
    const quantity = (c.req.header("content-type") ? c.req.valid("json")?.quantity : undefined) ?? 1;
    const allocation = await allocateFor(c, allocator, metrics, {
      stockId: c.req.valid("param").id,
      quantity,
      idempotencyKey: parseIdempotencyKey(c.req.valid("header")["idempotency-key"]),
      admissionToken: c.req.valid("header")["admission-token"],
    });
    return c.json(allocation, 201);
  });

  return app;
}
