/**
 * I6 convergence: once the pipeline drains, PostgreSQL and Elasticsearch agree with Redis, stock by
 * stock (counters and version). Used by the read-side tests and the load-test verifier.
 */
import type { Client } from "@elastic/elasticsearch";
import type { RedisClient } from "../redis/client.ts";
import type postgres from "postgres";
import type { KeyLayout } from "../domain/keys.ts";
import type { StockDocument } from "../stores/search/mapping.ts";

export interface StockCounters {
  stockId: string;
  available: number;
  held: number;
  sold: number;
  version: number;
}

export interface CounterMismatch {
  stockId: string;
  store: "postgres" | "elasticsearch";
  expected: StockCounters;
  /** null when the store has no row/document for the stock. */
  actual: StockCounters | null;
}

const CHUNK = 1_000;

function chunks<T>(items: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Counters straight from the stock hashes (the source of truth). Missing stocks are left out. */
export async function readRedisCounters(redis: RedisClient, keys: KeyLayout, stockIds: readonly string[]): Promise<Map<string, StockCounters>> {
  const out = new Map<string, StockCounters>();
  for (const part of chunks(stockIds)) {
    // One HMGET per stock, batched by auto-pipelining: a pipeline cannot span a cluster's masters.
    const replies = await Promise.all(part.map((id) => redis.hmget(keys.stock(id), "available", "held", "sold", "version")));
    replies.forEach(([available, held, sold, version], i) => {
      if (available === null || available === undefined) return;
      out.set(part[i]!, { stockId: part[i]!, available: Number(available), held: Number(held), sold: Number(sold), version: Number(version) });
    });
  }
  return out;
}

export async function readPostgresCounters(sql: postgres.Sql, stockIds: readonly string[]): Promise<Map<string, StockCounters>> {
  const out = new Map<string, StockCounters>();
  for (const part of chunks(stockIds)) {
    const rows = await sql<StockCounters[]>`
      SELECT stock_id AS "stockId", available, held, sold, version FROM stocks WHERE stock_id = ANY(${part as string[]})`;
    for (const row of rows) out.set(row.stockId, { ...row });
  }
  return out;
}

/** Realtime mget (does not wait for a refresh). */
export async function readSearchCounters(es: Client, index: string, stockIds: readonly string[]): Promise<Map<string, StockCounters>> {
  const out = new Map<string, StockCounters>();
  for (const part of chunks(stockIds)) {
    const result = await es.mget<StockDocument>({ index, ids: part, realtime: true, _source_includes: ["available", "held", "sold", "version"] });
    for (const doc of result.docs) {
      if ("found" in doc && doc.found && doc._source) {
        const s = doc._source;
        out.set(doc._id, { stockId: doc._id, available: s.available, held: s.held, sold: s.sold, version: s.version });
      }
    }
  }
  return out;
}

const same = (a: StockCounters, b: StockCounters | undefined) =>
  b !== undefined && a.available === b.available && a.held === b.held && a.sold === b.sold && a.version === b.version;

export interface CompareOptions {
  expected: readonly StockCounters[];
  sql?: postgres.Sql;
  es?: Client;
  /** Alias or index to read from; required with `es`. */
  index?: string;
}

/** Every stock whose read-model counters differ from `expected`; empty when converged. */
export async function compareReadModels(options: CompareOptions): Promise<CounterMismatch[]> {
  const ids = options.expected.map((e) => e.stockId);
  const mismatches: CounterMismatch[] = [];
  const stores: Array<[CounterMismatch["store"], Promise<Map<string, StockCounters>>]> = [];
  if (options.sql) stores.push(["postgres", readPostgresCounters(options.sql, ids)]);
  if (options.es) {
    if (!options.index) throw new Error("compareReadModels: `index` is required with `es`");
    stores.push(["elasticsearch", readSearchCounters(options.es, options.index, ids)]);
  }
  for (const [store, pending] of stores) {
    const actual = await pending;
    for (const expected of options.expected) {
      const found = actual.get(expected.stockId);
      if (!same(expected, found)) mismatches.push({ stockId: expected.stockId, store, expected, actual: found ?? null });
    }
  }
  return mismatches;
}

/**
 * Polls until the read models match `expected` (a function, so a live source like Redis is re-read)
 * or the timeout passes; returns the last mismatches (empty = converged).
 */
export async function waitForConvergence(
  options: Omit<CompareOptions, "expected"> & { expected: () => Promise<readonly StockCounters[]>; timeoutMs?: number; intervalMs?: number },
): Promise<CounterMismatch[]> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    const mismatches = await compareReadModels({ ...options, expected: await options.expected() });
    if (mismatches.length === 0 || Date.now() > deadline) return mismatches;
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 200));
  }
}
