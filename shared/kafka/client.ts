/** kafkajs client factory: brokers from config, kafkajs' own logs routed into pino. */
import { type Admin, type AdminConfig, Kafka, logLevel, type LogEntry } from "kafkajs";
import "./patch-request-queue.ts"; // stops kafkajs' idle 1 ms timer loop (see the file)
import type { Logger } from "../logger.ts";

/**
 * kafkajs warns whenever an idempotent producer has finite retries. Ours are finite on purpose (see
 * shared/kafka/producer.ts): the caller re-sends the same batch, so the broker still deduplicates.
 * At warn level on every start the line would only teach operators to ignore warnings.
 */
const EXPECTED_WARNINGS = new Set(["Limiting retries for the idempotent producer may invalidate EoS guarantees"]);

export function createKafka(options: { brokers: string[]; clientId: string; logger: Logger }): Kafka {
  return new Kafka({
    clientId: options.clientId,
    brokers: options.brokers,
    logLevel: logLevel.WARN,
    retry: { initialRetryTime: 100, retries: 8, maxRetryTime: 5_000 },
    logCreator:
      () =>
      ({ namespace, level, log }: LogEntry) => {
        const { message, ...extra } = log;
        if (EXPECTED_WARNINGS.has(message)) return;
        const method = level <= logLevel.ERROR ? "error" : level === logLevel.WARN ? "warn" : "debug";
        options.logger[method]({ kafka: namespace, ...extra }, message);
      },
  });
}

/** Runs `work` with a connected admin client and always disconnects it. */
export async function withKafkaAdmin<T>(kafka: Kafka, work: (admin: Admin) => Promise<T>, config?: AdminConfig): Promise<T> {
  const admin = kafka.admin(config);
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.disconnect();
  }
}

/** Deletes topics (and their DLQs with `withDlq`), ignoring ones that do not exist: for throwaway topics of tests and benches. */
export async function deleteTopics(kafka: Kafka, topics: string[], options: { withDlq?: boolean } = {}): Promise<void> {
  if (topics.length === 0) return;
  await withKafkaAdmin(kafka, (admin) =>
    admin.deleteTopics({ topics: options.withDlq ? topics.flatMap((t) => [t, dlqTopicOf(t)]) : topics }).catch(() => {}),
  );
}

export const dlqTopicOf = (topic: string, configured?: string) => configured ?? `${topic}.dlq`;
