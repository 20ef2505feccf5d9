/** A user's holds: read, purchase, cancel. */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { createRouter } from "../router.ts";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import { bearer, requireOwnerOrAdmin, requireUser, signedIn, userOnly } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import { ApiProblem } from "../problem.ts";
import { consistencyTokenResponseHeader, setConsistencyToken } from "../consistency/token.ts";
import { allocationIdParam, allocationView, edgeProblems, jsonContent, problems, userRateLimited } from "../schemas.ts";

const ok = { 200: jsonContent(allocationView, "the allocation") };
const changed = { 200: { ...jsonContent(allocationView, "the allocation"), headers: consistencyTokenResponseHeader } };
const notFound = [404, "`not_found`: no such allocation"] as const;

const getAllocation = createRoute({
  method: "get",
  path: "/allocations/{id}",
  operationId: "getAllocation",
  tags: ["allocations"],
  summary: "A hold's status (owner or admin), from Redis",
  ...bearer(signedIn),
  request: { params: allocationIdParam },
  responses: {
    ...ok,
    ...edgeProblems("get"),
    ...problems(400, [401, "`unauthorized`: no token"], [403, "`forbidden`: someone else's hold"], notFound),
  },
});

const changeRoute = (action: "purchase" | "cancel", summary: string, conflicts: string) =>
  createRoute({
    method: "post",
    path: `/allocations/{id}/${action}`,
    operationId: action === "purchase" ? "purchaseAllocation" : "cancelAllocation",
    tags: ["allocations"],
    summary,
    ...bearer(userOnly),
    request: { params: allocationIdParam },
    responses: {
      ...changed,
      ...edgeProblems("post"),
      ...problems(
        400,
        [401, "`unauthorized`: no user token"],
        [403, "`forbidden`: the admin token, or someone else's hold"],
        notFound,
        [409, conflicts],
        userRateLimited(action),
      ),
    },
  });

const purchase = changeRoute(
  "purchase",
  "Turn a live hold into a purchase (owner); emits PurchaseCompleted. Purchasing a purchased hold answers it again.",
  "`hold_expired`: past its expiry; `hold_not_active` (`holdStatus`): cancelled",
);
const cancel = changeRoute(
  "cancel",
  "Give a live hold back (owner); emits StockReleased(cancelled). Cancelling a cancelled hold answers it again.",
  "`hold_not_active` (`holdStatus`): purchased or expired",
);

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
      const { allocation, version } = await run({ allocationId: c.req.valid("param").id, userId, traceparent: c.get("trace").traceparent });
      setConsistencyToken(c, allocation.stockId, version);
      c.get("log").info({ allocationId: allocation.allocationId, stockId: allocation.stockId, status: allocation.status }, "hold changed");
      return c.json(allocation, 200);
    });
  }

  return app;
}
