/**
 * A start is a true start (docs/design.md §13, issue 20): a worker started before its servers are
 * up stays alive, answers /readyz 503 with what it waits for, logs a line per attempt, and becomes
 * ready and does its job once they are there, with no restart. Only what retrying cannot fix (here,
 * a missing migration) exits 1, with one clear line.
 *
 * Kafka "not up yet" is a private broker (scripts/stack.sh in a temporary stack dir, on free ports),
 * started only after the projector; PostgreSQL and Elasticsearch "not up yet" are a TCP proxy on a
 * port chosen beforehand, opened in front of the shared server later (test/support/proxy.ts).
 * Everything on 127.0.0.1; each test well under a minute.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { deleteTopics } from "../shared/kafka/client.ts";
import { createRedis, deleteKeysByPrefix } from "../shared/redis/client.ts";
import { freePort, spawnService, stackEnv, uniqueName, type ServiceProcess } from "../shared/dev/env.ts";
import { runStack } from "./support/private-cluster.ts";
import { CuttableProxy } from "./support/proxy.ts";
import { brokers, eventually, readSideFixtures, testSearchClient } from "./support/read-side.ts";
import { deleteIndices, produceEvents } from "../shared/dev/read-side.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures({ database: "startup" });
const running: ServiceProcess[] = [];
const proxies: CuttableProxy[] = [];
afterEach(async () => {
  for (const p of running.splice(0)) p.child.kill("SIGKILL");
  for (const p of proxies.splice(0)) await p.cut();
});

/** A service whose log lines (pino JSON on stdout) are collected as they come. */
function startLogged(name: string, env: Record<string, string>): ServiceProcess & { lines: Record<string, unknown>[] } {
  const service = spawnService(name, { LOG_LEVEL: "info", ...env }, { stdout: "pipe" });
  running.push(service);
  const lines: Record<string, unknown>[] = [];
  void (async () => {
    let rest = "";
    for await (const chunk of service.child.stdout as ReadableStream<Uint8Array>) {
      rest += new TextDecoder().decode(chunk);
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const line of parts) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  })().catch(() => {});
  return { ...service, lines };
}

async function readyz(adminPort: number): Promise<{ status: number; reason?: string }> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
  if (!response) return { status: 0 };
  const body = (await response.json()) as { reason?: string };
  return { status: response.status, reason: body.reason };
}

/**
 * Alive and not ready for at least `forMs` and until it has logged `attempts` failed attempts of
 * `awaited`; /readyz says what it waits for each time it is asked, and `awaited` in the end.
 */
async function staysAliveNotReady(service: ServiceProcess & { lines: Record<string, unknown>[] }, awaited: RegExp, forMs: number, attempts = 2): Promise<string> {
  let reason = "";
  const until = Date.now() + forMs;
  const deadline = Date.now() + 30_000;
  while (Date.now() < until || !awaited.test(reason) || waitingLines(service.lines, awaited).length < attempts) {
    if (Date.now() > deadline) throw new Error(`no /readyz reason matching ${awaited}, or fewer than ${attempts} such "waiting for" lines, in 30 s (last reason: "${reason}")`);
    const answer = await readyz(service.adminPort);
    if (answer.status !== 0) {
      expect(answer.status).toBe(503);
      expect(answer.reason ?? "").toMatch(/^(waiting for |redis unreachable)/); // an earlier step (the store's probe) may still be on
      reason = answer.reason!;
    }
    expect(service.child.exitCode).toBeNull();
    await Bun.sleep(200);
  }
  expect(reason).toMatch(awaited); // it did answer, and said why
  return reason;
}

const waitingLines = (lines: Record<string, unknown>[], awaited: RegExp) =>
  lines.filter((l) => typeof l.msg === "string" && /^waiting for /.test(l.msg) && awaited.test(String(l.msg)));

async function countEvents(): Promise<number> {
  const [row] = await fx.db.sql`SELECT count(*)::int AS n FROM stock_events`;
  return row!.n as number;
}

