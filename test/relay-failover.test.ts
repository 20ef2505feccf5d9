/**
 * Relay failover against the real Redis and Kafka: a relay process killed with SIGKILL mid-run,
 * and two relays sharing the shards (then one leaving).
 */
import { describe, expect, test } from "bun:test";
import { allocate, createStocks, outboxStats, spawnRelay, stockVersions, relayTestFixtures, spawnLogged } from "./support/relay-harness.ts";
import { verify, waitUntil } from "./support/topic-reader.ts";

const { setup, track } = relayTestFixtures();

const total = (versions: Map<string, number>) => [...versions.values()].reduce((a, b) => a + b, 0);

describe("relay failover", () => {
  test(
    "kill -9 mid-run, start another: nothing missing, order kept, duplicates counted; SIGTERM exits 0",
    async () => {
      const { h, reader } = setup("relaycrash");
      const stocks = await createStocks(h, 16, 2_000);
      await allocate(h, stocks, 6_000);

      const first = track(spawnRelay(h.env()));
      await reader.start();
      // Keep writing while the first relay drains the backlog, and kill it in the middle of that.
      const writing = allocate(h, stocks, 4_000, { start: 6_000, concurrency: 10 });
      await reader.waitFor(() => reader.messages.length >= 2_000, 30_000, "the first relay to be mid-run");
      first.kill("SIGKILL");
      await first.exited;
      const atKill = await outboxStats(h);

      const { child: second, lines: secondLog } = spawnLogged(track, h.env());
      await writing;
      const versions = await stockVersions(h, stocks);
      await reader.waitFor(() => reader.uniqueIds().size >= total(versions), 60_000, "every event after the crash");

      const verdict = verify(reader.messages, versions);
      console.log(
        `[relay crash test] killed with ${atKill.pending} entries pending, ${atKill.length} in the outbox; ` +
          `${reader.messages.length} messages for ${total(versions)} events: ${verdict.duplicates} duplicates`,
      );
      expect(verdict.missing).toEqual([]);
      expect(verdict.unexpected).toEqual([]);
      expect(verdict.outOfOrder).toEqual([]);
      await waitUntil(async () => (await outboxStats(h)).length === 0, 15_000, "outbox trimmed after the crash");
      expect(await outboxStats(h)).toEqual({ length: 0, pending: 0 });

      // SIGTERM once it runs (a first relay that drained everything before the kill leaves the test
      // nothing to wait for, and a SIGTERM before main.ts installed its handler exits 143).
      await waitUntil(() => secondLog.some((l) => l.msg === "relay running"), 30_000, "the second relay running");
      second.kill("SIGTERM");
      expect(await second.exited).toBe(0);
    },
    120_000,
  );

  test(
    "two relays at once: shards split between them, every event delivered in order, none left pending",
    async () => {
      const { h, reader } = setup("relaytwo");
      const stocks = await createStocks(h, 16, 2_000);
      await allocate(h, stocks, 3_000);
      const a = h.relay();
      const b = h.relay();
      await Promise.all([a.start(), b.start()]);
      await reader.start();
      await allocate(h, stocks, 3_000, { start: 3_000, concurrency: 20 });

      // Both relays end up with half of the shards each.
      await waitUntil(() => a.ownedShards().length === 2 && b.ownedShards().length === 2, 15_000, "the shards to be split 2/2");
      expect([...a.ownedShards(), ...b.ownedShards()].sort()).toEqual([0, 1, 2, 3]);
      let versions = await stockVersions(h, stocks);
      await reader.waitFor(() => reader.uniqueIds().size >= total(versions), 30_000, "every event with two relays");

      // One leaves (graceful): the other takes its shards over and carries on.
      await a.stop();
      await allocate(h, stocks, 1_000, { start: 6_000, concurrency: 20 });
      versions = await stockVersions(h, stocks);
      await reader.waitFor(() => reader.uniqueIds().size >= total(versions), 30_000, "every event after one relay left");
      expect(b.ownedShards()).toEqual([0, 1, 2, 3]);

      const verdict = verify(reader.messages, versions);
      console.log(`[relay two-relays test] ${reader.messages.length} messages for ${total(versions)} events: ${verdict.duplicates} duplicates`);
      expect(verdict.missing).toEqual([]);
      expect(verdict.unexpected).toEqual([]);
      expect(verdict.outOfOrder).toEqual([]);
      await waitUntil(async () => (await outboxStats(h)).pending === 0, 10_000, "nothing pending");
      await waitUntil(async () => (await outboxStats(h)).length === 0, 10_000, "outbox trimmed");
    },
    120_000,
  );
});
