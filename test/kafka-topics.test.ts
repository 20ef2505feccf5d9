/**
 * ensureTopics (shared/kafka/topics.ts) on the stack's broker: creating the events topic and its DLQ
 * is idempotent, several starters racing on a brand-new topic all succeed (TOPIC_ALREADY_EXISTS is
 * success), and when it returns every partition has a leader: what the relay, the projectors and the
 * notifier rely on at start (docs/design.md §15). The earlier ensureTopic (listTopics, then kafkajs'
 * createTopics with waitForLeaders) failed 3 of 40 such racing calls on this broker with
 * UNKNOWN_TOPIC_OR_PARTITION "This server does not host this topic-partition", the error that killed
 * projector-postgres at a first start (issue 20); ensureTopics: 0 of 40.
 */
import { expect, test } from "bun:test";
import { Kafka, logLevel } from "kafkajs";
import { deleteTopics } from "../shared/kafka/client.ts";
import { ensureTopics, stockEventTopics } from "../shared/kafka/topics.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";

test("ten brand-new topics, four starters racing on each, then a fifth: all succeed, 12 + 1 partitions, every one with a leader", async () => {
  const kafka = new Kafka({ clientId: "topics-test", brokers: stackEnv.KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING });
  const raced = Array.from({ length: 10 }, (_, i) => uniqueName(`ensure${i}`));
  const topic = raced[0]!;
  const specs = stockEventTopics(topic, 12);
  try {
    for (const name of raced) await Promise.all([1, 2, 3, 4].map(() => ensureTopics(kafka, stockEventTopics(name, 12))));
    await ensureTopics(kafka, specs); // exists already: a no-op
    const admin = kafka.admin();
    await admin.connect();
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic, `${topic}.dlq`] });
    const configs = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: topic, configNames: ["retention.ms"] }] });
    await admin.disconnect();
    expect(Object.fromEntries(topics.map((t) => [t.name, t.partitions.length]))).toEqual({ [topic]: 12, [`${topic}.dlq`]: 1 });
    expect(topics.flatMap((t) => t.partitions).every((p) => p.leader >= 0)).toBe(true);
    expect(configs.resources[0]!.configEntries.find((e) => e.configName === "retention.ms")?.configValue).toBe("-1");
  } finally {
    await deleteTopics(kafka, raced, { withDlq: true });
  }
}, 60_000);
