/**
 * W3C Trace Context on the api: a request's `traceparent` is continued (same trace id, our own span
 * id) or a trace is started, and every answer carries ours back in `traceparent`, so a client can
 * find its request in the logs, in the outbox entry, on the Kafka message and in the DLQ.
 */
import type { MiddlewareHandler } from "hono";
import { continueTrace, TRACEPARENT } from "../../shared/trace.ts";
import type { AppEnv } from "./env.ts";

export function traceContext(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const trace = continueTrace(c.req.header(TRACEPARENT));
    c.set("trace", trace);
    await next();
    c.res.headers.set(TRACEPARENT, trace.traceparent);
  };
}
