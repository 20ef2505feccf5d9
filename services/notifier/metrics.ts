/**
 * The notifier's own metrics, per endpoint (label `endpoint` = endpoint id; endpoints are few). The
 * Kafka side (consumer lag per partition, batches, DLQ) comes from the shared projector metrics.
 */
import type { Registry } from "prom-client";
import { prom } from "../../shared/metrics.ts";

export interface NotifierMetrics {
  deliveries: prom.Counter<"endpoint">;
  failures: prom.Counter<"endpoint" | "reason">;
  deadLetters: prom.Counter<"endpoint">;
  lagSeconds: prom.Histogram<"endpoint">;
  attemptSeconds: prom.Histogram<"endpoint">;
  backlog: prom.Gauge<"endpoint">;
  oldestPendingSeconds: prom.Gauge<"endpoint">;
  deadLetterBacklog: prom.Gauge<"endpoint">;
  deliveryLeader: prom.Gauge<string>;
  leaseWindowSeconds: prom.Gauge<string>;
}

export function createNotifierMetrics(registry: Registry): NotifierMetrics {
  const registers = [registry];
  return {
    deliveries: new prom.Counter({ name: "flashsale_notifier_deliveries_total", help: "Webhooks delivered (2xx)", labelNames: ["endpoint"], registers }),
    failures: new prom.Counter({
      name: "flashsale_notifier_delivery_failures_total",
      help: "Failed attempts (each is retried or dead-lettered): reason http_3xx|http_4xx|http_5xx|timeout|network|refused (an address webhooks may not reach)",
      labelNames: ["endpoint", "reason"],
      registers,
    }),
    deadLetters: new prom.Counter({ name: "flashsale_notifier_dead_letters_total", help: "Deliveries dead after the last attempt", labelNames: ["endpoint"], registers }),
    lagSeconds: new prom.Histogram({
      name: "flashsale_notifier_delivery_lag_seconds",
      help: "Delivered time minus the event's occurredAt",
      labelNames: ["endpoint"],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14_400],
      registers,
    }),
    attemptSeconds: new prom.Histogram({
      name: "flashsale_notifier_attempt_duration_seconds",
      help: "One HTTP attempt, until the response excerpt is read",
      labelNames: ["endpoint"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    backlog: new prom.Gauge({ name: "flashsale_notifier_backlog", help: "Pending deliveries (due or waiting to retry)", labelNames: ["endpoint"], registers }),
    oldestPendingSeconds: new prom.Gauge({
      name: "flashsale_notifier_oldest_pending_seconds",
      help: "Age of the oldest pending delivery",
      labelNames: ["endpoint"],
      registers,
    }),
    deadLetterBacklog: new prom.Gauge({ name: "flashsale_notifier_dead_letter_backlog", help: "Dead letters waiting to be re-sent", labelNames: ["endpoint"], registers }),
    deliveryLeader: new prom.Gauge({ name: "flashsale_notifier_delivery_leader", help: "1 when this process holds the delivery lease", registers }),
    leaseWindowSeconds: new prom.Gauge({
      name: "flashsale_notifier_lease_window_seconds",
      help: "The delivery lease's window: 4 x p99 of the measured renewal time, within NOTIFIER_LEASE_MIN..NOTIFIER_LEASE_MAX",
      registers,
    }),
  };
}

export function failureReason(status: number | null, failure: "timeout" | "network" | "refused" | null): string {
  if (status === null) return failure ?? "network";
  if (status >= 500) return "http_5xx";
  if (status >= 400) return "http_4xx";
  if (status >= 300) return "http_3xx";
  return "http_other";
}
