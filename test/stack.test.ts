/**
 * The real servers of the stack (`bun run stack up`) answer the way the services use them, on Bun:
 * Redis (PING, EVAL), PostgreSQL (SELECT 1, migrated tables), Kafka (idempotent producer, acks=all,
 * 1,000 messages through a consumer group), Elasticsearch (bulk with external versions, 409 on a
 * stale version, a match query). Everything created here has a unique name and is removed.
 *
 * Bun notes, checked here: the Elasticsearch client's default undici connection does not work on
 * Bun 1.4 (TypeError on `response.headers`, `pool.close` missing), so clients pass
 * `Connection: HttpConnection`. kafkajs works, with `maxInFlightRequests: 1` for the idempotent producer.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Client, errors as esErrors, HttpConnection } from "@elastic/elasticsearch";
import Redis from "ioredis";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { ACKS_ALL, splitForSend } from "../shared/kafka/producer.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

describe("redis", () => {
  test("PING and an EVAL", async () => {
    const redis = new Redis(stackEnv.REDIS_URL, { maxRetriesPerRequest: 2, lazyConnect: true });
    cleanups.push(() => redis.quit());
    await redis.connect();
    expect(await redis.ping()).toBe("PONG");
    const key = `${uniqueName("stack")}:counter`;
    cleanups.push(() => redis.del(key));
    const script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[1], ARGV[2])";
    expect(await redis.eval(script, 1, key, "40", "2")).toBe(42);
    expect(await redis.get(key)).toBe("42");
    // The stack's Redis persists with AOF, fsync every second (docs/design.md §3), unless it is a server we did not start.
    const [, appendonly] = (await redis.config("GET", "appendonly")) as string[];
    if (!process.env.REDIS_URL) expect(appendonly).toBe("yes");
  });
});

describe("postgres", () => {
  test("SELECT 1 as the flashsale user, and the migrated tables exist", async () => {
    const sql = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
    cleanups.push(() => sql.end({ timeout: 2 }));
    const [one] = await sql<{ one: number }[]>`SELECT 1 AS one`;
    expect(one?.one).toBe(1);
    const rows = await sql<{ table_name: string }[]>`
      SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`;
    const tables = rows.map((r) => r.table_name);
    expect(tables).toEqual(expect.arrayContaining(["schema_migrations", "stock_events", "orders", "stocks"]));
    // Tests create throwaway databases: the role may.
    const [role] = await sql<{ rolcreatedb: boolean }[]>`SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user`;
    expect(role?.rolcreatedb).toBe(true);
  });
});

describe("kafka", () => {
  test("idempotent producer (acks=all) → 1,000 messages → a consumer group reads all of them back", async () => {
    const N = 1_000;
    const kafka = new Kafka({
      clientId: uniqueName("stack"),
      brokers: stackEnv.KAFKA_BROKERS.split(","),
      logLevel: logLevel.NOTHING,
      retry: { retries: 5 },
    });
    const topic = uniqueName("stack_topic");
    const groupId = uniqueName("stack_group");
    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(async () => {
      await admin.deleteGroups([groupId]).catch(() => {});
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    });
    expect(await admin.createTopics({ topics: [{ topic, numPartitions: 4, replicationFactor: 1 }], waitForLeaders: true })).toBe(true);

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    cleanups.push(() => producer.disconnect());
    const messages = Array.from({ length: N }, (_, i) => ({
      key: `stock-${i % 37}`,
      value: JSON.stringify({ i }),
      headers: { eventId: `e-${i}` },
    }));
    for (let i = 0; i < N; i += 250) {
      const acks = await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 250) });
      expect(acks.every((a) => a.errorCode === 0)).toBe(true);
    }

    const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1_000 });
    await consumer.connect();
    cleanups.push(() => consumer.disconnect());
    await consumer.subscribe({ topic, fromBeginning: true });
    const seen = new Set<number>();
    let duplicates = 0;
    const allRead = new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          const { i } = JSON.parse(message.value!.toString()) as { i: number };
          if (seen.has(i)) duplicates++;
          seen.add(i);
          expect(message.headers?.eventId?.toString()).toBe(`e-${i}`);
          if (seen.size === N) resolve();
        },
      });
    });
    // No hang on Bun: all of it within a bounded time.
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`read ${seen.size}/${N} in 40 s`)), 40_000));
    await Promise.race([allRead, timeout]);
    expect(seen.size).toBe(N);
    expect(duplicates).toBe(0);
    await consumer.stop();

    // The group committed what it read: its lag is zero.
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
    const ends = await admin.fetchTopicOffsets(topic);
    const committed = offsets[0]!.partitions.reduce((s, p) => s + Number(p.offset), 0);
    const end = ends.reduce((s, p) => s + Number(p.offset), 0);
    expect(end).toBe(N);
    expect(committed).toBe(N);
  }, 60_000);

  test("a send over message.max.bytes for one partition is refused; split by size it is accepted", async () => {
    const kafka = new Kafka({ clientId: uniqueName("stack"), brokers: stackEnv.KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING, retry: { retries: 1 } });
    const topic = uniqueName("stack_big");
    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(async () => {
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    });
    await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true });
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    cleanups.push(() => producer.disconnect());
    // 3,000 events of one stock (one partition) of ~450 bytes: ~1.4 MB in one record batch.
    const messages = Array.from({ length: 3_000 }, (_, i) => ({ key: "hot-stock", value: JSON.stringify({ i, pad: "x".repeat(420) }), headers: { eventId: `e-${i}` } }));

    const whole = await producer.send({ topic, acks: ACKS_ALL, messages }).then(() => "accepted", (err: { type?: string }) => err.type);
    expect(whole).toBe("MESSAGE_TOO_LARGE");

    const sends = splitForSend(messages, 5_000);
    expect(sends.length).toBeGreaterThan(1);
    for (const part of sends) await producer.send({ topic, acks: ACKS_ALL, messages: part });
    const ends = await admin.fetchTopicOffsets(topic);
    expect(ends.reduce((n, p) => n + Number(p.offset), 0)).toBe(messages.length);
  }, 30_000);
});

describe("elasticsearch", () => {
  test("bulk with external versions, a stale version is rejected with 409, a match query finds them", async () => {
    const es = new Client({ node: stackEnv.ELASTICSEARCH_URL, Connection: HttpConnection, requestTimeout: 30_000 });
    cleanups.push(() => es.close());
    const index = uniqueName("stack_index");
    cleanups.push(() => es.indices.delete({ index, ignore_unavailable: true }));
    await es.indices.create({
      index,
      settings: { number_of_shards: 1, number_of_replicas: 0 },
      mappings: { properties: { name: { type: "text" }, description: { type: "text" }, available: { type: "integer" } } },
    });

    const N = 1_000;
    const operations = Array.from({ length: N }, (_, i) => [
      { index: { _index: index, _id: `stock-${i}`, version: 5, version_type: "external" as const } },
      { name: `Flash sneaker ${i}`, description: i % 2 ? "limited drop" : "restock", available: i },
    ]).flat();
    const bulk = await es.bulk({ operations, refresh: "wait_for" });
    expect(bulk.errors).toBe(false);
    expect(bulk.items.length).toBe(N);

    // Same or older version: 409, the document keeps the newer state.
    const stale = await es
      .index({ index, id: "stock-7", version: 4, version_type: "external", document: { name: "stale", available: -1 } })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(stale).toBeInstanceOf(esErrors.ResponseError);
    expect((stale as InstanceType<typeof esErrors.ResponseError>).meta.statusCode).toBe(409);
    const staleInBulk = await es.bulk({
      operations: [{ index: { _index: index, _id: "stock-8", version: 5, version_type: "external" } }, { name: "repeat" }],
    });
    expect(staleInBulk.items[0]?.index?.status).toBe(409);
    const doc = await es.get<{ name: string; available: number }>({ index, id: "stock-7" });
    expect(doc._version).toBe(5);
    expect(doc._source?.available).toBe(7);

    // A newer version applies.
    await es.index({ index, id: "stock-7", version: 6, version_type: "external", document: { name: "Flash sneaker 7", description: "limited drop", available: 6 }, refresh: "wait_for" });
    expect((await es.get<{ available: number }>({ index, id: "stock-7" }))._source?.available).toBe(6);

    const found = await es.search({ index, query: { match: { description: "limited" } }, track_total_hits: true, size: 3 });
    expect(found.hits.total).toEqual({ value: N / 2, relation: "eq" });
    const one = await es.search<{ name: string }>({ index, query: { match: { name: { query: "sneaker 123", operator: "and" } } } });
    expect(one.hits.hits.map((h) => h._id)).toEqual(["stock-123"]);
  });
});
