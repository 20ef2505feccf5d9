/**
 * Relay benchmark (`bun run bench:relay`), against the real Redis and Kafka of the stack.
 *
 *  1. drain: preload BENCH_EVENTS allocations (Lua allocate script, auto-pipelined, many stocks over
 *     all shards) into the outbox, start the relay (`bun services/relay/main.ts`, its own process)
 *     and time until all of them are relayed (its flashsale_relay_events_relayed_total counter).
 *  2. latency: allocations at a steady BENCH_RATE per second for BENCH_SECONDS, while a consumer
 *     reads the topic; per event latency = Kafka LogAppendTime (the bench creates its topic with
 *     message.timestamp.type=LogAppendTime, so the broker stamps the append) − occurredAt (Redis
 *     TIME in the Lua script). Broker and Redis share this machine's clock.
 *
 * Env: REDIS_URL or REDIS_CLUSTER_NODES (a Redis Cluster, e.g. the stack's), KAFKA_BROKERS, BENCH_EVENTS (200000), BENCH_RATE (2000), BENCH_SECONDS (25),
 * BENCH_STOCKS (400), OUTBOX_SHARDS (4), KAFKA_PARTITIONS (12), and any RELAY_* knob, passed to the relay.
 */
import { Kafka, logLevel } from "kafkajs";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createRedis, deleteKeysByPrefix, parseClusterNodes } from "../../shared/redis/client.ts";
import { deleteTopics } from "../../shared/kafka/client.ts";
import { stackEnv } from "../../shared/dev/env.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { benchInt, benchRunId, cpuSeconds, percentile, readBenchEnv } from "../support.ts";

const {
  BENCH_EVENTS: EVENTS,
  BENCH_RATE: RATE,
  BENCH_SECONDS: SECONDS,
  BENCH_STOCKS: STOCKS,
  OUTBOX_SHARDS: SHARDS,
  KAFKA_PARTITIONS: PARTITIONS,
} = readBenchEnv({
  BENCH_EVENTS: benchInt(200_000, 1),
  BENCH_RATE: benchInt(2_000, 1),
  BENCH_SECONDS: benchInt(25, 1),
  BENCH_STOCKS: benchInt(400, 1),
  OUTBOX_SHARDS: benchInt(4, 1),
  KAFKA_PARTITIONS: benchInt(12, 1),
});
const REDIS_URL = stackEnv.REDIS_URL;
const BROKERS = stackEnv.KAFKA_BROKERS.split(",");
const ADMIN_PORT = 19_000 + Math.floor(Math.random() * 1_000);

const run = benchRunId();
const prefix = `benchrelay${run}`;
const topic = `bench.relay.${run}`;
const keys = createKeyLayout(prefix, SHARDS);
const CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES;
const redis = createRedis({ REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(CLUSTER_NODES) });
redis.on("error", () => {});
const commands = createStockCommands(redis, keys);
const kafka = new Kafka({ clientId: "bench-relay", brokers: BROKERS, logLevel: logLevel.NOTHING });

const log = (msg: string) => console.log(`[bench:relay] ${msg}`);

// Progress is read from Redis (the outbox only shrinks after Kafka acked), not by scraping /metrics:
// a scrape collects prom-client's default metrics (heap statistics), which would cost the relay CPU.
async function outboxLeft(): Promise<number> {
  // One XLEN per shard, auto-pipelined (per master on a cluster: the shards are in different slots).
  const lengths = await Promise.all(keys.allShards().map((s) => redis.xlen(keys.outbox(s))));
  return lengths.reduce((sum, n) => sum + n, 0);
}

/** The relay's batch-duration histogram (cumulative bucket counts), from one /metrics scrape. */
async function batchHistogram(): Promise<Map<number, number>> {
  const text = await fetch(`http://127.0.0.1:${ADMIN_PORT}/metrics`).then((r) => r.text());
  const buckets = new Map<number, number>();
  for (const m of text.matchAll(/^flashsale_relay_batch_duration_seconds_bucket\{le="([^"]+)"[^}]*\} (\d+)/gm)) {
    buckets.set(m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2]));
  }
  return buckets;
}

