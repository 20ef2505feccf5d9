/**
 * Rebuild a read model from the whole topic, without downtime for readers (docs/read-side.md):
 *
 *   bun run rebuild postgres [--drop-old]
 *   bun run rebuild search   [--drop-old]
 *
 * Both build a fresh copy next to the live one with a temporary consumer group that starts at the
 * earliest offset (`<group>.rebuild-<stamp>`), wait until it has caught up, switch readers over in
 * one atomic step, then delete the temporary group. The live projector keeps running throughout
 * (its group is not reset: resetting it would mean stopping it and showing readers an empty model).
 *
 * PostgreSQL: the migrations are replayed into a new schema `rebuild_<stamp>` and filled there.
 *   The swap is one transaction: lock the live tables against writes (readers still read), copy
 *   the events the live projector applied that the rebuild has not (recorded since the rebuild
 *   started), move the live tables to `retired_<stamp>` and the new ones into the live schema
 *   (ALTER TABLE … SET SCHEMA). Readers wait for that commit (milliseconds), then see new tables;
 *   the live projector's next transaction writes to them (names are resolved again).
 * Elasticsearch: a new index `<alias>-v<N+1>` is filled; once it has caught up, the live index is
 *   made read-only (the live projector retries its writes as an outage), whatever it has newer is
 *   copied over (external versions: only newer lands), and the alias is moved with one `_aliases`
 *   call; the live projector's retry then lands in the new index. The rebuild drains what arrived
 *   meanwhile and stops. The previous index stays, read-only (`--drop-old` deletes it).
 *
 * Keep the topic's retention unlimited (retention.ms=-1): a rebuild can only replay what Kafka kept.
 */
import type { Client } from "@elastic/elasticsearch";
import type postgres from "postgres";
import { createPostgresProjector, POSTGRES_PROJECTOR_GROUP } from "../shared/stores/postgres/sink.ts";
import { createSearchProjector, SEARCH_PROJECTOR_GROUP } from "../shared/stores/search/sink.ts";
import { parseConfig, projectorPostgresSchema, projectorSearchSchema } from "../shared/config.ts";
import { stockEventSchema, type StockEvent } from "../shared/domain/events.ts";
import { createKafka } from "../shared/kafka/client.ts";
import { createLogger, type Logger } from "../shared/logger.ts";
import { deleteGroup, fetchGroupOffsets, fetchHighWatermarks, remaining, waitForGroup, type PartitionOffsets } from "../shared/projection/offsets.ts";
import { createProjectorSql } from "../shared/stores/postgres/client.ts";
import { applyEventsInTransaction } from "../shared/stores/postgres/writer.ts";
import { applyMigrationFiles, quoteIdent, tablesOf } from "../shared/stores/postgres/migration-files.ts";
import {
  copyNewerDocuments,
  createSearchClient,
  createStockIndex,
  indicesOfAlias,
  nextIndexName,
  swapAlias,
} from "../shared/stores/search/mapping.ts";

export interface RebuildCommon {
  brokers: string[];
  topic: string;
  dlqTopic?: string;
  /** The live projector's group (the rebuild group is named after it). */
  liveGroupId: string;
  dropOld?: boolean;
  logger: Logger;
  /** Swap once the rebuild is at most this many messages behind the topic's end. */
  maxLagToSwap?: number;
  timeoutMs?: number;
}

const stampNow = () => new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14) + Math.random().toString(36).slice(2, 5);

