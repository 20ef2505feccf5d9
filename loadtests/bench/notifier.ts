/**
 * Notifier benchmark (`bun run bench:notifier`), against the real Kafka and PostgreSQL and a real
 * local receiver (Bun.serve in this process, port 3200-3299, verifying every request with the
 * `standardwebhooks` library as a receiver would). Not a test: it prints.
 *
 *  1. drain: BENCH_EVENTS events (a realistic mix over BENCH_STOCKS stocks; shared/dev/stock-sim.ts)
 *     are preloaded on a fresh topic; then the notifier binary (`bun services/notifier/main.ts`, its
 *     own process) delivers them all. Deliveries/s = events / time from the first acknowledged
 *     request to the last; plus the notifier's CPU seconds.
 *  2. lag: StockAllocated events produced to Kafka at a steady BENCH_RATE per second (1,000 by
 *     default) for BENCH_SECONDS, occurredAt = the moment of production, straight to the topic (the
 *     relay's share is in bench:relay); lag = the receiver's first acknowledgement minus occurredAt,
 *     per event: p50/p95/p99/max.
 *
 * Env: KAFKA_BROKERS, DATABASE_URL, BENCH_EVENTS (20000), BENCH_STOCKS (200), BENCH_RATE (1000),
 * BENCH_SECONDS (20), WEBHOOK_CONCURRENCY (64), BENCH_SKIP_DRAIN=1, BENCH_SKIP_LAG=1 (a bad value stops it: readBenchEnv).
 */
import type { Subprocess } from "bun";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { z } from "zod";
import { ACKS_ALL } from "../../shared/kafka/producer.ts";
import { generateSecret } from "../../shared/webhooks/endpoints.ts";
import { freePort, stackEnv } from "../../shared/dev/env.ts";
import { eventMessage } from "../../shared/kafka/event-message.ts";
import { produceEvents } from "../../shared/dev/read-side.ts";
import { generateWorkload, StockSim } from "../../shared/dev/stock-sim.ts";
import { startReceiver, type Receiver } from "../../shared/dev/webhook-receiver.ts";
import { benchFlag, benchInt, benchRunId, cpuSeconds, createMigratedDatabase, fmt, percentile, readBenchEnv, REPO_ROOT } from "../support.ts";

const settings = readBenchEnv({
  BENCH_EVENTS: benchInt(20_000, 1),
  BENCH_STOCKS: benchInt(200, 1),
  BENCH_RATE: benchInt(1_000, 1),
  BENCH_SECONDS: benchInt(20, 1),
  WEBHOOK_CONCURRENCY: benchInt(64, 1),
  BENCH_SKIP_DRAIN: benchFlag,
  BENCH_SKIP_LAG: benchFlag,
  /** A directory: the notifier writes a CPU profile there on exit (Bun's --cpu-prof-md). */
  BENCH_CPU_PROF: z.string().optional(),
});
const { BENCH_EVENTS: EVENTS, BENCH_STOCKS: STOCKS, BENCH_RATE: RATE, BENCH_SECONDS: SECONDS, WEBHOOK_CONCURRENCY: CONCURRENCY } = settings;
const { KAFKA_BROKERS: BROKERS, DATABASE_URL } = stackEnv;

const run = benchRunId();
const log = (msg: string) => console.log(`[bench:notifier] ${msg}`);
const kafka = new Kafka({ clientId: "bench-notifier", brokers: BROKERS.split(","), logLevel: logLevel.NOTHING });
const children: Subprocess[] = [];
const topics: string[] = [];
const databases: string[] = [];

async function createDatabase(label: string): Promise<string> {
  const name = `bench_ntf_${run}_${label}`;
  databases.push(name);
  return createMigratedDatabase(DATABASE_URL, name);
}

async function createTopic(label: string): Promise<string> {
  const name = `bench.notifier.${run}.${label}`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: name, numPartitions: 12, replicationFactor: 1 }], waitForLeaders: true });
  await admin.disconnect();
  topics.push(name);
  return name;
}

function spawnNotifier(topic: string, databaseUrl: string, receiver: Receiver, secret: string): Subprocess {
  const profile = settings.BENCH_CPU_PROF ? ["--cpu-prof-md", `--cpu-prof-dir=${settings.BENCH_CPU_PROF}`] : [];
  const child = Bun.spawn([process.execPath, ...profile, "services/notifier/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      KAFKA_BROKERS: BROKERS,
      KAFKA_TOPIC: topic,
      NOTIFIER_GROUP_ID: `bench-notifier-${run}-${topic}`,
      ADMIN_PORT: String(freePort()),
      WEBHOOK_URL: receiver.url,
      WEBHOOK_SECRET: secret,
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true", // the receiver is on loopback
      WEBHOOK_CONCURRENCY: String(CONCURRENCY),
      LOG_LEVEL: "warn",
    },
    stdout: "ignore",
    stderr: "inherit",
  });
  children.push(child);
  return child;
}

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await Bun.sleep(20);
  }
}

async function stop(child: Subprocess): Promise<void> {
  child.kill("SIGTERM");
  await child.exited;
}

