/**
 * The read side of the api (eventually consistent, fed by the projectors): order history and sales
 * analytics from PostgreSQL, stock search from Elasticsearch. Mounted by app.ts under /api, after
 * `authenticate` and before the write-side routes (so /stocks/search wins over /stocks/{id}).
 *
 * With a Consistency-Token header a read first waits, bounded, for its store to have that write
 * (consistency/: read-your-writes); without one it is what it always was.
 *
 * A read store that is down answers 503 store_unavailable quickly (the clients made by
 * createReaderSql / createReaderSearchClient have short timeouts); allocation, which only needs
 * Redis, keeps working.
 */
import type { Client } from "@elastic/elasticsearch";
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type postgres from "postgres";
import { isElasticOutage, isPostgresOutage } from "../../shared/projection/errors.ts";
import { InvalidWindowError, minutePointShape, salesReport, stockSalesShape } from "../../shared/stores/postgres/analytics.ts";
import { InvalidCursorError, listOrdersForUser, orderViewShape } from "../../shared/stores/postgres/orders.ts";
import { InvalidSearchCursorError, searchStocks, stockSearchHitShape } from "../../shared/stores/search/queries.ts";
import { USER_ID_PATTERN } from "../../shared/domain/validation.ts";
import { STOCK_STATUSES } from "../../shared/domain/views.ts";
import { STOCK_ID_PATTERN } from "../../shared/domain/keys.ts";
import { adminOnly, bearer, requireAdmin, requireOwnerOrAdmin, signedIn } from "./auth.ts";
import type { AppEnv } from "./env.ts";
import { ApiProblem } from "./problem.ts";
import { createRouter } from "./router.ts";
import { awaitReadConsistency, consistencyRequestHeaders, consistencyResponseHeaders } from "./consistency/read-consistency.ts";
import { createReadConsistency, type ReadConsistency } from "./consistency/stores.ts";
import type { Logger } from "../../shared/logger.ts";
import { edgeProblems, isoInstant, jsonContent, problems } from "./schemas.ts";

export interface ReadRoutesDeps {
  sql: postgres.Sql;
  es: Client;
  /** The search alias (ELASTICSEARCH_INDEX_ALIAS). */
  esAlias: string;
  /** What the reads with a Consistency-Token wait on; default: made from sql and es (consistency/stores.ts). */
  consistency?: ReadConsistency;
  /** For the consistency trackers' background failures. */
  logger?: Logger;
}

/** 200 with the read-your-writes headers, and the 400 that also covers a malformed Consistency-Token. */
const readOk = <T extends Parameters<typeof jsonContent>[0]>(schema: T, description: string) => ({
  200: { ...jsonContent(schema, description), headers: consistencyResponseHeaders },
});
const badRead = [
  400,
  "`invalid_request`: a path, query or header value fails the schema (details in `errors[]`); `invalid_consistency_token`: a Consistency-Token this api did not issue",
] as const;

const cursorParam = z
  .string()
  .regex(/^[A-Za-z0-9_-]{0,2048}$/, "cursor: the nextCursor of the previous page")
  .optional()
  .openapi({
    description:
      "Opaque: the `nextCursor` of the previous page, unchanged (base64url, at most 2048 characters). Absent or empty: the first page. " +
      "A cursor this endpoint did not make is 400 `invalid_request`.",
  });
const limitParam = (fallback: number, max: number) =>
  z.coerce.number().int().min(1).max(max).default(fallback).openapi({ description: `page size, 1-${max} (default ${fallback})` });

// Response shapes are defined once, beside the queries that build them (shared/stores/*); here they
// become OpenAPI components.
const orderView = z.object(orderViewShape).openapi("Order");
const orderPage = z.object({ items: z.array(orderView), nextCursor: z.string().nullable() }).openapi("OrderPage");
const searchHit = z.object(stockSearchHitShape).openapi("StockSearchHit");
const searchPage = z.object({ items: z.array(searchHit), nextCursor: z.string().nullable() }).openapi("StockSearchPage");
const stockSales = z.object(stockSalesShape).openapi("StockSales");
const minutePoint = z.object(minutePointShape).openapi("SalesMinute");
const salesReportSchema = z
  .object({
    generatedAt: z.string(),
    window: z.object({ from: z.string(), to: z.string() }),
    stocks: z.array(stockSales),
    series: z.array(minutePoint),
  })
  .openapi("SalesReport");

const ordersRoute = createRoute({
  method: "get",
  path: "/orders/user/{userId}",
  operationId: "listUserOrders",
  tags: ["read side"],
  summary: "A user's order history, newest first (PostgreSQL, eventually consistent)",
  ...bearer(signedIn),
  request: {
    params: z.object({ userId: z.string().regex(USER_ID_PATTERN).openapi({ param: { name: "userId", in: "path" }, example: "alice" }) }),
    query: z.object({ limit: limitParam(20, 100), cursor: cursorParam }),
    headers: consistencyRequestHeaders,
  },
  responses: {
    ...readOk(orderPage, "one page of orders; `nextCursor` is null on the last"),
    ...edgeProblems("get"),
    ...problems(badRead, [401, "`unauthorized`: no token"], [403, "`forbidden`: another user's history"], [503, "`store_unavailable`: PostgreSQL is down or slow"]),
  },
});

