/** Every router of the api is made here, so schema failures always become a 400 problem+json. */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./env.ts";
import { ApiProblem } from "./problem.ts";

const MAX_REPORTED_ISSUES = 10;

export function createRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (result.success) return;
      const errors = result.error.issues.slice(0, MAX_REPORTED_ISSUES).map((issue) => ({
        in: result.target,
        path: issue.path.join("."),
        message: issue.message,
      }));
      const first = errors[0];
      const detail = first ? `${first.in}${first.path ? `.${first.path}` : ""}: ${first.message}` : "invalid request";
      throw new ApiProblem(400, "invalid_request", detail, { errors });
    },
  });
}
