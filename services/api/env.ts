/** Hono context variables shared by every route of the api. */
import type { Logger } from "../../shared/logger.ts";

export type Principal = { kind: "admin" } | { kind: "user"; userId: string };

export type AppEnv = {
  Variables: {
    requestId: string;
    /** Child logger carrying the request id. */
    log: Logger;
    /** Set by the authenticate middleware when a valid Authorization header was sent. */
    principal: Principal | undefined;
  };
};
