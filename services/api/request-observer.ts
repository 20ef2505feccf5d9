/**
 * Per-request bookkeeping of the api, made cheap for the allocate path (docs/design.md §12):
 * - the request's child logger is created on first use (most requests never log: access lines are
 *   at debug), so a request that logs nothing costs a small proxy, not a pino child;
 * - request counts are plain numbers per label set, added to the counter at each scrape
 *   (metrics.ts PendingCounts); the latency histogram's children are bound once per label set and
 *   kept; both maps are bounded, so odd methods or statuses from clients cannot grow them without
 *   limit (past the bound, the labelled call is used).
 */
import type { Context, Next } from "hono";
import type { Logger } from "../../shared/logger.ts";
import type { AppEnv } from "./env.ts";
import type { ApiMetrics } from "./metrics.ts";

const MAX_BOUND = 2_000;

const LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace"]);
const noop = () => {};

/**
 * A Logger that becomes `parent.child(bindings)` the first time anything on it is used; a call at a
 * level that is off (the allocate route's debug line) is a no-op that creates nothing.
 */
function lazyChild(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  return new Proxy({} as Logger, {
    get(_target, prop) {
      if (child === undefined && typeof prop === "string" && LEVELS.has(prop) && !parent.isLevelEnabled(prop)) return noop;
      child ??= parent.child(bindings);
      const value = (child as unknown as Record<string | symbol, unknown>)[prop];
      return typeof value === "function" ? value.bind(child) : value;
    },
  });
}

function bound<C>(cache: Map<string, C>, key: string, make: () => C): C | null {
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  if (cache.size >= MAX_BOUND) return null;
  const child = make();
  cache.set(key, child);
  return child;
}

/** The observer as a function of front.ts' one middleware: (context, next) → after the answer. */
export function requestObserver(logger: Logger, metrics: ApiMetrics): (c: Context<AppEnv>, next: Next) => Promise<void> {
  const timers = new Map<string, ReturnType<ApiMetrics["duration"]["labels"]>>();
  return async (c, next) => {
    const started = performance.now();
    c.set("log", lazyChild(logger, { requestId: c.get("requestId"), traceId: c.get("trace")?.traceId }));
    await next();
    const method = c.req.method;
    const route = c.req.routePath;
    const status = c.res.status;
    const seconds = (performance.now() - started) / 1000;
    metrics.requestCounts.inc(`${method} ${route} ${status}`, () => ({ method, route, code: String(status) }));
    const timer = bound(timers, `${method} ${route}`, () => metrics.duration.labels(method, route));
    if (timer) timer.observe(seconds);
    else metrics.duration.observe({ method, route }, seconds);
    // Access lines at debug: under a stampede an info line per request costs real CPU.
    if (status >= 500) c.get("log").error({ method, path: c.req.path, status, ms: Math.round(seconds * 1000) }, "request failed");
    else if (logger.isLevelEnabled("debug")) c.get("log").debug({ method, path: c.req.path, status, ms: Math.round(seconds * 1000) }, "request");
  };
}
