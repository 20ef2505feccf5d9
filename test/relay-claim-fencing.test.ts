/**
 * Issue 21 item 1: a relay that wakes from a pause must not claim pending entries of a shard whose
 * lease it lost. Every claim (taking over what a previous owner left pending, the periodic idle
 * claim, re-claiming our own pending entries before WAIT) runs in a script that checks the lease
 * in the same atomic step (relay_claim.lua, relay_read_pending.lua), as relay_read.lua does for reads.
 *
 * The window is put there on purpose, not hoped for: relay A runs with RELAY_TEST_FREEZE_BEFORE,
 * so it stops itself (SIGSTOP) at the claim step; the test checks the process is stopped, waits
 * until A's lease has expired in Redis, and then acts as the new owner B: it takes the lease and
 * claims the pending entries (what a relay does on acquiring a shard; done by hand here so that B
 * keeps them pending while A wakes: a real B would relay them within milliseconds). A is resumed
 * with SIGCONT. It must leave B's entries alone and publish nothing. Finally a real relay named B
 * takes over, re-sends what it has pending first, and every event reaches the topic in version order.
 * - single node, `acquire-claim`: a crashed relay left entries pending; A acquires the shard and
 *   freezes before claiming them (before the fix: XAUTOCLAIM … 0 JUSTID, which took B's entries).
 * - the stack's Redis Cluster (RELAY_MIN_REPLICAS 1, the default there), `pending-claim`: A took them
 *   over, read them from its own pending list and froze before the XCLAIM … JUSTID that precedes
 *   WAIT (before the fix: that XCLAIM took them back from B).
 */
import { describe, expect, test } from "bun:test";
import { stackEnv } from "../shared/dev/env.ts";
import { allocate, createStocks, type Harness, processState, relayTestFixtures, spawnLogged, spawnRelay, stockVersions } from "./support/relay-harness.ts";
import { verify, waitUntil } from "./support/topic-reader.ts";
import { relayEnsureGroupCall } from "../shared/redis/calls.ts";
import { runScript } from "../shared/redis/scripts.ts";
import { RELAY_GROUP } from "../services/relay/stream.ts";

const { setup, track } = relayTestFixtures();

/** Pending entries per consumer of the shard's outbox. */
async function pendingByConsumer(h: Harness, shard: number): Promise<Record<string, number>> {
  const summary = (await h.redis.call("XPENDING", h.keys.outbox(shard), RELAY_GROUP)) as [number, string | null, string | null, [string, string][] | null];
  return Object.fromEntries((summary[3] ?? []).map(([name, n]) => [name, Number(n)]));
}

/** A relay that died mid-batch: `count` entries read by a consumer that will never acknowledge them. */
async function leavePending(h: Harness, shard: number, consumer: string, count: number): Promise<number> {
  await runScript(h.redis, relayEnsureGroupCall(h.keys, shard, RELAY_GROUP));
  const read = (await h.redis.eval(
    "local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>') return r and #r[1][2] or 0",
    1,
    h.keys.outbox(shard),
    RELAY_GROUP,
    consumer,
    count,
  )) as number;
  return read;
}

/** The new owner's takeover, by hand: the lease (only once it is free) and every pending entry of the shard. */
async function takeOverAs(h: Harness, shard: number, consumer: string): Promise<number | null> {
  const claimed = (await h.redis.eval(
    `if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', 60000) then return -1 end
     local r = redis.call('XAUTOCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, '0-0', 'COUNT', 10000, 'JUSTID')
     return #r[2]`,
    2,
    h.keys.relayLease(shard),
    h.keys.outbox(shard),
    RELAY_GROUP,
    consumer,
  )) as number;
  return claimed < 0 ? null : claimed;
}

async function pausedRelayLeavesClaimsAlone(label: string, point: "acquire-claim" | "pending-claim", clusterNodes?: string): Promise<void> {
  const { h, reader } = setup(label, { shards: 1, ...(clusterNodes ? { clusterNodes } : {}) });
  const stocks = await createStocks(h, 4, 1_000);
  await allocate(h, stocks, 300, { concurrency: 20 });
  expect(await leavePending(h, 0, "relay-crashed", 100)).toBe(100);
  await reader.start();

  const env = { RELAY_LEASE_MS: "1000", RELAY_CLAIM_IDLE_MS: "60000", RELAY_TEST_FREEZE_BEFORE: point };
  const { child: a, lines: aLog } = spawnLogged(track, h.env({ ...env, RELAY_CONSUMER_NAME: "relay-a" }));
  await waitUntil(() => aLog.some((l) => l.msg === "test hook: freezing before the claim"), 30_000, "relay A at its claim step");
  await waitUntil(async () => (await processState(a.pid)) === "T", 5_000, "relay A stopped");
  const before = await pendingByConsumer(h, 0);

  // A's lease runs out while it is stopped; B takes the shard and what is pending on it.
  let claimedByB: number | null = null;
  await waitUntil(async () => (claimedByB = await takeOverAs(h, 0, "relay-b")) !== null, 10_000, "A's lease expired and B holding it");
  const handedOver = await pendingByConsumer(h, 0);
  expect(claimedByB!).toBe(100);
  expect(handedOver).toEqual({ "relay-b": 100 });

  const resumedAt = aLog.length;
  a.kill("SIGCONT");
  // A finds out that the lease is gone (by its claim, or at the latest by its next renewal).
  await waitUntil(() => aLog.slice(resumedAt).some((l) => /lease (is no longer ours|lost)/.test(String(l.msg))), 15_000, "relay A noticing the lost lease");
  await Bun.sleep(500); // anything A would still do after noticing (a send already under way) has had its chance
  const after = await pendingByConsumer(h, 0);
  const byA = reader.messages.filter((m) => m.headers.relay === "relay-a").length;
  console.log(
    `[relay claim fencing, ${point}${clusterNodes ? ", cluster" : ""}] pending before the takeover ${JSON.stringify(before)}, after it ${JSON.stringify(handedOver)}, ` +
      `after A resumed ${JSON.stringify(after)}; A published ${byA}; A said: ${aLog.slice(resumedAt).map((l) => l.msg).filter((m) => /lease|claim|fenced|acquired/.test(String(m))).join(" | ")}`,
  );
  expect(after).toEqual({ "relay-b": 100 });
  expect(byA).toBe(0);

  // A real B (same consumer name) takes over: its pending entries first, then the rest, in order.
  a.kill("SIGTERM");
  await a.exited;
  await h.redis.del(h.keys.relayLease(0));
  track(spawnRelay(h.env({ RELAY_LEASE_MS: "1000", RELAY_CONSUMER_NAME: "relay-b" })));
  const versions = await stockVersions(h, stocks);
  const expected = [...versions.values()].reduce((x, y) => x + y, 0);
  await reader.waitFor(() => reader.uniqueIds().size >= expected, 60_000, "every event on the topic");
  const verdict = verify(reader.messages, versions);
  expect(verdict.missing).toEqual([]);
  expect(verdict.unexpected).toEqual([]);
  expect(verdict.outOfOrder).toEqual([]);
  expect(reader.messages.filter((m) => m.headers.relay === "relay-a")).toEqual([]);
}

describe("a paused relay claims nothing once its lease is gone", () => {
  test("single node: frozen before taking over a crashed relay's pending entries", () => pausedRelayLeavesClaimsAlone("relayclaim", "acquire-claim"), 120_000);
  test("Redis Cluster: frozen between reading its pending entries and re-claiming them for WAIT", () => pausedRelayLeavesClaimsAlone("relayclaimc", "pending-claim", stackEnv.REDIS_CLUSTER_NODES), 120_000);
});
