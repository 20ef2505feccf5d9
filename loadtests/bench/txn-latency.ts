/**
 * Where one event's latency goes on a transactional producer (issue 23): InitProducerId, then
 * back-to-back one-message transactions (send = AddPartitionsToTxn + Produce, commit = EndTxn), and
 * when a read_committed consumer sees each message (after the broker wrote the commit markers).
 * Counts the CONCURRENT_TRANSACTIONS retries kafkajs logs. Compares retry settings.
 *
 * `bun loadtests/bench/txn-latency.ts [initialRetryTime] [retries] [transactions]` against the stack's Kafka.
 */
import { Kafka, logLevel, Partitioners } from "kafkajs";
import { deleteTopics } from "../../shared/kafka/client.ts";
import { stackEnv } from "../../shared/dev/env.ts";
import { percentile } from "../support.ts";

const [initialRetryTime = 100, retries = 5, transactions = 20] = process.argv.slice(2).map(Number);
let concurrentRetries = 0;
const kafka = new Kafka({
  clientId: "bench-txn",
  brokers: stackEnv.KAFKA_BROKERS.split(","),
  logLevel: logLevel.DEBUG,
  logCreator: () => (entry) => {
    if (/CONCURRENT_TRANSACTIONS|concurrent operation|ongoing transaction/i.test(JSON.stringify(entry.log))) concurrentRetries++;
  },
});
const topic = `bench.txn.${Date.now().toString(36)}`;
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 12 }], waitForLeaders: true });
await admin.disconnect();

const seenAt = new Map<string, number>();
const consumer = kafka.consumer({ groupId: `${topic}.g`, maxWaitTimeInMs: 50 });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({ eachMessage: async ({ message }) => void seenAt.set(message.value!.toString(), performance.now()) });

const producer = kafka.producer({
  transactionalId: `${topic}.txn`,
  idempotent: true,
  maxInFlightRequests: 1,
  createPartitioner: Partitioners.DefaultPartitioner,
  retry: { retries, initialRetryTime, maxRetryTime: 2_000 },
});
let t = performance.now();
await producer.connect();
await (await producer.transaction()).commit();
const initMs = performance.now() - t;
await new Promise((r) => setTimeout(r, 3_000)); // consumer joined

const rows: { send: number; commit: number; visible: number; key: string; start: number }[] = [];
for (let i = 0; i < transactions; i++) {
  const key = `m${i}`;
  const start = performance.now();
  const txn = await producer.transaction();
  await txn.send({ topic, messages: [{ key: `stock-${i}`, value: key }], acks: -1 });
  const sent = performance.now();
  await txn.commit();
  rows.push({ key, start, send: sent - start, commit: performance.now() - sent, visible: 0 });
}
const deadline = performance.now() + 10_000;
while (seenAt.size < transactions && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
for (const r of rows) r.visible = (seenAt.get(r.key) ?? NaN) - r.start;
const stat = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return `p50 ${percentile(s, 50)?.toFixed(0)} max ${s.at(-1)?.toFixed(0)}`; };
console.log(JSON.stringify({ initialRetryTime, retries, initMs: Math.round(initMs), firstTxn: { send: Math.round(rows[0]!.send), commit: Math.round(rows[0]!.commit), visible: Math.round(rows[0]!.visible) } }));
console.log(`back-to-back ${transactions}: send ${stat(rows.map((r) => r.send))}; commit ${stat(rows.map((r) => r.commit))}; visible ${stat(rows.map((r) => r.visible))}; total ${(performance.now() - rows[0]!.start - (performance.now() - rows.at(-1)!.start) + rows.at(-1)!.send + rows.at(-1)!.commit).toFixed(0)} ms; CONCURRENT_TRANSACTIONS retries ${concurrentRetries}`);
await producer.disconnect();
await consumer.disconnect();
await deleteTopics(kafka, [topic]);
process.exit(0);
