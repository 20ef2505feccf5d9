/**
 * The small HTTP server every binary exposes on ADMIN_PORT: liveness, readiness and Prometheus metrics,
 * and on the api the live dashboard. Readiness is whatever the binary says it is (connected to its
 * stores, not shutting down).
 *
 * Who may call what (docs/design.md §8):
 * - /healthz, /readyz and /metrics answer anyone who reaches the port: probes and Prometheus carry no
 *   secret. The port binds ADMIN_HOST, loopback unless an operator opens it.
 * - Everything else needs `Authorization: Bearer <ADMIN_TOKEN>` (401 problem+json otherwise, unknown
 *   paths included, so the port tells a stranger nothing about what it serves). `openPaths` names the
 *   GET pages that hold no data, such as the dashboard's shell with its login form: what the page shows
 *   comes from calls that carry the token.
 * - A binary without ADMIN_TOKEN (the workers) can mount no other route: it serves the three only, and
 *   asking for more without a token is a start-up error, not an open door.
 */
import { Hono, type Context } from "hono";
import type { Registry } from "prom-client";
import { secretMatcher } from "./secret.ts";

export interface AdminServerOptions {
  port: number;
  /** ADMIN_HOST; loopback when not given. */
  hostname?: string;
  registry: Registry;
  /** Returns null when ready, or a short reason why not. */
  notReadyReason: () => string | null | Promise<string | null>;
  /** The bearer token every route but the open ones requires; required when `routes` is given. */
  adminToken?: string;
  /** More operator routes on the same port (the api's dashboard). */
  routes?: Hono;
  /** Paths of `routes` answered to GET without the token: pages that carry no data. */
  openPaths?: readonly string[];
}

const OPEN_PATHS = ["/healthz", "/readyz", "/metrics"];

/** RFC 9457, the same members and type URLs as the api's problems (services/api/problem.ts). */
function adminProblem(c: Context, status: 401 | 404 | 500, code: string, title: string, detail: string): Response {
  const body = { type: `https://flash-sale.dev/problems/${code.replaceAll("_", "-")}`, title, status, detail, code, requestId: null };
  return c.body(JSON.stringify(body), status, { "Content-Type": "application/problem+json" });
}

export function createAdminApp(options: Omit<AdminServerOptions, "port" | "hostname">): Hono {
  if (options.routes && !options.adminToken) throw new Error("admin routes beyond /healthz, /readyz and /metrics need ADMIN_TOKEN");
  const app = new Hono();
  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    const reason = await options.notReadyReason();
    return reason === null ? c.json({ status: "ready" }) : c.json({ status: "not_ready", reason }, 503);
  });
  app.get("/metrics", async (c) => {
    c.header("Content-Type", options.registry.contentType);
    return c.body(await options.registry.metrics());
  });
  if (options.adminToken) {
    const isAdmin = secretMatcher(options.adminToken);
    const open = new Set([...OPEN_PATHS, ...(options.openPaths ?? [])]);
    app.use("*", async (c, next) => {
      if ((c.req.method === "GET" || c.req.method === "HEAD") && open.has(c.req.path)) return next();
      const header = c.req.header("authorization") ?? "";
      const token = header.startsWith("Bearer ") ? header.slice(7).trim() : "";
      if (token && isAdmin(token)) return next();
      c.header("WWW-Authenticate", 'Bearer realm="flash-sale admin"');
      return adminProblem(c, 401, "unauthorized", "Unauthorized", "send Authorization: Bearer <ADMIN_TOKEN>");
    });
  }
  if (options.routes) app.route("/", options.routes);
  app.notFound((c) => adminProblem(c, 404, "not_found", "Not found", `no route for ${c.req.method} ${c.req.path}`));
  app.onError((err, c) => {
    console.error(JSON.stringify({ level: "error", msg: "admin route failed", err: err.message }));
    return adminProblem(c, 500, "internal_error", "Internal error", "unexpected error; it has been logged");
  });
  return app;
}

export function startAdminServer(options: AdminServerOptions): ReturnType<typeof Bun.serve> {
  return Bun.serve({ port: options.port, hostname: options.hostname ?? "127.0.0.1", fetch: createAdminApp(options).fetch });
}