const searchRoute = createRoute({
  method: "get",
  path: "/stocks/search",
  operationId: "searchStocks",
  // Public: anyone may read it, no token (an empty list overrides nothing, it states "none").
  security: [],
  tags: ["read side"],
  summary: "Full-text stock search on name and description (Elasticsearch; counters as last projected)",
  request: {
    query: z.object({
      q: z.string().max(200).optional().openapi({ example: "sneaker" }),
      status: z.enum(STOCK_STATUSES).optional(),
      limit: limitParam(20, 100),
      cursor: cursorParam,
    }),
    headers: consistencyRequestHeaders,
  },
  responses: {
    ...readOk(searchPage, "one page of stocks; `nextCursor` is null on the last"),
    ...edgeProblems("get"),
    ...problems(badRead, [503, "`store_unavailable`: Elasticsearch is down or slow"]),
  },
});

const isoParam = (description: string) => isoInstant.optional().openapi({ description, example: "2026-12-01T09:00:00Z" });
const analyticsRoute = createRoute({
  method: "get",
  path: "/analytics/sales",
  operationId: "getSalesAnalytics",
  tags: ["read side"],
  summary: "Sales analytics (admin): per stock and per minute (PostgreSQL)",
  description:
    "Per stock (all time): units sold, revenue, holds released by reason, sell-through, time to sell-out. " +
    "Series: per minute in the window [from, to), revenue per currency. The window defaults to the hour before `to` (and `to` to now); " +
    "`from` must be before `to` and the window at most 24 hours long, else 400 `invalid_request`.",
  ...bearer(adminOnly),
  request: {
    query: z.object({
      stockId: z.string().regex(STOCK_ID_PATTERN).optional().openapi({ description: "only this stock (stocks and series)" }),
      from: isoParam("start of the series window, inclusive (ISO 8601 with offset, 1970-9999); default `to` minus 1 hour"),
      to: isoParam("end of the series window, exclusive (ISO 8601 with offset, 1970-9999); default now; at most 24 h after `from`"),
      limit: limitParam(100, 1000).openapi({ description: "how many stocks, 1-1000 (default 100)" }),
    }),
    headers: consistencyRequestHeaders,
  },
  responses: {
    ...readOk(salesReportSchema, "the report"),
    ...edgeProblems("get"),
    ...problems(
      [
        400,
        "`invalid_request`: a query value fails the schema, `from` not before `to`, or a window over 24 hours; " +
          "`invalid_consistency_token`: a Consistency-Token this api did not issue",
      ],
      [401, "`unauthorized`: no admin token"],
      [403, "`forbidden`: not the admin token"],
      [503, "`store_unavailable`: PostgreSQL is down or slow"],
    ),
  },
});

function unavailable(store: string): ApiProblem {
  return new ApiProblem(503, "store_unavailable", `${store} is unavailable, try again shortly`);
}

/** Store errors to 503; everything else goes to the app's onError unchanged. */
async function fromPostgres<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof InvalidCursorError) throw new ApiProblem(400, "invalid_request", "query.cursor: invalid cursor");
    if (err instanceof InvalidWindowError) throw new ApiProblem(400, "invalid_request", `query: ${err.message}`);
    if (isPostgresOutage(err)) throw unavailable("the order database");
    throw err;
  }
}

async function fromElasticsearch<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof InvalidSearchCursorError) throw new ApiProblem(400, "invalid_request", "query.cursor: invalid cursor");
    if (isElasticOutage(err)) throw unavailable("search");
    throw err;
  }
}

export function createReadRoutes(deps: ReadRoutesDeps): OpenAPIHono<AppEnv> {
  const app = createRouter();
  // Read-your-writes (consistency/): each route waits on its own store before its query.
  const consistency = deps.consistency ?? createReadConsistency({ sql: deps.sql, es: deps.es, esAlias: deps.esAlias, logger: deps.logger });

  app.openapi(ordersRoute, async (c) => {
    const { userId } = c.req.valid("param");
    requireOwnerOrAdmin(c, userId);
    await awaitReadConsistency(c, consistency.postgres);
    const { limit, cursor } = c.req.valid("query");
    const page = await fromPostgres(() => listOrdersForUser(deps.sql, userId, { limit, cursor }));
    return c.json(page, 200);
  });

  app.openapi(searchRoute, async (c) => {
    const { q, status, limit, cursor } = c.req.valid("query");
    await awaitReadConsistency(c, consistency.search);
    const page = await fromElasticsearch(() => searchStocks(deps.es, deps.esAlias, { q, status, limit, cursor }));
    return c.json(page, 200);
  });

  app.openapi(analyticsRoute, async (c) => {
    requireAdmin(c);
    await awaitReadConsistency(c, consistency.postgres);
    const { stockId, from, to, limit } = c.req.valid("query");
    const report = await fromPostgres(() =>
      salesReport(deps.sql, { stockId, limit, from: from ? new Date(from) : undefined, to: to ? new Date(to) : undefined }),
    );
    return c.json(report, 200);
  });

  return app;
}
