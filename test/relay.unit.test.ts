/** Pure parts of the relay: batching (one shard per batch), fencing error detection, names. */
import { describe, expect, test } from "bun:test";
import { OUTBOX_EVENT_FIELD, SCHEMA_VERSION } from "../shared/domain/events.ts";
import { toBatches } from "../services/relay/batches.ts";
import { isFenced, needsNewProducer, toSends, transactionalIdOf } from "../services/relay/sender.ts";
import { MAX_SEND_BYTES } from "../shared/kafka/producer.ts";
import type { OutboxEntry } from "../services/relay/stream.ts";

const created = (stockId: string, version: number) =>
  JSON.stringify({
    eventId: Bun.randomUUIDv7(),
    eventType: "StockCreated",
    schemaVersion: SCHEMA_VERSION,
    aggregateType: "Stock",
    aggregateId: stockId,
    version,
    occurredAt: new Date().toISOString(),
    payload: { name: "n", description: "", price: 1, currency: "EUR", total: 1, perUserLimit: 1, holdSeconds: 60, startsAt: new Date().toISOString(), endsAt: null, available: 1, held: 0, sold: 0 },
  });
const entry = (shard: number, id: string, raw: string | null): OutboxEntry => ({ shard, id, fields: raw === null ? null : [OUTBOX_EVENT_FIELD, raw] });

describe("relay batches", () => {
  test("one shard per batch, in order, at most maxEntries each; dead letters and deleted entries ride along", () => {
    const entries = [entry(0, "1-0", created("a", 1)), entry(0, "2-0", "{bad"), entry(0, "3-0", null), entry(1, "1-0", created("b", 1)), entry(1, "2-0", created("b", 2)), entry(1, "3-0", created("b", 3))];
    const batches = toBatches(entries, 2, "relay-x");
    expect(batches.map((b) => [b.shard, b.entries.map((e) => e.id)])).toEqual([
      [0, ["1-0", "2-0"]],
      [0, ["3-0"]],
      [1, ["1-0", "2-0"]],
      [1, ["3-0"]],
    ]);
    expect(batches[0]!.messages.length).toBe(1);
    expect(batches[0]!.dead.map((d) => d.entry.id)).toEqual(["2-0"]);
    expect(batches[1]!.messages.length + batches[1]!.dead.length).toBe(0); // deleted while pending: only acked
    expect(batches[2]!.messages[0]!.headers).toMatchObject({ relay: "relay-x", eventType: "StockCreated" });
  });

  test("one transaction's sends: batches of any shards joined in order, each send within MAX_SEND_BYTES, empty batches skipped", () => {
    const entries = Array.from({ length: 9 }, (_, i) => entry(i % 3, `${i + 1}-0`, created(`s${i % 3}`, Math.floor(i / 3) + 1)));
    const batches = toBatches(entries, 1, "relay-x");
    const perMessage = batches[0]!.bytes;
    batches.forEach((b, i) => (b.bytes = i === 4 ? MAX_SEND_BYTES : perMessage)); // the fifth fills a send by itself
    batches[7]!.messages = [];
    const sends = toSends(batches);
    const ids = (ms: { headers?: unknown }[]) => ms.map((m) => (m.headers as Record<string, string>).eventId);
    expect(sends.map((s) => s.length)).toEqual([4, 1, 3]);
    expect(sends.flatMap(ids)).toEqual(batches.flatMap((b) => ids(b.messages)));
  });
});

describe("relay fencing", () => {
  test("a newer epoch (kafkajs INVALID_PRODUCER_EPOCH, PRODUCER_FENCED code 90, nested) is fencing; an outage is not", () => {
    expect(isFenced({ type: "INVALID_PRODUCER_EPOCH" })).toBe(true);
    expect(isFenced({ name: "KafkaJSNumberOfRetriesExceeded", originalError: { type: "UNKNOWN", code: 90 } })).toBe(true);
    expect(isFenced({ type: "REQUEST_TIMED_OUT" })).toBe(false);
    expect(isFenced(new Error("Connection error: ECONNREFUSED"))).toBe(false);
    expect(needsNewProducer({ cause: { type: "OUT_OF_ORDER_SEQUENCE_NUMBER" } })).toBe(true);
  });

  test("transactionalId belongs to the deployment's prefix and the relay process (its consumer name)", () => {
    expect(transactionalIdOf("fs", "host-42-abc")).toBe("fs-relay-host-42-abc");
  });

});
