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
  stageSeconds: prom.Histogram<"stage">;
}

/**
 * One event's time budget, stage by stage (docs/read-side.md "Time budget"). Observed per applied
 * event, so the stages add up to the freshness of the same events:
 *   relay             occurredAt (Redis TIME in the Lua script) → the Kafka message timestamp
 *                     (the broker's append time on a LogAppendTime topic, else the relay's send time)
 *   kafka_to_fetch    message timestamp → the batch handed to the projector (fetch wait, queueing
 *                     behind the previous batch and its offset commit)
 *   fetch_to_commit   batch handed over → the store committed it (transaction COMMIT, bulk ack)
 *   commit_to_visible store commit → readers see it (PostgreSQL: 0, visible at COMMIT;
 *                     Elasticsearch: until the next refresh has completed)
 */
export const PROJECTOR_STAGES = ["relay", "kafka_to_fetch", "fetch_to_commit", "commit_to_visible"] as const;
export type ProjectorStage = (typeof PROJECTOR_STAGES)[number];

/** Fine enough around the 50–600 ms goals that a quantile from the buckets means something. */
const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2.5, 5, 10, 30];

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
      buckets: [0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.6, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    stageSeconds: new prom.Histogram({
      name: "projector_stage_seconds",
      help: "Per applied event, the time spent in each stage from occurredAt to visible (relay, kafka_to_fetch, fetch_to_commit, commit_to_visible)",
      labelNames: ["stage"] as const,
      buckets: STAGE_BUCKETS,
      registers,
    }),
  };
}