/** The projector writes stock_events first; readers join orders/sales_by_minute before stocks. */
const LOCK_ORDER = ["stock_events", "orders", "sales_by_minute", "stocks"];
function lockOrder(tables: string[]): string[] {
  const rank = (t: string) => (LOCK_ORDER.includes(t) ? LOCK_ORDER.indexOf(t) : LOCK_ORDER.length);
  return [...tables].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** Live schema's tables, locked against writes; late events copied; tables moved; in one transaction. */
async function swapSchemas(
  sql: postgres.Sql,
  options: { build: string; live: string; retired: string; since: Date; logger: Logger },
): Promise<{ copied: number; moved: string[] }> {
  const { build, live, retired } = options;
  const B = quoteIdent(build);
  const L = quoteIdent(live);
  const R = quoteIdent(retired);
  return sql.begin(async (tx) => {
    await tx`SET LOCAL lock_timeout = '5s'`;
    const newTables = lockOrder(await tablesOf(tx as unknown as postgres.Sql, build));
    const liveTables = new Set(await tablesOf(tx as unknown as postgres.Sql, live));
    const replaced = newTables.filter((t) => liveTables.has(t));
    let copied = 0;
    if (replaced.length > 0) {
      // Writers wait from here to commit; readers (ACCESS SHARE) still read until the ALTERs below.
      // One table at a time, in the order the projector's transaction takes them (stock_events
      // first) and the readers' queries do (stocks last), so neither can deadlock with the swap.
      for (const t of replaced) await tx.unsafe(`LOCK TABLE ${L}.${quoteIdent(t)} IN EXCLUSIVE MODE`);
      if (replaced.includes("stock_events")) {
        const rows = await tx.unsafe<
          Array<{ event_id: string; event_type: string; aggregate_id: string; version: number; occurred_at: Date; payload: unknown }>
        >(
          `SELECT o.event_id, o.event_type, o.aggregate_id, o.version, o.occurred_at, o.payload
           FROM ${L}.stock_events o
           WHERE o.recorded_at >= $1 AND NOT EXISTS (SELECT 1 FROM ${B}.stock_events n WHERE n.event_id = o.event_id)`,
          [options.since],
        );
        const events: StockEvent[] = rows.map((r) =>
          stockEventSchema.parse({
            eventId: r.event_id,
            eventType: r.event_type,
            schemaVersion: 1,
            aggregateType: "Stock",
            aggregateId: r.aggregate_id,
            version: r.version,
            occurredAt: r.occurred_at.toISOString(),
            payload: r.payload,
          }),
        );
        if (events.length > 0) {
          await tx.unsafe(`SET LOCAL search_path TO ${B}`);
          for (let i = 0; i < events.length; i += 5_000) copied += (await applyEventsInTransaction(tx, events.slice(i, i + 5_000))).applied.length;
          await tx.unsafe(`SET LOCAL search_path TO ${L}`);
        }
      }
      await tx.unsafe(`CREATE SCHEMA ${R}`);
      for (const t of replaced) await tx.unsafe(`ALTER TABLE ${L}.${quoteIdent(t)} SET SCHEMA ${R}`);
    }
    for (const t of newTables) await tx.unsafe(`ALTER TABLE ${B}.${quoteIdent(t)} SET SCHEMA ${L}`);
    await tx.unsafe(`DROP SCHEMA ${B}`);
    return { copied, moved: newTables };
  });
}

export interface RebuildPostgresOptions extends RebuildCommon {
  databaseUrl: string;
  /** The schema readers and the live projector use (their search_path); default public. */
  liveSchema?: string;
}

export interface RebuildPostgresResult {
  retiredSchema: string | null;
  eventsReplayed: number;
  copiedAtSwap: number;
  seconds: number;
}

export async function rebuildPostgres(options: RebuildPostgresOptions): Promise<RebuildPostgresResult> {
  const started = performance.now();
  const { logger } = options;
  const live = options.liveSchema ?? "public";
  const stamp = stampNow();
  const build = `rebuild_${stamp}`;
  const retired = `retired_${stamp}`;
  const groupId = `${options.liveGroupId}.rebuild-${stamp}`;
  const kafka = createKafka({ brokers: options.brokers, clientId: "rebuild", logger });
  const sql = createProjectorSql(options.databaseUrl, { max: 2, applicationName: "rebuild" });
  try {
    // Order matters: the time first, then the topic's end (see swapSchemas' `since`).
    const [clock] = await sql<{ now: Date }[]>`SELECT now() AS now`;
    const since = clock!.now;
    const history = await fetchHighWatermarks(kafka, options.topic);
    const total = remaining(new Map(), history);
    await sql.unsafe(`CREATE SCHEMA ${quoteIdent(build)}`);
    await applyMigrationFiles(sql, build);
    logger.info({ schema: build, groupId, events: total }, "rebuilding PostgreSQL read models into a new schema");

    const buildSql = createProjectorSql(options.databaseUrl, { max: 4, searchPath: build, applicationName: "rebuild" });
    const projector = createPostgresProjector({
      brokers: options.brokers,
      topic: options.topic,
      dlqTopic: options.dlqTopic,
      groupId,
      sql: buildSql,
      logger,
    });
    await projector.start();
    try {
      await waitForGroup(kafka, groupId, options.topic, history, {
        timeoutMs: options.timeoutMs,
        onProgress: (left) => logger.info({ left, of: total }, "replaying"),
      });
      const maxLag = options.maxLagToSwap ?? 1_000;
      await waitForGroup(kafka, groupId, options.topic, async () => lowered(await fetchHighWatermarks(kafka, options.topic), maxLag), {
        timeoutMs: options.timeoutMs,
      });
    } finally {
      await projector.stop();
      await buildSql.end({ timeout: 5 });
    }

    let result: { copied: number; moved: string[] } | undefined;
    for (let attempt = 1; !result; attempt++) {
      try {
        result = await swapSchemas(sql, { build, live, retired, since, logger });
      } catch (err) {
        // lock_not_available (5 s lock_timeout) or deadlock: nothing happened, try again.
        const code = (err as { code?: string }).code;
        if ((code !== "55P03" && code !== "40P01") || attempt >= 5) throw err;
        logger.warn({ attempt, code }, "swap could not get its locks, retrying");
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
    logger.info({ tables: result.moved, copiedAtSwap: result.copied, retired }, "swapped: readers now see the rebuilt tables");
    await deleteGroup(kafka, groupId).catch((err) => logger.warn({ err, groupId }, "could not delete the rebuild group"));

    let retiredSchema: string | null = retired;
    const [exists] = await sql`SELECT 1 FROM pg_namespace WHERE nspname = ${retired}`;
    if (!exists) retiredSchema = null;
    else if (options.dropOld) {
      await sql.unsafe(`DROP SCHEMA ${quoteIdent(retired)} CASCADE`);
      retiredSchema = null;
    }
    return { retiredSchema, eventsReplayed: total, copiedAtSwap: result.copied, seconds: (performance.now() - started) / 1000 };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Targets `maxLag` messages short of the end, spread over partitions (never below 0). */
function lowered(ends: PartitionOffsets, maxLag: number): PartitionOffsets {
  const per = BigInt(Math.floor(maxLag / Math.max(1, ends.size)));
  return new Map([...ends].map(([p, end]) => [p, end > per ? end - per : 0n]));
}

export interface RebuildSearchOptions extends RebuildCommon {
  es: Client;
  alias: string;
}

export interface RebuildSearchResult {
  index: string;
  previous: string[];
  eventsReplayed: number;
  seconds: number;
}

export async function rebuildSearch(options: RebuildSearchOptions): Promise<RebuildSearchResult> {
  const started = performance.now();
  const { es, alias, logger } = options;
  const stamp = stampNow();
  const groupId = `${options.liveGroupId}.rebuild-${stamp}`;
  const kafka = createKafka({ brokers: options.brokers, clientId: "rebuild", logger });
  const index = await nextIndexName(es, alias);
  await createStockIndex(es, index);
  const history = await fetchHighWatermarks(kafka, options.topic);
  const total = remaining(new Map(), history);
  logger.info({ index, groupId, events: total }, "rebuilding the search index");

  const projector = createSearchProjector({
    brokers: options.brokers,
    topic: options.topic,
    dlqTopic: options.dlqTopic,
    groupId,
    es,
    index,
    target: "index",
    logger,
  });
  await projector.start();
  let previous: string[] = [];
  try {
    await waitForGroup(kafka, groupId, options.topic, history, {
      timeoutMs: options.timeoutMs,
      onProgress: (left) => logger.info({ left, of: total }, "replaying"),
    });
    // Swap only once the new index has everything the live one has, partition by partition: then
    // no reader sees a counter go back, and the live projector never writes a stock the new index
    // has not seen created.
    await waitForGroup(kafka, groupId, options.topic, () => fetchGroupOffsets(kafka, options.liveGroupId, options.topic), {
      timeoutMs: options.timeoutMs,
    });
    // Freeze the live index: the live projector's writes now fail with a block (an outage to it:
    // retried, not committed), so what the old index shows is final. Copy whatever it has newer
    // than the rebuild, then swap: readers go from the old index to one at least as new, and the
    // live projector's retry lands in the new index through the alias.
    const old = (await indicesOfAlias(es, alias)).filter((i) => i !== index);
    if (old.length > 0) {
      await es.indices.addBlock({ index: old.join(","), block: "write" });
      await es.indices.refresh({ index: old.join(",") });
      for (const from of old) {
        const { copied, scanned } = await copyNewerDocuments(es, from, index);
        logger.info({ from, copied, scanned }, "copied documents the live projector had newer");
      }
    }
    await es.indices.refresh({ index });
    previous = await swapAlias(es, alias, index);
    logger.info({ alias, index, previous }, "alias swapped: readers now see the rebuilt index (the previous one stays read-only)");
    // What arrived around the swap: the rebuild writes it too (a no-op where the live one was first).
    await waitForGroup(kafka, groupId, options.topic, await fetchHighWatermarks(kafka, options.topic), { timeoutMs: options.timeoutMs });
  } finally {
    await projector.stop();
  }
  await deleteGroup(kafka, groupId).catch((err) => logger.warn({ err, groupId }, "could not delete the rebuild group"));
  if (options.dropOld && previous.length > 0) await es.indices.delete({ index: previous });
  return { index, previous, eventsReplayed: total, seconds: (performance.now() - started) / 1000 };
}

async function main(argv: string[]): Promise<number> {
  const [target, ...flags] = argv;
  const dropOld = flags.includes("--drop-old");
  const logger = createLogger("rebuild", process.env.LOG_LEVEL ?? "info");
  if (target === "postgres") {
    const config = parseConfig(projectorPostgresSchema);
    const result = await rebuildPostgres({
      brokers: config.KAFKA_BROKERS,
      topic: config.KAFKA_TOPIC,
      dlqTopic: config.KAFKA_DLQ_TOPIC,
      liveGroupId: config.PROJECTOR_GROUP_ID ?? POSTGRES_PROJECTOR_GROUP,
      databaseUrl: config.DATABASE_URL,
      dropOld,
      logger,
    });
    console.log(
      `PostgreSQL read models rebuilt from ${result.eventsReplayed} events in ${result.seconds.toFixed(1)} s ` +
        `(${result.copiedAtSwap} late events copied at the swap).` +
        (result.retiredSchema ? ` Old tables kept in schema ${result.retiredSchema}: DROP SCHEMA ${result.retiredSchema} CASCADE when satisfied.` : ""),
    );
    return 0;
  }
  if (target === "search") {
    const config = parseConfig(projectorSearchSchema);
    const es = createSearchClient(config.ELASTICSEARCH_URL);
    try {
      const current = await indicesOfAlias(es, config.ELASTICSEARCH_INDEX_ALIAS);
      logger.info({ alias: config.ELASTICSEARCH_INDEX_ALIAS, current }, "current index");
      const result = await rebuildSearch({
        brokers: config.KAFKA_BROKERS,
        topic: config.KAFKA_TOPIC,
        dlqTopic: config.KAFKA_DLQ_TOPIC,
        liveGroupId: config.PROJECTOR_GROUP_ID ?? SEARCH_PROJECTOR_GROUP,
        es,
        alias: config.ELASTICSEARCH_INDEX_ALIAS,
        dropOld,
        logger,
      });
      console.log(
        `Search index rebuilt from ${result.eventsReplayed} events in ${result.seconds.toFixed(1)} s: ` +
          `${config.ELASTICSEARCH_INDEX_ALIAS} → ${result.index}` +
          (result.previous.length > 0 && !dropOld ? ` (previous ${result.previous.join(", ")} kept; delete it when satisfied)` : ""),
      );
    } finally {
      await es.close();
    }
    return 0;
  }
  console.error("usage: bun run rebuild postgres|search [--drop-old]");
  return 2;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : err);
      process.exit(1);
    },
  );
}
