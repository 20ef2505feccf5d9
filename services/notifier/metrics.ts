/**
 * The notifier's own metrics, per endpoint (label `endpoint` = endpoint id; endpoints are few). The
 * Kafka side (consumer lag per partition, batches, DLQ) comes from the shared projector metrics.
 */
import type { Registry } from "prom-client";
import { metricsOn, type prom } from "../../shared/metrics.ts";

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
  const m = metricsOn(registry);
  return {
    deliveries: m.counter("flashsale_notifier_deliveries_total", "Webhooks delivered (2xx)", ["endpoint"]),
    failures: m.counter(
      "flashsale_notifier_delivery_failures_total",
      "Failed attempts (each is retried or dead-lettered): reason http_3xx|http_4xx|http_5xx|timeout|network|refused (an address webhooks may not reach)",
      ["endpoint", "reason"],
    ),
    deadLetters: m.counter("flashsale_notifier_dead_letters_total", "Deliveries dead after the last attempt", ["endpoint"]),
    lagSeconds: m.histogram(
      "flashsale_notifier_delivery_lag_seconds",
      "Delivered time minus the event's occurredAt",
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 14_400],
      ["endpoint"],
    ),
    attemptSeconds: m.histogram(
      "flashsale_notifier_attempt_duration_seconds",
      "One HTTP attempt, until the response excerpt is read",
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      ["endpoint"],
    ),
    backlog: m.gauge("flashsale_notifier_backlog", "Pending deliveries (due or waiting to retry)", ["endpoint"]),
    oldestPendingSeconds: m.gauge("flashsale_notifier_oldest_pending_seconds", "Age of the oldest pending delivery", ["endpoint"]),
    deadLetterBacklog: m.gauge("flashsale_notifier_dead_letter_backlog", "Dead letters waiting to be re-sent", ["endpoint"]),
    deliveryLeader: m.gauge("flashsale_notifier_delivery_leader", "1 when this process holds the delivery lease"),
    leaseWindowSeconds: m.gauge(
      "flashsale_notifier_lease_window_seconds",
      "The delivery lease's window: 4 x p99 of the measured renewal time, within NOTIFIER_LEASE_MIN..NOTIFIER_LEASE_MAX",
    ),
  };
}

export function failureReason(status: number | null, failure: "timeout" | "network" | "refused" | null): string {
  if (status === null) return failure ?? "network";
  if (status >= 500) return "http_5xx";
  if (status >= 400) return "http_4xx";
  if (status >= 300) return "http_3xx";
  return "http_other";
}
