/** The api's Prometheus metrics. */
import type { LabelValues, Registry } from "prom-client";
import { prom } from "../../shared/metrics.ts";

/**
 * Counter increments kept as plain numbers per label set and added to the prom-client counter when
 * it is read (its `collect`, run by every scrape and every `get()`). A prom-client child's `inc`
 * validates and hashes its labels on every call (bound children only save building the object);
 * here a request costs one Map look-up of a key the caller already has. Bounded: past `maxKeys`
 * label sets (odd methods or statuses from clients), increments go straight to the counter.
 */
class PendingCounts<L extends string> {
  private readonly pending = new Map<string, { labels: LabelValues<L>; n: number }>();
  private counter?: prom.Counter<L>;

  constructor(private readonly maxKeys = 2_000) {}

  attach(counter: prom.Counter<L>): void {
    this.counter = counter;
  }

  inc(key: string, labels: () => LabelValues<L>): void {
    const entry = this.pending.get(key);
    if (entry !== undefined) entry.n++;
    else if (this.pending.size < this.maxKeys) this.pending.set(key, { labels: labels(), n: 1 });
    else this.counter?.inc(labels());
  }

  flush(): void {
    if (!this.counter) return;
    for (const entry of this.pending.values()) {
      if (entry.n === 0) continue;
      this.counter.inc(entry.labels, entry.n);
      entry.n = 0;
    }
  }
}

export interface ApiMetrics {
  requests: prom.Counter<"method" | "route" | "code">;
  /** Increments of `requests`, keyed "METHOD route code" (see PendingCounts). */
  requestCounts: PendingCounts<"method" | "route" | "code">;
  duration: prom.Histogram<"method" | "route">;
  allocations: prom.Counter<"outcome">;
  /** Increments of `allocations`, keyed by outcome. */
  allocationCounts: PendingCounts<"outcome">;
  /** Waiting-room answers that said sold_out (joins refused, polls of waiting tickets). */
  roomSoldOutAnswers: prom.Counter;
}

function pendingCounter<L extends string>(config: { name: string; help: string; labelNames: L[]; registers: Registry[] }): [prom.Counter<L>, PendingCounts<L>] {
  const counts = new PendingCounts<L>();
  const counter = new prom.Counter<L>({ ...config, collect: () => counts.flush() });
  counts.attach(counter);
  return [counter, counts];
}

export function createApiMetrics(registry: Registry): ApiMetrics {
  const [requests, requestCounts] = pendingCounter({
    name: "flashsale_http_requests_total",
    help: "HTTP requests by route and status code (label `code`, Prometheus' convention)",
    labelNames: ["method", "route", "code"],
    registers: [registry],
  });
  const [allocations, allocationCounts] = pendingCounter({
    name: "flashsale_allocations_total",
    help: "Allocation attempts by outcome (held, replayed, sold_out, limit_exceeded, …)",
    labelNames: ["outcome"],
    registers: [registry],
  });
  return {
    requests,
    requestCounts,
    duration: new prom.Histogram({
      name: "flashsale_http_request_duration_seconds",
      help: "HTTP request latency by route",
      labelNames: ["method", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    allocations,
    allocationCounts,
    roomSoldOutAnswers: new prom.Counter({
      name: "flashsale_room_sold_out_answers_total",
      help: "Waiting-room answers that said sold_out (a join refused, or a poll of a ticket that can no longer be served)",
      registers: [registry],
    }),
  };
}
