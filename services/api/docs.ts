/**
 * The API reference page (/docs) with Swagger UI served by the api itself, from the swagger-ui-dist
 * package embedded at build time: the page works without internet (no CDN), in the compiled binary too.
 */
import { SwaggerUI } from "@hono/swagger-ui";
import { Hono } from "hono";
import bundle from "swagger-ui-dist/swagger-ui-bundle.js" with { type: "text" };
import css from "swagger-ui-dist/swagger-ui.css" with { type: "text" };

const ASSETS = "/docs/assets";
const cache = { "Cache-Control": "public, max-age=86400" };

export function docsRoutes(openApiUrl: string): Hono {
  const app = new Hono();
  // The package's page has no favicon link, so browsers ask for /favicon.ico (a 404 and a console error).
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>flash-sale api</title></head><body>${SwaggerUI({ url: openApiUrl, baseUrl: ASSETS })}</body></html>`;
  app.get("/docs", (c) => c.html(html));
  app.get(`${ASSETS}/swagger-ui-dist/swagger-ui-bundle.js`, (c) =>
    c.body(bundle, 200, { "Content-Type": "text/javascript; charset=utf-8", ...cache }),
  );
  app.get(`${ASSETS}/swagger-ui-dist/swagger-ui.css`, (c) => c.body(css, 200, { "Content-Type": "text/css; charset=utf-8", ...cache }));
  return app;
}
