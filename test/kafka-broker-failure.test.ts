/**
 * Broker failure under load, on a private three-broker Kafka (test/support/private-kafka.ts, ports
 * 19292-19297, started by `stack.sh up kafka-cluster`): the whole pipeline runs as processes (relay,
 * projector-postgres, projector-search, notifier) while ~2,000 allocations/s go into Redis.
 *   1. no fault yet: read_committed already holds every event once (the kafkajs retry that re-sent a
 *      batch to a broker whose produce was still in flight; patches/kafkajs@2.2.4.patch);
 *   2. kill -9 of the broker that leads most partitions of the events topic; `up` restarts it 10 s
 *      later and it catches up (every partition's ISR is 3 again);
 *   3. kill -9 of the active controller (the KRaft quorum leader, also a broker), restarted the same way.
 * Then: the topic (read_committed) holds every event exactly once per (stock, version), in version
 * order per stock; PostgreSQL, search and the notifier's deliveries converge with Redis (shared/verify);
 * every shard's publishing resumed within 10 s of each fault (the gap is printed).
 *
 * In `bun run test` (about 2-4 minutes on a quiet 2-core machine: three more JVMs, two broker restarts
 * of ~15 s each, the drain); FLASHSALE_BROKER_FAILURE=0 skips it for a quicker local run. The 10 s
 * resume rests on the three-broker stack's failure detection (scripts/stack/kafka-cluster.sh).
 * KBF_RATE sets the rate.
 * A stalled drain prints where the events stopped (stallReport); FLASHSALE_TEST_CHILD_LOGS=<dir> keeps
 * the workers' and the brokers' logs; KBF_RELAY_LOG_LEVEL=debug adds kafkajs' own lines to the relay's
 * (every retry, with the broker it tried: how the pause after a kill was spent).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Client } from "@elastic/elasticsearch";
import { formatReport } from "../shared/verify/report.ts";
import { verify as verifyPipeline } from "../shared/verify/verify.ts";
import { generateSecret } from "../shared/webhooks/endpoints.ts";
import { serviceProcesses } from "./support/processes.ts";
import { startPrivateKafkaCluster, type PrivateKafkaCluster } from "./support/private-kafka.ts";
import { deleteIndices } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { createTestDatabase, testSearchClient, type TestDatabase } from "./support/read-side.ts";
import { deleteKeysByPrefix } from "../shared/redis/client.ts";
import { createHarness, createStocks, spawnRelay, stockVersions, type Harness } from "./support/relay-harness.ts";
import { TopicReader, verify, waitUntil, type TopicMessage } from "./support/topic-reader.ts";
import { killChild } from "./support/processes.ts";
import { publishedAround, publishingGap } from "./support/publishing-gaps.ts";
import { startReceiver, type Receiver } from "../shared/dev/webhook-receiver.ts";

const PARTITIONS = 12;
const SHARDS = 8;
const STOCKS = 48;
/** Allocations per second asked for (KBF_RATE); what the machine managed is printed, and must be at least half of it (1,690-1,744/s of 2,000 on the quiet 2-core machine, where this process, the workers and five JVMs share the cores). */
const RATE = Number(process.env.KBF_RATE ?? 2_000);
const PURCHASE_EVERY = 10; // every 10th allocation is purchased (the notifier's events)
const RESUME_BUDGET_MS = 10_000;

let kafka: PrivateKafkaCluster;
let h: Harness;
let reader: TopicReader;
let db: TestDatabase;
let es: Client;
let receiver: Receiver;
const alias = uniqueName("kbfstocks");
const secret = generateSecret();
// The relay with production's lease and claim timings (the harness' 2 s lease is for takeover tests): on a
// loaded 2-core machine a 2 s lease expired under the relay's feet, which dropped and re-claimed its
// shards and re-sent batches Kafka already had (duplicates that were not the brokers' doing).
const childEnv = () => ({
  ...h.env(),
  RELAY_LEASE_MS: "10000",
  RELAY_CLAIM_IDLE_MS: "30000",
  KAFKA_PARTITIONS: String(PARTITIONS),
  DATABASE_URL: db.url,
  ELASTICSEARCH_INDEX_ALIAS: alias,
});
const projectorsPg = serviceProcesses("projector-postgres", () => ({ ...childEnv(), PROJECTOR_GROUP_ID: uniqueName("kbfpg") }));
const projectorsEs = serviceProcesses("projector-search", () => ({ ...childEnv(), PROJECTOR_GROUP_ID: uniqueName("kbfes") }));
const notifiers = serviceProcesses("notifier", () => ({
  ...childEnv(),
  NOTIFIER_GROUP_ID: uniqueName("kbfntf"),
  WEBHOOK_URL: receiver.url,
  WEBHOOK_SECRET: secret,
  WEBHOOK_EVENTS: "PurchaseCompleted",
  // The receiver is on loopback, which the notifier's address policy refuses unless allowed (without
  // this every delivery was "refused", the 24 stock heads were given up after their attempts and no
  // later version was ever sent: the "unexplained give-ups" of the first runs).
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true",
  WEBHOOK_RETRY_BASE: "200ms",
  // The receiver shares this process with the load and the reader: a busy moment must not use up the
  // attempts (production's schedule, 5 s doubling to 1 h, is far longer).
  WEBHOOK_RETRY_MAX: "5s",
  WEBHOOK_MAX_ATTEMPTS: "40",
  WEBHOOK_POLL_INTERVAL: "50ms",
  LOG_LEVEL: "info",
}));

