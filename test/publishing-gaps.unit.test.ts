/**
 * The measure behind the broker-failure test's "every shard published again within 10 s of each fault"
 * (test/support/publishing-gaps.ts): what counts as the pause a fault caused, on hand-made send times.
 */
import { describe, expect, test } from "bun:test";
import { publishedAround, publishingGap } from "./support/publishing-gaps.ts";

const FAULT = 1_000_000;
/** Sends of one shard every `every` ms over [from, to) relative to the fault. */
const sends = (shard: number, from: number, to: number, every: number) =>
  Array.from({ length: Math.ceil((to - from) / every) }, (_, i) => ({ shard, timestamp: FAULT + from + i * every }));
const byShard = (m: { shard: number }) => m.shard;

describe("publishingGap", () => {
  test("the pause that spans the fault: from the last send before it to the first after it", () => {
    const messages = [...sends(0, -5_000, 0, 100), ...sends(0, 4_200, 9_000, 100)];
    expect(publishingGap(messages, FAULT, byShard)).toEqual({ gapMs: 4_300, resumedAfterMs: 4_200, shard: 0 });
  });

  test("the worst shard is reported; a shard that never paused does not hide it", () => {
    const messages = [...sends(0, -5_000, 10_000, 100), ...sends(1, -5_000, -200, 100), ...sends(1, 6_000, 10_000, 100)];
    expect(publishingGap(messages, FAULT, byShard)).toMatchObject({ shard: 1, resumedAfterMs: 6_000 });
  });

  test("a send still in flight at the kill does not end the pause: the gap after it counts", () => {
    // One batch lands 300 ms after the kill (sent before it, acknowledged late), then nothing for 7 s.
    const messages = [...sends(0, -5_000, 0, 100), { shard: 0, timestamp: FAULT + 300 }, ...sends(0, 7_300, 9_000, 100)];
    expect(publishingGap(messages, FAULT, byShard)).toEqual({ gapMs: 7_000, resumedAfterMs: 7_300, shard: 0 });
  });

  test("a shard that never publishes again counts as a 60 s pause", () => {
    const messages = [...sends(0, -5_000, 10_000, 100), ...sends(1, -5_000, -100, 100)];
    expect(publishingGap(messages, FAULT, byShard)).toMatchObject({ shard: 1, resumedAfterMs: 60_000 });
  });

  test("pauses that begin more than 5 s after the fault belong to something else", () => {
    const messages = [...sends(0, -5_000, 6_000, 100), ...sends(0, 20_000, 21_000, 100)];
    expect(publishingGap(messages, FAULT, byShard).resumedAfterMs).toBeLessThan(1_000);
  });
});

test("publishedAround: messages per 5 s from the fault, in order", () => {
  const messages = [...sends(0, -5_000, 0, 1_000), ...sends(0, 5_000, 15_000, 1_000)];
  expect(publishedAround(messages, FAULT)).toBe("-5:5 5:5 10:5");
});
