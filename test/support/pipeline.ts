/**
 * The whole pipeline in one test process, on the real stores: the api app (Lua in Redis) → relay →
 * Kafka → projectors → PostgreSQL / Elasticsearch → the read routes. Each fixture has its own key
 * prefix, topic, database, search alias and consumer groups (uniqueName), and `cleanup` removes them.
 * Used by the end-to-end tests (read-api-e2e, read-your-writes).
 */
import type { Client } from "@elastic/elasticsearch";
import type postgres from "postgres";
import { mintUserToken } from "../../shared/dev/token.ts";
import { createApp } from "../../services/api/app.ts";
import { createReadRoutes } from "../../services/api/read-routes.ts";
import { createReadConsistency } from "../../services/api/consistency/stores.ts";
import { createPostgresProjector } from "../../shared/stores/postgres/sink.ts";
import { createSearchProjector } from "../../shared/stores/search/sink.ts";
import type { Relay } from "../../services/relay/relay.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import type { Projector } from "../../shared/projection/projector.ts";
import { createReaderSql } from "../../shared/stores/postgres/client.ts";
import { createReaderSearchClient } from "../../shared/stores/search/mapping.ts";
import { deleteTopics, dlqTopicOf } from "../../shared/kafka/client.ts";
import { deleteIndices } from "../../shared/dev/read-side.ts";
import { stackEnv, uniqueName } from "../../shared/dev/env.ts";
import { TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from "./api.ts";
import { createTestDatabase, testLogger, testSearchClient, type TestDatabase } from "./read-side.ts";
import { createHarness, type Harness } from "./relay-harness.ts";

export interface Pipeline {
  h: Harness;
  db: TestDatabase;
  alias: string;
  app: ReturnType<typeof createApp>;
  readerSql: postgres.Sql;
  readerEs: Client;
  /** What the app's reads with a Consistency-Token wait on. */
  consistency: ReturnType<typeof createReadConsistency>;
  admin: { Authorization: string };
  /** The Authorization header of a user (a JWT minted once per user). */
  as(userId: string): Promise<{ Authorization: string }>;
  startProjectors(): Promise<void>;
  stopProjectors(): Promise<void>;
  readonly projectorsRunning: boolean;
  cleanup(): Promise<void>;
}

export interface PipelineOptions {
  /** The search projector's refresh policy (default: its own default, "interval"). */
  searchRefresh?: "after-write" | "interval";
}

/** Starts the relay and both projectors; call in beforeAll, and `cleanup` in afterAll. */
export async function startPipeline(label: string, options: PipelineOptions = {}): Promise<Pipeline> {
  const h = createHarness(label);
  const db = await createTestDatabase(label);
  const es = testSearchClient();
  const readerSql = createReaderSql(db.url);
  const readerEs = createReaderSearchClient(stackEnv.ELASTICSEARCH_URL);
  const alias = uniqueName(`${label}stocks`);
  const pgGroup = uniqueName(`${label}pg`);
  const esGroup = uniqueName(`${label}es`);
  const consistency = createReadConsistency({ sql: readerSql, es: readerEs, esAlias: alias, logger: testLogger });
  const app = createApp({
    commands: h.commands,
    redis: h.redis,
    logger: testLogger,
    registry: createMetricsRegistry("api"),
    adminToken: TEST_ADMIN_TOKEN,
    jwtSecret: TEST_JWT_SECRET,
    maxBodyBytes: 16 * 1024,
    readRoutes: createReadRoutes({ sql: readerSql, es: readerEs, esAlias: alias, consistency }),
  });
  const tokens = new Map<string, string>();
  let projectors: Projector[] = [];
  const brokers = stackEnv.KAFKA_BROKERS.split(",");

  const pipeline: Pipeline = {
    h,
    db,
    alias,
    app,
    readerSql,
    readerEs,
    consistency,
    admin: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    async as(userId) {
      if (!tokens.has(userId)) tokens.set(userId, await mintUserToken(userId, TEST_JWT_SECRET));
      return { Authorization: `Bearer ${tokens.get(userId)}` };
    },
    async startProjectors() {
      projectors = [
        createPostgresProjector({ brokers, topic: h.topic, groupId: pgGroup, sql: db.sql, logger: testLogger }),
        createSearchProjector({ brokers, topic: h.topic, groupId: esGroup, es, index: alias, logger: testLogger, refresh: options.searchRefresh }),
      ];
      await Promise.all(projectors.map((p) => p.start()));
    },
    async stopProjectors() {
      await Promise.all(projectors.map((p) => p.stop()));
      projectors = [];
    },
    get projectorsRunning() {
      return projectors.length > 0;
    },
    async cleanup() {
      await pipeline.stopProjectors();
      await consistency.close();
      await h.cleanup();
      await deleteTopics(h.kafka, [dlqTopicOf(h.topic)]);
      await deleteIndices(es, `${alias}-v*`).catch(() => {});
      await es.close();
      await readerEs.close();
      await readerSql.end();
      await db.drop();
    },
  };
  const relay: Relay = h.relay();
  await relay.start();
  await pipeline.startProjectors();
  return pipeline;
}
