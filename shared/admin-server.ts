/**
 * The small HTTP server every worker exposes on ADMIN_PORT: liveness, readiness and Prometheus metrics.
 * Readiness is whatever the worker says it is (connected to its stores, not shutting down).
 */
import { Hono } from "hono";
import type { Registry } from "prom-client";

export interface AdminServerOptions {
  port: number;
  hostname?: string;
  registry: Registry;
  /** Returns null when ready, or a short reason why not. */
  notReadyReason: () => string | null | Promise<string | null>;
  /** More operator routes on the same port (the api's dashboard). */
  routes?: Hono;
}

export function createAdminApp(options: Omit<AdminServerOptions, "port" | "hostname">): Hono {
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
  if (options.routes) app.route("/", options.routes);
  return app;
}

export function startAdminServer(options: AdminServerOptions): ReturnType<typeof Bun.serve> {
  return Bun.serve({ port: options.port, hostname: options.hostname ?? "0.0.0.0", fetch: createAdminApp(options).fetch });
}
