/**
 * The notifier against real Kafka, PostgreSQL and a real local receiver (shared/dev/webhook-receiver.ts)
 * that verifies every request with the `standardwebhooks` library:
 *  - every event of a workload arrives, signature-valid, once per webhook-id (Kafka duplicates are
 *    absorbed), per stock in version order;
 *  - a receiver that answers 500 for 10 s and then recovers gets everything, in order, and the
 *    retries are in the delivery log.
 */
import { afterEach, expect, test } from "bun:test";
import { createNotifier, type Notifier } from "../services/notifier/notifier.ts";
import type { StockEvent } from "../shared/domain/events.ts";
import { createEndpoint, generateSecret, removeEndpoint } from "../shared/webhooks/endpoints.ts";
import { createSecretBox } from "../shared/webhooks/secret-box.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";
import { startReceiver, testSecretsKey, type Receiver } from "../shared/dev/webhook-receiver.ts";

const fx = readSideFixtures({ database: "ntf" });
const box = await createSecretBox(testSecretsKey());
const topicAll = fx.topic("ntfall");
const topicOutage = fx.topic("ntfout");
const topicTwo = fx.topic("ntftwo");
let notifier: Notifier | undefined;
let receiver: Receiver | undefined;

afterEach(async () => {
  await notifier?.stop();
  notifier = undefined;
  await receiver?.stop();
  receiver = undefined;
});

function start(
  topic: string,
  url: string,
  secret: string,
  schedule = { baseMs: 250, maxMs: 2_000, maxAttempts: 15 },
  groupId = uniqueName("ntfgroup"),
): Notifier {
  notifier = createNotifier({
    box,
    brokers,
    topic,
    groupId,
    sql: fx.db.sql,
    logger: testLogger,
    configured: { url, secret },
    schedule,
    // Generous: on a loaded 2-core CI machine a local answer can take seconds, and a timeout is a (correct) retry
    // that would show up as an extra attempt or a duplicate in the exact counts below.
    send: { connectTimeoutMs: 15_000, timeoutMs: 20_000, allowPrivate: true },
    concurrency: 16,
    pollIntervalMs: 100,
    refreshIntervalMs: 500,
  });
  return notifier;
}

function expectPerStockOrder(received: Receiver, events: readonly StockEvent[]): void {
  expect(received.orderViolations).toEqual([]);
  // And the acknowledged versions of each stock are exactly 1..n.
  const expected = new Map<string, number>();
  for (const e of events) expected.set(e.aggregateId, Math.max(expected.get(e.aggregateId) ?? 0, e.version));
  const got = new Map<string, number[]>();
  for (const e of received.acknowledged.values()) got.set(e.aggregateId, [...(got.get(e.aggregateId) ?? []), e.version]);
  for (const [stock, last] of expected) expect(got.get(stock)?.sort((a, b) => a - b)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
}

test("every event arrives once per webhook-id, signature-valid, in version order per stock", async () => {
  const secret = generateSecret();
  receiver = startReceiver({ secret });
  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 3_000, stockCount: 30, prefix: uniqueName("all") });
  await produceEvents(fx.producer, topicAll, events);
  // The relay's at-least-once: a stretch of the same events again.
  await produceEvents(fx.producer, topicAll, events.slice(1_000, 1_500));

  const n = start(topicAll, receiver.url, secret);
  await n.start();
  await eventually(async () => receiver!.acknowledged.size === events.length, { timeoutMs: 45_000, intervalMs: 100, what: "every event delivered" });

  const r = receiver;
  expect(r.invalid).toEqual([]);
  expect(r.idMismatches).toEqual([]);
  expect(r.malformed).toEqual([]);
  expect(new Set(r.acknowledged.keys())).toEqual(new Set(events.map((e) => e.eventId)));
  // Bodies are the envelopes as produced.
  for (const e of events.slice(0, 50)) expect(r.acknowledged.get(e.eventId)).toEqual(e);
  expectPerStockOrder(r, events);
  // Kafka's duplicates were absorbed by the log (dedupe by event id): one request per event.
  expect(r.requests.length).toBe(events.length);
  expect(r.duplicates()).toBe(0);

  // A result is committed just after the receiver's 2xx (the stock's next version does not wait for it).
  let log: { n: number; ok: number } | undefined;
  await eventually(
    async () => {
      [log] = await fx.db.sql<{ n: number; ok: number }[]>`
        SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'delivered' AND attempts = 1 AND last_status = 200)::int AS ok
        FROM webhook_deliveries WHERE endpoint_id = 'config'`;
      return log!.ok === events.length;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: "every delivery recorded" },
  );
  expect(log).toEqual({ n: events.length, ok: events.length });

  const metrics = await n.registry.metrics();
  expect(metrics).toContain(`flashsale_notifier_deliveries_total{endpoint="config"} ${events.length}`);
  for (const name of ["flashsale_notifier_delivery_lag_seconds_bucket", "flashsale_notifier_backlog", "flashsale_notifier_delivery_failures_total", "flashsale_projector_consumer_lag"]) {
    expect(metrics).toContain(name);
  }
}, 90_000);