describe("Kafka not up yet, and a brand-new topic", () => {
  const dir = mkdtempSync(join(tmpdir(), "flashsale-startup-kafka-"));
  const kafkaPort = freePort();
  const stackVars = { FLASHSALE_STACK_DIR: dir, FLASHSALE_KAFKA_PORT: String(kafkaPort), FLASHSALE_KAFKA_CONTROLLER_PORT: String(freePort()), FLASHSALE_KAFKA_HEAP: "256m" };
  afterAll(async () => {
    await runStack(["down", "kafka"], stackVars);
    rmSync(dir, { recursive: true, force: true });
  });

  test("projector-postgres waits for the broker (503, a line per attempt), then creates the topics, joins and projects", async () => {
    const topic = uniqueName("starttopic");
    const projector = startLogged("projector-postgres", {
      DATABASE_URL: fx.db.url,
      KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`,
      KAFKA_TOPIC: topic,
      PROJECTOR_GROUP_ID: uniqueName("startgroup"),
    });
    const reason = await staysAliveNotReady(projector, /waiting for kafka topics/, 3_000);
    console.log(`[start-up kafka] /readyz while the broker is down: 503 "${reason}"`);

    const startedAt = Date.now();
    const up = await runStack(["up", "kafka"], stackVars);
    expect(up.code).toBe(0);
    await eventually(async () => (await readyz(projector.adminPort)).status === 200, { timeoutMs: 60_000, intervalMs: 100, what: "projector ready once the broker is up" });
    console.log(`[start-up kafka] broker started and projector ready ${Date.now() - startedAt} ms after 'stack.sh up kafka' began; ${waitingLines(projector.lines, /waiting for kafka/).length} "waiting for kafka" lines`);
    expect(projector.child.exitCode).toBeNull();

    // The topics it created: every partition has a leader, and the DLQ is there too.
    const kafka = new Kafka({ clientId: "startup-test", brokers: [`127.0.0.1:${kafkaPort}`], logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic, `${topic}.dlq`] });
    await admin.disconnect();
    expect(Object.fromEntries(topics.map((t) => [t.name, t.partitions.length]))).toEqual({ [topic]: 12, [`${topic}.dlq`]: 1 });
    expect(topics.flatMap((t) => t.partitions).every((p) => p.leader >= 0)).toBe(true);

    const events = generateWorkload(new StockSim(), { count: 50, stockCount: 3, prefix: uniqueName("k") });
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await produceEvents(producer, topic, events);
    await producer.disconnect();
    await eventually(async () => (await countEvents()) >= events.length, { timeoutMs: 20_000, what: "events projected" });
    expect(await countEvents()).toBe(events.length);

    projector.child.kill("SIGTERM");
    expect(await projector.child.exited).toBe(0);
  }, 120_000);
});

describe("PostgreSQL and Elasticsearch not up yet", () => {
  test("projector-postgres waits for PostgreSQL (503, a line per attempt), then projects", async () => {
    const topic = await fx.createTopic("pgdown");
    const proxy = new CuttableProxy({ host: "127.0.0.1", port: Number(new URL(stackEnv.DATABASE_URL).port || 5432) }, freePort());
    proxies.push(proxy);
    const url = new URL(fx.db.url);
    url.port = String(proxy.port);
    const projector = startLogged("projector-postgres", { DATABASE_URL: url.toString(), KAFKA_BROKERS: brokers.join(","), KAFKA_TOPIC: topic, PROJECTOR_GROUP_ID: uniqueName("pgdown") });
    const reason = await staysAliveNotReady(projector, /waiting for postgresql/, 2_500);
    console.log(`[start-up postgresql] /readyz while PostgreSQL is down: 503 "${reason}"`);

    const before = await countEvents();
    await proxy.open();
    await eventually(async () => (await readyz(projector.adminPort)).status === 200, { timeoutMs: 30_000, intervalMs: 100, what: "projector ready once PostgreSQL answers" });
    const events = generateWorkload(new StockSim(), { count: 30, stockCount: 2, prefix: uniqueName("p") });
    await produceEvents(fx.producer, topic, events);
    await eventually(async () => (await countEvents()) >= before + events.length, { timeoutMs: 20_000, what: "events projected" });
    projector.child.kill("SIGTERM");
    expect(await projector.child.exited).toBe(0);
  }, 60_000);

  test("projector-search waits for Elasticsearch (503, a line per attempt), then creates its index and becomes ready", async () => {
    const topic = await fx.createTopic("esdown");
    const alias = uniqueName("esdown");
    const es = testSearchClient();
    const proxy = new CuttableProxy({ host: "127.0.0.1", port: Number(new URL(stackEnv.ELASTICSEARCH_URL).port || 9200) }, freePort());
    proxies.push(proxy);
    try {
      const projector = startLogged("projector-search", {
        ELASTICSEARCH_URL: `http://127.0.0.1:${proxy.port}`,
        ELASTICSEARCH_INDEX_ALIAS: alias,
        KAFKA_BROKERS: brokers.join(","),
        KAFKA_TOPIC: topic,
        PROJECTOR_GROUP_ID: uniqueName("esdown"),
      });
      const reason = await staysAliveNotReady(projector, /waiting for elasticsearch/, 2_500);
      console.log(`[start-up elasticsearch] /readyz while Elasticsearch is down: 503 "${reason}"`);
      await proxy.open();
      await eventually(async () => (await readyz(projector.adminPort)).status === 200, { timeoutMs: 30_000, intervalMs: 100, what: "projector ready once Elasticsearch answers" });
      expect(await es.indices.existsAlias({ name: alias })).toBe(true);
      projector.child.kill("SIGTERM");
      expect(await projector.child.exited).toBe(0);
    } finally {
      await deleteIndices(es, `${alias}-v*`);
      await es.close();
    }
  }, 60_000);
});

