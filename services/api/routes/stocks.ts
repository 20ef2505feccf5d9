/** Stock endpoints on the write side: create (admin), strong read. Allocate: services/api/allocate/route.ts. */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { createRouter } from "../router.ts";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import { adminOnly, bearer, requireAdmin } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import { ApiProblem } from "../problem.ts";
import { consistencyTokenResponseHeader, setConsistencyToken } from "../consistency/token.ts";
import {
  createStockBody,
  edgeProblems,
  jsonContent,
  outboxFull,
  problems,
  stockIdParam,
  stockView,
} from "../schemas.ts";

const createStock = createRoute({
  method: "post",
  path: "/stocks",
  operationId: "createStock",
  tags: ["stocks"],
  summary: "Create a sale item (admin); emits StockCreated",
  ...bearer(adminOnly),
  request: { body: { required: true, content: { "application/json": { schema: createStockBody } } } },
  responses: {
    201: { ...jsonContent(stockView, "created"), headers: consistencyTokenResponseHeader },
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

export function stockRoutes(commands: StockCommands): OpenAPIHono<AppEnv> {
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
    setConsistencyToken(c, stock.id, stock.version);
    return c.json(stock, 201);
  });

  app.openapi(getStock, async (c) => {
    const stock = await commands.getStock(c.req.valid("param").id);
    if (!stock) throw new ApiProblem(404, "not_found", "no such stock");
    return c.json(stock, 200);
  });

  return app;
}
