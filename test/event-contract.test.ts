/**
 * The published event contract against real events: a sale through the api's HTTP routes (every
 * event type, expiry included), the real relay to a real topic, then every message read back from
 * Kafka is validated with ajv against the api's /schemas/events.json (values) and its /asyncapi.json
 * (headers and per-type payloads), and carries the CloudEvents binary-mode headers of its event.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import Ajv from "ajv";
import { EVENT_TYPES } from "../shared/domain/events.ts";
import { CLOUDEVENTS_SOURCE } from "../shared/kafka/event-message.ts";
import { repairStock } from "../shared/verify/repair.ts";
import { createTestApi, type TestApi } from "./support/api.ts";
import { createHarness, SHARDS, type Harness } from "./support/relay-harness.ts";
import { PARTITIONS, TopicReader } from "./support/topic-reader.ts";

let h: Harness;
let api: TestApi;
let reader: TopicReader;

beforeAll(() => {
  h = createHarness("contract");
  api = createTestApi({
    prefix: h.prefix,
    shards: SHARDS,
    app: { eventContract: { topic: h.topic, dlqTopic: `${h.topic}.dlq`, partitions: PARTITIONS } },
  });
  reader = new TopicReader(h.topic);
});

afterAll(async () => {
  await reader?.stop();
  await api?.close();
  await h?.cleanup();
});

// The patterns zod writes do the checking; the format names only need to be known to ajv.
const ajv = () => new Ajv({ allErrors: true, formats: { uuid: true, "date-time": true } });

type Doc = {
  channels: Record<string, { address: string; messages: Record<string, unknown>; bindings: { kafka: { partitions?: number } } }>;
  components: { schemas: Record<string, object>; messages: Record<string, { bindings: { kafka: { key: object } } }> };
};

test("real events from Kafka validate against /schemas/events.json and /asyncapi.json", async () => {
  // A sale over HTTP: create, four holds, a purchase, a cancel, an expiry.
  const created = await api.request("POST", "/api/stocks", {
    headers: api.admin,
    body: { id: "contract-1", name: "Contract", price: 500, quantity: 10, perUserLimit: 2, holdSeconds: 1 },
  });
  expect(created.status).toBe(201);
  const holds: string[] = [];
  for (const user of ["ann", "bob", "cyd", "dee"]) {
    const res = await api.request("POST", "/api/stocks/contract-1/allocate", { headers: await api.user(user), body: { quantity: 1 } });
    expect(res.status).toBe(201);
    holds.push(((await res.json()) as { allocationId: string }).allocationId);
  }
  expect((await api.request("POST", `/api/allocations/${holds[0]}/purchase`, { headers: await api.user("ann") })).status).toBe(200);
  expect((await api.request("POST", `/api/allocations/${holds[1]}/cancel`, { headers: await api.user("bob") })).status).toBe(200);
  await Bun.sleep(1_100);
  expect(await api.commands.expire(holds[2]!, "contract-1")).toBe("expired");
  // And the operator's repair snapshot (bun run repair), the one event type a sale does not make.
  await repairStock({ redis: h.redis, keys: h.keys, stockId: "contract-1", seenVersion: 0 });
  // A stock without a live hold: its snapshot's list is empty, an array still (Redis 7.0's cjson writes {} for it).
  await api.commands.createStock({ id: "contract-2", name: "Quiet", price: 100, quantity: 1 });
  await repairStock({ redis: h.redis, keys: h.keys, stockId: "contract-2", seenVersion: 0 });

  await reader.start();
  const relay = h.relay();
  await relay.start();
  await reader.waitFor(() => reader.messages.length >= 11, 30_000, "11 events on the topic");
  await relay.stop();
  expect(new Set(reader.messages.map((m) => JSON.parse(m.value).eventType))).toEqual(new Set(EVENT_TYPES));

  const schema = (await (await api.request("GET", "/schemas/events.json")).json()) as object;
  const doc = (await (await api.request("GET", "/asyncapi.json")).json()) as Doc & { asyncapi: string };
  expect(doc.asyncapi).toBe("3.0.0");
  expect(doc.channels.stockEvents!.address).toBe(h.topic);
  expect(doc.channels.stockEvents!.bindings.kafka.partitions).toBe(PARTITIONS);
  expect(doc.channels.deadLetters!.address).toBe(`${h.topic}.dlq`);
  expect(Object.keys(doc.channels.stockEvents!.messages).sort()).toEqual([...EVENT_TYPES].sort());

  const validator = ajv();
  const validEvent = validator.compile(schema);
  const validHeaders = validator.compile(doc.components.schemas.EventHeaders!);
  const validKey = validator.compile(doc.components.messages.StockAllocated!.bindings.kafka.key);
  const payloadOf = Object.fromEntries(EVENT_TYPES.map((t) => [t, validator.compile(doc.components.schemas[t]!)]));
  for (const m of reader.messages) {
    const event = JSON.parse(m.value) as { eventId: string; eventType: (typeof EVENT_TYPES)[number]; aggregateId: string; occurredAt: string };
    expect(validEvent(event), JSON.stringify(validEvent.errors)).toBe(true);
    expect(payloadOf[event.eventType]!(event), JSON.stringify(payloadOf[event.eventType]!.errors)).toBe(true);
    expect(validHeaders(m.headers), JSON.stringify(validHeaders.errors)).toBe(true);
    expect(validKey(m.key)).toBe(true);
    // CloudEvents binary mode: the attributes are the event's own.
    expect(m.headers).toMatchObject({
      ce_specversion: "1.0",
      ce_id: event.eventId,
      ce_type: `flashsale.stock.${event.eventType}.v1`,
      ce_source: CLOUDEVENTS_SOURCE,
      ce_subject: event.aggregateId,
      ce_time: event.occurredAt,
      "content-type": "application/json",
      eventId: event.eventId,
    });
    expect(m.key).toBe(event.aggregateId);
  }

  // The schemas are not vacuous: a counter missing, a wrong type, an unknown event type all fail.
  const sample = JSON.parse(reader.messages.find((m) => m.value.includes("StockAllocated"))!.value);
  expect(validEvent({ ...sample, payload: { ...sample.payload, available: undefined } })).toBe(false);
  expect(validEvent({ ...sample, version: "7" })).toBe(false);
  expect(validEvent({ ...sample, eventType: "StockExploded" })).toBe(false);
  // …and additive: a new field is accepted (docs/design.md §4).
  expect(validEvent({ ...sample, payload: { ...sample.payload, channel: "web" } })).toBe(true);
  expect(validHeaders({ ...reader.messages[0]!.headers, ce_specversion: "0.3" })).toBe(false);

  // The repair snapshot lists the stock's live holds (one left: ann bought, bob cancelled, cyd expired);
  // the list is optional (added within schemaVersion 1), so a snapshot without it stays valid.
  const snapshots = reader.messages.filter((m) => m.value.includes("StockSnapshot")).map((m) => JSON.parse(m.value));
  const snapshot = snapshots.find((e) => e.aggregateId === "contract-1")!;
  expect(snapshot.payload.liveHolds).toEqual([holds[3]]);
  expect(snapshots.find((e) => e.aggregateId === "contract-2")!.payload.liveHolds).toEqual([]);
  const { liveHolds: _, ...older } = snapshot.payload;
  expect(validEvent({ ...snapshot, payload: older })).toBe(true);
  expect(payloadOf.StockSnapshot!({ ...snapshot, payload: older })).toBe(true);
  expect(validEvent({ ...snapshot, payload: { ...snapshot.payload, liveHolds: "none" } })).toBe(false);
});
