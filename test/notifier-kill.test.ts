/**
 * kill -9 of the notifier binary in the middle of its deliveries, then a restart: nothing is lost
 * (offsets are committed after the delivery log has the events; a delivery is marked only after its
 * 2xx), per-stock order still holds, and the re-sent deliveries carry the same webhook-id (the
 * event id). Also: the admin port (/healthz, /readyz, /metrics) and a clean exit 0 on SIGTERM.
 */
import { afterAll, expect, test } from "bun:test";
import { generateSecret } from "../shared/webhooks/endpoints.ts";
import { brokers, eventually, readSideFixtures } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";
import { serviceProcesses } from "./support/processes.ts";
import { startReceiver } from "../shared/dev/webhook-receiver.ts";

const fx = readSideFixtures({ database: "ntfkill" });
const topic = fx.topic("ntfkill");
const groupId = uniqueName("ntfkillg");
const secret = generateSecret();
// Slow enough that requests are in flight whenever the kill lands.
const receiver = startReceiver({ secret, respond: async () => (await Bun.sleep(5), 200) });
const notifiers = serviceProcesses("notifier", () => ({
  DATABASE_URL: fx.db.url,
  KAFKA_BROKERS: brokers.join(","),
  KAFKA_TOPIC: topic,
  NOTIFIER_GROUP_ID: groupId,
  WEBHOOK_URL: receiver.url,
  WEBHOOK_SECRET: secret,
  WEBHOOK_RETRY_BASE: "200ms",
  WEBHOOK_RETRY_MAX: "1s",
  WEBHOOK_POLL_INTERVAL: "50ms",
  // The receiver is on loopback, which the SSRF rule refuses unless allowed (docs/webhooks.md).
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true",
}));

afterAll(async () => {
  await receiver.stop();
});

test("kill -9 mid-delivery, restart: nothing lost, order kept, duplicates carry the same webhook-id", async () => {
  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 4_000, stockCount: 40, prefix: uniqueName("kill") });
  await produceEvents(fx.producer, topic, events);

  const first = notifiers.start();
  const seenBeforeKill = await eventually(async () => (receiver.acknowledged.size > 800 ? receiver.acknowledged.size : undefined), {
    timeoutMs: 45_000,
    intervalMs: 5,
    what: "first deliveries",
  });
  first.kill("SIGKILL");
  await first.exited;
  const atKill = receiver.acknowledged.size;
  expect(atKill).toBeLessThan(events.length); // it really died mid-way

  const second = notifiers.start();
  await eventually(async () => receiver.acknowledged.size === events.length, { timeoutMs: 60_000, intervalMs: 50, what: "every event delivered" });
  expect(new Set(receiver.acknowledged.keys())).toEqual(new Set(events.map((e) => e.eventId)));
  expect(receiver.invalid).toEqual([]);
  // Every request's webhook-id is its event's id, so a duplicate always carries the first one's id.
  expect(receiver.idMismatches).toEqual([]);
  expect(receiver.malformed).toEqual([]);
  expect(receiver.orderViolations).toEqual([]);
  const duplicates = receiver.duplicates();
  // A result is committed just after the receiver's 2xx (the stock's next version does not wait for it).
  let delivered = 0;
  await eventually(
    async () => {
      [{ delivered }] = (await fx.db.sql`SELECT count(*) FILTER (WHERE status = 'delivered')::int AS delivered FROM webhook_deliveries`) as unknown as [{ delivered: number }];
      return delivered === events.length;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: "every delivery recorded" },
  );
  expect(delivered).toBe(events.length);

  const admin = `http://127.0.0.1:${notifiers.adminPort}`;
  expect((await fetch(`${admin}/healthz`)).status).toBe(200);
  await eventually(async () => (await fetch(`${admin}/readyz`)).status === 200, { what: "ready" });
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  for (const name of ["flashsale_notifier_deliveries_total", "flashsale_notifier_delivery_lag_seconds_bucket", "flashsale_notifier_backlog", "flashsale_notifier_delivery_leader 1", "flashsale_projector_consumer_lag"]) {
    expect(metrics).toContain(name);
  }
  expect(metrics).toContain('service="notifier"');

  second.kill("SIGTERM");
  expect(await second.exited).toBe(0);
  console.log(`kill -9 after ${seenBeforeKill} deliveries (${atKill} acknowledged at the kill); ${duplicates} re-sent after the restart, all with their first webhook-id`);
}, 90_000);
