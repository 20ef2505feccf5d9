/**
 * kafkajs' retry inside one send (patches/kafkajs@2.2.4.patch): after some brokers answered and one
 * failed, what is sent again, and where. Pure logic: the cluster, brokers and retrier are fakes that
 * follow kafkajs' interfaces; the broker-failure test (test/kafka-broker-failure.test.ts) is where it
 * was found: a leader killed mid-send, its partitions moved to a broker that had already answered for
 * its own, and unpatched kafkajs never sent them (the transaction committed without them: lost events).
 */
import { expect, test } from "bun:test";
// @ts-expect-error kafkajs ships no types for its internals
import createSendMessages from "kafkajs/src/producer/sendMessages.js";

interface ProduceCall {
  broker: number;
  partitions: number[];
}
interface TopicData {
  topic: string;
  partitions: { partition: number; messages: unknown[] }[];
}

/** A two-partition topic; `leaders[p]` is partition p's leader, changed by the test between attempts. */
function fakeCluster(leaders: number[], failOnce: Set<number>) {
  const calls: ProduceCall[] = [];
  const broker = (nodeId: number) => ({
    nodeId,
    async produce({ topicData }: { topicData: TopicData[] }) {
      const partitions = topicData.flatMap((t) => t.partitions.map((p) => p.partition));
      calls.push({ broker: nodeId, partitions });
      if (failOnce.delete(nodeId)) {
        // The broker died: the next metadata names another leader for its partitions.
        for (const p of partitions) leaders[p] = leaders.find((l) => l !== nodeId)!;
        throw Object.assign(new Error("Connection error: connect ECONNREFUSED"), { name: "KafkaJSConnectionError", retriable: true });
      }
      return { topics: topicData.map((t) => ({ topicName: t.topic, partitions: t.partitions.map((p) => ({ partition: p.partition, errorCode: 0, baseOffset: "0" })) })) };
    },
  });
  const brokers = new Map([1, 2].map((n) => [n, broker(n)]));
  const cluster = {
    async refreshMetadataIfNecessary() {},
    async refreshMetadata() {},
    async addMultipleTargetTopics() {},
    isConnected: () => true,
    removeBroker() {},
    targetTopics: new Set(),
    findTopicPartitionMetadata: () => leaders.map((leader, partitionId) => ({ partitionId, leader })),
    findLeaderForPartitions(_topic: string, partitions: string[]) {
      const out: Record<number, number[]> = {};
      for (const p of partitions.map(Number)) (out[leaders[p]!] ??= []).push(p);
      return out;
    },
    findBroker: async ({ nodeId }: { nodeId: number }) => brokers.get(Number(nodeId)),
  };
  return { cluster, calls };
}

const eosManager = {
  acquireBrokerLock: async () => {},
  releaseBrokerLock: async () => {},
  isTransactional: () => false,
  getSequence: () => 0,
  updateSequence: () => {},
  getProducerId: () => -1,
  getProducerEpoch: () => 0,
  getTransactionalId: () => undefined,
};
const logger = { debug() {}, error() {}, info() {}, warn() {} };
/** kafkajs' retrier contract: run until it returns, re-run on a retriable throw. */
const retrier = async <T>(fn: (bail: (e: unknown) => never, retryCount: number, retryTime: number) => Promise<T>): Promise<T> => {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn((e) => { throw e; }, attempt, 0);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
};
// Messages keyed by their partition.
const partitioner = ({ message }: { message: { key: string } }) => Number(message.key);

test("a leader dies mid-send and its partition moves to a broker that already answered: the retry sends that partition there", async () => {
  const { cluster, calls } = fakeCluster([1, 2], new Set([2]));
  const send = createSendMessages({ logger, cluster, partitioner, eosManager, retrier });
  const responses = (await send({ acks: -1, timeout: 1000, topicMessages: [{ topic: "t", messages: [{ key: "0" }, { key: "1" }] }] })) as { partition: number }[];
  // Broker 1 answered for partition 0, broker 2 failed for partition 1, which broker 1 leads now.
  expect(calls).toContainEqual({ broker: 1, partitions: [1] });
  expect(responses.map((r) => r.partition).sort()).toEqual([0, 1]);
  // Partition 0 was acknowledged once and not sent again.
  expect(calls.filter((c) => c.partitions.includes(0))).toHaveLength(1);
});

test("no failure: one request per leader, every partition answered", async () => {
  const { cluster, calls } = fakeCluster([1, 2], new Set());
  const send = createSendMessages({ logger, cluster, partitioner, eosManager, retrier });
  const responses = (await send({ acks: -1, timeout: 1000, topicMessages: [{ topic: "t", messages: [{ key: "0" }, { key: "1" }] }] })) as { partition: number }[];
  expect(calls).toHaveLength(2);
  expect(responses.map((r) => r.partition).sort()).toEqual([0, 1]);
});
