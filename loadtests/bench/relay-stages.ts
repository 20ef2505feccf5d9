/**
 * The relay's per-stage breakdown for bench:relay, from two scrapes of each relay's /metrics (before
 * and after the latency phase): per event xadd → read; per transaction encode, send (kafkajs encoding
 * and the produce requests), commit (EndTxn) and ack (XACK + trim). Counts, means, and the bucket
 * bounds holding p50 and p99 (Prometheus histograms give bounds, not exact values).
 */

/** One histogram series: cumulative bucket counts by upper bound, sum and count. */
interface Series {
  buckets: Map<number, number>;
  sum: number;
  count: number;
}

export type Scrape = Map<string, Series>;

const STAGES = [
  { label: "read (xadd → read, per event)", series: "flashsale_relay_stage_xadd_to_read_seconds" },
  { label: "encode (per transaction)", series: 'flashsale_relay_step_seconds{step="encode"}' },
  { label: "send (per transaction)", series: 'flashsale_relay_step_seconds{step="send"}' },
  { label: "commit (per transaction)", series: 'flashsale_relay_step_seconds{step="commit"}' },
  { label: "ack (per transaction)", series: 'flashsale_relay_step_seconds{step="ack"}' },
];

/** The histograms of one /metrics text, keyed by name plus labels other than `le` and `service` (no spaces). */
export function parseHistograms(text: string): Scrape {
  const out: Scrape = new Map();
  const series = (key: string) => {
    let s = out.get(key);
    if (!s) out.set(key, (s = { buckets: new Map(), sum: 0, count: 0 }));
    return s;
  };
  for (const m of text.matchAll(/^(\w+)_(bucket|sum|count)(?:\{([^}]*)\})? (\S+)$/gm)) {
    const labels = (m[3] ?? "").split(",").filter((l) => l && !l.startsWith("le=") && !l.startsWith("service="));
    const key = labels.length > 0 ? `${m[1]}{${labels.join(",")}}` : m[1]!;
    const value = Number(m[4]);
    if (m[2] === "bucket") {
      const le = /le="([^"]+)"/.exec(m[3] ?? "")?.[1];
      if (le) series(key).buckets.set(le === "+Inf" ? Infinity : Number(le), value);
    } else if (m[2] === "sum") series(key).sum = value;
    else series(key).count = value;
  }
  return out;
}

/** Sums scrapes of several relays (same series). */
export function addScrapes(scrapes: Scrape[]): Scrape {
  const out: Scrape = new Map();
  for (const scrape of scrapes) {
    for (const [key, s] of scrape) {
      const t = out.get(key) ?? { buckets: new Map(), sum: 0, count: 0 };
      for (const [le, n] of s.buckets) t.buckets.set(le, (t.buckets.get(le) ?? 0) + n);
      t.sum += s.sum;
      t.count += s.count;
      out.set(key, t);
    }
  }
  return out;
}

function bound(before: Series | undefined, after: Series, p: number): string {
  const total = after.count - (before?.count ?? 0);
  for (const [le, n] of [...after.buckets].sort((a, b) => a[0] - b[0])) {
    if (n - (before?.buckets.get(le) ?? 0) >= (p / 100) * total) return le === Infinity ? "> 30 s" : `≤ ${+(le * 1000).toFixed(1)} ms`;
  }
  return "n/a";
}

export interface StageRow {
  stage: string;
  count: number;
  meanMs: number;
  p50: string;
  p99: string;
}

/** The stage table between two (summed) scrapes. */
export function stageRows(before: Scrape, after: Scrape): StageRow[] {
  return STAGES.flatMap(({ label, series }) => {
    const a = after.get(series);
    if (!a) return [];
    const b = before.get(series);
    const count = a.count - (b?.count ?? 0);
    if (count === 0) return [];
    const meanMs = ((a.sum - (b?.sum ?? 0)) / count) * 1000;
    return [{ stage: label, count, meanMs: Number(meanMs.toFixed(2)), p50: bound(b, a, 50), p99: bound(b, a, 99) }];
  });
}
