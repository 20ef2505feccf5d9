/**
 * The Elasticsearch side of the read model: client factory, the `stocks` index mapping, and the
 * alias plumbing (`stocks` → `stocks-vN`) that lets the index be rebuilt and swapped atomically.
 * Core features only (no scripts, no analysis plugins): the native stack and the Docker image agree.
 */
import { Client, HttpConnection, errors } from "@elastic/elasticsearch";

export interface SearchClientOptions {
  /** Per request; readers want a dead cluster to fail fast, writers can wait longer. */
  requestTimeoutMs?: number;
  maxRetries?: number;
}

/**
 * HttpConnection (node:http) rather than the default undici one: it is the one that behaves on Bun
 * (verified against ES 8.19 in test/projector-search.test.ts).
 */
export function createSearchClient(url: string, options: SearchClientOptions = {}): Client {
  return new Client({
    node: url,
    Connection: HttpConnection,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    maxRetries: options.maxRetries ?? 2,
  });
}

/** The stock document: static fields from StockCreated, counters from the newest event. */
export interface StockDocument {
  stockId: string;
  name: string;
  description: string;
  price: number | null;
  currency: string | null;
  total: number | null;
  perUserLimit: number | null;
  holdSeconds: number | null;
  startsAt: string | null;
  endsAt: string | null;
  createdAt: string | null;
  available: number;
  held: number;
  sold: number;
  /** Stock version of the newest event applied; also the document's external version. */
  version: number;
  /** occurredAt of that event. */
  updatedAt: string;
  /** Status as of updatedAt (upcoming/live/sold_out/ended); readers recompute it for "now". */
  status: string;
  /** False while the StockCreated has not been applied (static fields missing). */
  complete: boolean;
}

/**
 * refresh_interval 250ms, deliberately: search freshness (p99 ≤ 1 s) = pipeline latency to the
 * document (p99 ≈ 0.5 s on 2 cores, bench:projectors) + up to one refresh interval. The default 1s
 * alone would use up the budget; 500ms measured p99 just over 1 s. Four refreshes a second cost
 * little here: writes are coalesced to one document per stock per batch, so each refresh publishes
 * a small segment (at most one update per stock), and the index is small. The live projector also
 * refreshes right after its writes (refresher.ts); the interval is then the backstop for other
 * writers. Overridden by ELASTICSEARCH_REFRESH_INTERVAL.
 */
const REFRESH_INTERVAL = "250ms";

export const STOCK_INDEX_BODY = {
  settings: {
    number_of_shards: 1,
    // One node gets no replica (green), a cluster gets one.
    auto_expand_replicas: "0-1",
    refresh_interval: REFRESH_INTERVAL,
  },
  mappings: {
    dynamic: "strict" as const,
    properties: {
      stockId: { type: "keyword" as const },
      name: { type: "text" as const, fields: { keyword: { type: "keyword" as const, ignore_above: 256 } } },
      description: { type: "text" as const },
      price: { type: "long" as const },
      currency: { type: "keyword" as const },
      total: { type: "integer" as const },
      perUserLimit: { type: "integer" as const },
      holdSeconds: { type: "integer" as const },
      startsAt: { type: "date" as const },
      endsAt: { type: "date" as const },
      createdAt: { type: "date" as const },
      available: { type: "integer" as const },
      held: { type: "integer" as const },
      sold: { type: "integer" as const },
      version: { type: "long" as const },
      updatedAt: { type: "date" as const },
      status: { type: "keyword" as const },
      complete: { type: "boolean" as const },
    },
  },
};

const indexNameFor = (alias: string, generation: number) => `${alias}-v${generation}`;

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

function generationOf(alias: string, index: string): number | null {
  const match = new RegExp("^" + escapeRegExp(alias) + "-v(\\d+)$").exec(index);
  return match ? Number(match[1]) : null;
}

/** The concrete indices the alias points to (empty when the alias does not exist). */
export async function indicesOfAlias(es: Client, alias: string): Promise<string[]> {
  try {
    const result = await es.indices.getAlias({ name: alias });
    return Object.keys(result);
  } catch (err) {
    if (err instanceof errors.ResponseError && err.statusCode === 404) return [];
    throw err;
  }
}

