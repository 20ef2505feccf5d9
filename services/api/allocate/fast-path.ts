/**
 * The allocate route's fast path (docs/design.md §12). A request the route would plainly accept is
 * answered here, before Hono's validator chain for params, headers and body (measured about a
 * quarter of the api's CPU on a refusal from memory, and ~10 % of a live allocation in-process):
 * from the refusal cache when it holds a fresh answer for the stock, else by the same allocation
 * the route's handler makes (`allocateFor`, shared with it, through allocator.ts). "Would accept" is decided by the
 * same zod schemas, applied directly: anything that is not plainly valid (an Idempotency-Key, a
 * body that is not a valid `{ quantity }`, a content type the route does not declare) takes the
 * normal path, so every 400/415/422 and every replay is exactly what the route answers. Runs after
 * `userOnly`, so 401/403 keep their precedence.
 */
import type { Context, MiddlewareHandler } from "hono";
import type { AllocationView } from "../../../shared/domain/views.ts";
import { requireUser } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import type { ApiMetrics } from "../metrics.ts";
import { problemFromDomain, problemResponse } from "../problem.ts";
import { admissionHeader, allocateBody, stockIdParam } from "../schemas.ts";
import type { Allocator } from "./allocator.ts";
import { setConsistencyToken } from "../consistency/token.ts";

const JSON_TYPE = /^application\/json\s*(;|$)/i;

/** The route's work once its input is known valid: allocate and count the outcome (the caller answers 201). */
export async function allocateFor(
  c: Context<AppEnv>,
  allocator: Allocator,
  metrics: ApiMetrics,
  input: { stockId: string; quantity: number; idempotencyKey: string | undefined; admissionToken: string | undefined },
): Promise<AllocationView> {
  const userId = requireUser(c);
  const { stockId, quantity, idempotencyKey, admissionToken } = input;
  try {
    const { allocation, replayed, version } = await allocator.allocate({ stockId, userId, quantity, idempotencyKey, admissionToken, traceparent: c.get("trace").traceparent });
    const outcome = replayed ? "replayed" : "held";
    metrics.allocationCounts.inc(outcome, () => ({ outcome }));
    if (replayed) c.header("Idempotent-Replayed", "true");
    setConsistencyToken(c, stockId, version);
    c.get("log").debug({ stockId, allocationId: allocation.allocationId, replayed }, "allocated");
    return allocation;
  } catch (err) {
    const outcome = (err as { code?: string }).code ?? "error";
    metrics.allocationCounts.inc(outcome, () => ({ outcome }));
    throw err;
  }
}

export function allocateFastPath(allocator: Allocator, metrics: ApiMetrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.req.header("idempotency-key") !== undefined) return next();
    const admissionToken = c.req.header("admission-token");
    if (admissionToken !== undefined && !admissionHeader.safeParse({ "admission-token": admissionToken }).success) return next();
    const id = c.req.param("id") ?? "";
    // Ids in the cache were validated by the route before, so a raw id found there is a valid one.
    const error = allocator.cachedRefusal(id);
    if (error === null && !stockIdParam.safeParse({ id }).success) return next();
    let quantity = 1; // no body means one unit, as in the route
    const type = c.req.header("content-type");
    if (type !== undefined) {
      if (!JSON_TYPE.test(type)) return next();
      let body: unknown;
      try {
        body = await c.req.json(); // Hono keeps the parsed body, so the normal path can read it again
      } catch {
        return next();
      }
      const parsed = allocateBody.safeParse(body);
      if (!parsed.success) return next();
      quantity = parsed.data.quantity;
    }
    if (error === null) return c.json(await allocateFor(c, allocator, metrics, { stockId: id, quantity, idempotencyKey: undefined, admissionToken }), 201);
    metrics.allocationCounts.inc(error.code, () => ({ outcome: error.code }));
    allocator.countFromMemory(error.code);
    return problemResponse(c, problemFromDomain(error));
  };
}
