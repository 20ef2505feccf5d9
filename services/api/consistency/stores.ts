/**
 * The two read stores' progress for read-your-writes (progress.ts), one of each per api process:
 *  - PostgreSQL (order history, analytics): LISTEN on the projector's channel
 *    (shared/stores/postgres/progress.ts), so a waiting read wakes when the batch with its version
 *    commits; a batched read of `stocks.version` checks new waiters once (what committed before this
 *    process listened) and, slowly, as a backstop for a notification that never came.
 *  - Elasticsearch (search): no push, so one shared watermark poller: while reads wait, one search
 *    for all their stocks' documents every SEARCH_POLL_MS. A search, not a get: it sees what a
 *    search sees (refreshed documents), so `fresh` means the search that follows shows the version.
 * The LISTEN connection opens on the first read with a token, not at start: a process that never
 * gets one holds no extra connection.
 */
import type { Client } from "@elastic/elasticsearch";
import type postgres from "postgres";
import type { Logger } from "../../../shared/logger.ts";
import { PROGRESS_CHANNEL, parseProgressPayload } from "../../../shared/stores/postgres/progress.ts";
import { StoreProgress } from "./progress.ts";
import type { ConsistencyPoint } from "../../../shared/domain/consistency-token.ts";

/** The search watermark poll while reads wait: ~the projector's refresh cadence, so a wait overshoots by at most this. */
const SEARCH_POLL_MS = 25;
/** PostgreSQL is pushed; this re-read only covers a notification lost with its projector or connection. */
const POSTGRES_BACKSTOP_MS = 250;

/** A store whose progress a read can wait for. */
export interface ProgressWaiter {
  waitFor(point: ConsistencyPoint, timeoutMs: number): Promise<boolean>;
}

export interface ReadConsistency {
  postgres: ProgressWaiter;
  search: ProgressWaiter;
  close(): Promise<void>;
}

export interface ReadConsistencyOptions {
  sql: postgres.Sql;
  es: Client;
  esAlias: string;
  logger?: Logger;
  /** Tests: the PostgreSQL backstop read's period (default POSTGRES_BACKSTOP_MS). */
  postgresBackstopMs?: number;
}

export function createReadConsistency(options: ReadConsistencyOptions): ReadConsistency & { postgresProgress: StoreProgress; searchProgress: StoreProgress } {
  const { sql, es, esAlias, logger } = options;
  const postgresProgress = new StoreProgress({
    store: "postgresql",
    pollMs: options.postgresBackstopMs ?? POSTGRES_BACKSTOP_MS,
    logger,
    async read(stockIds) {
      const rows = await sql<{ stock_id: string; version: number }[]>`SELECT stock_id, version FROM stocks WHERE stock_id = ANY(${stockIds as string[]})`;
      return new Map(rows.map((r) => [r.stock_id, r.version]));
    },
  });
  const searchProgress = new StoreProgress({
    store: "elasticsearch",
    pollMs: SEARCH_POLL_MS,
    logger,
    async read(stockIds) {
      const result = await es.search<{ version: number }>({
        index: esAlias,
        size: stockIds.length,
        _source: ["version"],
        query: { ids: { values: stockIds as string[] } },
      });
      return new Map(result.hits.hits.flatMap((hit) => (hit._id && hit._source ? [[hit._id, hit._source.version] as [string, number]] : [])));
    },
  });

  let listening: Promise<unknown> | null = null;
  let unlisten: (() => Promise<void>) | null = null;
  function listen(): void {
    if (listening) return;
    listening = sql
      .listen(
        PROGRESS_CHANNEL,
        (payload) => {
          for (const [stockId, version] of parseProgressPayload(payload)) postgresProgress.observe(stockId, version);
        },
        // Also called after a reconnect: notifications sent meanwhile are lost, so read what waits.
        () => postgresProgress.recheck(),
      )
      .then((request) => {
        unlisten = request.unlisten;
      })
      .catch((err: Error) => {
        // Tried again by the next read with a token; meanwhile the backstop read serves the waiters.
        logger?.warn({ err: err.message }, "LISTEN for read-side progress failed");
        listening = null;
      });
  }

  return {
    postgresProgress,
    searchProgress,
    postgres: {
      waitFor(point, timeoutMs) {
        listen();
        return postgresProgress.waitFor(point, timeoutMs);
      },
    },
    search: searchProgress,
    async close() {
      postgresProgress.close();
      searchProgress.close();
      await unlisten?.().catch(() => {});
    },
  };
}
