/**
 * The live sale dashboard: one HTML page (plain SVG, no chart library, nothing from a CDN) fed by
 * server-sent events, one snapshot a second. Mounted on the api's admin side only: it shows sales
 * velocity, which is no business of the public.
 *
 * Access (shared/admin-server.ts): the page itself is a shell without data, served to anyone who
 * reaches the admin port; it asks for the admin token (a login form, kept in sessionStorage) and
 * sends it as `Authorization: Bearer` on every call. The stream is read with fetch() rather than
 * EventSource, which cannot set a header: one way to authenticate for the whole port, and no token
 * in a URL, where it would end up in access logs, proxies and the browser's history. (The other way,
 * a short-lived signed token in the query string, would need its own minting route and signing key
 * for the same result.) The price is twenty lines of SSE parsing and reconnecting in the page.
 *
 * Bounds: a view pins at most MAX_PINNED_PER_VIEW stocks (?stocks=a,b; 400 beyond), its pins last as
 * long as the view, and SSE_MAX_CLIENTS streams are open at once (503 with Retry-After beyond).
 */
import { Hono, type Context } from "hono";
import { streamSSE } from "hono/streaming";
import { STOCK_ID_PATTERN } from "../../../shared/domain/keys.ts";
import { ApiProblem, problemResponse } from "../problem.ts";
import { streamLimit, type StreamSlots } from "../sse-limit.ts";
import type { DashboardCollector, DashboardSnapshot } from "./collector.ts";
import { MAX_STOCKS_SHOWN } from "./stocks.ts";
import pageText from "./page.html" with { type: "text" };

// A text import is a string at run time; Bun's types describe *.html as an HTML bundle, for Bun.serve routes.
const page = pageText as unknown as string;

/** Stocks one view may pin; more is a 400. */
export const MAX_PINNED_PER_VIEW = 100;
/** The page: served without the token (it holds no data), see shared/admin-server.ts. */
export const DASHBOARD_OPEN_PATHS = ["/dashboard"] as const;

/**
 * ?stocks=a,b: stocks a view shows first whatever the scan finds. Ids that cannot be stock ids are
 * ignored; more than MAX_PINNED_PER_VIEW distinct ones is a problem.
 */
function pinnedStocks(query: string | undefined): string[] | ApiProblem {
  const ids = [...new Set((query ?? "").split(",").map((s) => s.trim()).filter((s) => STOCK_ID_PATTERN.test(s)))];
  if (ids.length <= MAX_PINNED_PER_VIEW) return ids;
  return new ApiProblem(400, "invalid_request", `?stocks= pins at most ${MAX_PINNED_PER_VIEW} stocks per view (got ${ids.length})`, {
    limit: MAX_PINNED_PER_VIEW,
  });
}

/** What one view shows: its own pins in the order asked, then the busiest of the rest. */
function viewOf(snapshot: DashboardSnapshot, pinned: readonly string[]): DashboardSnapshot {
  const byId = new Map(snapshot.stocks.map((s) => [s.id, s]));
  const mine = pinned.flatMap((id) => byId.get(id) ?? []);
  const pinnedHere = new Set(pinned);
  const rest = snapshot.stocks.filter((s) => !pinnedHere.has(s.id)).slice(0, MAX_STOCKS_SHOWN);
  return { ...snapshot, stocks: [...mine, ...rest] };
}

/** Parses ?stocks= or answers the 400. */
function withPins(c: Context, run: (pinned: string[]) => Response | Promise<Response>): Response | Promise<Response> {
  const pinned = pinnedStocks(c.req.query("stocks"));
  return pinned instanceof ApiProblem ? problemResponse(c, pinned) : run(pinned);
}

export function dashboardRoutes(collector: DashboardCollector, streams: StreamSlots): Hono {
  const app = new Hono();
  app.get("/dashboard", (c) => c.html(page));
  app.get("/dashboard/snapshot.json", (c) =>
    withPins(c, async (pinned) => {
      const unpin = collector.pin(pinned);
      try {
        return c.json(viewOf(await collector.snapshot(pinned.length > 0), pinned));
      } finally {
        unpin();
      }
    }),
  );
  app.get("/dashboard/events", streamLimit(streams), (c) =>
    withPins(c, (pinned) => {
      const unpin = collector.pin(pinned);
      // A stream lives as long as the page: exempt it from Bun's idle timeout (10 s by default), which
      // would cut it whenever a tick is slow on a busy box. (c.env is the Bun server under Bun.serve.)
      (c.env as { timeout?: (request: Request, seconds: number) => void } | undefined)?.timeout?.(c.req.raw, 0);
      return streamSSE(c, async (stream) => {
        let id = 0;
        const queue: string[] = [];
        let wake: (() => void) | undefined;
        const unsubscribe = collector.subscribe((snapshot) => {
          queue.splice(0, queue.length, JSON.stringify(viewOf(snapshot, pinned))); // a slow reader gets the newest only
          wake?.();
        });
        stream.onAbort(() => {
          unsubscribe();
          unpin();
          wake?.();
        });
        try {
          while (!stream.aborted) {
            const data = queue.shift();
            if (data === undefined) {
              await new Promise<void>((resolve) => (wake = resolve));
              continue;
            }
            await stream.writeSSE({ event: "snapshot", id: String(++id), data });
          }
        } finally {
          unsubscribe();
          unpin();
        }
      });
    }),
  );
  return app;
}
