/**
 * Trace context end to end: one HTTP request's W3C traceparent is continued by the api (answered in
 * its traceparent header), written with the event into the outbox, sent as a Kafka header by the
 * real relay (logged there with the event id), logged by a real projector-postgres process with the
 * event id, and kept in the DLQ headers when a copy of that message is damaged on its way.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import pino from "pino";
import { OUTBOX_TRACE_FIELD } from "../shared/domain/events.ts";
import { parseTraceparent } from "../shared/trace.ts";
import { createTestApi, type TestApi } from "./support/api.ts";
import { brokers, eventually, readSideFixtures } from "./support/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { createHarness, REPO_ROOT, SHARDS, type Harness } from "./support/relay-harness.ts";
import { TopicReader } from "./support/topic-reader.ts";

const fx = readSideFixtures({ database: "trace" });
let h: Harness;
let api: TestApi;
let reader: TopicReader;
let projector: Subprocess | undefined;
const projectorLines: Record<string, unknown>[] = [];
const relayLines: Record<string, unknown>[] = [];

beforeAll(() => {
  h = createHarness("trace");
  api = createTestApi({ prefix: h.prefix, shards: SHARDS });
  reader = new TopicReader(h.topic);
});

afterAll(async () => {
  projector?.kill("SIGTERM");
  await projector?.exited;
  await reader?.stop();
  await api?.close();
  await h?.cleanup();
});

/** Collects a process's JSON log lines as they come. */
async function collectLines(stream: ReadableStream<Uint8Array>, into: Record<string, unknown>[]): Promise<void> {
  let rest = "";
  for await (const chunk of stream) {
    const lines = (rest + new TextDecoder().decode(chunk)).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) if (line.trim()) into.push(JSON.parse(line) as Record<string, unknown>);
  }
}

test("a request's trace id reaches the outbox, Kafka, the relay's and the projector's logs, and the DLQ", async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const incoming = `00-${traceId}-00f067aa0ba902b7-01`;
  expect((await api.request("POST", "/api/stocks", { headers: api.admin, body: { id: "traced", name: "T", price: 100, quantity: 5 } })).status).toBe(201);

  // The api continues the caller's trace (same trace id, its own span id) and says so.
  const res = await api.request("POST", "/api/stocks/traced/allocate", { headers: { ...(await api.user("tess")), traceparent: incoming } });
  expect(res.status).toBe(201);
  const answered = res.headers.get("traceparent")!;
  expect(parseTraceparent(answered)).toMatchObject({ traceId, flags: "01" });
  expect(answered).not.toBe(incoming);
  const { allocationId } = (await res.json()) as { allocationId: string };
  // Without one, a trace is started; a malformed one is replaced; errors carry it too.
  const fresh = (await api.request("GET", "/api/stocks/traced")).headers.get("traceparent");
  expect(parseTraceparent(fresh)?.traceId).toMatch(/^[0-9a-f]{32}$/);
  const bad = (await api.request("GET", "/api/stocks/traced", { headers: { traceparent: "00-zz-1-01" } })).headers.get("traceparent");
  expect(parseTraceparent(bad)?.traceId).not.toBe(traceId);
  expect(parseTraceparent((await api.request("GET", "/api/stocks/nope")).headers.get("traceparent"))).not.toBeNull();

  // In the outbox, next to the event.
  const entries = await h.redis.xrange(h.keys.outbox(h.keys.shardOf("traced")), "-", "+");
  const allocated = entries.find(([, fields]) => fields.includes("event") && fields[fields.indexOf("event") + 1]!.includes(allocationId));
  expect(allocated).toBeDefined();
  const fields = allocated![1];
  expect(fields[fields.indexOf(OUTBOX_TRACE_FIELD) + 1]).toBe(answered);
  const eventId = JSON.parse(fields[fields.indexOf("event") + 1]!).eventId as string;

  // On Kafka, as a header, sent by the relay, which logs it with the event id (at debug).
  await reader.start();
  const relayLog = pino({ level: "debug" }, { write: (line: string) => void relayLines.push(JSON.parse(line)) });
  const relay = h.relay({}, relayLog);
  await relay.start();
  await reader.waitFor(() => reader.messages.some((m) => m.eventId === eventId), 30_000, "the traced event on Kafka");
  await relay.stop();
  const message = reader.messages.find((m) => m.eventId === eventId)!;
  expect(message.headers.traceparent).toBe(answered);
  expect(relayLines).toContainEqual(expect.objectContaining({ msg: "event relayed", eventId, traceId }));

  // A real projector-postgres process logs it with the event id when it commits it (LOG_LEVEL=debug).
  projector = Bun.spawn([process.execPath, "services/projector-postgres/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: fx.db.url,
      KAFKA_BROKERS: brokers.join(","),
      KAFKA_TOPIC: h.topic,
      PROJECTOR_GROUP_ID: uniqueName("tracegroup"),
      ADMIN_PORT: String(20_000 + Math.floor(Math.random() * 30_000)),
      LOG_LEVEL: "debug",
    },
    stdout: "pipe",
    stderr: "inherit",
  });
  void collectLines(projector.stdout as ReadableStream<Uint8Array>, projectorLines);
  const committed = await eventually(async () => projectorLines.find((l) => l.msg === "event committed" && l.eventId === eventId), {
    timeoutMs: 30_000,
    what: "the projector's log line of the traced event",
  });
  expect(committed).toMatchObject({ service: "projector-postgres", eventId, traceId });

  // A copy of the very message, headers and all, whose value got damaged on the way: the projector
  // dead-letters it, and the DLQ message still names the trace and the event.
  await fx.producer.send({ topic: h.topic, messages: [{ key: message.key, value: message.value.slice(0, 20), headers: message.headers }] });
  const dlqReader = new TopicReaderOfAnything(`${h.topic}.dlq`);
  await dlqReader.start();
  try {
    const dead = await eventually(async () => dlqReader.messages[0], { timeoutMs: 30_000, what: "the damaged copy in the DLQ" });
    expect(dead.headers).toMatchObject({ traceparent: answered, eventId, ce_id: eventId, "dlq-reason": "unparseable" });
    expect(projectorLines).toContainEqual(expect.objectContaining({ msg: "message sent to the DLQ", eventId, traceId }));
  } finally {
    await dlqReader.stop();
  }
});

/** The DLQ holds what could not be parsed: read raw messages, not events. */
class TopicReaderOfAnything {
  readonly messages: { headers: Record<string, string>; value: string }[] = [];
  private consumer: import("kafkajs").Consumer | undefined;
  constructor(private readonly topic: string) {}
  /** The projector created the DLQ topic when it started. */
  async start(): Promise<void> {
    this.consumer = fx.kafka.consumer({ groupId: uniqueName("dlqreader") });
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: true });
    await this.consumer.run({
      eachMessage: async ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        this.messages.push({ headers, value: message.value?.toString("utf8") ?? "" });
      },
    });
  }
  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => {});
  }
}
