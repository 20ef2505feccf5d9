/**
 * The api's first middleware, one function for what every request needs before routing
 * (docs/design.md §12): its request id, its trace context, the header size limit, and the access
 * bookkeeping of request-observer.ts. They were four middlewares; each layer of Hono's compose is an
 * async frame and a dispatch per request, and on a refusal from memory those frames were a visible
 * share of the api's CPU (profile in README "The front door"). The order and every answer are those
 * of the four: request id, trace, 431 before anything reads the headers, then the observer (so a 431
 * is answered with both ids and is not counted in the access metrics, as before).
 */
import type { MiddlewareHandler } from "hono";
import type { Logger } from "../../shared/logger.ts";
import { continueTrace, TRACEPARENT } from "../../shared/trace.ts";
import type { AppEnv } from "./env.ts";
import type { ApiMetrics } from "./metrics.ts";
import { ApiProblem, problemResponse } from "./problem.ts";
import { requestObserver } from "./request-observer.ts";
import { inStreamSlot, wantsStream, type StreamSlots } from "./sse-limit.ts";

const REQUEST_ID_HEADER = "X-Request-Id";
const REQUEST_ID_LIMIT = 128;
/** What hono/request-id accepts from a client; anything else gets an id of ours. */
const FOREIGN_ID = /[^\w\-=]/;

export interface FrontOptions {
  logger: Logger;
  metrics: ApiMetrics;
  /** Request headers over this many bytes (names + values) are refused with 431. */
  maxHeaderBytes: number;
  /** SSE_MAX_CLIENTS on this port: a request that asks for a stream runs in a slot (sse-limit.ts). */
  streams?: StreamSlots;
}

function headerBytes(headers: Headers): number {
  let bytes = 0;
  for (const [name, value] of headers) bytes += name.length + value.length;
  return bytes;
}

export function front(options: FrontOptions): MiddlewareHandler<AppEnv> {
  const { maxHeaderBytes, streams } = options;
  const observe = requestObserver(options.logger, options.metrics);
  return async (c, next) => {
    let id = c.req.header(REQUEST_ID_HEADER);
    if (!id || id.length > REQUEST_ID_LIMIT || FOREIGN_ID.test(id)) id = crypto.randomUUID();
    c.set("requestId", id);
    c.header(REQUEST_ID_HEADER, id);
    const trace = continueTrace(c.req.header(TRACEPARENT));
    c.set("trace", trace);
    if (headerBytes(c.req.raw.headers) > maxHeaderBytes) {
      // Answered here rather than thrown: a throw would reach Hono's error handler only after this frame.
      const res = problemResponse(c, new ApiProblem(431, "headers_too_large", `request headers over ${maxHeaderBytes} bytes`));
      res.headers.set(TRACEPARENT, trace.traceparent);
      return res;
    }
    // Errors further in are answered by Hono's error handler at their own layer, so this returns.
    // A request for an event stream (Accept: text/event-stream) runs in one of SSE_MAX_CLIENTS slots.
    const refused = streams !== undefined && wantsStream(c) ? await inStreamSlot(c, streams, () => observe(c, next)) : await observe(c, next);
    if (refused) {
      refused.headers.set(TRACEPARENT, trace.traceparent);
      return refused;
    }
    c.res.headers.set(TRACEPARENT, trace.traceparent);
  };
}
