/**
 * Nothing Redis can forget reaches Kafka (docs/design.md §11), on private Redis Clusters (ports
 * 7100-7135, started by scripts/stack.sh; the shared one on 7000-7005 is never touched):
 *
 *   1. the replica of one shard's master is frozen (SIGSTOP) and allocations go to that master;
 *   2. the master is killed (-9), the replica resumes (SIGCONT) and is promoted with
 *      CLUSTER FAILOVER TAKEOVER, so the promoted master lacks those allocations;
 *   3. the old master comes back (as a replica of the new one) and allocations go on.
 *
 * With RELAY_MIN_REPLICAS=1 Kafka must hold no event the promoted master lacks (no allocation
 * whose hold Redis does not have, no version with two contents) and a version-guarded read model
 * folded from the topic ends equal to Redis. The second test runs the same scenario with
 * RELAY_MIN_REPLICAS=0 and expects exactly that damage: it shows the checks catch it.
 */
import { describe, expect, test } from "bun:test";
import type { StockEvent } from "../shared/domain/events.ts";
import { startPrivateCluster } from "./support/private-cluster.ts";
import { relayTestFixtures, stockVersions } from "./support/relay-harness.ts";
import { verify, waitUntil, type TopicMessage } from "./support/topic-reader.ts";

const SHARDS = 6;
const { setup, onCleanup } = relayTestFixtures();

/** A private cluster from `basePort` (stopped after the test), a relay harness on it and a reader of its topic. */
async function onPrivateCluster(label: string, basePort: number) {
  const cluster = await startPrivateCluster({ basePort });
  onCleanup(() => cluster.stop());
  return { cluster, ...setup(label, { clusterNodes: cluster.nodesEnv, shards: SHARDS }) };
}

async function retrying<T>(what: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await what();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await Bun.sleep(100);
    }
  }
}

interface Outcome {
  /** Allocations acknowledged by the old master that the promoted one lacks. */
  forgottenAllocations: string[];
  /** StockAllocated events on Kafka whose hold Redis (the promoted master) does not have. */
  eventsRedisLacks: string[];
  /** stock@version carried by Kafka with two different eventIds. */
  conflictingVersions: string[];
  /** Stocks whose version-guarded fold of the topic differs from Redis. */
  diverged: string[];
  heldBackWhileFrozen: number;
}

