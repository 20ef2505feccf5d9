/**
 * The live sale dashboard: one HTML page (plain SVG, no chart library, nothing from a CDN) fed by
 * server-sent events, one snapshot a second. Mounted on the api's admin side only: it shows sales
 * velocity, which is no business of the public.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { STOCK_ID_PATTERN } from "../../../shared/domain/keys.ts";
import type { OpenStreams } from "../open-streams.ts";
import type { DashboardCollector } from "./collector.ts";
import pageText from "./page.html" with { type: "text" };

// A text import is a string at run time; Bun's types describe *.html as an HTML bundle, for Bun.serve routes.
const page = pageText as unknown as string;

const MAX_PINNED = 50;

/** ?stocks=a,b: stocks shown first whatever the scan finds; ids that cannot be stock ids are ignored. */
function pinnedStocks(query: string | undefined): string[] {
  return (query ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => STOCK_ID_PATTERN.test(s))
    .slice(0, MAX_PINNED);
}

/** `streams`: where the event streams are registered, so the api's shutdown can end them (open-streams.ts). */
export function dashboardRoutes(collector: DashboardCollector, streams?: OpenStreams): Hono {
  const app = new Hono();
  app.get("/dashboard", (c) => c.html(page));
  app.get("/dashboard/snapshot.json", async (c) => {
    collector.pin(pinnedStocks(c.req.query("stocks")));
    return c.json(await collector.snapshot());
  });
  app.get("/dashboard/events", (c) => {
    collector.pin(pinnedStocks(c.req.query("stocks")));
    // A stream lives as long as the page: exempt it from Bun's idle timeout (10 s by default), which
    // would cut it whenever a tick is slow on a busy box. (c.env is the Bun server under Bun.serve.)
    (c.env as { timeout?: (request: Request, seconds: number) => void } | undefined)?.timeout?.(c.req.raw, 0);
    return streamSSE(c, async (stream) => {
      let id = 0;
      const queue: string[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = collector.subscribe((snapshot) => {
        queue.splice(0, queue.length, JSON.stringify(snapshot)); // a slow reader gets the newest only
        wake?.();
      });
      stream.onAbort(() => {
        unsubscribe();
        wake?.();
      });
      streams?.track(stream);
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
      }
    });
  });
  return app;
}
