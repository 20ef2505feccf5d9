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
 *  3. the per-stage breakdown of the latency phase (relay-stages.ts): read, encode, send, commit, ack.
 *
 * Runs at the service defaults (OUTBOX_SHARDS 16, RELAY_TRANSACTIONS on) unless told otherwise.
 * Env: REDIS_URL or REDIS_CLUSTER_NODES (a Redis Cluster, e.g. the stack's), KAFKA_BROKERS, BENCH_EVENTS (200000), BENCH_RATE (2000), BENCH_SECONDS (25),
 * BENCH_STOCKS (400), BENCH_RELAYS (1: relay processes splitting the shards), OUTBOX_SHARDS (16), KAFKA_PARTITIONS (12),
 * and any RELAY_* knob, passed to the relays.
 */
import { Kafka, logLevel } from "kafkajs";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createRedis, deleteKeysByPrefix, parseClusterNodes } from "../../shared/redis/client.ts";
import { deleteTopics } from "../../shared/kafka/client.ts";
import { stackEnv } from "../../shared/dev/env.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { benchInt, benchRunId, cpuSeconds, percentile, readBenchEnv } from "../support.ts";
import { addScrapes, parseHistograms, stageRows, type Scrape } from "./relay-stages.ts";

const {
  BENCH_EVENTS: EVENTS,
  BENCH_RATE: RATE,
  BENCH_SECONDS: SECONDS,
  BENCH_STOCKS: STOCKS,
  OUTBOX_SHARDS: SHARDS,
  KAFKA_PARTITIONS: PARTITIONS,
  BENCH_RELAYS: RELAYS,
} = readBenchEnv({
  BENCH_EVENTS: benchInt(200_000, 1),
  BENCH_RATE: benchInt(2_000, 1),
  BENCH_SECONDS: benchInt(25, 1),
  BENCH_STOCKS: benchInt(400, 1),
  OUTBOX_SHARDS: benchInt(16, 1),
  KAFKA_PARTITIONS: benchInt(12, 1),
  BENCH_RELAYS: benchInt(1, 1, 8),
});
const REDIS_URL = stackEnv.REDIS_URL;
const BROKERS = stackEnv.KAFKA_BROKERS.split(",");
const ADMIN_PORT = 19_000 + Math.floor(Math.random() * 900);
const adminPorts = Array.from({ length: RELAYS }, (_, i) => ADMIN_PORT + i * 7);

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

/** Every relay's histograms, summed (one /metrics scrape each). */
async function scrapeRelays(): Promise<Scrape> {
  return addScrapes(await Promise.all(adminPorts.map((port) => fetch(`http://127.0.0.1:${port}/metrics`).then(async (r) => parseHistograms(await r.text())))));
}

let nextUser = 0;
const stockIds = Array.from({ length: STOCKS }, (_, i) => `bench${i}`);
const allocateOne = () => commands.allocate({ stockId: stockIds[nextUser % STOCKS]!, userId: `u${nextUser++}`, quantity: 1 });

async function cleanup(relays: ReturnType<typeof Bun.spawn>[]) {
  for (const relay of relays) if (relay.exitCode === null) relay.kill("SIGTERM");
  await Promise.all(relays.map((r) => r.exited));
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
    `${RELAYS} relay process(es); RELAY_MIN_REPLICAS=${process.env.RELAY_MIN_REPLICAS ?? "default"} RELAY_TRANSACTIONS=${process.env.RELAY_TRANSACTIONS ?? "default (true)"} ...`,
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

const relays = adminPorts.map((port) =>
  Bun.spawn([process.execPath, "services/relay/main.ts"], {
    cwd: new URL("../..", import.meta.url).pathname,
    env: {
    ...process.env,
    REDIS_URL,
    KAFKA_BROKERS: BROKERS.join(","),
    KAFKA_TOPIC: topic,
    KAFKA_PARTITIONS: String(PARTITIONS),
    REDIS_KEY_PREFIX: prefix,
    OUTBOX_SHARDS: String(SHARDS),
    ADMIN_PORT: String(port),
    LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
  },
    stdout: "inherit",
    stderr: "inherit",
  }),
);
const relaysCpu = () => relays.reduce((sum, r) => sum + cpuSeconds(r.pid), 0);

/** Every relay answers /readyz 200 (connected, producer initialised, loop running). */
async function relaysReady(): Promise<boolean> {
  const answers = await Promise.all(adminPorts.map((port) => fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false)));
  return answers.every(Boolean);
}

try {
  // Drain, timed from the moment every relay is ready (process start and connect are printed apart):
  // one transaction can carry a whole read round (16 shards × RELAY_BATCH_SIZE), so "from the first
  // trim" would leave out the first ~30k events.
  const spawnedAt = performance.now();
  while (!(await relaysReady())) {
    await Bun.sleep(10);
    if (performance.now() - spawnedAt > 60_000) throw new Error("relays not ready in 60 s");
  }
  const readyAt = performance.now();
  const cpuAtReady = relaysCpu();
  let left = outboxLength;
  while (left > 0) {
    await Bun.sleep(10);
    left = await outboxLeft();
    if (performance.now() - spawnedAt > 180_000) throw new Error(`drain did not finish in 180 s (${left} of ${outboxLength} left)`);
  }
  const doneAt = performance.now();
  const cpuPerEventUs = ((relaysCpu() - cpuAtReady) / outboxLength) * 1e6;
  const drainRate = outboxLength / ((doneAt - readyAt) / 1000);
  const withStartup = outboxLength / ((doneAt - spawnedAt) / 1000);
  log(
    `drain: ${outboxLength} events in ${((doneAt - readyAt) / 1000).toFixed(2)} s from ready = ${Math.round(drainRate)} events/s ` +
      `(${Math.round(withStartup)} events/s including process start and connect, ${((readyAt - spawnedAt) / 1000).toFixed(1)} s); relay CPU ${cpuPerEventUs.toFixed(1)} µs/event`,
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
  const stagesBefore = await scrapeRelays();
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
  const stagesAfter = await scrapeRelays();
  const loadAfter = (await Bun.file("/proc/loadavg").text()).split(" ")[0];
  const stages = stageRows(stagesBefore, stagesAfter);

  const sorted = [...latencies].sort((a, b) => a - b);
  const seen = [...visible].sort((a, b) => a - b);
  log(
    `latency: ${sent} allocations in ${genSeconds.toFixed(1)} s (${Math.round(sent / genSeconds)}/s); ${latencies.length} events consumed; ` +
      `occurredAt → Kafka LogAppendTime: p50 ${percentile(sorted, 50)} ms, p90 ${percentile(sorted, 90)} ms, p99 ${percentile(sorted, 99)} ms, max ${sorted.at(-1)} ms; ` +
      `occurredAt → consumed (read committed): p50 ${percentile(seen, 50)} ms, p99 ${percentile(seen, 99)} ms`,
  );
  log(`latency phase, per stage (${RELAYS} relay(s); machine load average ${loadBefore} → ${loadAfter}, 2 cores, shared):`);
  console.table(stages);
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
      relays: RELAYS,
      shards: SHARDS,
      stages: Object.fromEntries(stages.map((r) => [r.stage.split(" ")[0], { n: r.count, meanMs: r.meanMs, p50: r.p50, p99: r.p99 }])),
      relayEnv: Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("RELAY_"))),
    }),
  );
} finally {
  await cleanup(relays);
}
