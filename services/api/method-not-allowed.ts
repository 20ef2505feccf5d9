/**
 * 405 instead of 404 for a method the api does not serve on a path it does serve (RFC 9110
 * §15.5.6, with Allow). The methods come from the OpenAPI routes, so the answer and the document
 * cannot disagree; plain routes (/healthz, /docs, …) keep the 404.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./env.ts";

/** For app.notFound: the Allow list of `path` (empty: no route has it). Read once, after every route is mounted. */
export function allowedMethods(app: OpenAPIHono<AppEnv>): (path: string) => string[] {
  let routes: Array<{ method: string; path: RegExp }> | undefined;
  return (path) => {
    routes ??= app.openAPIRegistry.definitions.flatMap((def) =>
      def.type === "route"
        ? [{ method: def.route.method.toUpperCase(), path: new RegExp(`^${def.route.path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{[^}]+\}/g, "[^/]+")}$`) }]
        : [],
    );
    const methods = new Set(routes.filter((r) => r.path.test(path)).map((r) => r.method));
    // Bun/Hono answer HEAD from the GET route.
    if (methods.has("GET")) methods.add("HEAD");
    return [...methods].sort();
  };
}
