/**
 * A reader of the Prometheus text exposition format (what every service's /metrics answers), for the
 * api's dashboard, which scrapes the workers. Samples only: HELP/TYPE lines and timestamps are skipped.
 * prom-client writes, it does not read; the format's sample line is small enough to parse here.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePromText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? "").matchAll(LABEL)) {
      labels[name!] = value!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const value = match[3] === "+Inf" ? Infinity : match[3] === "-Inf" ? -Infinity : Number(match[3]);
    samples.push({ name: match[1]!, labels, value });
  }
  return samples;
}

/** Sum of the samples named `name` whose labels include `where`. */
export function sumOf(samples: readonly Sample[], name: string, where: Record<string, string> = {}): number {
  let total = 0;
  for (const s of samples) if (s.name === name && matches(s, where)) total += s.value;
  return total;
}

function matches(sample: Sample, where: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(where)) if (sample.labels[k] !== v) return false;
  return true;
}

/** Cumulative bucket counts of a histogram (`<name>_bucket`), by upper bound, ascending. */
export function histogramBuckets(samples: readonly Sample[], name: string, where: Record<string, string> = {}): [number, number][] {
  const byBound = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !matches(s, where) || s.labels.le === undefined) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    byBound.set(le, (byBound.get(le) ?? 0) + s.value);
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile of the observations between two scrapes of one histogram (cumulative buckets),
 * interpolated linearly inside the bucket like PromQL's histogram_quantile. null without observations.
 */
export function quantileBetween(q: number, before: [number, number][], after: [number, number][]): number | null {
  const earlier = new Map(before);
  const deltas = after.map(([le, count]) => [le, Math.max(0, count - (earlier.get(le) ?? 0))] as const);
  const total = deltas.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of deltas) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound; // above the last finite bound: report that bound
      const inBucket = count - lowerCount;
      return inBucket <= 0 ? le : lowerBound + ((le - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}
