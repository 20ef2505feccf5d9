/** A user's holds: read, purchase, cancel. */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { createRouter } from "../router.ts";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import { requireOwnerOrAdmin, requireUser, signedIn, userOnly } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import { ApiProblem } from "../problem.ts";
import { allocationIdParam, allocationView, problems } from "../schemas.ts";

const ok = { 200: { description: "the allocation", content: { "application/json": { schema: allocationView } } } };

const getAllocation = createRoute({
  method: "get",
  path: "/allocations/{id}",
  tags: ["allocations"],
  summary: "A hold's status (owner or admin), from Redis",
  security: [{ bearer: [] }],
  middleware: [signedIn] as const,
  request: { params: allocationIdParam },
  responses: { ...ok, ...problems(401, 403, 404) },
});

const changeRoute = (action: "purchase" | "cancel", summary: string) =>
  createRoute({
    method: "post",
    path: `/allocations/{id}/${action}`,
    tags: ["allocations"],
    summary,
    security: [{ bearer: [] }],
    middleware: [userOnly] as const,
    request: { params: allocationIdParam },
    responses: { ...ok, ...problems(401, 403, 404, 409) },
  });

const purchase = changeRoute("purchase", "Turn a live hold into a purchase (owner); emits PurchaseCompleted");
const cancel = changeRoute("cancel", "Give a live hold back (owner); emits StockReleased(cancelled)");

export function allocationRoutes(commands: StockCommands): OpenAPIHono<AppEnv> {
  const app = createRouter();

  app.openapi(getAllocation, async (c) => {
    const allocation = await commands.getAllocation(c.req.valid("param").id);
    if (!allocation) throw new ApiProblem(404, "not_found", "no such allocation");
    requireOwnerOrAdmin(c, allocation.userId);
    return c.json(allocation, 200);
  });

  for (const [route, run] of [
    [purchase, commands.purchase],
    [cancel, commands.cancel],
  ] as const) {
    app.openapi(route, async (c) => {
      const userId = requireUser(c);
      const allocation = await run({ allocationId: c.req.valid("param").id, userId });
      c.get("log").info({ allocationId: allocation.allocationId, stockId: allocation.stockId, status: allocation.status }, "hold changed");
      return c.json(allocation, 200);
    });
  }

  return app;
}