/** On unless FLASHSALE_BROKER_FAILURE=0 (a quicker local run). */
const ENABLED = process.env.FLASHSALE_BROKER_FAILURE !== "0";

beforeAll(async () => {
  if (!ENABLED) return;
  kafka = await startPrivateKafkaCluster(19292);
  h = createHarness("kbf", { brokers: kafka.brokers, shards: SHARDS });
  await kafka.createTopic(h.topic, PARTITIONS);
  db = await createTestDatabase("kbf");
  es = testSearchClient();
  receiver = startReceiver({ secret });
}, 120_000);

afterAll(async () => {
  if (kafka && process.env.FLASHSALE_TEST_CHILD_LOGS) kafka.keepLogs(`${process.env.FLASHSALE_TEST_CHILD_LOGS}/kafka-cluster`);
  // The brokers first (stack.sh down, in parallel), then the rest; one failing step does not skip the others.
  await Promise.all([
    kafka?.stop(),
    reader?.stop(),
    receiver?.stop(),
    (async () => {
      await deleteIndices(es, `${alias}-v*`).catch(() => {});
      await es?.close();
    })(),
  ]).catch((err) => console.error(String(err)));
  if (h) {
    await deleteKeysByPrefix(h.redis, h.prefix).catch(() => {});
    h.redis.disconnect();
  }
  await db?.drop().catch(() => {});
}, 120_000);

/**
 * Allocations at `rate`/s on the given stocks until stop(): every 20 ms a tick's share, sent
 * concurrently (ioredis pipelines them); every PURCHASE_EVERY-th is purchased right away.
 */
