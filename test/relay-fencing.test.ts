/**
 * A relay paused past its lease must not publish after it resumes (docs/design.md §11). Real
 * processes: relays A and B share the shards; A is frozen with SIGSTOP for 3 s (lease 1 s), B
 * takes A's shards over, A resumes with SIGCONT while allocations keep coming.
 *
 * Checks: every event on the topic, first copies in version order per stock; and nothing published
 * by A (the `relay` header names the publisher; the Kafka timestamp is its send time) between a
 * SIGCONT and A's next "shard acquired": in that window A only believes it owns shards. A did try
 * (its log shows the refused attempts): B's transactional producer had fenced A's, and the
 * relay_read script refuses A's reads once the lease is B's. Three pause cycles.
 */
import { describe, expect, test } from "bun:test";
import { createStocks, relayTestFixtures, spawnLogged, steadyAllocations, stockVersions, verify, waitUntil } from "./support/relay-harness.ts";

const { setup, track } = relayTestFixtures();

describe("relay fencing", () => {
  test(
    "a relay frozen past its lease publishes nothing after SIGCONT once another relay took its shards (transactions)",
    async () => {
      const { h, reader } = setup("relayfence");
      const stocks = await createStocks(h, 16, 100_000);
      const env = { RELAY_LEASE_MS: "1000", RELAY_CLAIM_IDLE_MS: "2000", RELAY_BATCH_SIZE: "200" };
      const { child: a, lines: aLog } = spawnLogged(track, h.env({ ...env, RELAY_CONSUMER_NAME: "relay-a" }));
      await reader.start();
      const writer = steadyAllocations(h, stocks, { batch: 100, concurrency: 20, pauseMs: 20 });
      await reader.waitFor(() => reader.messages.length >= 500, 30_000, "relay A publishing");
      const { child: b } = spawnLogged(track, h.env({ ...env, RELAY_CONSUMER_NAME: "relay-b" }));
      await reader.waitFor(() => reader.messages.some((m) => m.headers.relay === "relay-b"), 30_000, "relay B publishing too");

      // Freeze A past its lease, three times, each time while events keep flowing.
      const resumedAt: number[] = [];
      for (let cycle = 0; cycle < 3; cycle++) {
        a.kill("SIGSTOP");
        await Bun.sleep(3_000);
        resumedAt.push(Date.now());
        a.kill("SIGCONT");
        await Bun.sleep(2_500);
      }
      await writer.stop();
      const versions = await stockVersions(h, stocks);
      const expected = [...versions.values()].reduce((x, y) => x + y, 0);
      await reader.waitFor(() => reader.uniqueIds().size >= expected, 60_000, "every event on the topic");
      await Bun.sleep(1_000);

      const verdict = verify(reader.messages, versions);
      const at = (l: Record<string, unknown>) => Date.parse(String(l.time));
      const acquiredAt = aLog.filter((l) => l.msg === "shard acquired").map(at);
      const refused = aLog.filter((l) => /^fenced|lease is no longer ours/.test(String(l.msg)));
      const zombie = reader.messages.filter((m) => {
        if (m.headers.relay !== "relay-a") return false;
        const resumed = resumedAt.filter((t) => t <= m.timestamp).at(-1);
        if (resumed === undefined) return false;
        const reacquired = acquiredAt.find((t) => t >= resumed);
        return reacquired === undefined || m.timestamp < reacquired;
      });
      console.log(
        `[relay fencing] ${reader.messages.length} messages for ${expected} events (${verdict.duplicates} duplicates); ` +
          `relay-a: ${reader.messages.filter((m) => m.headers.relay === "relay-a").length} published, ${refused.length} sends/reads refused after SIGCONT, ` +
          `${zombie.length} published between a SIGCONT and its next shard acquisition`,
      );
      expect(verdict.missing).toEqual([]);
      expect(verdict.unexpected).toEqual([]);
      expect(verdict.outOfOrder).toEqual([]);
      expect(refused.length).toBeGreaterThan(0); // A did come back believing it owned shards
      expect(zombie.map((m) => `${m.aggregateId}@${m.version}`)).toEqual([]);
      await waitUntil(async () => (await h.redis.xlen(h.keys.outbox(0))) === 0, 15_000, "outbox drained");
      b.kill("SIGTERM");
      a.kill("SIGTERM");
      expect(await b.exited).toBe(0);
    },
    180_000,
  );
});
