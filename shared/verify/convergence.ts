/**
 * I6 convergence: once the pipeline drains, PostgreSQL and Elasticsearch agree with Redis, stock by
 * stock (counters and version). Used by the read-side tests and the load-test verifier.
 */
import type { Client } from "@elastic/elasticsearch";
import type { RedisClient } from "../redis/client.ts";
import type postgres from "postgres";
import type { KeyLayout } from "../domain/keys.ts";
import type { ReadModelReader } from "../read-models.ts";
import type { StockCounters } from "../domain/views.ts";
import { readPostgresCounters } from "../stores/postgres/analytics.ts";
import { readSearchCounters } from "../stores/search/queries.ts";


export interface CounterMismatch {
  stockId: string;
  /** "postgres" and "elasticsearch" for the two built in; a reader's name for any other read model. */
  store: string;
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

const same = (a: StockCounters, b: StockCounters | undefined) =>
  b !== undefined && a.available === b.available && a.held === b.held && a.sold === b.sold && a.version === b.version;

export interface CompareOptions {
  expected: readonly StockCounters[];
  sql?: postgres.Sql;
  es?: Client;
  /** Alias or index to read from; required with `es`. */
  index?: string;
  /** Any read model of the registry (shared/read-models.ts), opened by its `open()`. */
  readers?: readonly Pick<ReadModelReader, "name" | "counters">[];
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
  for (const reader of options.readers ?? []) stores.push([reader.name, reader.counters(ids)]);
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