async function drain(): Promise<void> {
  const topic = await createTopic("drain");
  const db = await createDatabase("drain");
  const secret = generateSecret();
  const receiver = startReceiver({ secret });
  const events = generateWorkload(new StockSim(), { count: EVENTS, stockCount: STOCKS, prefix: `bn${run}` });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await produceEvents(producer, topic, events, 5_000);
  await producer.disconnect();
  log(`drain: ${fmt(events.length)} events over ${STOCKS} stocks preloaded; starting the notifier (concurrency ${CONCURRENCY} per endpoint)`);
  const started = Date.now();
  const child = spawnNotifier(topic, db, receiver, secret);
  await waitFor(() => receiver.acknowledged.size >= events.length, 600_000, "drain");
  const cpu = cpuSeconds(child.pid);
  const acks = receiver.requests.filter((r) => r.status < 300);
  const first = acks[0]!.at;
  const last = acks.at(-1)!.at;
  const seconds = (last - first) / 1000;
  log(
    `drain: ${fmt(events.length / seconds)} deliveries/s (${fmt(events.length)} in ${seconds.toFixed(2)} s from the first to the last 2xx; ` +
      `first delivery ${((first - started) / 1000).toFixed(1)} s after start), notifier CPU ${cpu.toFixed(1)} s = ${fmt((cpu / events.length) * 1e6)} µs/delivery; ` +
      `invalid signatures ${receiver.invalid.length}, order violations ${receiver.orderViolations.length}, duplicates ${receiver.duplicates()}`,
  );
  await stop(child);
  await receiver.stop();
}

async function lag(): Promise<void> {
  const topic = await createTopic("lag");
  const db = await createDatabase("lag");
  const secret = generateSecret();
  const firstAck = new Map<string, number>();
  const receiver = startReceiver({
    secret,
    respond: (event) => {
      if (!firstAck.has(event.eventId)) firstAck.set(event.eventId, Date.now() - Date.parse(event.occurredAt));
      return 200;
    },
  });
  const sim = new StockSim();
  const stocks = Array.from({ length: STOCKS }, (_, i) => `bl${run}-${i}`);
  const created = stocks.map((id) => sim.create(id, { total: 100_000_000, price: 1000 }));
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await produceEvents(producer, topic, created);
  const child = spawnNotifier(topic, db, receiver, secret);
  await waitFor(() => receiver.acknowledged.size >= created.length, 60_000, "notifier up");
  firstAck.clear();
  log(`lag: ${fmt(RATE)} allocations/s for ${SECONDS} s, produced to Kafka as they happen`);

  const total = RATE * SECONDS;
  const tickMs = 10;
  const startedAt = performance.now();
  let produced = 0;
  let n = 0;
  while (produced < total) {
    const due = Math.min(total, Math.floor(((performance.now() - startedAt) / 1000) * RATE));
    const batch = [];
    while (produced < due) {
      const event = sim.allocate(stocks[n++ % stocks.length]!, `u${n % 5_000}`, 1)!;
      batch.push(event);
      produced++;
    }
    if (batch.length > 0) await producer.send({ topic, acks: ACKS_ALL, messages: batch.map((e) => eventMessage(e)) });
    await Bun.sleep(Math.max(0, tickMs - ((performance.now() - startedAt) % tickMs)));
  }
  const rate = total / ((performance.now() - startedAt) / 1000);
  await producer.disconnect();
  await waitFor(() => firstAck.size >= total, 120_000, "every allocation delivered");
  const sorted = [...firstAck.values()].sort((a, b) => a - b);
  log(
    `lag at ${fmt(rate)} allocations/s (${fmt(total)} events): p50 ${fmt(percentile(sorted, 50))} ms, p95 ${fmt(percentile(sorted, 95))} ms, ` +
      `p99 ${fmt(percentile(sorted, 99))} ms, max ${fmt(sorted.at(-1)!)} ms (occurredAt → the receiver's 2xx); ` +
      `invalid ${receiver.invalid.length}, order violations ${receiver.orderViolations.length}`,
  );
  for (const v of receiver.orderViolations.slice(0, 5)) log(`  order violation: ${v}`);
  // Where the time goes, from the delivery log: occurredAt → logged in PostgreSQL (Kafka fetch + the consumer's
  // transaction: what any projector pays) and logged → delivered (the notifier's own share).
  const pg = postgres(db, { max: 1, onnotice: () => {} });
  const [split] = await pg`
    SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM e.recorded_at - e.occurred_at) * 1000) AS logged,
           percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM d.delivered_at - e.recorded_at) * 1000) AS delivered
    FROM webhook_deliveries d JOIN webhook_events e USING (event_id)
    WHERE e.event_type = 'StockAllocated'`;
  await pg.end();
  const [loggedP50, loggedP99] = (split!.logged as number[]).map(Number);
  const [deliveredP50, deliveredP99] = (split!.delivered as number[]).map(Number);
  log(
    `lag split: occurredAt → in the delivery log p50 ${fmt(loggedP50!)} ms, p99 ${fmt(loggedP99!)} ms (Kafka + the consumer's transaction); ` +
      `log → delivered p50 ${fmt(deliveredP50!)} ms, p99 ${fmt(deliveredP99!)} ms (the delivery loop, the request, the receiver)`,
  );
  await stop(child);
  await receiver.stop();
}

async function cleanup(): Promise<void> {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  const admin = kafka.admin();
  await admin.connect().catch(() => {});
  await admin.deleteTopics({ topics }).catch(() => {});
  await admin.disconnect().catch(() => {});
  const pg = postgres(DATABASE_URL, { max: 1, onnotice: () => {} });
  for (const name of databases) await pg.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
  await pg.end();
}

try {
  if (!settings.BENCH_SKIP_DRAIN) await drain();
  if (!settings.BENCH_SKIP_LAG) await lag();
} finally {
  await cleanup();
}
process.exit(0);
