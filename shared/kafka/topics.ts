/**
 * The topics exist, and every partition has a leader, before anyone produces or consumes
 * (docs/design.md §13). The relay, the projectors and the notifier all call ensureTopics at start;
 * it is idempotent, so whoever comes first creates and the others find the topics there.
 *
 * Why not kafkajs' createTopics({ waitForLeaders: true }) alone: on a broker that has just created
 * the topic, its metadata request can answer UNKNOWN_TOPIC_OR_PARTITION ("This server does not host
 * this topic-partition") for a moment, and kafkajs gives up on that instead of waiting: on a fresh
 * machine that killed projector-postgres 0.3 s after its start (issue 20). Here leaders are awaited
 * with fetchTopicMetadata, polling, and a topic not found yet is one more reason to poll.
 */
import type { Admin, ITopicConfig, Kafka } from "kafkajs";
import { sleep } from "../lifecycle.ts";
import { dlqTopicOf, withKafkaAdmin } from "./client.ts";

export interface TopicSpec {
  topic: string;
  numPartitions: number;
}

/** The stock-events topic and its DLQ, as every starter creates them (the same settings, so a second create is a no-op). */
export function stockEventTopics(topic: string, partitions: number, dlqTopic?: string): TopicSpec[] {
  return [
    { topic, numPartitions: partitions },
    { topic: dlqTopicOf(topic, dlqTopic), numPartitions: 1 },
  ];
}

/** Some partition has no leader yet (or the broker does not know the topic yet): try again later. */
export class TopicsNotReadyError extends Error {
  readonly retriable = true;
  constructor(message: string) {
    super(message);
    this.name = "TopicsNotReadyError";
  }
}

/**
 * Retention is unlimited: the topic is the event log that read models are rebuilt from
 * (`bun run rebuild`), so time-based deletion would silently make a rebuild incomplete.
 * Replication factor -1 = the broker's default.
 */
const topicConfig = (spec: TopicSpec): ITopicConfig => ({
  topic: spec.topic,
  numPartitions: spec.numPartitions,
  replicationFactor: -1,
  configEntries: [{ name: "retention.ms", value: "-1" }],
});

/**
 * Creates whichever of the topics are missing (a topic that exists is left as it is; a concurrent
 * creator's TOPIC_ALREADY_EXISTS is success), then waits up to `leaderWaitMs` until every partition
 * of every topic has a leader. Throws TopicsNotReadyError (retriable) if they do not by then.
 */
export function ensureTopics(kafka: Kafka, specs: TopicSpec[], options: { leaderWaitMs?: number } = {}): Promise<void> {
  return withKafkaAdmin(kafka, async (admin) => {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((s) => !existing.has(s.topic));
    // Resolves false when they all existed already (another starter won the race): fine.
    if (missing.length > 0) await admin.createTopics({ topics: missing.map(topicConfig), waitForLeaders: false });
    await awaitLeaders(admin, specs.map((s) => s.topic), options.leaderWaitMs ?? 10_000);
    // Few retries inside kafkajs: a broker that is not up yet fails the attempt in about a second, and
    // the caller's retryStart does the waiting, with a log line per attempt and the reason in /readyz.
  }, { retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 1_000 } });
}

async function awaitLeaders(admin: Admin, topics: string[], waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  let why = "";
  for (;;) {
    try {
      const { topics: found } = await admin.fetchTopicMetadata({ topics });
      const leaderless = found.flatMap((t) => (t.partitions.length === 0 ? [`${t.name} (no partitions yet)`] : t.partitions.filter((p) => p.leader < 0).map((p) => `${t.name}/${p.partitionId}`)));
      if (found.length === topics.length && leaderless.length === 0) return;
      why = `partitions without a leader: ${leaderless.slice(0, 5).join(", ")}${leaderless.length > 5 ? ` (+${leaderless.length - 5})` : ""}`;
    } catch (err) {
      // UNKNOWN_TOPIC_OR_PARTITION / LEADER_NOT_AVAILABLE right after creation: the broker catches up.
      why = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) throw new TopicsNotReadyError(`topics ${topics.join(", ")} not ready after ${waitMs} ms: ${why}`);
    await sleep(100);
  }
}
