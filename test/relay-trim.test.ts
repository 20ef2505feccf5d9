/**
 * Trimming without traffic (a relay-cluster kill test once had every event on Kafka and the outbox
 * not trimmed). The trim after an ack is computed by whoever made the ack; when that relay dies
 * between its XACK and its XTRIM (seen in the kill test: relay-a's last log on a shard was its ack
 * pipeline, the kill came 230 ms later), or its trim stopped at an entry pending elsewhere that is
 * acknowledged later by a relay that then does not trim, nobody acks on that shard again until new
 * traffic, so nobody trims it. Both states are built here with a foreign consumer that XACKs and
 * never trims (what such a relay leaves behind); the relay must trim them within a few heartbeats
 * (RELAY_LEASE_MS/3, 2 s / 3 in the harness) with no new entry, and never trim a pending entry.
 */
import { describe, expect, test } from "bun:test";
import { RELAY_GROUP } from "../services/relay/stream.ts";
import { stackEnv } from "../shared/dev/env.ts";
import { allocate, allocatedEvent, createStocks, holdForeignEntry, outboxStats, relayTestFixtures, stockVersions, type HarnessOptions } from "./support/relay-harness.ts";
import { verify, waitUntil } from "./support/topic-reader.ts";

const { setup } = relayTestFixtures();
const total = (versions: Map<string, number>) => [...versions.values()].reduce((a, b) => a + b, 0);

describe("relay trims a quiet shard", () => {
  test("a shard whose previous relay acknowledged everything but died before trimming is trimmed by the next owner", async () => {
    const { h } = setup("relaytrimdead");
    const stocks = await createStocks(h, 8, 100);
    await allocate(h, stocks, 200);
    // The dead relay's work: every entry delivered to it and acknowledged (published), no XTRIM.
    for (const s of h.keys.allShards()) {
      const key = h.keys.outbox(s);
      await h.redis.call("XGROUP", "CREATE", key, RELAY_GROUP, "0", "MKSTREAM");
      const read = (await h.redis.call("XREADGROUP", "GROUP", RELAY_GROUP, "relay-dead", "COUNT", 10_000, "STREAMS", key, ">")) as [string, [string, string[]][]][];
      const ids = read[0]![1].map(([id]) => id);
      expect(Number(await h.redis.call("XACK", key, RELAY_GROUP, ...ids))).toBe(ids.length);
    }
    expect(await outboxStats(h)).toEqual({ length: 208, pending: 0 });

    const relay = h.relay();
    await relay.start();
    // Nothing to read, nothing to ack: only the trim of an acquired shard can empty it (~1 heartbeat).
    await waitUntil(async () => (await outboxStats(h)).length === 0, 10_000, "the acknowledged entries trimmed");
    expect((await relay.metrics.relayed.get()).values[0]?.value ?? 0).toBe(0); // nothing re-sent: they were acknowledged
  }, 30_000);

  const places: [string, HarnessOptions][] = [
    ["single node", {}],
    ["Redis Cluster", { clusterNodes: stackEnv.REDIS_CLUSTER_NODES, shards: 16 }],
  ];
  for (const [where, options] of places) {
    test(`${where}: the last batch acked while a foreign entry was pending; that entry acked later without a trim; the shard is trimmed without new traffic`, async () => {
      const { h, reader } = setup("relaytrimfor", options);
      const stocks = await createStocks(h, 8, 1_000);
      // No idle claim during the test: the foreign entry stays the other consumer's.
      const relay = h.relay({ RELAY_CLAIM_IDLE_MS: "600000" });
      await relay.start();
      await reader.start();
      await waitUntil(async () => (await outboxStats(h)).length === 0, 30_000, "the creation events relayed and trimmed");

      // A foreign consumer takes one entry of a stock's shard and holds it.
      const shard = h.keys.shardOf(stocks[0]!);
      const outbox = h.keys.outbox(shard);
      const ghostEvent = allocatedEvent("ghoststock", 1);
      const ghostId = await holdForeignEntry(h, outbox, ghostEvent);
      await allocate(h, stocks, 400);
      const versions = await stockVersions(h, stocks);
      await reader.waitFor(() => reader.uniqueIds().size >= total(versions), 30_000, "every event after the foreign one");
      await waitUntil(async () => (await outboxStats(h)).pending === 1, 10_000, "our acks done");

      // The relay's trims stopped at the pending entry, and every heartbeat's trim keeps it (safety).
      const heartbeat = Math.floor(h.settings().RELAY_LEASE_MS / 3);
      await Bun.sleep(3 * heartbeat);
      expect(await h.redis.xrange(outbox, "-", `(${ghostId}`)).toHaveLength(0);
      expect(await h.redis.xrange(outbox, ghostId, ghostId)).toHaveLength(1);
      const kept = await h.redis.xlen(outbox);
      expect(kept).toBeGreaterThan(1); // the foreign entry and the relayed ones after it
      expect(await outboxStats(h)).toEqual({ length: kept, pending: 1 });

      // It is acknowledged by its consumer, which then dies before trimming: no new traffic follows.
      expect(Number(await h.redis.call("XACK", outbox, RELAY_GROUP, ghostId))).toBe(1);
      const acked = Date.now();
      await waitUntil(async () => (await outboxStats(h)).length === 0, 10_000, "the quiet shard trimmed");
      console.log(`[relay trim ${where}] ${kept} acknowledged entries trimmed ${Date.now() - acked} ms after the foreign ack (heartbeat ${heartbeat} ms)`);
      expect(await outboxStats(h)).toEqual({ length: 0, pending: 0 });
      expect(reader.uniqueIds().has(JSON.parse(ghostEvent).eventId)).toBe(false); // it was the other consumer's to send
      expect(verify(reader.messages, versions).missing).toEqual([]);
    }, 90_000);
  }
});