test("Redis not up yet: the relay, the expirer and the api stay alive, 503 with the reason, then become ready", async () => {
  const redisPort = Number(new URL(stackEnv.REDIS_URL).port || 6379);
  const proxy = new CuttableProxy({ host: "127.0.0.1", port: redisPort }, freePort());
  proxies.push(proxy);
  const prefix = uniqueName("redisdown");
  const topic = uniqueName("redisdown");
  const common = { REDIS_URL: `redis://127.0.0.1:${proxy.port}`, REDIS_KEY_PREFIX: prefix };
  const services = {
    relay: startLogged("relay", { ...common, KAFKA_BROKERS: brokers.join(","), KAFKA_TOPIC: topic }),
    expirer: startLogged("expirer", common),
    api: startLogged("api", { ...common, PORT: String(freePort()), ADMIN_TOKEN: "start-up-test-admin-token", JWT_SECRET: "start-up-test-jwt-secret-of-at-least-32-chars" }),
  };
  try {
    const reasons = await Promise.all([
      staysAliveNotReady(services.relay, /waiting for redis/, 2_500),
      staysAliveNotReady(services.expirer, /waiting for redis/, 2_500, 0),
      staysAliveNotReady(services.api, /redis unreachable/, 2_500, 0),
    ]);
    console.log(`[start-up redis] /readyz while Redis is down: ${reasons.map((r) => `503 "${r}"`).join("; ")}`);
    await proxy.open();
    for (const [name, service] of Object.entries(services)) {
      await eventually(async () => (await readyz(service.adminPort)).status === 200, { timeoutMs: 30_000, intervalMs: 100, what: `${name} ready once Redis answers` });
      expect(service.child.exitCode).toBeNull();
    }
    for (const service of Object.values(services)) service.child.kill("SIGTERM");
    expect(await Promise.all(Object.values(services).map((s) => s.child.exited))).toEqual([0, 0, 0]);
  } finally {
    await deleteTopics(fx.kafka, [topic], { withDlq: true });
    const redis = createRedis(stackEnv.REDIS_URL);
    await deleteKeysByPrefix(redis, prefix).catch(() => {});
    redis.disconnect();
  }
}, 60_000);

test("what retrying cannot fix: a database without the migrations exits 1 with one clear line", async () => {
  const name = uniqueName("nomigr");
  const admin = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  try {
    const url = new URL(stackEnv.DATABASE_URL);
    url.pathname = `/${name}`;
    const projector = startLogged("projector-postgres", { DATABASE_URL: url.toString(), KAFKA_BROKERS: brokers.join(","), KAFKA_TOPIC: uniqueName("nomigr") });
    const started = Date.now();
    expect(await projector.child.exited).toBe(1);
    await Bun.sleep(100); // the last lines flushed
    const fatal = projector.lines.filter((l) => l.level === "fatal");
    console.log(`[start-up migration] exit 1 after ${Date.now() - started} ms: ${String(fatal[0]?.msg)}`);
    expect(fatal).toHaveLength(1);
    expect(String(fatal[0]!.msg)).toMatch(/projector-postgres cannot start: postgresql \(probe write\): postgresql: relation .* does not exist \(are the migrations applied\? bun run migrate\)/);
  } finally {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}, 30_000);

