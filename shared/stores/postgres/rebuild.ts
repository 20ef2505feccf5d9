/**
 * `bun run rebuild postgres` (shared/projection/rebuild.ts runs the part every read model shares): the
 * migrations are replayed into a new schema `rebuild_<stamp>` and filled there. The swap is one
 * transaction: lock the live tables against writes (readers still read), copy the events the live
 * projector applied that the rebuild has not (recorded since the rebuild started), move the live tables
 * to `retired_<stamp>` and the new ones into the live schema (ALTER TABLE … SET SCHEMA). Readers wait
 * for that commit (milliseconds), then see new tables; the live projector's next transaction writes to
 * them (names are resolved again).
 */
import type postgres from "postgres";
import { stockEventSchema, type StockEvent } from "../../domain/events.ts";
import type { Logger } from "../../logger.ts";
import { fetchHighWatermarks, type PartitionOffsets } from "../../projection/offsets.ts";
import { rebuildReadModel, type RebuildCommon } from "../../projection/rebuild.ts";
import { createProjectorSql } from "./client.ts";
import { applyMigrationFiles, quoteIdent, tablesOf } from "./migration-files.ts";
import { createPostgresProjector } from "./sink.ts";
import { applyEventsInTransaction } from "./writer.ts";

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
  const { logger } = options;
  const live = options.liveSchema ?? "public";
  const sql = createProjectorSql(options.databaseUrl, { max: 2, applicationName: "rebuild" });
  let retired = "";
  let copiedAtSwap = 0;
  try {
    const run = await rebuildReadModel(options, (stamp) => {
      const build = `rebuild_${stamp}`;
      retired = `retired_${stamp}`;
      let since: Date;
      let buildSql: postgres.Sql | undefined;
      return {
        // Order matters: the time first, then (in rebuildReadModel) the topic's end (see swapSchemas' `since`).
        async prepare() {
          const [clock] = await sql<{ now: Date }[]>`SELECT now() AS now`;
          since = clock!.now;
          await sql.unsafe(`CREATE SCHEMA ${quoteIdent(build)}`);
          await applyMigrationFiles(sql, build);
          logger.info({ schema: build }, "rebuilding PostgreSQL read models into a new schema");
        },
        projector(kafka) {
          buildSql = createProjectorSql(options.databaseUrl, { max: 4, searchPath: build, applicationName: "rebuild" });
          return createPostgresProjector({ ...kafka, sql: buildSql });
        },
        swapAt: (kafka) => async () => lowered(await fetchHighWatermarks(kafka, options.topic), options.maxLagToSwap ?? 1_000),
        stopBeforeSwap: true,
        async swap() {
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
          copiedAtSwap = result.copied;
          logger.info({ tables: result.moved, copiedAtSwap, retired }, "swapped: readers now see the rebuilt tables");
        },
        close: async () => void (await buildSql?.end({ timeout: 5 })),
      };
    });
    let retiredSchema: string | null = retired;
    const [exists] = await sql`SELECT 1 FROM pg_namespace WHERE nspname = ${retired}`;
    if (!exists) retiredSchema = null;
    else if (options.dropOld) {
      await sql.unsafe(`DROP SCHEMA ${quoteIdent(retired)} CASCADE`);
      retiredSchema = null;
    }
    return { retiredSchema, eventsReplayed: run.eventsReplayed, copiedAtSwap, seconds: run.seconds };
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** What `bun run rebuild postgres` prints. */
export function describePostgresRebuild(result: RebuildPostgresResult): string {
  return (
    `PostgreSQL read models rebuilt from ${result.eventsReplayed} events in ${result.seconds.toFixed(1)} s ` +
    `(${result.copiedAtSwap} late events copied at the swap).` +
    (result.retiredSchema ? ` Old tables kept in schema ${result.retiredSchema}: DROP SCHEMA ${result.retiredSchema} CASCADE when satisfied.` : "")
  );
}

/** Targets `maxLag` messages short of the end, spread over partitions (never below 0). */
function lowered(ends: PartitionOffsets, maxLag: number): PartitionOffsets {
  const per = BigInt(Math.floor(maxLag / Math.max(1, ends.size)));
  return new Map([...ends].map(([p, end]) => [p, end > per ? end - per : 0n]));
}