/** Upper bound (ms) of the bucket holding the p-th percentile of the batches between two scrapes. */
function histogramPercentile(before: Map<number, number>, after: Map<number, number>, p: number): string {
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  for (const [le, count] of [...after].sort((a, b) => a[0] - b[0])) {
    if (count - (before.get(le) ?? 0) >= (p / 100) * total) return le === Infinity ? "> 10 s" : `≤ ${le * 1000} ms`;
  }
  return "n/a";
}

let nextUser = 0;
const stockIds = Array.from({ length: STOCKS }, (_, i) => `bench${i}`);
const allocateOne = () => commands.allocate({ stockId: stockIds[nextUser % STOCKS]!, userId: `u${nextUser++}`, quantity: 1 });

async function cleanup(relay?: ReturnType<typeof Bun.spawn>) {
  if (relay && relay.exitCode === null) {
    relay.kill("SIGTERM");
    await relay.exited;
  }
  await deleteKeysByPrefix(redis, prefix);
  await deleteTopics(kafka, [topic]);
  redis.disconnect();
}

// ---------------------------------------------------------------- setup
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({
  topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: -1, configEntries: [{ name: "message.timestamp.type", value: "LogAppendTime" }] }],
  waitForLeaders: true,
});
await admin.disconnect();

const perStock = Math.ceil((EVENTS + RATE * SECONDS * 1.2) / STOCKS) + 10;
await Promise.all(stockIds.map((id) => commands.createStock({ id, name: `bench ${id}`, price: 1000, quantity: perStock, perUserLimit: perStock })));

// ---------------------------------------------------------------- 1. drain
log(
  `preloading ${EVENTS} allocations over ${STOCKS} stocks, ${SHARDS} shards on ${CLUSTER_NODES ? "the Redis Cluster" : "the single node"}; ` +
    `RELAY_MIN_REPLICAS=${process.env.RELAY_MIN_REPLICAS ?? "default"} RELAY_TRANSACTIONS=${process.env.RELAY_TRANSACTIONS ?? "default (true)"} ...`,
);
let t = performance.now();
for (let done = 0; done < EVENTS; ) {
  const n = Math.min(5_000, EVENTS - done);
  await Promise.all(Array.from({ length: n }, allocateOne));
  done += n;
}
let outboxLength = 0;
for (const s of keys.allShards()) outboxLength += await redis.xlen(keys.outbox(s));
log(`preloaded in ${((performance.now() - t) / 1000).toFixed(1)} s; outbox holds ${outboxLength} entries (incl. ${STOCKS} StockCreated)`);

const relay = Bun.spawn([process.execPath, "services/relay/main.ts"], {
  cwd: new URL("../..", import.meta.url).pathname,
  env: {
    ...process.env,
    REDIS_URL,
    KAFKA_BROKERS: BROKERS.join(","),
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: String(PARTITIONS),
    REDIS_KEY_PREFIX: prefix,
    OUTBOX_SHARDS: String(SHARDS),
    ADMIN_PORT: String(ADMIN_PORT),
    LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
  },
  stdout: "inherit",
  stderr: "inherit",
});

