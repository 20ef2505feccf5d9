/**
 * The allocate route's fast path for doomed requests (docs/design.md §12). When the refusal cache
 * holds a fresh answer for the stock, a request that the route would accept anyway is answered
 * here, before Hono's validator chain (which is most of what a refusal from memory costs: measured
 * about a quarter of the api's CPU on that path in-process). "Would accept" is decided by the same
 * zod schemas, applied directly: anything that is not plainly valid (an Idempotency-Key, a body that
 * is not a valid `{ quantity }`, a content type the route does not declare) takes the normal path,
 * so every 400/415/422 and every replay is exactly what the route answers. Runs after `userOnly`,
 * so 401/403 keep their precedence.
 */
import type { MiddlewareHandler } from "hono";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import type { AppEnv } from "../env.ts";
import type { ApiMetrics } from "../metrics.ts";
import { problemFromDomain, problemResponse } from "../problem.ts";
import { allocateBody } from "../schemas.ts";
import { refusalCacheOf } from "../sold-out-cache.ts";

const JSON_TYPE = /^application\/json\s*(;|$)/i;

export function allocateFastPath(commands: StockCommands, metrics: ApiMetrics): MiddlewareHandler<AppEnv> {
  const cache = refusalCacheOf.get(commands);
  if (!cache) return async (_c, next) => next();
  return async (c, next) => {
    // Ids in the cache were validated by the route before, so a raw id found there is a valid one.
    const error = cache.peek(c.req.param("id") ?? "");
    if (error === null || c.req.header("idempotency-key") !== undefined) return next();
    const type = c.req.header("content-type");
    if (type !== undefined) {
      if (!JSON_TYPE.test(type)) return next();
      let body: unknown;
      try {
        body = await c.req.json(); // Hono keeps the parsed body, so the normal path can read it again
      } catch {
        return next();
      }
      if (!allocateBody.safeParse(body).success) return next();
    }
    metrics.allocationCounts.inc(error.code, () => ({ outcome: error.code }));
    cache.count(error.code);
    return problemResponse(c, problemFromDomain(error));
  };
}