test("a receiver that answers 500 for 10 s, then recovers, gets everything in order, with the retries logged", async () => {
  const secret = generateSecret();
  let failUntil = 0;
  receiver = startReceiver({
    secret,
    respond: () => {
      failUntil ||= Date.now() + 10_000; // the outage starts with the first request
      return Date.now() < failUntil ? 500 : 204;
    },
  });
  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 600, stockCount: 12, prefix: uniqueName("out") });
  await produceEvents(fx.producer, topicOutage, events.slice(0, 300));

  const n = start(topicOutage, receiver.url, secret);
  await n.start();
  // More events arrive during the outage.
  await eventually(async () => receiver!.requests.length > 0, { timeoutMs: 40_000, what: "first attempt" });
  await Bun.sleep(3_000);
  await produceEvents(fx.producer, topicOutage, events.slice(300));

  await eventually(async () => receiver!.acknowledged.size === events.length, { timeoutMs: 45_000, intervalMs: 100, what: "everything delivered after recovery" });
  const r = receiver;
  expect(r.invalid).toEqual([]);
  expectPerStockOrder(r, events);
  const failed = r.requests.filter((q) => q.status === 500);
  expect(failed.length).toBeGreaterThan(0);
  // Nothing was acknowledged during the outage; the first 2xx came after it.
  const firstOk = r.requests.find((q) => q.status === 204)!;
  expect(firstOk.at).toBeGreaterThanOrEqual(failUntil);
  // While a stock's head was failing, its later versions were not sent: only heads were retried.
  const failedPerStock = new Map<string, Set<number>>();
  for (const q of failed) failedPerStock.set(q.event.aggregateId, (failedPerStock.get(q.event.aggregateId) ?? new Set()).add(q.event.version));
  for (const versions of failedPerStock.values()) expect(versions.size).toBe(1);

  const prefix = `${events[0]!.aggregateId.split("-")[0]}-%`;
  const [log] = await fx.db.sql`
    SELECT count(*) FILTER (WHERE status = 'delivered')::int AS delivered, max(attempts)::int AS max_attempts
    FROM webhook_deliveries WHERE endpoint_id = 'config' AND stock_id LIKE ${prefix}`;
  expect(log!.delivered).toBe(events.length);
  expect(log!.max_attempts).toBeGreaterThan(2);
  // Every head that got a 500 shows its retries in the log, with the final 2xx as its last status.
  const retried = await fx.db.sql`
    SELECT stock_id, version, attempts, last_status FROM webhook_deliveries
    WHERE endpoint_id = 'config' AND stock_id LIKE ${prefix} AND attempts > 1`;
  const retriedHeads = new Set(retried.map((r) => `${r.stock_id}@${r.version}`));
  for (const [stock, versions] of failedPerStock) for (const v of versions) expect(retriedHeads.has(`${stock}@${v}`)).toBe(true);
  expect(retried.every((r) => r.last_status === 204)).toBe(true);
  const metrics = await n.registry.metrics();
  expect(metrics).toMatch(/flashsale_notifier_delivery_failures_total\{endpoint="config",reason="http_5xx"\} [1-9]/);
}, 90_000);

