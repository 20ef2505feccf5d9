/** Prometheus metrics every projector exposes on its admin port (/metrics). */
import type { Registry } from "prom-client";
import { prom } from "../metrics.ts";

export interface ProjectorMetrics {
  eventsApplied: prom.Counter<string>;
  duplicatesSkipped: prom.Counter<string>;
  batchSize: prom.Histogram<string>;
  batchSeconds: prom.Histogram<string>;
  consumerLag: prom.Gauge<"partition">;
  dlqMessages: prom.Counter<"reason">;
  storeRetries: prom.Counter<string>;
  freshnessSeconds: prom.Histogram<string>;
}

export function createProjectorMetrics(registry: Registry): ProjectorMetrics {
  const registers = [registry];
  return {
    eventsApplied: new prom.Counter({
      name: "projector_events_applied_total",
      help: "Events newly applied to the read model",
      registers,
    }),
    duplicatesSkipped: new prom.Counter({
      name: "projector_duplicates_skipped_total",
      help: "Events skipped because they were already applied (redelivery, replay, stale version)",
      registers,
    }),
    batchSize: new prom.Histogram({
      name: "projector_batch_size",
      help: "Messages per Kafka batch",
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
      registers,
    }),
    batchSeconds: new prom.Histogram({
      name: "projector_batch_duration_seconds",
      help: "Time from receiving a batch to committing its offsets",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    consumerLag: new prom.Gauge({
      name: "projector_consumer_lag",
      help: "Messages between the committed offset and the partition's high watermark",
      labelNames: ["partition"],
      registers,
    }),
    dlqMessages: new prom.Counter({
      name: "projector_dlq_messages_total",
      help: "Messages sent to the dead-letter topic",
      labelNames: ["reason"],
      registers,
    }),
    storeRetries: new prom.Counter({
      name: "projector_store_retries_total",
      help: "Batch attempts that failed because the store was unavailable (retried, not committed)",
      registers,
    }),
    freshnessSeconds: new prom.Histogram({
      name: "projector_freshness_seconds",
      help: "End-to-end freshness: commit time minus the event's occurredAt, per applied event",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
  };
}
