/**
 * Relay (issue 4) against the real Redis and Kafka: end to end through the Lua scripts,
 * dead letters, and trimming. Crash / two relays: relay-failover.test.ts; Kafka outage:
 * relay-kafka-outage.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { OUTBOX_EVENT_FIELD } from "../shared/domain/events.ts";
import { RELAY_GROUP } from "../services/relay/stream.ts";
import { allocate, createStocks, outboxContents, outboxStats, stockVersions, relayTestFixtures, allocatedEvent, holdForeignEntry } from "./support/relay-harness.ts";
import { verify, waitUntil } from "./support/topic-reader.ts";

const { setup } = relayTestFixtures();

describe("relay", () => {
  test(
    "end to end: 10,000 allocations over 4 shards reach the topic exactly once, in version order per stock",
    async () => {
      const { h, reader } = setup("relaye2e");
      const stocks = await createStocks(h, 20, 1_000);
      // Half the events wait in the outbox before the relay starts, half are written while it runs.
      await allocate(h, stocks, 5_000);
      const before = await outboxContents(h);
      expect(before.size).toBe(5_000 + stocks.length);
      expect(new Set([...before.keys()].map((k) => k.split("/")[0])).size).toBe(4);

      const relay = h.relay();
      await relay.start();
      await reader.start();
      await allocate(h, stocks, 5_000, { start: 5_000 });
      const versions = await stockVersions(h, stocks);
      const expected = [...versions.values()].reduce((a, b) => a + b, 0);
      expect(expected).toBe(10_000 + stocks.length);

      await reader.waitFor(() => reader.uniqueIds().size >= expected, 60_000, "all events on the topic");
      const verdict = verify(reader.messages, versions);
      expect(verdict.missing).toEqual([]);
      expect(verdict.unexpected).toEqual([]);
      expect(verdict.outOfOrder).toEqual([]);
      expect(verdict.duplicates).toBe(0);
      expect(reader.messages.length).toBe(expected);

      // The preloaded entries travel unchanged: same text, key = stock id, headers from the event
      // (plus which relay published the copy).
      const byId = new Map(reader.messages.map((m) => [m.eventId, m]));
      for (const raw of before.values()) {
        const event = JSON.parse(raw) as { eventId: string; eventType: string; aggregateId: string };
        const m = byId.get(event.eventId);
        expect(m?.value).toBe(raw);
        expect(m?.key).toBe(event.aggregateId);
        expect(m?.headers).toMatchObject({ eventType: event.eventType, schemaVersion: "1", eventId: event.eventId, relay: relay.consumerName });
        expect(m?.headers).toMatchObject({ ce_id: event.eventId, ce_subject: event.aggregateId, "content-type": "application/json" });
      }
      // Once caught up the outbox is empty again and nothing is pending.
      await waitUntil(async () => (await outboxStats(h)).length === 0, 10_000, "outbox trimmed");
      expect(await outboxStats(h)).toEqual({ length: 0, pending: 0 });
      expect(relay.ownedShards()).toEqual([0, 1, 2, 3]);
      const metrics = await relay.metrics.relayed.get();
      expect(metrics.values[0]?.value).toBe(expected);
    },
    120_000,
  );

  test(
    "a malformed entry goes to the dead-letter stream and the events after it still arrive",
    async () => {
      const { h, reader } = setup("relaydlq");
      const stock = "dlqstock";
      const shard = h.keys.shardOf(stock);
      const outbox = h.keys.outbox(shard);
      await h.commands.createStock({ id: stock, name: "dlq", price: 100, quantity: 10 });
      const notJson = await h.redis.xadd(outbox, "*", OUTBOX_EVENT_FIELD, "{not json");
      const wrongField = await h.redis.xadd(outbox, "*", "payload", allocatedEvent(stock, 99));
      const badSchema = await h.redis.xadd(outbox, "*", OUTBOX_EVENT_FIELD, JSON.stringify({ eventId: "e-1", eventType: "StockExploded" }));
      await allocate(h, [stock], 3);

      const relay = h.relay();
      await relay.start();
      await reader.start();
      const versions = await stockVersions(h, [stock]);
      await reader.waitFor(() => reader.uniqueIds().size >= 4, 30_000, "the good events");
      const verdict = verify(reader.messages, versions);
      expect(verdict.missing).toEqual([]);
      expect(verdict.outOfOrder).toEqual([]);
      expect(reader.messages.length).toBe(4);

      // Dead letters are written with the batch's XACK, after Kafka acknowledged it: a consumer may
      // see the batch a moment earlier (with transactions, the commit markers can beat the EndTxn reply).
      await waitUntil(async () => (await h.redis.xlen(h.keys.outboxDeadLetter(shard))) >= 3, 10_000, "the dead letters");
      const dead = await h.redis.xrange(h.keys.outboxDeadLetter(shard), "-", "+");
      expect(dead.length).toBe(3);
      const asObject = (fields: string[]) => Object.fromEntries(fields.map((f, i) => (i % 2 === 0 ? [f, fields[i + 1]] : [])).filter((p) => p.length));
      const entries = dead.map(([, fields]) => asObject(fields));
      expect(entries.map((e) => e.sourceId)).toEqual([notJson, wrongField, badSchema]);
      expect(entries[0]!.reason).toContain("not JSON");
      expect(entries[0]!.event).toBe("{not json");
      expect(entries[1]!.reason).toContain('missing field "event"');
      expect(entries[1]!.payload).toBeDefined();
      expect(entries[2]!.reason).toContain("schema");
      expect(entries.every((e) => e.sourceStream === outbox)).toBe(true);
      expect((await relay.metrics.deadLetters.get()).values[0]?.value).toBe(3);
      await waitUntil(async () => (await outboxStats(h)).length === 0, 10_000, "outbox trimmed (dead letters acknowledged)");
    },
    60_000,
  );

  test(
    "the outbox shrinks back once relayed, and an entry pending elsewhere is kept until it is claimed",
    async () => {
      const { h, reader } = setup("relaytrim");
      const stocks = await createStocks(h, 8, 1_000);
      await allocate(h, stocks, 3_000);
      expect((await outboxStats(h)).length).toBe(3_000 + stocks.length);

      const relay = h.relay({ RELAY_CLAIM_IDLE_MS: "5000" });
      // The gauges read the outbox: 3,008 entries waiting, none pending yet, lag > 0.
      const before = await relay.snapshot();
      expect(before.reduce((n, s) => n + s.length, 0)).toBe(3_000 + stocks.length);
      expect(before.every((s) => s.pending === 0)).toBe(true);
      expect(Math.max(...before.map((s) => s.lagSeconds))).toBeGreaterThan(0);
      await relay.start();
      await reader.start();
      await waitUntil(async () => (await outboxStats(h)).length === 0, 30_000, "outbox trimmed to empty");

      // A "ghost" consumer takes one entry and never acknowledges it (a relay that hung mid-batch).
      const ghostStock = "ghoststock";
      const shard = h.keys.shardOf(ghostStock);
      const outbox = h.keys.outbox(shard);
      const ghostEvent = allocatedEvent(ghostStock, 1);
      const ghostId = await holdForeignEntry(h, outbox, ghostEvent);
      await allocate(h, stocks, 500, { start: 3_000 });
      const versions = await stockVersions(h, stocks);
      const expected = [...versions.values()].reduce((a, b) => a + b, 0);
      await reader.waitFor(() => reader.uniqueIds().size >= expected, 30_000, "the events after the ghost entry");

      // Everything after it was relayed and acknowledged, but the pending entry was not trimmed.
      if (!reader.uniqueIds().has(JSON.parse(ghostEvent).eventId)) {
        expect(await h.redis.xrange(outbox, ghostId, ghostId)).toHaveLength(1);
        expect(await h.redis.xrange(outbox, "-", `(${ghostId}`)).toHaveLength(0);
        const summary = (await h.redis.call("XPENDING", outbox, RELAY_GROUP)) as [number, string];
        expect(summary[0]).toBeGreaterThanOrEqual(1);
        expect(summary[1]).toBe(ghostId);
        const snap = (await relay.snapshot())[shard]!;
        expect(snap.pending).toBeGreaterThanOrEqual(1);
        expect(snap.lagSeconds).toBeGreaterThan(0); // the ghost entry is the oldest unrelayed event
      } else {
        console.log("[relay trim test] the ghost entry was claimed before the check could run (slow machine); checks skipped");
      }

      // After RELAY_CLAIM_IDLE_MS the relay claims it, sends it, and the outbox empties.
      const ghostEventId = JSON.parse(ghostEvent).eventId as string;
      await reader.waitFor(() => reader.uniqueIds().has(ghostEventId), 20_000, "the claimed ghost entry");
      await waitUntil(async () => (await outboxStats(h)).length === 0, 10_000, "outbox empty after the claim");
      expect(await outboxStats(h)).toEqual({ length: 0, pending: 0 });
      const after = await relay.snapshot();
      expect(after.every((s) => s.length === 0 && s.pending === 0 && s.lagSeconds === 0)).toBe(true);
      const metrics = await relay.metrics.outboxLength.get();
      expect(metrics.values.map((v) => v.value)).toEqual([0, 0, 0, 0]);
      expect(verify(reader.messages, versions).missing).toEqual([]);
    },
    90_000,
  );
});
