/**
 * An endpoint that always answers 410 dead-letters every delivery after the (compressed) retry
 * schedule, while a second, healthy endpoint gets everything on time meanwhile; `bun run
 * notifier:resend` then re-queues the dead letters and they are delivered once the endpoint answers.
 */
import { afterAll, expect, test } from "bun:test";
import { DashboardCollector } from "../services/api/dashboard/collector.ts";
import { createNotifier } from "../services/notifier/notifier.ts";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { createRedis } from "../shared/redis/client.ts";
import { createStockCommands } from "../shared/redis/commands.ts";
import { createEndpoint, generateSecret } from "../shared/webhooks/endpoints.ts";
import { createSecretBox } from "../shared/webhooks/secret-box.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";
import { startReceiver, testSecretsKey } from "../shared/dev/webhook-receiver.ts";

const fx = readSideFixtures({ database: "ntfdead" });
const box = await createSecretBox(testSecretsKey());
const topic = fx.topic("ntfdead");
// Each dead delivery takes at least 0.8·(300 + 600 + 1000) ms ≈ 1.5 s; a stock's versions die one after another.
const schedule = { baseMs: 300, maxMs: 1_000, maxAttempts: 4 };
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

test("always-410 dead-letters after the schedule, a healthy endpoint is not held up, resend delivers", async () => {
  const healthySecret = generateSecret();
  const goneSecret = generateSecret();
  const healthy = startReceiver({ secret: healthySecret });
  let goneAnswers = 410;
  const gone = startReceiver({ secret: goneSecret, respond: () => goneAnswers });
  cleanups.push(() => healthy.stop(), () => gone.stop());
  const goneEndpoint = await createEndpoint(fx.db.sql, box, { url: gone.url, secret: goneSecret });

  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 60, stockCount: 20, prefix: uniqueName("dead") });
  const notifier = createNotifier({
    box,
    brokers,
    topic,
    groupId: uniqueName("ntfdeadg"),
    sql: fx.db.sql,
    logger: testLogger,
    configured: { url: healthy.url, secret: healthySecret },
    schedule,
    send: { connectTimeoutMs: 15_000, timeoutMs: 20_000, allowPrivate: true }, // generous: a timeout under load would be an extra attempt
    concurrency: 16,
    pollIntervalMs: 50,
    refreshIntervalMs: 500,
    rescanIntervalMs: 500,
  });
  cleanups.push(() => notifier.stop());
  await notifier.start();
  await eventually(async () => (await notifier.notReadyReason()) === null, { timeoutMs: 30_000, what: "notifier ready" });
  const produced = Date.now();
  await produceEvents(fx.producer, topic, events);

  await eventually(async () => healthy.acknowledged.size === events.length, { timeoutMs: 20_000, intervalMs: 20, what: "healthy endpoint has everything" });
  const healthyDoneMs = Date.now() - produced;
  // On time: the failing endpoint is still working through its schedule when the healthy one is done.
  const [meanwhile] = await fx.db.sql`
    SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending FROM webhook_deliveries WHERE endpoint_id = ${goneEndpoint.id}`;
  expect(meanwhile!.pending).toBeGreaterThan(0);
  expect(healthy.orderViolations).toEqual([]);
  expect(healthy.invalid).toEqual([]);

  await eventually(
    async () => {
      const [row] = await fx.db.sql`SELECT count(*)::int AS n FROM webhook_dead_letters WHERE endpoint_id = ${goneEndpoint.id}`;
      return row!.n === events.length;
    },
    { timeoutMs: 40_000, intervalMs: 100, what: "every delivery to the 410 endpoint dead" },
  );
  const letters = await fx.db.sql`SELECT attempts, last_status FROM webhook_dead_letters WHERE endpoint_id = ${goneEndpoint.id}`;
  expect(letters.every((l) => l.attempts === schedule.maxAttempts && l.last_status === 410)).toBe(true);
  expect(gone.requests.length).toBe(events.length * schedule.maxAttempts);
  expect(gone.invalid).toEqual([]);
  // Per stock, every attempt of a version came before the next version's first (dead is not "still retrying").
  const perStock = new Map<string, number[]>();
  for (const q of gone.requests) perStock.set(q.event.aggregateId, [...(perStock.get(q.event.aggregateId) ?? []), q.event.version]);
  for (const versions of perStock.values()) expect(versions).toEqual([...versions].sort((a, b) => a - b));
  const metrics = await notifier.registry.metrics();
  expect(metrics).toContain(`flashsale_notifier_dead_letters_total{endpoint="${goneEndpoint.id}"} ${events.length}`);

  // The api's live dashboard shows it per endpoint, from the notifier's /metrics (here its registry, no HTTP).
  const redis = createRedis(stackEnv.REDIS_URL);
  cleanups.push(() => redis.quit());
  const dashboard = new DashboardCollector({
    redis,
    commands: createStockCommands(redis, createKeyLayout(uniqueName("ntfdash").slice(0, 30), 1)),
    registry: createMetricsRegistry("api"),
    workerMetricsUrls: ["http://notifier.test/metrics"],
    intervalMs: 10,
    fetch: (async () => new Response(await notifier.registry.metrics())) as unknown as typeof fetch,
  });
  const panels = await eventually(
    async () => {
      const { webhooks } = await dashboard.snapshot();
      return webhooks.find((w) => w.endpoint === goneEndpoint.id)?.deadLetters === events.length ? webhooks : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: "dashboard shows the dead letters" },
  );
  expect(panels.map((w) => w.endpoint).sort()).toEqual(["config", goneEndpoint.id].sort());
  expect(panels.find((w) => w.endpoint === "config")).toMatchObject({ backlog: 0, deadLetters: 0 });
  dashboard.stop();

  // The receiver is fixed; one command re-sends the dead letters.
  goneAnswers = 200;
  const resend = Bun.spawnSync([process.execPath, "scripts/notifier-resend.ts"], {
    cwd: `${import.meta.dir}/..`,
    env: { ...process.env, DATABASE_URL: fx.db.url },
  });
  expect(resend.exitCode).toBe(0);
  expect(resend.stdout.toString()).toContain(`${events.length} dead letter(s) re-queued`);
  await eventually(async () => gone.acknowledged.size === events.length, { timeoutMs: 20_000, intervalMs: 50, what: "re-sent dead letters delivered" });
  expect(new Set(gone.acknowledged.keys())).toEqual(new Set(events.map((e) => e.eventId)));
  // A result is committed after the receiver's 2xx (a stock's next version does not wait for it): the
  // log says delivered a moment after the receiver has everything.
  let after: { delivered: number; dead: number } | undefined;
  await eventually(
    async () => {
      [after] = await fx.db.sql<{ delivered: number; dead: number }[]>`
        SELECT count(*) FILTER (WHERE status = 'delivered')::int AS delivered, (SELECT count(*)::int FROM webhook_dead_letters) AS dead
        FROM webhook_deliveries WHERE endpoint_id = ${goneEndpoint.id}`;
      return after!.delivered === events.length;
    },
    { timeoutMs: 10_000, intervalMs: 50, what: "every re-sent dead letter recorded delivered" },
  );
  expect(after).toEqual({ delivered: events.length, dead: 0 });
  console.log(`healthy endpoint had all ${events.length} events ${healthyDoneMs} ms after they were produced`);
}, 90_000);