test("two notifiers: both consume, one delivers (the lease), the other takes over when it stops; endpoints added and removed at run time", async () => {
  const secret = generateSecret();
  receiver = startReceiver({ secret });
  const groupId = uniqueName("ntftwog");
  const a = start(topicTwo, receiver.url, secret, undefined, groupId);
  const b = start(topicTwo, receiver.url, secret, undefined, groupId);
  notifier = undefined;
  const stopBoth = async () => Promise.all([a.stop(), b.stop()]);
  try {
    await Promise.all([a.start(), b.start()]);
    const sim = new StockSim();
    const first = generateWorkload(sim, { count: 1_500, stockCount: 20, prefix: uniqueName("two") });
    await produceEvents(fx.producer, topicTwo, first);
    await eventually(async () => receiver!.acknowledged.size === first.length, { timeoutMs: 45_000, intervalMs: 100, what: "first batch delivered" });
    expect([a.delivery.isLeader(), b.delivery.isLeader()].filter(Boolean)).toHaveLength(1);
    // Both took part in consuming (the group split the 4 partitions), yet nothing was sent twice.
    const applied = async (n: Notifier) => Number(/flashsale_projector_events_applied_total(?:\{[^}]*\})? (\d+)/.exec(await n.registry.metrics())?.[1] ?? 0);
    expect((await applied(a)) + (await applied(b))).toBe(first.length);
    expect(await applied(a)).toBeGreaterThan(0);
    expect(await applied(b)).toBeGreaterThan(0);
    expect(receiver.duplicates()).toBe(0);

    // The leader stops; the standby takes the lease and delivers what follows.
    const [leader, standby] = a.delivery.isLeader() ? [a, b] : [b, a];
    await leader.stop();
    await eventually(async () => standby.delivery.isLeader(), { timeoutMs: 10_000, what: "standby takes the lease" });
    const stockIds = [...sim.stocks.keys()];
    const second = Array.from({ length: 300 }, (_, i) => sim.allocate(stockIds[i % stockIds.length]!, `later${i}`, 1)!);
    await produceEvents(fx.producer, topicTwo, second);
    await eventually(async () => receiver!.acknowledged.size === first.length + second.length, { timeoutMs: 45_000, intervalMs: 100, what: "second batch delivered" });
    expectPerStockOrder(receiver, [...first, ...second]);
    expect(receiver.invalid).toEqual([]);

    // An endpoint added at run time gets what is logged after the notifier picked it up; removed, it gets nothing more.
    const extraSecret = generateSecret();
    const extra = startReceiver({ secret: extraSecret });
    try {
      const endpoint = await createEndpoint(fx.db.sql, box, { url: extra.url, secret: extraSecret, eventTypes: ["StockCreated"] });
      await Bun.sleep(1_500); // the endpoint table is re-read every 500 ms here
      const fresh = new StockSim();
      const third = generateWorkload(fresh, { count: 200, stockCount: 10, prefix: uniqueName("extra") });
      await produceEvents(fx.producer, topicTwo, third);
      await eventually(async () => extra.acknowledged.size === 10, { timeoutMs: 20_000, what: "the new endpoint gets the StockCreated events" });
      await Bun.sleep(500);
      expect([...extra.acknowledged.values()].every((e) => e.eventType === "StockCreated")).toBe(true);
      expect(await removeEndpoint(fx.db.sql, endpoint.id)).toBe("removed");
      await Bun.sleep(1_500);
      const fourth = generateWorkload(new StockSim(), { count: 20, stockCount: 5, prefix: uniqueName("after") });
      await produceEvents(fx.producer, topicTwo, fourth);
      await eventually(async () => receiver!.acknowledged.size === first.length + second.length + third.length + fourth.length, { timeoutMs: 20_000, what: "the config endpoint still gets everything" });
      expect(extra.acknowledged.size).toBe(10);
    } finally {
      await extra.stop();
    }
  } finally {
    await stopBoth();
  }
}, 90_000);
