/**
 * The notifier's memory stays flat whatever its backlog (issue 21 §3). The notifier binary runs as a
 * child process while its endpoint is down (503) and BACKLOG deliveries pile up: they are written to
 * the delivery log as another notifier's consumer writes them (webhook_events + one pending delivery
 * each, in large INSERT … SELECT statements: the log, not Kafka, is what the delivery loop reads, and
 * a Kafka-fed pile of 200,000 takes minutes on this machine). Then the endpoint comes back.
 *
 * Checks: the child's RSS (VmRSS, sampled every 250 ms from the first insert to the last delivery)
 * never passes RSS_BOUND_MB; every delivery arrives, signature-valid, once per webhook-id acknowledged,
 * and per stock in version order.
 *
 * BACKLOG defaults to 50,000 so the suite stays within a few minutes on the shared 2-core machine;
 * NOTIFIER_BACKLOG=200000 is the issue's figure (docs/webhooks.md "Memory" has both runs' numbers).
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { generateSecret } from "../shared/webhooks/endpoints.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { startReceiver } from "../shared/dev/webhook-receiver.ts";
import { brokers, eventually, readSideFixtures } from "./support/read-side.ts";
import { serviceProcesses } from "./support/processes.ts";

const BACKLOG = Number(process.env.NOTIFIER_BACKLOG ?? 50_000);
const VERSIONS_PER_STOCK = 100;
const STOCKS = Math.ceil(BACKLOG / VERSIONS_PER_STOCK);
/**
 * The bound, documented in docs/webhooks.md "Memory": the notifier idles at ~75 MB here (Bun, kafkajs,
 * postgres.js, prom-client); the delivery loop holds at most 1,024 stocks × 8 deliveries. Measured
 * with 200,000: peak 170 MB; the code before the window: 593 MB.
 */
const RSS_BOUND_MB = Number(process.env.NOTIFIER_RSS_BOUND_MB ?? 220);

const fx = readSideFixtures({ database: "ntfbacklog" });
const topic = fx.topic("ntfbacklog");
const secret = generateSecret();
let up = false;
const receiver = startReceiver({ secret, respond: () => (up ? 204 : 503) });
const notifiers = serviceProcesses("notifier", () => ({
  DATABASE_URL: fx.db.url,
  KAFKA_BROKERS: brokers.join(","),
  KAFKA_TOPIC: topic,
  NOTIFIER_GROUP_ID: uniqueName("ntfbacklogg"),
  WEBHOOK_URL: receiver.url,
  WEBHOOK_SECRET: secret,
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true", // the receiver is on loopback
  WEBHOOK_RETRY_BASE: "200ms",
  WEBHOOK_RETRY_MAX: "1s",
  WEBHOOK_MAX_ATTEMPTS: "100",
  WEBHOOK_POLL_INTERVAL: "50ms",
}));
afterAll(async () => {
  await receiver.stop();
});

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

/** `count` deliveries of stocks [from, from + count / VERSIONS_PER_STOCK) to the configured endpoint, versions 1…100. */
async function pileUp(prefix: string, fromStock: number, stocks: number): Promise<void> {
  await fx.db.sql`
    WITH ev AS (
      INSERT INTO webhook_events (event_id, event_type, stock_id, version, occurred_at, body)
      SELECT e.id, 'StockAllocated', e.stock, e.v, now(),
        json_build_object('type', 'StockAllocated', 'timestamp', to_json(now()), 'data', json_build_object(
          'eventId', e.id, 'eventType', 'StockAllocated', 'schemaVersion', 1, 'aggregateType', 'Stock', 'aggregateId', e.stock,
          'version', e.v, 'occurredAt', to_json(now()), 'payload', json_build_object('allocationId', 'a-' || e.id, 'userId', 'u-' || e.v,
          'quantity', 1, 'expiresAt', to_json(now()), 'available', 1000 - e.v, 'held', e.v, 'sold', 0)))::text
      FROM (SELECT gen_random_uuid() AS id, ${prefix}::text || '-' || s AS stock, v
            FROM generate_series(${fromStock}::int, ${fromStock + stocks - 1}::int) s, generate_series(1, ${VERSIONS_PER_STOCK}::int) v ORDER BY s, v) e
      RETURNING event_id, stock_id, version)
    INSERT INTO webhook_deliveries (endpoint_id, event_id, stock_id, version)
    SELECT 'config', event_id, stock_id, version FROM ev`;
}

test(`${BACKLOG.toLocaleString("en")} deliveries pile up while the endpoint is down: RSS stays under ${RSS_BOUND_MB} MB, then all arrive in order`, async () => {
  const child = notifiers.start();
  // The configured endpoint exists once the notifier has started.
  await eventually(async () => (await fx.db.sql`SELECT 1 FROM webhook_endpoints WHERE endpoint_id = 'config'`).length === 1, { timeoutMs: 30_000, what: "notifier start" });
  const idle = rssMb(child.pid);
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(rssMb(child.pid)), 250);
  try {
    const prefix = uniqueName("bl");
    const started = performance.now();
    const chunk = 200; // stocks per statement: 20,000 deliveries
    for (let s = 0; s < STOCKS; s += chunk) await pileUp(prefix, s, Math.min(chunk, STOCKS - s));
    const piled = performance.now();
    // Let the delivery loop see the whole pile (it re-reads every 2 s) and fail at it for a while.
    await eventually(async () => receiver.requests.length > 1_000, { timeoutMs: 60_000, what: "failed attempts on the pile" });
    await Bun.sleep(5_000);
    const peakWhileDown = Math.max(...samples);
    up = true;
    const back = performance.now();
    await eventually(async () => receiver.acknowledged.size === BACKLOG, { timeoutMs: 900_000, intervalMs: 500, what: `all ${BACKLOG} delivered` });
    const done = performance.now();
    const peak = Math.max(...samples);
    console.log(
      `[notifier-backlog] ${BACKLOG} deliveries over ${STOCKS} stocks piled in ${((piled - started) / 1000).toFixed(1)} s; ` +
        `RSS idle ${idle.toFixed(0)} MB, peak while down ${peakWhileDown.toFixed(0)} MB, peak overall ${peak.toFixed(0)} MB ` +
        `(bound ${RSS_BOUND_MB}); delivered in ${((done - back) / 1000).toFixed(1)} s after the endpoint came back, ` +
        `${receiver.requests.length} requests in all`,
    );
    expect(receiver.invalid).toEqual([]);
    expect(receiver.orderViolations).toEqual([]);
    expect(receiver.malformed).toEqual([]);
    const versions = new Map<string, number>();
    for (const e of receiver.acknowledged.values()) versions.set(e.aggregateId, (versions.get(e.aggregateId) ?? 0) + 1);
    expect(versions.size).toBe(STOCKS);
    expect([...versions.values()].every((n) => n === VERSIONS_PER_STOCK)).toBe(true);
    expect(peak).toBeLessThan(RSS_BOUND_MB);
  } finally {
    clearInterval(sampler);
  }
}, 1_200_000);
