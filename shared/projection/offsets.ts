/** Topic end offsets and consumer-group positions, for "has this group caught up to that point?". */
import type { Kafka } from "kafkajs";
import { withKafkaAdmin as withAdmin } from "../kafka/client.ts";

export type PartitionOffsets = Map<number, bigint>;

/** Per partition: the offset the next produced message will get. */
export function fetchHighWatermarks(kafka: Kafka, topic: string): Promise<PartitionOffsets> {
  return withAdmin(kafka, async (admin) => new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)])));
}

/** Per partition: the group's committed next offset (-1 when it has committed nothing there). */
export function fetchGroupOffsets(kafka: Kafka, groupId: string, topic: string): Promise<PartitionOffsets> {
  return withAdmin(kafka, async (admin) => {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map((entry?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
  });
}

/** Messages between `position` and `target`, summed over partitions (0 when position ≥ target everywhere). */
export function remaining(position: PartitionOffsets, target: PartitionOffsets): number {
  let total = 0n;
  for (const [partition, end] of target) {
    const at = position.get(partition) ?? -1n;
    // A partition with nothing in it (end 0) needs nothing; otherwise -1 means "from the start".
    const from = at < 0n ? 0n : at;
    if (end > from) total += end - from;
  }
  return Number(total);
}

/** Polls until `groupId` has committed at least `target` on every partition. */
export async function waitForGroup(
  kafka: Kafka,
  groupId: string,
  topic: string,
  target: PartitionOffsets | (() => Promise<PartitionOffsets>),
  options: { timeoutMs?: number; intervalMs?: number; onProgress?: (left: number) => void } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 30 * 60_000);
  let lastReport = 0;
  for (;;) {
    const goal = typeof target === "function" ? await target() : target;
    const left = remaining(await fetchGroupOffsets(kafka, groupId, topic), goal);
    if (left === 0) return;
    if (Date.now() - lastReport > 2_000) {
      options.onProgress?.(left);
      lastReport = Date.now();
    }
    if (Date.now() > deadline) throw new Error(`group ${groupId} still ${left} messages behind after ${options.timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 200));
  }
}

export function deleteGroup(kafka: Kafka, groupId: string): Promise<void> {
  return withAdmin(kafka, async (admin) => {
    await admin.deleteGroups([groupId]);
  });
}
