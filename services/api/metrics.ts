/** The api's Prometheus metrics. */
import type { Registry } from "prom-client";
import { prom } from "../../shared/metrics.ts";

export interface ApiMetrics {
  requests: prom.Counter<"method" | "route" | "code">;
  duration: prom.Histogram<"method" | "route">;
  allocations: prom.Counter<"outcome">;
}

export function createApiMetrics(registry: Registry): ApiMetrics {
  return {
    requests: new prom.Counter({
      name: "flashsale_http_requests_total",
      help: "HTTP requests by route and status code (label `code`, Prometheus' convention)",
      labelNames: ["method", "route", "code"],
      registers: [registry],
    }),
    duration: new prom.Histogram({
      name: "flashsale_http_request_duration_seconds",
      help: "HTTP request latency by route",
      labelNames: ["method", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    allocations: new prom.Counter({
      name: "flashsale_allocations_total",
      help: "Allocation attempts by outcome (held, replayed, sold_out, limit_exceeded, …)",
      labelNames: ["outcome"],
      registers: [registry],
    }),
  };
}
