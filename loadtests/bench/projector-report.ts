/**
 * The pure half of `bun run bench:projectors` (projectors.ts): benchmark variants, the per-stage
 * time budget read from the projectors' flashsale_projector_stage_seconds histograms, and the closing summary
 * over all variants and rounds (ranges), so old and new settings are compared on the same noise, and the
 * projectors' own freshness shares.
 */
import { PROJECTOR_STAGES } from "../../shared/projection/metrics.ts";
import { histogramBuckets, quantileBetween, type Sample } from "../../shared/prom-text.ts";
import { fmt, percentile } from "../support.ts";

export interface Variant {
  name: string;
  /** Environment for every service the variant spawns (BENCH_REPO / BENCH_NICE are read by the bench). */
  vars: Record<string, string>;
}

/** "a:K=V,K=V;b:K=V" → variants; none given → one, the current defaults. */
export function parseVariants(text: string | undefined): Variant[] {
  if (!text?.trim()) return [{ name: "current", vars: {} }];
  return text
    .split(";")
    .filter(Boolean)
    .map((part) => {
      const [name, rest = ""] = part.split(/:(.*)/s);
      const vars = Object.fromEntries(
        rest
          .split(",")
          .filter(Boolean)
          .map((kv) => kv.split(/=(.*)/s).slice(0, 2) as [string, string]),
      );
      return { name: name!.trim(), vars };
    });
}

export type StageFigures = Record<string, { p50: number | null; p99: number | null }>;

/** p50/p99 (ms) of each stage of flashsale_projector_stage_seconds between two scrapes (interpolated in the bucket). */
export function stageFigures(before: Sample[], after: Sample[]): StageFigures {
  const out: StageFigures = {};
  for (const stage of PROJECTOR_STAGES) {
    const a = histogramBuckets(before, "flashsale_projector_stage_seconds", { stage });
    const b = histogramBuckets(after, "flashsale_projector_stage_seconds", { stage });
    const q = (x: number) => {
      const v = quantileBetween(x, a, b);
      return v === null ? null : v * 1000;
    };
    out[stage] = { p50: q(0.5), p99: q(0.99) };
  }
  return out;
}

/** The relay's own stage histograms (services/relay/metrics.ts): per event, and per batch. */
export const RELAY_STAGES = {
  xadd_to_read: "flashsale_relay_stage_xadd_to_read_seconds",
  read_to_kafka_ack: "flashsale_relay_stage_read_to_kafka_ack_seconds",
} as const;

/** p50/p99 (ms) of the relay's stage histograms between two scrapes of its /metrics. */
export function relayStageFigures(before: Sample[], after: Sample[]): StageFigures {
  const out: StageFigures = {};
  for (const [stage, metric] of Object.entries(RELAY_STAGES)) {
    const a = histogramBuckets(before, metric);
    const b = histogramBuckets(after, metric);
    const q = (x: number) => {
      const v = quantileBetween(x, a, b);
      return v === null ? null : v * 1000;
    };
    out[stage] = { p50: q(0.5), p99: q(0.99) };
  }
  return out;
}

/** Under 1 ms is "0" (PostgreSQL's commit_to_visible is observed as 0; the first bucket is 1 ms wide). */
const ms = (v: number | null | undefined) => (v === null || v === undefined || Number.isNaN(v) ? "–" : v < 1 ? "0" : `${Math.round(v)}`);
export const formatStages = (f: StageFigures, stages: readonly string[] = PROJECTOR_STAGES) =>
  stages.map((s) => `${s} ${ms(f[s]?.p50)}/${ms(f[s]?.p99)}`).join(", ");

export interface FreshnessResult {
  variant: string;
  kafka: number[];
  pg: number[];
  search: number[];
  stages: { pg: StageFigures; search: StageFigures; relay: StageFigures };
}

export interface DrainResult {
  variant: string;
  service: string;
  rate: number;
  cpu: number;
}


/** One block over all rounds: each variant's drain rates, freshness p50/p99 and stages, as ranges over rounds. */
export function summaryLines(variants: Variant[], drains: DrainResult[], results: FreshnessResult[], rounds: number): string[] {
  const range = (xs: number[]) => {
    const v = xs.filter((x) => Number.isFinite(x));
    if (v.length === 0) return "–";
    const lo = Math.min(...v);
    const hi = Math.max(...v);
    const f = (x: number) => (x > 0 && x < 1 ? "0" : fmt(x));
    return f(lo) === f(hi) ? f(lo) : `${f(lo)}–${f(hi)}`;
  };
  const pct = (xs: number[], p: number) => percentile([...xs].sort((a, b) => a - b), p);
  const lines = [`summary (${rounds} round(s); ranges over rounds):`];
  for (const v of variants) {
    const d = drains.filter((x) => x.variant === v.name);
    for (const service of new Set(d.map((x) => x.service))) {
      const mine = d.filter((x) => x.service === service);
      lines.push(`  ${v.name}: ${service} drain ${range(mine.map((x) => x.rate))} events/s, CPU ${range(mine.map((x) => x.cpu))} s`);
    }
    const r = results.filter((x) => x.variant === v.name);
    if (r.length === 0) continue;
    lines.push(
      `  ${v.name}: freshness p50/p99 ms → Kafka ${range(r.map((x) => pct(x.kafka, 50)))} / ${range(r.map((x) => pct(x.kafka, 99)))}, ` +
        `PostgreSQL ${range(r.map((x) => pct(x.pg, 50)))} / ${range(r.map((x) => pct(x.pg, 99)))}, ` +
        `search ${range(r.map((x) => pct(x.search, 50)))} / ${range(r.map((x) => pct(x.search, 99)))}`,
    );
    const relayParts = Object.keys(RELAY_STAGES).map(
      (stage) => `${stage} ${range(r.map((x) => x.stages.relay[stage]?.p50 ?? NaN))}/${range(r.map((x) => x.stages.relay[stage]?.p99 ?? NaN))}`,
    );
    lines.push(`  ${v.name}: stages relay p50/p99 ms → ${relayParts.join(", ")} (read_to_kafka_ack per batch)`);
    for (const which of ["pg", "search"] as const) {
      const parts = PROJECTOR_STAGES.map(
        (stage) => `${stage} ${range(r.map((x) => x.stages[which][stage]?.p50 ?? NaN))}/${range(r.map((x) => x.stages[which][stage]?.p99 ?? NaN))}`,
      );
      lines.push(`  ${v.name}: stages ${which === "pg" ? "projector-postgres" : "projector-search"} p50/p99 ms → ${parts.join(", ")}`);
    }
  }
  lines.push(
    "the projectors' relay stage is occurredAt → broker append time, the relay's two stages together and its " +
      "send's linger; a checkout without a histogram shows –",
  );
  return lines;
}

/** "≤ 0.25 s 61 %, ≤ 0.5 s 93 %, …" for the events a projector committed between two snapshots. */
export function formatFreshnessShares(before: Map<string, number>, after: Map<string, number>): string {
  const total = (after.get("+Inf") ?? 0) - (before.get("+Inf") ?? 0);
  if (total <= 0) return "no events";
  const shares = ["0.1", "0.25", "0.5", "1", "2.5"].map((le) => {
    const n = (after.get(le) ?? 0) - (before.get(le) ?? 0);
    return `≤ ${le} s ${((100 * n) / total).toFixed(1)} %`;
  });
  return `${shares.join(", ")} (n=${fmt(total)})`;
}
