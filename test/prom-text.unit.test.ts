/** The Prometheus text reader the dashboard scrapes the workers with (pure logic). */
import { expect, test } from "bun:test";
import { histogramBuckets, parsePromText, quantileBetween, sumOf } from "../shared/prom-text.ts";

const TEXT = `# HELP flashsale_projector_freshness_seconds x
# TYPE flashsale_projector_freshness_seconds histogram
flashsale_projector_freshness_seconds_bucket{le="0.1",service="p"} 10
flashsale_projector_freshness_seconds_bucket{le="0.5",service="p"} 90
flashsale_projector_freshness_seconds_bucket{le="1",service="p"} 100
flashsale_projector_freshness_seconds_bucket{le="+Inf",service="p"} 100
flashsale_projector_freshness_seconds_count{service="p"} 100
flashsale_relay_outbox_length{shard="0",service="relay"} 3
flashsale_relay_outbox_length{shard="1",service="relay"} 4
odd{msg="a \\"quoted\\", b"} 1e3
`;

test("samples with labels, escapes and exponents", () => {
  const samples = parsePromText(TEXT);
  expect(sumOf(samples, "flashsale_relay_outbox_length")).toBe(7);
  expect(sumOf(samples, "flashsale_relay_outbox_length", { shard: "1" })).toBe(4);
  expect(samples.find((s) => s.name === "odd")).toEqual({ name: "odd", labels: { msg: 'a "quoted", b' }, value: 1000 });
});

test("a quantile of the observations between two scrapes, interpolated in its bucket", () => {
  const after = histogramBuckets(parsePromText(TEXT), "flashsale_projector_freshness_seconds");
  expect(after).toEqual([[0.1, 10], [0.5, 90], [1, 100], [Infinity, 100]]);
  expect(quantileBetween(0.5, [], after)).toBeCloseTo(0.1 + 0.4 * (40 / 80));
  expect(quantileBetween(0.99, [], after)).toBeCloseTo(0.5 + 0.5 * (9 / 10));
  // Only what happened since the earlier scrape counts: 10 new observations, all under 0.1 s.
  const before: [number, number][] = [[0.1, 0], [0.5, 90], [1, 100], [Infinity, 100]];
  const later: [number, number][] = [[0.1, 10], [0.5, 100], [1, 110], [Infinity, 110]];
  expect(quantileBetween(0.99, before, later)).toBeLessThanOrEqual(0.1);
  expect(quantileBetween(0.99, later, later)).toBeNull();
});
