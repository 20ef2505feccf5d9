/**
 * Drift repair (`bun run repair <stockId>`, docs/design.md §11): brings a stock's read side back to
 * Redis truth, whatever made it drift (a failover that forgot writes Kafka had carried, a restore
 * from backup, an operator's mistake).
 *
 * It appends a StockSnapshot event (shared/redis/scripts/snapshot.lua): the whole stock as Redis
 * has it, at a version above the highest one seen downstream (Kafka, PostgreSQL, Elasticsearch).
 * The relay publishes it like any event; every version-guarded read model takes it because it is
 * the newest, and the stock's next events follow it. Nothing downstream is written directly.
 * The snapshot also lists the stock's live holds as Redis has them, so a read model can end the
 * holds that events of forgotten writes created (projector-postgres marks them 'voided').
 */
import type { Client } from "@elastic/elasticsearch";
import type postgres from "postgres";
import { MAX_SNAPSHOT_LIVE_HOLDS } from "../domain/events.ts";
import type { KeyLayout } from "../domain/keys.ts";
import type { RedisClient } from "../redis/client.ts";
import { snapshotCall } from "../redis/calls.ts";
import { runScript } from "../redis/scripts.ts";
import { readPostgresCounters } from "../stores/postgres/analytics.ts";
import { readSearchCounters } from "../stores/search/queries.ts";
import { checkKafka } from "./pipeline.ts";
import type { ReadModelReader } from "../read-models.ts";
import { readStocks } from "./redis.ts";

export interface RepairOptions {
  redis: RedisClient;
  keys: KeyLayout;
  stockId: string;
  /** Where to look for the highest version seen downstream (each optional). */
  kafka?: { brokers: string[]; topic: string };
  sql?: postgres.Sql;
  es?: Client;
  esIndex?: string;
  /** Any read model of the registry, opened (shared/read-models.ts). */
  readModels?: readonly Pick<ReadModelReader, "name" | "counters">[];
  /** Skip the look-up: the snapshot goes above this version (and above Redis's). */
  seenVersion?: number;
  /** Most entries of the shard's due-holds set the snapshot scans (default MAX_DUE_SCAN; why: snapshot.lua). */
  maxDueScan?: number;
}

/** The snapshot scans the shard's due set atomically, blocking its master: 50,000 entries took 124-190 ms here. */
export const MAX_DUE_SCAN = 50_000;

export interface RepairResult {
  stockId: string;
  previousVersion: number;
  seenVersion: number;
  snapshotVersion: number;
  /** Live holds of the stock in Redis, listed in the snapshot (read models end every other hold placed before it). */
  liveHolds: number;
}

class RepairError extends Error {}

/** The highest version of the stock that Kafka or a read model has. */
async function highestSeenVersion(options: RepairOptions): Promise<number> {
  const { stockId } = options;
  let seen = 0;
  if (options.sql) seen = Math.max(seen, (await readPostgresCounters(options.sql, [stockId])).get(stockId)?.version ?? 0);
  if (options.es && options.esIndex) seen = Math.max(seen, (await readSearchCounters(options.es, options.esIndex, [stockId])).get(stockId)?.version ?? 0);
  for (const reader of options.readModels ?? []) seen = Math.max(seen, (await reader.counters([stockId])).get(stockId)?.version ?? 0);
  if (options.kafka) {
    const [state] = await readStocks(options.redis, new Map([[stockId, options.keys.stock(stockId)]]));
    if (state) {
      const { maxVersions } = await checkKafka({ ...options.kafka, stocks: [state], deadline: Date.now() + 30_000 });
      seen = Math.max(seen, maxVersions.get(stockId) ?? 0);
    }
  }
  return seen;
}

export async function repairStock(options: RepairOptions): Promise<RepairResult> {
  const { redis, keys, stockId } = options;
  const seenVersion = options.seenVersion ?? (await highestSeenVersion(options));
  const reply = await runScript(redis, snapshotCall(keys, stockId, { seenVersion, maxLiveHolds: MAX_SNAPSHOT_LIVE_HOLDS, maxDueScan: options.maxDueScan ?? MAX_DUE_SCAN }));
  if (reply[0] === "not_found") throw new RepairError(`no stock ${stockId} in Redis (prefix ${keys.prefix})`);
  if (reply[0] === "too_many_holds") {
    const [, count, scope] = reply;
    throw new RepairError(
      scope === "shard"
        ? `not repaired: the stock's shard has ${count} live holds, more than one snapshot scans; retry when holds have drained`
        : `not repaired: more than ${Number(count) - 1} live holds of the stock, more than one snapshot event carries; retry when holds have drained`,
    );
  }
  if (reply[0] !== "ok") throw new RepairError(`snapshot refused: ${reply.join(" ")}`);
  return { stockId, seenVersion, snapshotVersion: Number(reply[1]), previousVersion: Number(reply[2]), liveHolds: Number(reply[3]) };
}