async function laggingReplicaFailover(minReplicas: number, basePort: number): Promise<Outcome> {
  const { cluster, h, reader } = await onPrivateCluster("rrepl", basePort);
  const { keys, redis, commands } = h;
  const relay = h.relay({ RELAY_REPLICA_WAIT_MS: "200", RELAY_MIN_REPLICAS: String(minReplicas) });

  // Two stocks per shard; the shard of stocks[0] is the one whose master fails.
  const stocks: string[] = [];
  const perShard = new Map<number, number>();
  for (let i = 0; stocks.length < SHARDS * 2; i++) {
    const shard = keys.shardOf(`rs${i}`);
    if ((perShard.get(shard) ?? 0) >= 2) continue;
    perShard.set(shard, (perShard.get(shard) ?? 0) + 1);
    stocks.push(`rs${i}`);
  }
  for (const id of stocks) await commands.createStock({ id, name: id, price: 100, quantity: 10_000, perUserLimit: 10_000, holdSeconds: 3_600 });
  const target = keys.shardOf(stocks[0]!);
  const targetStocks = stocks.filter((s) => keys.shardOf(s) === target);
  let user = 0;
  const allocateOn = async (ids: string[], count: number) => {
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const stockId = ids[i % ids.length]!;
      const userId = `u${user++}`;
      out.push((await retrying(() => commands.allocate({ stockId, userId, quantity: 1 }))).allocation.allocationId);
    }
    return out;
  };
  await allocateOn(stocks, 120);

  await relay.start();
  await reader.start();
  const total = async () => [...(await stockVersions(h, stocks)).values()].reduce((a, b) => a + b, 0);
  const before = await total();
  await reader.waitFor(() => reader.uniqueIds().size >= before, 60_000, "the first events on the topic");

  // 1. Freeze the target shard's replica; allocations go to its master only.
  const slot = Number(await redis.call("CLUSTER", "KEYSLOT", keys.outbox(target)));
  const { master, replica } = await cluster.ownerOf(slot);
  if (replica === undefined) throw new Error("the target master has no replica");
  await cluster.waitReplicasSynced(30_000); // lagging from here on, not empty
  cluster.freeze(replica);
  // A frozen process's socket still takes what the kernel buffers (hundreds of kB and more), and
  // the replica would apply it after SIGCONT. Fill the link first, so the allocations after it stay
  // in the master's output buffer and die with it.
  const padding = "x".repeat(8 * 1024 * 1024);
  for (let i = 0; i < 6; i++) await redis.set(`${keys.outbox(target)}:test-padding-${i}`, padding);
  const onMasterOnly = await allocateOn(targetStocks, 30);
  const onTopic = () => reader.messages.filter((m) => onMasterOnly.includes(allocationIdOf(m))).length;
  await Bun.sleep(3_000); // time for the relay to publish them (MIN=0) or to hold them back (MIN=1)
  const heldBackWhileFrozen = onMasterOnly.length - onTopic();

  // 2. Kill the master, promote the lagging replica.
  await cluster.kill(master);
  cluster.thaw(replica);
  await retrying(() => cluster.cli(replica, "CLUSTER", "FAILOVER", "TAKEOVER"), 10_000);
  await waitUntil(async () => (await cluster.ownerOf(slot).catch(() => null))?.master === replica, 30_000, "the replica to own the slot");
  // 3. The old master returns as a replica of the new one (so WAIT 1 can succeed again).
  await cluster.restart();
  await cluster.waitOk(60_000);
  await waitUntil(async () => (await cluster.ownerOf(slot)).replica === master, 30_000, "the old master to rejoin as a replica");

  const forgottenAllocations: string[] = [];
  for (const id of onMasterOnly) if ((await retrying(() => commands.getAllocation(id))) === null) forgottenAllocations.push(id);
  await allocateOn(stocks, 60);

  const versions = await retrying(() => stockVersions(h, stocks));
  await reader.waitFor(() => verify(reader.messages, versions).missing.length === 0, 90_000, "every version Redis has on the topic");
  await Bun.sleep(1_000); // anything still in flight lands too

  const eventsRedisLacks: string[] = [];
  for (const m of reader.messages) {
    const id = allocationIdOf(m);
    if (id && m.headers.eventType === "StockAllocated" && (await retrying(() => commands.getAllocation(id))) === null) eventsRedisLacks.push(m.eventId);
  }
  const contents = new Map<string, Set<string>>();
  for (const m of reader.messages) {
    const at = `${m.aggregateId}@${m.version}`;
    contents.set(at, (contents.get(at) ?? new Set()).add(m.eventId));
  }
  const conflictingVersions = [...contents].filter(([, ids]) => ids.size > 1).map(([at]) => at);
  const diverged: string[] = [];
  for (const id of stocks) {
    const fold = foldVersionGuarded(reader.messages.filter((m) => m.aggregateId === id));
    const truth = (await retrying(() => commands.getStock(id)))!;
    if (!fold || fold.version !== truth.version || fold.available !== truth.available || fold.held !== truth.held || fold.sold !== truth.sold) diverged.push(id);
  }
  console.log(
    `[relay replicas, RELAY_MIN_REPLICAS=${minReplicas}] ${onMasterOnly.length} allocations on the master only: ` +
      `${heldBackWhileFrozen} held back while the replica was frozen, ${forgottenAllocations.length} forgotten by the promoted master; ` +
      `Kafka: ${eventsRedisLacks.length} events Redis lacks, ${conflictingVersions.length} versions with two contents, ${diverged.length} stocks diverged`,
  );
  return { forgottenAllocations, eventsRedisLacks, conflictingVersions, diverged, heldBackWhileFrozen };
}

const allocationIdOf = (m: TopicMessage) => String((JSON.parse(m.value) as { payload?: { allocationId?: string } }).payload?.allocationId ?? "");