/**
 * Creates `<alias>-v1` with the mapping and the alias if the alias is missing. Idempotent and safe
 * when several projectors start at once (a lost race answers resource_already_exists).
 */
export async function ensureStockIndex(es: Client, alias: string, refreshInterval = REFRESH_INTERVAL): Promise<string> {
  const current = await indicesOfAlias(es, alias);
  if (current.length > 0) {
    // Settings that can change on a live index follow the code (an index made by an older version).
    await es.indices.putSettings({ index: alias, settings: { index: { refresh_interval: refreshInterval } } });
    return current[0]!;
  }
  const index = indexNameFor(alias, 1);
  try {
    const body = { ...STOCK_INDEX_BODY, settings: { ...STOCK_INDEX_BODY.settings, refresh_interval: refreshInterval } };
    await es.indices.create({ index, ...body, aliases: { [alias]: {} } });
  } catch (err) {
    const type = err instanceof errors.ResponseError ? (err.body as { error?: { type?: string } })?.error?.type : undefined;
    if (type !== "resource_already_exists_exception") throw err;
    // The index exists (another starter, or a leftover without alias): make sure the alias does.
    if ((await indicesOfAlias(es, alias)).length === 0) await es.indices.putAlias({ index, name: alias });
  }
  return index;
}

/** The next free `<alias>-vN` (one past the highest existing generation). */
export async function nextIndexName(es: Client, alias: string): Promise<string> {
  const existing = await es.cat.indices({ index: `${alias}-v*`, format: "json", h: "index" });
  let highest = 0;
  for (const row of existing as Array<{ index?: string }>) {
    const generation = row.index ? generationOf(alias, row.index) : null;
    if (generation !== null && generation > highest) highest = generation;
  }
  return indexNameFor(alias, highest + 1);
}

export async function createStockIndex(es: Client, index: string): Promise<void> {
  await es.indices.create({ index, ...STOCK_INDEX_BODY });
}

/** Points the alias at `index` and away from every other index, in one atomic `_aliases` call. */
export async function swapAlias(es: Client, alias: string, index: string): Promise<string[]> {
  const previous = (await indicesOfAlias(es, alias)).filter((i) => i !== index);
  await es.indices.updateAliases({
    actions: [...previous.map((old) => ({ remove: { index: old, alias } })), { add: { index, alias } }],
  });
  return previous;
}

/** For the api's read routes: fail fast (a dead cluster must become a quick 503, not a hung request). */
export function createReaderSearchClient(url: string): Client {
  return createSearchClient(url, { requestTimeoutMs: 2_000, maxRetries: 0 });
}

/**
 * Copies every document of `from` into `to` with its version, external: only documents newer
 * than the target's copy land (the rest answer 409). The rebuild's last step before the swap.
 */
export async function copyNewerDocuments(es: Client, from: string, to: string): Promise<{ copied: number; scanned: number }> {
  let copied = 0;
  let scanned = 0;
  let after: Array<string | number> | undefined;
  for (;;) {
    const page = await es.search<StockDocument>({
      index: from,
      size: 1_000,
      version: true,
      sort: [{ stockId: { order: "asc" } }],
      query: { match_all: {} },
      ...(after ? { search_after: after } : {}),
    });
    const hits = page.hits.hits;
    if (hits.length === 0) return { copied, scanned };
    scanned += hits.length;
    const operations: unknown[] = [];
    for (const hit of hits) {
      operations.push({ index: { _index: to, _id: hit._id, version: hit._version, version_type: "external" } }, hit._source);
    }
    const result = await es.bulk({ operations, refresh: false });
    for (const item of result.items) {
      const status = item.index?.status ?? 500;
      if (status === 200 || status === 201) copied++;
      else if (status !== 409) throw new Error(`copying ${item.index?._id} to ${to}: ${status} ${JSON.stringify(item.index?.error)}`);
    }
    after = hits[hits.length - 1]!.sort as Array<string | number>;
  }
}