try {
  const spawnedAt = performance.now();
  let firstAt = 0;
  let left = outboxLength;
  let cpuAtFirst = 0;
  let leftAtFirst = 0;
  while (left > 0) {
    await Bun.sleep(10);
    left = await outboxLeft();
    if (left < outboxLength && firstAt === 0) {
      firstAt = performance.now();
      leftAtFirst = left;
      cpuAtFirst = cpuSeconds(relay.pid);
    }
    if (performance.now() - spawnedAt > 180_000) throw new Error(`drain did not finish in 180 s (${left} of ${outboxLength} left)`);
  }
  const doneAt = performance.now();
  const cpuPerEventUs = ((cpuSeconds(relay.pid) - cpuAtFirst) / leftAtFirst) * 1e6;
  const drainRate = leftAtFirst / ((doneAt - firstAt) / 1000);
  const withStartup = outboxLength / ((doneAt - spawnedAt) / 1000);
  log(
    `drain: ${outboxLength} events; ${leftAtFirst} in ${((doneAt - firstAt) / 1000).toFixed(2)} s after the first trim = ${Math.round(drainRate)} events/s ` +
      `(${Math.round(withStartup)} events/s including process start and connect); relay CPU ${cpuPerEventUs.toFixed(1)} µs/event`,
  );

  // ---------------------------------------------------------------- 2. latency at a steady rate
  const consumer = kafka.consumer({ groupId: `bench-${run}`, maxWaitTimeInMs: 50 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: false });
  const latencies: number[] = [];
  /** occurredAt → this consumer received it: what a read-committed reader sees (with transactions, after the commit). */
  const visible: number[] = [];
  let phaseStart = Number.POSITIVE_INFINITY;
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => (joined = true));
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const occurredAt = Date.parse((JSON.parse(m.value!.toString("utf8")) as { occurredAt: string }).occurredAt);
        if (occurredAt >= phaseStart) {
          latencies.push(Number(m.timestamp) - occurredAt);
          visible.push(Date.now() - occurredAt);
        }
      }
    },
  });
  while (!joined) await Bun.sleep(50);
  await Bun.sleep(1_000);

  log(`latency: ${RATE} allocations/s for ${SECONDS} s ...`);
  const histogramBefore = await batchHistogram();
  const loadBefore = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
  phaseStart = Date.now();
  const total = RATE * SECONDS;
  let sent = 0;
  const inflight = new Set<Promise<unknown>>();
  t = performance.now();
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t) / 1000) * RATE));
    while (sent < due) {
      const p = allocateOne().finally(() => inflight.delete(p));
      inflight.add(p);
      sent++;
    }
    await Bun.sleep(2);
  }
  await Promise.all(inflight);
  const genSeconds = (performance.now() - t) / 1000;
  const deadline = Date.now() + 60_000;
  while (latencies.length < total && Date.now() < deadline) await Bun.sleep(100);
  await consumer.disconnect();
  const histogramAfter = await batchHistogram();
  const loadAfter = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
  const batches = (histogramAfter.get(Infinity) ?? 0) - (histogramBefore.get(Infinity) ?? 0);

  const sorted = [...latencies].sort((a, b) => a - b);
  const seen = [...visible].sort((a, b) => a - b);
  log(
    `latency: ${sent} allocations in ${genSeconds.toFixed(1)} s (${Math.round(sent / genSeconds)}/s); ${latencies.length} events consumed; ` +
      `occurredAt → Kafka LogAppendTime: p50 ${percentile(sorted, 50)} ms, p90 ${percentile(sorted, 90)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted.at(-1)} ms; ` +
      `occurredAt → consumed (read committed): p50 ${percentile(seen, 50)} ms, p99 ${percentile(seen, 99)} ms`,
  );
  log(
    `latency: relay batches (read → Kafka ack → XACK): ${batches}, p50 ${histogramPercentile(histogramBefore, histogramAfter, 50)}, ` +
      `p99 ${histogramPercentile(histogramBefore, histogramAfter, 99)}; machine load average ${loadBefore} → ${loadAfter} (2 cores)`,
  );
  console.log(
    JSON.stringify({
      drainEventsPerSecond: Math.round(drainRate),
      drainEventsPerSecondIncludingStartup: Math.round(withStartup),
      relayCpuMicrosPerEvent: Number(cpuPerEventUs.toFixed(1)),
      latencyRate: Math.round(sent / genSeconds),
      latencyP50Ms: percentile(sorted, 50),
      latencyP99Ms: percentile(sorted, 99),
      latencyMaxMs: sorted.at(-1),
      consumedP50Ms: percentile(seen, 50),
      consumedP99Ms: percentile(seen, 99),
      loadAverage: loadAfter,
      relayEnv: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("RELAY_"))),
    }),
  );
} finally {
  await cleanup(relay);
}