function paceLoad(stocks: string[], rate: number) {
  let running = true;
  let sent = 0;
  let failed = 0;
  const inFlight = new Set<Promise<void>>();
  const one = async (i: number) => {
    try {
      const { allocation } = await h.commands.allocate({ stockId: stocks[i % stocks.length]!, userId: `u${i}`, quantity: 1 });
      if (i % PURCHASE_EVERY === 0) await h.commands.purchase({ allocationId: allocation.allocationId, userId: `u${i}` });
    } catch {
      failed++;
    }
  };
  const startedAt = Date.now();
  const done = (async () => {
    while (running) {
      const due = Math.floor(((Date.now() - startedAt) * rate) / 1000);
      // Never more than a second's worth outstanding: a stalled Redis must not pile up promises.
      while (sent < due && inFlight.size < rate) {
        const p = one(sent++).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      await Bun.sleep(20);
    }
    await Promise.all(inFlight);
  })();
  return {
    get sent() {
      return sent;
    },
    failed: () => failed,
    async stop() {
      running = false;
      await done;
      return { sent, seconds: (Date.now() - startedAt) / 1000 };
    },
  };
}

/** Copies of one event on the topic so far (whatever the relay's backlog). */
function duplicatesSoFar(): { messages: number; duplicates: number } {
  return { messages: reader.messages.length, duplicates: reader.messages.length - reader.uniqueIds().size };
}

/** Waits for `done`, failing only when `progress` has not moved for `stallMs`. */
async function waitWhileProgressing(progress: () => number, done: () => boolean, stallMs: number, what: string): Promise<void> {
  let last = progress();
  let movedAt = Date.now();
  while (!done()) {
    if (Date.now() - movedAt > stallMs) throw new Error(`no progress for ${stallMs} ms waiting for ${what}`);
    await Bun.sleep(500);
    if (progress() !== last) [last, movedAt] = [progress(), Date.now()];
  }
}

/**
 * Where the events stopped, for a drain that made no progress: per partition how far the reader got
 * against the last stable offset (a reader behind it stalled; an LSO that stops short of the relay's
 * sends is held back by an open transaction), the outbox per shard (entries, pending on the relay),
 * and the cluster's open and hanging transactions.
 */
async function stallReport(): Promise<string> {
  const lines: string[] = [];
  const readTo = new Map<number, number>();
  for (const m of reader.messages) readTo.set(m.partition, Math.max(readTo.get(m.partition) ?? 0, Number(m.offset) + 1));
  const ends = await kafka.committedEnds(h.topic).catch((err) => new Map([[-1, String(err)]]));
  lines.push(`partition: read to / last stable offset: ${[...ends].map(([p, lso]) => `${p}: ${readTo.get(p) ?? 0}/${lso}`).join(", ")}`);
  const outbox = await Promise.all(
    h.keys.allShards().map(async (s) => `${s}: ${await h.redis.xlen(h.keys.outbox(s))} entries, ${((await h.redis.xpending(h.keys.outbox(s), "relay")) as [number])[0]} pending`),
  );
  lines.push(`outbox: ${outbox.join("; ")}`);
  lines.push(await kafka.transactions("list").catch((err) => String(err)));
  // The missing events: does a fresh read_committed reader see them (our reader skipped them), or a
  // read_uncommitted one (they are there, in an aborted transaction)?
  const missing = new Set(verify(reader.messages, await stockVersions(h, [...new Set(reader.messages.map((m) => m.aggregateId))])).missing);
  const key = (m: TopicMessage) => `${m.aggregateId}@${m.version}`;
  lines.push(`missing: ${missing.size} (${[...missing].slice(0, 5).join(", ")}…)`);
  for (const uncommitted of [false, true]) {
    const fresh = new TopicReader(h.topic, kafka.brokers, uncommitted);
    await fresh.start();
    await waitUntil(() => fresh.messages.length >= reader.messages.length, 30_000, "the fresh reader").catch(() => {});
    await Bun.sleep(2_000);
    const found = fresh.messages.filter((m) => missing.has(key(m)));
    lines.push(
      `a fresh ${uncommitted ? "read_uncommitted" : "read_committed"} reader: ${fresh.messages.length} messages, ${found.length} of the missing ` +
        `(${found.slice(0, 5).map((m) => `${key(m)} p${m.partition}@${m.offset} t+${m.timestamp - reader.messages[0]!.timestamp}`).join(", ")})`,
    );
    await fresh.stop();
  }
  for (const node of [1, 2, 3]) lines.push(`find-hanging ${node}: ${await kafka.transactions("find-hanging", "--broker-id", String(node)).catch((err) => String(err))}`);
  return lines.join("\n");
}

/**
 * Every 10 s while the test runs: allocations sent, the relay's backlog (entries still in the outbox:
 * it trims what Kafka acknowledged), committed offsets on the topic, and what the test's reader has
 * read (it shares this process with the load, so on a busy machine it lags what is committed).
 */
function progressLog(load: { readonly sent: number }): () => void {
  const startedAt = Date.now();
  const timer = setInterval(async () => {
    const backlog = (await Promise.all(h.keys.allShards().map((s) => h.redis.xlen(h.keys.outbox(s))))).reduce((a, b) => a + b, 0);
    const committed = await kafka.committedEnds(h.topic).then(
      (ends) => String([...ends.values()].reduce((a, b) => a + b, 0)),
      () => "?",
    );
    console.log(
      `[broker-failure] +${Math.round((Date.now() - startedAt) / 1000)} s: ${load.sent} allocations sent, outbox ${backlog}, ` +
        `topic committed to offset sum ${committed}, ${reader.uniqueIds().size} events read (${reader.messages.length} messages)`,
    );
  }, 10_000);
  return () => clearInterval(timer);
}

/**
 * kill -9 of a node, `up` 10 s later, then until every partition has its three replicas in sync again.
 * Meanwhile (the node still down): the first new active controller the surviving nodes log (undefined
 * if none within the 10 s). Seen while the node is down, so a later election (the restarted node may
 * win one) cannot hide whether this one happened.
 */
async function killAndRestart(node: number): Promise<{ killedAt: number; upMs: number; inSyncMs: number; controllerWhileDown?: { id: number; afterMs: number } }> {
  const logEnds = kafka.logEnds();
  const killedAt = Date.now();
  await kafka.kill(node);
  let controllerWhileDown: { id: number; afterMs: number } | undefined;
  while (Date.now() < killedAt + 10_000) {
    const elected = controllerWhileDown ? undefined : kafka.controllerElectedSince(logEnds);
    if (elected && elected.id !== node) controllerWhileDown = { id: elected.id, afterMs: elected.at - killedAt };
    await Bun.sleep(Math.max(0, Math.min(250, killedAt + 10_000 - Date.now())));
  }
  const upAt = Date.now();
  await kafka.up(); // restarts only the dead node
  const syncAt = Date.now();
  await kafka.waitFullIsr(h.topic, 120_000);
  return { killedAt, upMs: syncAt - upAt, inSyncMs: Date.now() - syncAt, controllerWhileDown };
}

test.skipIf(!ENABLED)("kill -9 of the busiest leader, then of the active controller, under 2,000 allocations/s: exactly once, in order, converged, resumed ≤ 10 s", async () => {
  // The topic as production runs it.
  const parts = await kafka.partitions(h.topic);
  expect(parts.length).toBe(PARTITIONS);
  expect(parts.every((p) => p.replicas.length === 3)).toBe(true);
  expect(await kafka.topicConfig(h.topic, ["min.insync.replicas", "unclean.leader.election.enable"])).toEqual({
    "min.insync.replicas": "2",
    "unclean.leader.election.enable": "false",
  });

  const stocks = await createStocks(h, STOCKS, 10_000_000);
  reader = new TopicReader(h.topic, kafka.brokers);
  await reader.start();
  const relay = spawnRelay({ ...childEnv(), LOG_LEVEL: process.env.KBF_RELAY_LOG_LEVEL ?? "info" });
  try {
    const children = { relay, "projector-postgres": projectorsPg.start(), "projector-search": projectorsEs.start(), notifier: notifiers.start() };
    // The pipeline runs: the StockCreated events are on the topic.
    await waitUntil(() => reader.uniqueIds().size >= STOCKS, 60_000, "the StockCreated events on the topic");

    const load = paceLoad(stocks, RATE);
    const stopProgress = progressLog(load);
    await Bun.sleep(6_000);
    const beforeFaults = duplicatesSoFar();

    // Fault 1: the broker that leads most partitions of the events topic. Among brokers that lead as
    // many (12 partitions usually spread 4/4/4), one that is not the active controller: fault 2 is the
    // controller's, so the two faults are a leader's loss and a controller's loss, not the same twice.
    const leaders = new Map<number, number>();
    for (const p of await kafka.partitions(h.topic)) leaders.set(p.leader, (leaders.get(p.leader) ?? 0) + 1);
    const firstController = await kafka.activeController();
    const [victim, led] = [...leaders].sort((a, b) => b[1] - a[1] || Number(a[0] === firstController) - Number(b[0] === firstController))[0]!;
    const fault1 = await killAndRestart(victim);
    // Fault 2: the active controller (the KRaft quorum leader; a broker too, combined node).
    const controller = await kafka.activeController();
    const fault2 = await killAndRestart(controller);
    await Bun.sleep(3_000);
    const { sent, seconds } = await load.stop();
    // Every worker rode the faults out (none exited: a retriable error never kills a process, §13).
    const exited = Object.entries(children).filter(([, c]) => c.exitCode !== null || c.signalCode !== null).map(([n, c]) => `${n} (exit ${c.exitCode ?? c.signalCode})`);

    // Kafka, read_committed: every event once, in order per stock.
    const versions = await stockVersions(h, stocks);
    const total = [...versions.values()].reduce((a, b) => a + b, 0);
    // As long as the relay makes progress: a slow machine drains slowly (three brokers cost it), a stuck relay stops.
    try {
      await waitWhileProgressing(() => reader.uniqueIds().size, () => verify(reader.messages, versions).missing.length === 0, 30_000, `all ${total} events on the topic`);
    } catch (err) {
      console.log(`[broker-failure] stalled:\n${await stallReport()}`);
      throw err;
    } finally {
      stopProgress();
    }
    await Bun.sleep(1_000); // a late copy would arrive now
    const verdict = verify(reader.messages, versions);
    const shardOf = (m: TopicMessage) => h.keys.shardOf(m.aggregateId);
    const gaps = [publishingGap(reader.messages, fault1.killedAt, shardOf), publishingGap(reader.messages, fault2.killedAt, shardOf)];
    // The relay as a whole (any shard): when it first published again.
    const relayGaps = [fault1, fault2].map((f) => publishingGap(reader.messages, f.killedAt, () => 0));
    console.log(
      `[broker-failure] load: ${sent} allocations in ${seconds.toFixed(1)} s (${Math.round(sent / seconds)}/s asked ${RATE}/s, ${load.failed()} failed); ` +
        `before any fault ${beforeFaults.messages} messages, ${beforeFaults.duplicates} duplicates; workers that exited: ${exited.join(", ") || "none"}\n` +
        `[broker-failure] fault 1: kill -9 of broker ${victim} (led ${led} of ${PARTITIONS} partitions; active controller then: ${firstController}); up took ${fault1.upMs} ms, all ISRs full ${fault1.inSyncMs} ms later; ` +
        `longest shard pause ${gaps[0]!.gapMs} ms (shard ${gaps[0]!.shard}), publishing again ${gaps[0]!.resumedAfterMs} ms after the kill\n` +
        `[broker-failure] fault 2: kill -9 of the active controller ${controller} (new active controller while it was down: ${fault2.controllerWhileDown ? `${fault2.controllerWhileDown.id}, elected ${fault2.controllerWhileDown.afterMs} ms after the kill` : "none logged"}); up took ${fault2.upMs} ms, ISRs full ${fault2.inSyncMs} ms later; ` +
        `longest shard pause ${gaps[1]!.gapMs} ms (shard ${gaps[1]!.shard}), publishing again ${gaps[1]!.resumedAfterMs} ms after the kill\n` +
        `[broker-failure] the relay as a whole (any shard) published again ${relayGaps[0]!.resumedAfterMs} ms after kill 1 (pause ${relayGaps[0]!.gapMs} ms) and ${relayGaps[1]!.resumedAfterMs} ms after kill 2 (pause ${relayGaps[1]!.gapMs} ms)\n` +
        `[broker-failure] committed per 5 s from the kills (s:messages): fault 1 ${publishedAround(reader.messages, fault1.killedAt)}; fault 2 ${publishedAround(reader.messages, fault2.killedAt)}\n` +
        `[broker-failure] topic (read_committed): ${reader.messages.length} messages for ${total} events; ${verdict.duplicates} duplicates, ${verdict.missing.length} missing, ${verdict.outOfOrder.length} stocks out of order`,
    );
    expect(exited).toEqual([]);
    expect(beforeFaults.duplicates).toBe(0);
    expect(load.failed()).toBe(0);
    expect(sent / seconds).toBeGreaterThan(RATE / 2);
    expect(fault2.controllerWhileDown?.id).toBeOneOf([1, 2, 3].filter((n) => n !== controller));
    expect(verdict).toEqual({ missing: [], duplicates: 0, outOfOrder: [], unexpected: [] });

    // The read side converges with Redis (I6), and the notifier delivered every purchase.
    const report = await verifyPipeline({
      redis: h.redis,
      prefix: h.prefix,
      layers: ["redis", "kafka", "postgres", "search"],
      kafka: { brokers: kafka.brokers.split(","), topic: h.topic },
      sql: db.sql,
      es,
      esIndex: alias,
      outbox: "tail",
      deadlineMs: 120_000,
    });
    if (!report.ok) console.log(formatReport(report));
    expect(report.ok).toBe(true);
    const purchases = new Set(reader.messages.filter((m) => m.headers.eventType === "PurchaseCompleted").map((m) => m.eventId));
    expect(purchases.size).toBeGreaterThan(sent / PURCHASE_EVERY / 2);
    await waitUntil(() => receiver.acknowledged.size >= purchases.size, 90_000, `${purchases.size} purchases delivered`);
    expect(new Set(receiver.acknowledged.keys())).toEqual(purchases);
    expect(receiver.invalid).toEqual([]);
    console.log(`[broker-failure] read side converged (${report.stocks} stocks); notifier: ${receiver.acknowledged.size} purchases delivered, ${receiver.duplicates()} re-deliveries`);
    // Publishing resumed after each fault, every shard (checked last, so a run on a slow machine still
    // shows whether everything above held).
    for (const g of gaps) expect(g.resumedAfterMs).toBeLessThanOrEqual(RESUME_BUDGET_MS);
  } finally {
    await killChild(relay);
  }
}, 600_000); // two broker restarts took 55-67 s each on the loaded machine
