/** Stock endpoints on the write side: create (admin), strong read, allocate (user). */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { createRouter } from "../router.ts";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import { adminOnly, requireAdmin, requireUser, userOnly } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import { ApiProblem } from "../problem.ts";
import {
  admissionHeader,
  allocateBody,
  allocationView,
  createStockBody,
  edgeProblems,
  idempotencyHeader,
  jsonContent,
  outboxFull,
  userRateLimited,
  parseIdempotencyKey,
  problems,
  stockIdParam,
  stockView,
} from "../schemas.ts";
import type { ApiMetrics } from "../metrics.ts";
import type { MiddlewareHandler } from "hono";
import { allocateFastPath, allocateFor } from "./allocate-fast-path.ts";

const createStock = createRoute({
  method: "post",
  path: "/stocks",
  operationId: "createStock",
  tags: ["stocks"],
  summary: "Create a sale item (admin); emits StockCreated",
  security: [{ bearer: [] }],
  middleware: [adminOnly] as const,
  request: { body: { required: true, content: { "application/json": { schema: createStockBody } } } },
  responses: {
    201: jsonContent(stockView, "created"),
    ...edgeProblems("post"),
    ...problems(400, [401, "`unauthorized`: no admin token (checked before the body)"], [403, "`forbidden`: not the admin token"], [409, "`stock_exists`; `stock_id_taken`: the id named a stock that has expired (ids are never reused)"], outboxFull),
  },
});

const getStock = createRoute({
  method: "get",
  path: "/stocks/{id}",
  operationId: "getStock",
  // Public: anyone may read it, no token (an empty list overrides nothing, it states "none").
  security: [],
  tags: ["stocks"],
  summary: "Strong read of a stock's counters and status, from Redis",
  request: { params: stockIdParam },
  responses: { 200: jsonContent(stockView, "the stock"), ...edgeProblems("get"), ...problems(400, [404, "`not_found`: no such stock"]) },
});

const allocateRoute = (fastPath: MiddlewareHandler<AppEnv>) => createRoute({
  method: "post",
  path: "/stocks/{id}/allocate",
  operationId: "allocateStock",
  tags: ["allocations"],
  summary: "Hold units for the calling user; emits StockAllocated",
  description: "Answers 201 with the hold. A repeated Idempotency-Key answers the first response again (header Idempotent-Replayed: true); the same key with a different body is 422.",
  security: [{ bearer: [] }],
  // The fast path answers plainly valid requests before the validators (allocate-fast-path.ts).
  middleware: [userOnly, fastPath] as const,
  request: {
    params: stockIdParam,
    headers: idempotencyHeader.merge(admissionHeader),
    body: { required: false, content: { "application/json": { schema: allocateBody } } },
  },
  responses: {
    201: {
      ...jsonContent(allocationView, "held (or, with a repeated Idempotency-Key, the first answer again)"),
      headers: { "Idempotent-Replayed": { description: "`true` when this is the remembered answer of an earlier request", schema: { type: "string", enum: ["true"] } } },
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

export function stockRoutes(commands: StockCommands, metrics: ApiMetrics): OpenAPIHono<AppEnv> {
  const app = createRouter();

  app.openapi(createStock, async (c) => {
    requireAdmin(c);
    const body = c.req.valid("json");
    const stock = await commands.createStock({
      ...body,
      startsAt: body.startsAt ? Date.parse(body.startsAt) : undefined,
      endsAt: body.endsAt ? Date.parse(body.endsAt) : undefined,
      waitingRoom: body.waitingRoom ? { admissionTtlSeconds: body.waitingRoom.admissionTtlSeconds } : undefined,
      traceparent: c.get("trace").traceparent,
    });
    c.get("log").info({ stockId: stock.id, total: stock.total }, "stock created");
    return c.json(stock, 201);
  });

  app.openapi(getStock, async (c) => {
    const stock = await commands.getStock(c.req.valid("param").id);
    if (!stock) throw new ApiProblem(404, "not_found", "no such stock");
    return c.json(stock, 200);
  });

  app.openapi(allocateRoute(allocateFastPath(commands, metrics)), async (c) => {
    requireUser(c);
    // The body is optional: no body means one unit.
    const quantity = (c.req.header("content-type") ? c.req.valid("json")?.quantity : undefined) ?? 1;
    const allocation = await allocateFor(c, commands, metrics, {
      stockId: c.req.valid("param").id,
      quantity,
      idempotencyKey: parseIdempotencyKey(c.req.valid("header")["idempotency-key"]),
      admissionToken: c.req.valid("header")["admission-token"],
    });
    return c.json(allocation, 201);
  });

  return app;
}
