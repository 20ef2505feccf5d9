/**
 * Helpers for the read-side integration tests: a throwaway database per test file (migrated), a
 * fresh topic to produce events to, a unique ES alias, and polling.
 */
import { afterAll, beforeAll } from "bun:test";
import type { Client } from "@elastic/elasticsearch";
import { Kafka, logLevel, type Producer } from "kafkajs";
import postgres from "postgres";
import { deleteTopics } from "../../shared/kafka/client.ts";
import { createLogger } from "../../shared/logger.ts";
import { createProjectorSql } from "../../shared/stores/postgres/client.ts";
import { migrate as runMigrations } from "../../shared/stores/postgres/migrate.ts";
import { MIGRATIONS_DIR } from "../../shared/stores/postgres/migration-files.ts";
import { createSearchClient } from "../../shared/stores/search/mapping.ts";
import { stackEnv, uniqueName } from "../../shared/dev/env.ts";
import { deleteIndices } from "../../shared/dev/read-side.ts";

export const testLogger = createLogger("test", process.env.LOG_LEVEL ?? "silent");
export const brokers = stackEnv.KAFKA_BROKERS.split(",");

export interface TestDatabase {
  name: string;
  url: string;
  sql: postgres.Sql;
  drop(): Promise<void>;
}

function databaseUrl(name: string): string {
  const url = new URL(stackEnv.DATABASE_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** CREATE DATABASE + migrations (the same files `bun run migrate` applies). */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = uniqueName(label);
  const admin = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = databaseUrl(name);
  const sql = createProjectorSql(url, { max: 6, applicationName: "test" });
  await migrate(sql);
  return {
    name,
    url,
    sql,
    async drop() {
      await sql.end({ timeout: 2 });
      const a = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
      // A session of another role (e.g. autovacuum) cannot be forced out: retry, then leave it.
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          break;
        } catch {
          await Bun.sleep(500);
        }
      }
      await a.end();
    },
  };
}

/** The same runner as `bun run migrate`. */
async function migrate(sql: postgres.Sql): Promise<void> {
  await runMigrations(sql, MIGRATIONS_DIR);
}

export function createTestKafka(): Kafka {
  return new Kafka({ clientId: "test", brokers, logLevel: logLevel.NOTHING });
}

export async function createTopic(kafka: Kafka, topic: string, partitions = 4): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
}

export async function connectedProducer(kafka: Kafka): Promise<Producer> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  return producer;
}

export const testSearchClient = () => createSearchClient(stackEnv.ELASTICSEARCH_URL, { requestTimeoutMs: 10_000 });

/** Polls `check` until it returns a value other than undefined/false, or throws the last failure. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, options: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${options.what ?? "condition"}${lastError ? `: ${String(lastError)}` : ""}`);
    }
    await Bun.sleep(options.intervalMs ?? 50);
  }
}

type Stoppable = { stop(): Promise<unknown> };

/**
 * What a read-side test file needs, set up once in a beforeAll and removed in an afterAll: a Kafka
 * client and producer, optionally a migrated throwaway database and an ES client, topics and index
 * aliases with unique names, and the projectors the tests start.
 *
 *   const fx = readSideFixtures({ database: "pg" });
 *   const topic = fx.topic("pgtopic");            // created in the beforeAll, deleted (with its DLQ) after
 *   … fx.track(createPostgresProjector({ … sql: fx.db.sql … }))
 *
 * Call it at the top of the file, before other hooks: its beforeAll must run first.
 */
export function readSideFixtures(options: { database?: string; search?: boolean } = {}) {
  const declared: { name: string; partitions: number }[] = [];
  const topics: string[] = [];
  const aliases: string[] = [];
  const running: Stoppable[] = [];
  let db: TestDatabase | undefined;
  let es: Client | undefined;
  const fx = {
    kafka: undefined as unknown as Kafka,
    producer: undefined as unknown as Producer,
    get db(): TestDatabase {
      if (!db) throw new Error("readSideFixtures: pass { database } to get a database");
      return db;
    },
    get es(): Client {
      if (!es) throw new Error("readSideFixtures: pass { search: true } to get an Elasticsearch client");
      return es;
    },
    /** A unique topic name; the topic is created in the beforeAll (declare it at the top of the file). */
    topic(label: string, partitions = 4): string {
      const name = uniqueName(label);
      declared.push({ name, partitions });
      topics.push(name);
      return name;
    },
    /** Creates a topic now (inside a test); deleted with the others. */
    async createTopic(label: string, partitions = 4): Promise<string> {
      const name = uniqueName(label);
      topics.push(name);
      await createTopic(fx.kafka, name, partitions);
      return name;
    },
    /** A unique index alias; its `<alias>-v*` indices are deleted after the file. */
    alias(label: string): string {
      const name = uniqueName(label);
      aliases.push(name);
      return name;
    },
    /** Stopped after the file, newest first, unless stopProjectors() ran before. */
    track<P extends Stoppable>(projector: P): P {
      running.push(projector);
      return projector;
    },
    async stopProjectors(): Promise<void> {
      while (running.length > 0) await running.pop()!.stop();
    },
    /** The projectors tracked and not yet stopped, oldest first. */
    get running(): readonly Stoppable[] {
      return running;
    },
  };

  beforeAll(async () => {
    fx.kafka = createTestKafka();
    fx.producer = await connectedProducer(fx.kafka);
    for (const t of declared) await createTopic(fx.kafka, t.name, t.partitions);
    if (options.database) db = await createTestDatabase(options.database);
    if (options.search) es = testSearchClient();
  });

  afterAll(async () => {
    await fx.stopProjectors();
    await fx.producer?.disconnect();
    if (fx.kafka) await deleteTopics(fx.kafka, topics, { withDlq: true });
    if (es) {
      for (const alias of aliases) await deleteIndices(es, `${alias}-v*`).catch(() => {});
      await es.close();
    }
    await db?.drop();
  });

  return fx;
}

