/** Prometheus metrics every projector exposes on its admin port (/metrics). */
import type { Registry } from "prom-client";
import { BATCH_SIZE_BUCKETS, metricsOn, prom } from "../metrics.ts";

export interface ProjectorMetrics {
  eventsApplied: prom.Counter<string>;
  duplicatesSkipped: prom.Counter<string>;
  batchSize: prom.Histogram<string>;
  batchSeconds: prom.Histogram<string>;
  consumerLag: prom.Gauge<"partition">;
  dlqMessages: prom.Counter<"reason">;
  storeRetries: prom.Counter<string>;
  consumerRestarts: prom.Counter<string>;
  /** Where a projector's time goes, summed over batches: parse, store, commit (bench:projectors' drain breakdown). */
  busySeconds: prom.Counter<"step">;
  freshnessSeconds: FastHistogram;
  stageSeconds: FastHistogram<ProjectorStage>;
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
type ProjectorStage = (typeof PROJECTOR_STAGES)[number];

/** Fine enough around the 50–600 ms goals that a quantile from the buckets means something. */
const STAGE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1, 1.5, 2.5, 5, 10, 30];

export function createProjectorMetrics(registry: Registry): ProjectorMetrics {
  const m = metricsOn(registry);
  return {
    eventsApplied: m.counter("flashsale_projector_events_applied_total", "Events newly applied to the read model"),
    duplicatesSkipped: m.counter("flashsale_projector_duplicates_skipped_total", "Events skipped because they were already applied (redelivery, replay, stale version)"),
    batchSize: m.histogram("flashsale_projector_batch_size", "Messages per Kafka batch", BATCH_SIZE_BUCKETS),
    batchSeconds: m.histogram("flashsale_projector_batch_duration_seconds", "Time from receiving a batch to committing its offsets", [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
    consumerLag: m.gauge("flashsale_projector_consumer_lag", "Messages between the committed offset and the partition's high watermark", ["partition"]),
    dlqMessages: m.counter("flashsale_projector_dlq_messages_total", "Messages sent to the dead-letter topic", ["reason"]),
    storeRetries: m.counter("flashsale_projector_store_retries_total", "Batch attempts that failed because the store was unavailable (retried, not committed)"),
    busySeconds: m.counter(
      "flashsale_projector_busy_seconds_total",
      "Seconds spent per step, summed over batches: parse (decode + validate the messages), store (the store calls), commit (DLQ + offset commit)",
      ["step"],
    ),
    consumerRestarts: m.counter(
      "flashsale_projector_consumer_restarts_total",
      "Kafka consumers restarted in-process after kafkajs crashed and gave up (crash with restart: false)",
    ),
    freshnessSeconds: new FastHistogram({
      name: "flashsale_projector_freshness_seconds",
      help: "End-to-end freshness: commit time minus the event's occurredAt, per applied event",
      registry,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.6, 1, 2.5, 5, 10, 30, 60, 300],
    }),
    stageSeconds: new FastHistogram({
      name: "flashsale_projector_stage_seconds",
      help: "Per applied event, the time spent in each stage from occurredAt to visible (relay, kafka_to_fetch, fetch_to_commit, commit_to_visible)",
      registry,
      buckets: STAGE_BUCKETS,
      labelName: "stage",
      labelValues: PROJECTOR_STAGES,
    }),
  };
}

/**
 * A Prometheus histogram kept by hand, for the metrics observed for every event (up to 200,000 times
 * a second in a drain: freshness, and the stages). prom-client's observe() costs microseconds (it
 * hashes the label set on every call, bound child or not; measured 4.5 s for 400,000 observations on
 * the busy box, against 0.1 s here): the stage metrics alone had added ~20 % to projector-postgres'
 * CPU. Here an observation is an array increment, and events of a batch that share a value
 * (fetch_to_commit, commit_to_visible) are one call with a count. It registers as a custom metric:
 * the registry needs only name, help, type and get() (prom-client's MetricObject shape).
 */
class FastHistogram<L extends string = ""> {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly name: string;
  readonly help: string;
  private readonly buckets: readonly number[];
  private readonly labelName: string | null;
  private readonly data = new Map<L, { buckets: Float64Array; sum: number; count: number }>();

  constructor(options: {
    name: string;
    help: string;
    registry: Registry;
    buckets: readonly number[];
    /** One series per value of labelValues, labelled labelName; without it, one series (label ""). */
    labelName?: string;
    labelValues?: readonly L[];
  }) {
    this.name = options.name;
    this.help = options.help;
    this.buckets = options.buckets;
    this.labelName = options.labelName ?? null;
    for (const v of options.labelValues ?? ["" as L]) this.data.set(v, { buckets: new Float64Array(this.buckets.length), sum: 0, count: 0 });
    options.registry.registerMetric(this as unknown as prom.Metric);
  }

  observe(label: L, seconds: number, times = 1): void {
    const d = this.data.get(label)!;
    const bounds = this.buckets;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    if (i < bounds.length) d.buckets[i]! += times;
    d.sum += seconds * times;
    d.count += times;
  }

  reset(): void {
    for (const d of this.data.values()) {
      d.buckets.fill(0);
      d.sum = 0;
      d.count = 0;
    }
  }

  /** Cumulative buckets, +Inf, _sum and _count per series. */
  async get() {
    const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = [];
    for (const [label, d] of this.data) {
      const own: Record<string, string> = this.labelName ? { [this.labelName]: label } : {};
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += d.buckets[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...own }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: "+Inf", ...own }, value: d.count });
      values.push({ metricName: `${this.name}_sum`, labels: own, value: d.sum });
      values.push({ metricName: `${this.name}_count`, labels: own, value: d.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
