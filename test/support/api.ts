/**
 * An api wired to the real Redis under a fresh key prefix, for integration tests:
 * in-process (`request`) or served over real HTTP (`listen`).
 */
import type { Redis } from "ioredis";
import { createApp, type AppDeps } from "../../services/api/app.ts";
import { DashboardCollector } from "../../services/api/dashboard/collector.ts";
import { createKeyLayout, type KeyLayout } from "../../shared/domain/keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis, deleteKeysByPrefix } from "../../shared/redis/client.ts";
import { createStockCommands, type CommandOptions, type StockCommands } from "../../shared/redis/commands.ts";
import { mintUserToken } from "../../scripts/mint-token.ts";
import { stackEnv, uniqueName } from "./env.ts";

export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789";
export const TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789";

export interface TestApi {
  app: ReturnType<typeof createApp>;
  redis: Redis;
  keys: KeyLayout;
  commands: StockCommands;
  admin: Record<string, string>;
  /** Headers for a user's requests (Authorization: Bearer <JWT>). */
  user(userId: string): Promise<Record<string, string>>;
  /** In-process request with a JSON body. */
  request(method: string, path: string, options?: { headers?: Record<string, string>; body?: unknown }): Promise<Response>;
  /** Serves the app on a free loopback port; returns its base URL. */
  listen(): string;
  close(): Promise<void>;
}

export function createTestApi(
  options: { shards?: number; prefix?: string; app?: Partial<AppDeps>; workerMetricsUrls?: string[]; commands?: CommandOptions } = {},
): TestApi {
  const redis = createRedis(stackEnv.REDIS_URL);
  const keys = createKeyLayout(options.prefix ?? uniqueName("api"), options.shards ?? 4);
  const commands = createStockCommands(redis, keys, options.commands);
  const registry = createMetricsRegistry("api");
  // The dashboard (admin only) when the test names the workers it scrapes.
  const dashboard = options.workerMetricsUrls
    ? new DashboardCollector({ redis, commands, registry, workerMetricsUrls: options.workerMetricsUrls })
    : undefined;
  const app = createApp({
    commands,
    redis,
    logger: createLogger("api-test", process.env.LOG_LEVEL ?? "silent"),
    registry,
    dashboard,
    adminToken: TEST_ADMIN_TOKEN,
    jwtSecret: TEST_JWT_SECRET,
    maxBodyBytes: 16 * 1024,
    ...options.app,
  });
  let server: ReturnType<typeof Bun.serve> | undefined;
  return {
    app,
    redis,
    keys,
    commands,
    admin: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
    user: async (userId) => ({ Authorization: `Bearer ${await mintUserToken(userId, TEST_JWT_SECRET)}` }),
    request: (method, path, { headers = {}, body } = {}) =>
      Promise.resolve(
        app.request(path, {
          method,
          headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
          body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
        }),
      ),
    listen() {
      server ??= Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: app.fetch });
      return `http://127.0.0.1:${server.port}`;
    },
    async close() {
      dashboard?.stop();
      await server?.stop(true);
      await deleteKeysByPrefix(redis, keys.prefix);
      await redis.quit();
    },
  };
}