/** What a version-guarded read model keeps: per stock, the state of the highest version it saw (first copy of each version wins). */
function foldVersionGuarded(messages: TopicMessage[]): { version: number; available: number; held: number; sold: number } | null {
  let best: StockEvent | null = null;
  for (const m of messages) {
    const event = JSON.parse(m.value) as StockEvent;
    if (!best || event.version > best.version) best = event;
  }
  if (!best) return null;
  const p = best.payload as { available: number; held: number; sold: number };
  return { version: best.version, available: p.available, held: p.held, sold: p.sold };
}

describe("relay on a cluster: a lagging replica is promoted", () => {
  test(
    "RELAY_MIN_REPLICAS=1: Kafka holds nothing the promoted master lacks, and the read side converges",
    async () => {
      const outcome = await laggingReplicaFailover(1, 7100);
      expect(outcome.forgottenAllocations.length).toBeGreaterThan(0); // the scenario did make Redis forget writes
      expect(outcome.eventsRedisLacks).toEqual([]);
      expect(outcome.conflictingVersions).toEqual([]);
      expect(outcome.diverged).toEqual([]);
      expect(outcome.heldBackWhileFrozen).toBe(30); // WAIT held them back while the replica was frozen
    },
    240_000,
  );

  test(
    "RELAY_MIN_REPLICAS=0 (the control): the same failover puts forgotten events on Kafka, and the checks above see it",
    async () => {
      const outcome = await laggingReplicaFailover(0, 7110);
      expect(outcome.forgottenAllocations.length).toBeGreaterThan(0);
      expect(outcome.eventsRedisLacks.length).toBeGreaterThan(0);
      expect(outcome.conflictingVersions.length).toBeGreaterThan(0);
    },
    240_000,
  );
});

describe("relay on a cluster: a shard's slot moves to another master under load", () => {
  test(
    "the relay follows MOVED/ASK to the new master: every event once, in version order per stock",
    async () => {
      const { cluster, h, reader } = await onPrivateCluster("rresh", 7130);
      const { keys, redis, commands } = h;
      const relay = h.relay();
      const stocks = Array.from({ length: 12 }, (_, i) => `mv${i}`);
      for (const id of stocks) await commands.createStock({ id, name: id, price: 100, quantity: 100_000, perUserLimit: 100_000, holdSeconds: 3_600 });
      await relay.start();
      await reader.start();

      let writing = true;
      let user = 0;
      const writer = (async () => {
        while (writing) {
          await Promise.all(stocks.map((stockId) => retrying(() => commands.allocate({ stockId, userId: `u${user++}`, quantity: 1 }))));
          await Bun.sleep(20);
        }
      })();
      await reader.waitFor(() => reader.messages.length >= 500, 60_000, "events flowing");
      // Move the slot of the shard of mv0 to another master, keys a few at a time, while writing.
      const shard = keys.shardOf(stocks[0]!);
      const slot = Number(await redis.call("CLUSTER", "KEYSLOT", keys.outbox(shard)));
      const { master } = await cluster.ownerOf(slot);
      const target = (await cluster.topology()).find((n) => n.role === "master" && n.port !== master)!.port;
      const moved = await cluster.migrateSlot(slot, target, { keysPerBatch: 10, pauseMs: 50 }); // let traffic meet the half-migrated slot
      expect((await cluster.ownerOf(slot)).master).toBe(target);
      const afterMove = reader.messages.length;
      await reader.waitFor(() => reader.messages.length >= afterMove + 500, 60_000, "events flowing after the move");
      writing = false;
      await writer;

      const versions = await retrying(() => stockVersions(h, stocks));
      const total = [...versions.values()].reduce((a, b) => a + b, 0);
      await reader.waitFor(() => reader.uniqueIds().size >= total, 60_000, "every event on the topic");
      const verdict = verify(reader.messages, versions);
      const movedShard = reader.messages.filter((m) => keys.shardOf(m.aggregateId) === shard).length;
      console.log(`[relay reshard] slot ${slot} (shard ${shard}, ${moved} keys) moved ${master} → ${target}; ${reader.messages.length} messages for ${total} events (${verdict.duplicates} duplicates), ${movedShard} from the moved shard`);
      expect(verdict.missing).toEqual([]);
      expect(verdict.unexpected).toEqual([]);
      expect(verdict.outOfOrder).toEqual([]);
    },
    180_000,
  );
});

