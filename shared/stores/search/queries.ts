/**
 * Stock search from Elasticsearch: full text on name (boosted) and description, optional status
 * filter, search_after pagination behind an opaque cursor. Status depends on the clock (a sale goes
 * live at startsAt without any event), so the filter is expressed on times and counters at query
 * time, and each hit's status is recomputed for "now" with the same rule as the write side.
 */
import type { Client, estypes } from "@elastic/elasticsearch";
import { z } from "zod";
import { STOCK_STATUSES, type StockCounters, type StockStatus } from "../../domain/views.ts";
import { decodeCursor, encodeCursor } from "../cursor.ts";
import { statusAt } from "./documents.ts";
import type { StockDocument } from "./mapping.ts";

/** One search hit as the api answers it; the route's OpenAPI schema is z.object(stockSearchHitShape). */
export const stockSearchHitShape = {
  id: z.string(),
  name: z.string(),
  description: z.string(),
  price: z.number().int().nullable(),
  currency: z.string().nullable(),
  total: z.number().int().nullable(),
  available: z.number().int(),
  held: z.number().int(),
  sold: z.number().int(),
  perUserLimit: z.number().int().nullable(),
  holdSeconds: z.number().int().nullable(),
  startsAt: z.string().nullable(),
  endsAt: z.string().nullable(),
  status: z.enum(STOCK_STATUSES),
  version: z.number().int().describe("stock version of the counters (compare with GET /api/stocks/{id})"),
  projectedAt: z.string().describe("occurredAt of the newest event projected: how fresh these counters are"),
  score: z.number().nullable(),
};
type StockSearchHit = z.infer<z.ZodObject<typeof stockSearchHitShape>>;

export interface StockSearchPage {
  items: StockSearchHit[];
  nextCursor: string | null;
}

export interface StockSearchQuery {
  q?: string;
  status?: StockStatus;
  limit: number;
  cursor?: string;
}

export class InvalidSearchCursorError extends Error {}

/**
 * A cursor is the last hit's sort values: [score, stockId] for a text query, [startsAt epoch ms,
 * stockId] otherwise. Anything else (a tampered cursor) is refused here rather than handed to
 * Elasticsearch, which answers a 400 the api used to pass on as a 500.
 */
function parseSearchCursor(cursor: string, byScore: boolean): estypes.SortResults {
  const decoded = decodeCursor(cursor);
  if (!Array.isArray(decoded) || decoded.length !== 2) throw new InvalidSearchCursorError("invalid cursor");
  const [first, stockId] = decoded as unknown[];
  const firstOk = byScore ? typeof first === "number" && Number.isFinite(first) : Number.isSafeInteger(first);
  if (!firstOk || typeof stockId !== "string" || stockId.length === 0 || stockId.length > 64) throw new InvalidSearchCursorError("invalid cursor");
  return [first as number, stockId];
}

function statusFilter(status: StockStatus, now: string): estypes.QueryDslQueryContainer {
  const ended: estypes.QueryDslQueryContainer = { range: { endsAt: { lte: now } } };
  const started: estypes.QueryDslQueryContainer = { range: { startsAt: { lte: now } } };
  switch (status) {
    case "ended":
      return ended;
    case "upcoming":
      return { bool: { must_not: [ended, started] } };
    case "sold_out":
      return { bool: { filter: [started, { term: { available: 0 } }], must_not: [ended] } };
    case "live":
      return { bool: { filter: [started, { range: { available: { gt: 0 } } }], must_not: [ended] } };
  }
}

export async function searchStocks(es: Client, index: string, query: StockSearchQuery, nowMs = Date.now()): Promise<StockSearchPage> {
  const now = new Date(nowMs).toISOString();
  let searchAfter: estypes.SortResults | undefined;
  if (query.cursor) {
    searchAfter = parseSearchCursor(query.cursor, Boolean(query.q?.trim()));
  }
  const text = query.q?.trim();
  const must: estypes.QueryDslQueryContainer[] = text
    ? // Every word must appear, in the name or the description (cross_fields: "red" in the name and
      // "leather" in the description both count); a name match weighs more.
      [{ multi_match: { query: text, type: "cross_fields", fields: ["name^3", "description"], operator: "and" } }]
    : [{ match_all: {} }];
  // Documents still waiting for their StockCreated have no name or times: not searchable yet.
  const filter: estypes.QueryDslQueryContainer[] = [{ term: { complete: true } }];
  if (query.status) filter.push(statusFilter(query.status, now));
  // With text: by relevance; without: the newest sales first. stockId breaks ties (stable pages).
  const sort: estypes.Sort = text ? [{ _score: { order: "desc" } }, { stockId: { order: "asc" } }] : [{ startsAt: { order: "desc" } }, { stockId: { order: "asc" } }];

  let result: estypes.SearchResponse<StockDocument>;
  try {
    result = await es.search<StockDocument>({
      index,
      size: query.limit + 1,
      query: { bool: { must, filter } },
      sort,
      track_total_hits: false,
      ...(searchAfter ? { search_after: searchAfter } : {}),
    });
  } catch (err) {
    // Our query is fixed; with a cursor, a 400 from Elasticsearch can only be the cursor's values.
    if (searchAfter && (err as { meta?: { statusCode?: number } }).meta?.statusCode === 400) throw new InvalidSearchCursorError("invalid cursor");
    throw err;
  }
  const hits = result.hits.hits;
  const page = hits.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    items: page.map((hit) => {
      const d = hit._source!;
      return {
        id: d.stockId,
        name: d.name,
        description: d.description,
        price: d.price,
        currency: d.currency,
        total: d.total,
        available: d.available,
        held: d.held,
        sold: d.sold,
        perUserLimit: d.perUserLimit,
        holdSeconds: d.holdSeconds,
        startsAt: d.startsAt,
        endsAt: d.endsAt,
        status: statusAt(d, nowMs) as StockStatus,
        version: d.version,
        projectedAt: d.updatedAt,
        score: typeof hit._score === "number" ? hit._score : null,
      };
    }),
    nextCursor: hits.length > query.limit && last?.sort ? encodeCursor(last.sort) : null,
  };
}

/** Stocks per mget when reading counters back (the verifier reads thousands). */
const COUNTER_CHUNK = 1_000;

/** The counters of these stocks as the index has them: a realtime mget (does not wait for a refresh). */
export async function readSearchCounters(es: Client, index: string, stockIds: readonly string[]): Promise<Map<string, StockCounters>> {
  const out = new Map<string, StockCounters>();
  for (let i = 0; i < stockIds.length; i += COUNTER_CHUNK) {
    const part = stockIds.slice(i, i + COUNTER_CHUNK);
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
