/**
 * The dashboard's own source: allocation outcomes per second from this api process's registry
 * (flashsale_allocations_total and the HTTP status counter), no scrape and no network.
 */
import type { Registry } from "prom-client";
import { sumOf, type Sample } from "../../../shared/prom-text.ts";
import { METRIC, pushSample } from "./metric-names.ts";

const OUTCOMES = ["201", "sold_out", "limit", "429", "5xx"] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The outcome counters as they stand in `samples`. */
function counts(samples: Sample[]): Record<Outcome, number> {
  const status = (pred: (code: number) => boolean) =>
    samples
      .filter((s) => s.name === METRIC.httpRequests && pred(Number(s.labels[METRIC.httpStatusLabel])))
      .reduce((n, s) => n + s.value, 0);
  return {
    "201": sumOf(samples, METRIC.allocations, { outcome: "held" }) + sumOf(samples, METRIC.allocations, { outcome: "replayed" }),
    sold_out: sumOf(samples, METRIC.allocations, { outcome: "sold_out" }),
    limit: sumOf(samples, METRIC.allocations, { outcome: "limit_exceeded" }),
    "429": status((code) => code === 429),
    "5xx": status((code) => code >= 500),
  };
}

export class OutcomeCounters {
  private previous: Sample[] | undefined;
  private readonly history = Object.fromEntries(OUTCOMES.map((o) => [o, [] as number[]])) as Record<Outcome, number[]>;

  constructor(private readonly registry: Registry) {}

  /** Per outcome, the last HISTORY per-second rates, oldest first; `dt` is the seconds since the last call (0 on the first). */
  async collect(dt: number): Promise<Record<Outcome, number[]>> {
    // The two counters only: the whole registry would also run the stock gauges' Redis reads.
    const own: Sample[] = [];
    for (const name of [METRIC.allocations, METRIC.httpRequests]) {
      const metric = this.registry.getSingleMetric(name);
      for (const v of metric ? (await metric.get()).values : []) own.push({ name, labels: v.labels as Record<string, string>, value: v.value });
    }
    const now = counts(own);
    if (this.previous && dt > 0) {
      const before = counts(this.previous);
      for (const o of OUTCOMES) pushSample(this.history[o], Math.max(0, now[o] - before[o]) / dt);
    }
    this.previous = own;
    return Object.fromEntries(OUTCOMES.map((o) => [o, [...this.history[o]]])) as Record<Outcome, number[]>;
  }
}
