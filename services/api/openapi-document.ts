/**
 * The OpenAPI document exactly as the api serves it at /openapi.json, every route mounted (read side
 * and webhooks too), built in-process with clients that never connect: nothing is listening and no
 * store is reached. `bun services/api/openapi-document.ts` prints it; `bun run lint` hands it to
 * `redocly lint` (scripts/lint.sh), so the linted document is the served one, not a copy.
 */
import { createSecretBox } from "../../shared/webhooks/secret-box.ts";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { createReaderSql } from "../../shared/stores/postgres/client.ts";
import { createReaderSearchClient } from "../../shared/stores/search/mapping.ts";
import { createApp } from "./app.ts";
import { createReadRoutes } from "./read-routes.ts";
import { webhookRoutes } from "./routes/webhooks.ts";

export async function servedOpenApiDocument(): Promise<unknown> {
  // Lazy clients: the routes hold them, no request here uses them, so none opens a connection.
  const redis = createRedis("redis://127.0.0.1:1", { lazyConnect: true });
  const sql = createReaderSql("postgres://unused@127.0.0.1:1/unused");
  const es = createReaderSearchClient("http://127.0.0.1:1");
  try {
    const app = createApp({
      commands: createStockCommands(redis, createKeyLayout("openapi", 1)),
      redis,
      logger: createLogger("openapi-document", "silent"),
      registry: createMetricsRegistry("api"),
      adminToken: "unused-admin-token-0123456789",
      jwtSecret: "unused-jwt-secret-0123456789abcdef0123456789",
      maxBodyBytes: 16 * 1024,
      readRoutes: createReadRoutes({ sql, es, esAlias: "stocks" }),
      webhookRoutes: webhookRoutes(sql, { box: await createSecretBox(undefined), allowPrivate: false }),
    });
    const response = await app.request("/openapi.json");
    if (response.status !== 200) throw new Error(`/openapi.json answered ${response.status}`);
    return await response.json();
  } finally {
    redis.disconnect();
    await sql.end({ timeout: 0 });
    await es.close();
  }
}

if (import.meta.main) console.log(JSON.stringify(await servedOpenApiDocument(), null, 2));
