/**
 * Reading an events topic in a test: a read_committed (or read_uncommitted) reader that collects every
 * message from the beginning, and the check every relay test makes of what it read against Redis:
 * each stock's versions 1..V present, nothing else, version order per stock, duplicates counted.
 */
import { Kafka, logLevel, type Consumer } from "kafkajs";
import { ensureTopics, stockEventTopics } from "../../shared/kafka/topics.ts";
import { stackEnv, uniqueName } from "../../shared/dev/env.ts";

/** Partitions of the topics the relay tests create (the reader creates the topic if it comes first). */
export const PARTITIONS = 4;

export interface TopicMessage {
  partition: number;
  offset: string;
  key: string;
  value: string;
  eventId: string;
  aggregateId: string;
  version: number;
  headers: Record<string, string>;
  timestamp: number;
}

/** Reads the topic from the beginning in the background, collecting every message. */
export class TopicReader {
  readonly messages: TopicMessage[] = [];
  private readonly offsets = new Set<string>();
  private consumer: Consumer | undefined;
  constructor(
    private readonly topic: string,
    private readonly brokers = stackEnv.KAFKA_BROKERS,
    /** Also aborted transactions' messages (for a diagnosis: is a missing event there, aborted?). */
    private readonly readUncommitted = false,
  ) {}

  async start(): Promise<void> {
    const kafka = new Kafka({ clientId: "relay-test-reader", brokers: this.brokers.split(","), logLevel: logLevel.NOTHING });
    // The relay creates the topic too (same partitions); whoever comes first wins.
    await ensureTopics(kafka, stockEventTopics(this.topic, PARTITIONS));
    this.consumer = kafka.consumer({ groupId: uniqueName("reader"), sessionTimeout: 30_000, retry: { retries: 100, maxRetryTime: 2_000 }, readUncommitted: this.readUncommitted });
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await this.consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          // The reader itself may re-read after a broker outage (no committed offsets): count each
          // offset once, so duplicates mean copies on the topic, not re-reads.
          const at = `${batch.partition}:${m.offset}`;
          if (this.offsets.has(at)) continue;
          this.offsets.add(at);
          const value = m.value?.toString("utf8") ?? "";
          const event = JSON.parse(value) as { eventId: string; aggregateId: string; version: number };
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(m.headers ?? {})) headers[k] = String(v);
          this.messages.push({
            partition: batch.partition,
            offset: m.offset,
            key: m.key?.toString("utf8") ?? "",
            value,
            eventId: event.eventId,
            aggregateId: event.aggregateId,
            version: event.version,
            headers,
            timestamp: Number(m.timestamp),
          });
        }
      },
    });
  }

  uniqueIds(): Set<string> {
    return new Set(this.messages.map((m) => m.eventId));
  }

  async waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    await waitUntil(predicate, timeoutMs, what);
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => {});
  }
}

export async function waitUntil(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(100);
  }
}

export interface Verdict {
  missing: string[];
  duplicates: number;
  /** Stocks whose first occurrences on the topic are not in version order. */
  outOfOrder: string[];
  unexpected: string[];
}

/**
 * Checks the topic against Redis: each stock's versions 1..V present, nothing else, first
 * occurrences in version order within the partition, duplicates counted.
 */
export function verify(messages: TopicMessage[], versions: Map<string, number>): Verdict {
  const seen = new Map<string, TopicMessage>();
  let duplicates = 0;
  const lastVersion = new Map<string, number>();
  const outOfOrder = new Set<string>();
  const byPartition = [...messages].sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  for (const m of byPartition) {
    if (seen.has(m.eventId)) {
      duplicates++;
      continue;
    }
    seen.set(m.eventId, m);
    const last = lastVersion.get(m.aggregateId) ?? 0;
    if (m.version !== last + 1) outOfOrder.add(m.aggregateId);
    lastVersion.set(m.aggregateId, Math.max(last, m.version));
  }
  const present = new Set([...seen.values()].map((m) => `${m.aggregateId}@${m.version}`));
  const missing: string[] = [];
  for (const [stock, v] of versions) for (let i = 1; i <= v; i++) if (!present.has(`${stock}@${i}`)) missing.push(`${stock}@${i}`);
  const unexpected = [...seen.values()].filter((m) => !versions.has(m.aggregateId) || m.version > versions.get(m.aggregateId)!).map((m) => m.eventId);
  return { missing, duplicates, outOfOrder: [...outOfOrder], unexpected };
}
