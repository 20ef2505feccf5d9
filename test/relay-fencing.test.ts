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
 *
 * The second test puts the pause where only the Kafka fence can help (one transactional producer per
 * relay process, docs/relay.md): A freezes itself (RELAY_TEST_FREEZE_BEFORE=send) with the entries of
 * its first transaction read and nothing sent. B takes the shards over after A's lease expired: the
 * shards' holder records name A, so B first initialises A's transactionalId (a new epoch), then
 * relays everything, and newer versions. Resumed, A's send must be refused: unfenced, A would publish
 * its old versions after B's newer ones.
 */
import { describe, expect, test } from "bun:test";
import { allocate, createStocks, processState, relayTestFixtures, spawnLogged, steadyAllocations, stockVersions } from "./support/relay-harness.ts";
import { verify, waitUntil } from "./support/topic-reader.ts";

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

  test(
    "a relay frozen with entries read and not yet sent is fenced by the relay that takes its shards: nothing of it is published",
    async () => {
      const { h, reader } = setup("relayfencesend");
      const stocks = await createStocks(h, 8, 10_000);
      await allocate(h, stocks, 200, { concurrency: 20 });
      await reader.start();
      const env = { RELAY_LEASE_MS: "1000", RELAY_CLAIM_IDLE_MS: "60000" };
      const { child: a, lines: aLog } = spawnLogged(track, h.env({ ...env, RELAY_CONSUMER_NAME: "relay-a", RELAY_TEST_FREEZE_BEFORE: "send" }));
      await waitUntil(() => aLog.some((l) => l.msg === "test hook: freezing before the send"), 30_000, "relay A read its first entries");
      await waitUntil(async () => (await processState(a.pid)) === "T", 5_000, "relay A stopped before its send");

      const { child: b, lines: bLog } = spawnLogged(track, h.env({ ...env, RELAY_CONSUMER_NAME: "relay-b" }));
      await reader.waitFor(() => reader.messages.some((m) => m.headers.relay === "relay-b"), 30_000, "relay B took A's shards over");
      await allocate(h, stocks, 200, { concurrency: 20, start: 200 }); // B publishes newer versions of A's stocks
      const versions = await stockVersions(h, stocks);
      const expected = [...versions.values()].reduce((x, y) => x + y, 0);
      await reader.waitFor(() => reader.uniqueIds().size >= expected, 60_000, "every event on the topic, by B");

      const resumedAt = aLog.length;
      a.kill("SIGCONT");
      const byA = () => reader.messages.filter((m) => m.headers.relay === "relay-a");
      // Either A's send is refused (fenced), or, unfenced, A's transaction shows up on the topic.
      await waitUntil(() => aLog.slice(resumedAt).some((l) => /^fenced/.test(String(l.msg))) || byA().length > 0, 15_000, "relay A's send refused or published");
      await Bun.sleep(1_000); // a send that got through is on the topic by now
      const fencedByB = bLog.filter((l) => l.msg === "fenced the previous holder's Kafka producer" && l.relay === "relay-a").length;
      const verdict = verify(reader.messages, versions);
      console.log(
        `[relay fencing, frozen before its send] ${reader.messages.length} messages for ${expected} events (${verdict.duplicates} duplicates); ` +
          `B fenced A ${fencedByB} time(s); A after SIGCONT: ${aLog.slice(resumedAt).map((l) => l.msg).filter((m) => /fenced|lease|acquired/.test(String(m))).join(" | ")}; ` +
          `published by A: ${byA().length}`,
      );
      expect(byA().map((m) => `${m.aggregateId}@${m.version}`)).toEqual([]);
      expect(fencedByB).toBeGreaterThan(0);
      expect(verdict.missing).toEqual([]);
      expect(verdict.outOfOrder).toEqual([]);
      a.kill("SIGTERM");
      b.kill("SIGTERM");
      expect(await b.exited).toBe(0);
    },
    120_000,
  );
});
