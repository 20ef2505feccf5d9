/** Hono context variables shared by every route of the api. */
import type { Logger } from "../../shared/logger.ts";
import type { TraceContext } from "../../shared/trace.ts";

export type Principal = { kind: "admin" } | { kind: "user"; userId: string };

export type AppEnv = {
  Variables: {
    requestId: string;
    /** W3C trace context of this request: the caller's trace continued, or a new one (shared/trace.ts). */
    trace: TraceContext;
    /** Child logger carrying the request id and trace id. */
    log: Logger;
    /** Set by the authenticate middleware when a valid Authorization header was sent. */
    principal: Principal | undefined;
  };
};
