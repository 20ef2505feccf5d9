/**
 * How long publishing paused after a fault, from what a topic reader collected: the measure behind
 * the broker-failure test's "publishing resumed within 10 s" (test/kafka-broker-failure.test.ts).
 * Pure: tested in test/publishing-gaps.unit.test.ts.
 */
import type { TopicMessage } from "./topic-reader.ts";

/** What the measure reads of a message: its timestamp, the relay's send time. */
type Sent = Pick<TopicMessage, "timestamp">;

/**
 * The pause in publishing that a fault caused: per shard, the send times (kafkajs stamps a produce
 * request's records with one time, so a batch is one point) from 60 s before the fault to 60 s after,
 * and the longest gap between consecutive ones that ends after the fault and began at most 5 s after
 * it (a send in flight at the kill may still land just after it; the pause that follows counts). Its
 * end is when that shard published again. The worst shard is returned; a shard publishing nothing
 * after the fault within 60 s counts as a 60 s pause.
 */
export function publishingGap<M extends Sent>(
  messages: readonly M[],
  faultAt: number,
  groupOf: (m: M) => number,
): { gapMs: number; resumedAfterMs: number; shard: number } {
  const byShard = new Map<number, Set<number>>();
  for (const m of messages) {
    if (m.timestamp < faultAt - 60_000 || m.timestamp > faultAt + 60_000) continue;
    const shard = groupOf(m);
    (byShard.get(shard) ?? byShard.set(shard, new Set()).get(shard)!).add(m.timestamp);
  }
  let worst = { gapMs: 0, resumedAfterMs: 0, shard: -1 };
  for (const [shard, set] of byShard) {
    const times = [...set].sort((a, b) => a - b);
    if (times.at(-1)! <= faultAt) times.push(faultAt + 60_000);
    for (let i = 1; i < times.length; i++) {
      const [from, to] = [times[i - 1]!, times[i]!];
      if (to <= faultAt) continue;
      if (from > faultAt + 5_000) break;
      if (to - from > worst.gapMs) worst = { gapMs: to - from, resumedAfterMs: to - faultAt, shard };
    }
  }
  return worst;
}

/** Messages committed per 5 s around a fault, by the relay's send time (`-5:n` is the 5 s before it): the shape of the pause. */
export function publishedAround(messages: readonly Sent[], faultAt: number): string {
  const buckets = new Map<number, number>();
  for (const m of messages) {
    const b = Math.floor((m.timestamp - faultAt) / 5_000) * 5;
    if (b >= -10 && b <= 60) buckets.set(b, (buckets.get(b) ?? 0) + 1);
  }
  return [...buckets].sort((a, b) => a[0] - b[0]).map(([b, n]) => `${b}:${n}`).join(" ");
}
