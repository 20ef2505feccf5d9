/** Metric names the dashboard reads (the workers' and the api's own), in one place for the collector's sources and the Prometheus test. */
export const METRIC = {
  stockUnits: "flashsale_stock_units",
  stockSoldOut: "flashsale_stock_sold_out_timestamp_seconds",
  allocations: "flashsale_allocations_total",
  httpRequests: "flashsale_http_requests_total",
  httpStatusLabel: "code",
  relayShardLag: "flashsale_relay_shard_lag_seconds",
  relayOutboxLength: "flashsale_relay_outbox_length",
  relayOutboxPending: "flashsale_relay_outbox_pending",
  projectorFreshness: "flashsale_projector_freshness_seconds",
  projectorConsumerLag: "flashsale_projector_consumer_lag",
  projectorDlq: "flashsale_projector_dlq_messages_total",
  projectorApplied: "flashsale_projector_events_applied_total",
  webhookDeliveries: "flashsale_notifier_deliveries_total",
  webhookFailures: "flashsale_notifier_delivery_failures_total",
  webhookLag: "flashsale_notifier_delivery_lag_seconds",
  webhookBacklog: "flashsale_notifier_backlog",
  webhookDeadLetters: "flashsale_notifier_dead_letter_backlog",
} as const;

/** How many per-second samples a series keeps (the page's one-minute charts). */
const HISTORY = 60;

/** Appends one per-second sample (rounded to 0.01) and keeps the last HISTORY. */
export function pushSample(series: number[], value: number): void {
  series.push(Math.round(value * 100) / 100);
  if (series.length > HISTORY) series.shift();
}
