/**
 * An api wired to the real Redis under a fresh key prefix, for integration tests:
 * in-process (`request`) or served over real HTTP (`listen`).
 */
import { describe } from "bun:test";
import { createApp, type AppDeps } from "../../services/api/app.ts";
import { DashboardCollector } from "../../services/api/dashboard/collector.ts";
import { DASHBOARD_OPEN_PATHS, dashboardRoutes } from "../../services/api/dashboard/routes.ts";
import { StreamSlots } from "../../services/api/sse-limit.ts";
import { createAdminApp } from "../../shared/admin-server.ts";
import { createKeyLayout, type KeyLayout } from "../../shared/domain/keys.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { createRedis, deleteKeysByPrefix, parseClusterNodes, type RedisClient, type RedisTarget } from "../../shared/redis/client.ts";
import { createStockCommands, type CommandOptions, type StockCommands } from "../../shared/redis/commands.ts";
import { mintUserToken } from "../../shared/dev/token.ts";
import { stackEnv, uniqueName } from "../../shared/dev/env.ts";
import type { RedisOptions } from "ioredis";

export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789";
export const TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789";

/** A Redis the write-side suites run against: the single node and the stack's cluster. */
export interface RedisUnderTest {
  name: "single node" | "cluster";
  target: RedisTarget;
  /** The same kind of client pointed at nothing (port 1), for the "store unavailable" cases. */
  deadTarget: RedisTarget;
}

export const REDIS_UNDER_TEST: readonly RedisUnderTest[] = [
  { name: "single node", target: { REDIS_URL: stackEnv.REDIS_URL }, deadTarget: { REDIS_URL: "redis://127.0.0.1:1" } },
  {
    name: "cluster",
    target: { REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(stackEnv.REDIS_CLUSTER_NODES) },
    deadTarget: { REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: [{ host: "127.0.0.1", port: 1 }] },
  },
];

/**
 * One suite, run once per Redis (single node, then cluster): `body` declares the tests, usually
 * around its own createTestApi({ redis }). Same code paths and scripts on both; a difference in
 * behaviour is a bug.
 */
export function describeEachRedis(body: (redis: RedisUnderTest) => void): void {
  for (const redis of REDIS_UNDER_TEST) describe(`on ${redis.name}`, () => body(redis));
}

export interface TestApi {
  app: ReturnType<typeof createApp>;
  redis: RedisClient;
  keys: KeyLayout;
  commands: StockCommands;
  /** The dashboard's collector, when the test named workerMetricsUrls. */
  dashboard?: DashboardCollector;
  admin: Record<string, string>;
  /** Headers for a user's requests (Authorization: Bearer <JWT>). */
  user(userId: string): Promise<Record<string, string>>;
  /** In-process request with a JSON body. */
  request(method: string, path: string, options?: { headers?: Record<string, string>; body?: unknown }): Promise<Response>;
  /** Serves the admin side (metrics, and the dashboard with workerMetricsUrls) on a free loopback port; returns its base URL. */
  listenAdmin(): string;
  /** Serves the app on a free loopback port; returns its base URL. */
  listen(): string;
  close(): Promise<void>;
}

export function createTestApi(
  options: {
    shards?: number;
    prefix?: string;
    redis?: RedisTarget;
    /** Client options, e.g. a connectionName by which a test finds (and kills) the api's connections. */
    redisOptions?: RedisOptions;
    app?: Partial<AppDeps>;
    workerMetricsUrls?: string[];
    commands?: CommandOptions;
    /** SSE_MAX_CLIENTS of the admin side (the dashboard's streams); default 100. */
    adminSseMaxClients?: number;
  } = {},
): TestApi {
  const redis = createRedis(options.redis ?? { REDIS_URL: stackEnv.REDIS_URL }, options.redisOptions);
  const keys = createKeyLayout(options.prefix ?? uniqueName("api"), options.shards ?? 4);
  const commands = createStockCommands(redis, keys, options.commands);
  const registry = createMetricsRegistry("api");
  // The dashboard (on the admin port, see listenAdmin) when the test names the workers it scrapes.
  const dashboard = options.workerMetricsUrls
    ? new DashboardCollector({ redis, commands, registry, workerMetricsUrls: options.workerMetricsUrls })
    : undefined;
  dashboard?.registerStockGauges(registry);
  const app = createApp({
    commands,
    redis,
    logger: createLogger("api-test", process.env.LOG_LEVEL ?? "silent"),
    registry,
    adminToken: TEST_ADMIN_TOKEN,
    jwtSecret: TEST_JWT_SECRET,
    maxBodyBytes: 16 * 1024,
    ...options.app,
  });
  let server: ReturnType<typeof Bun.serve> | undefined;
  let adminServer: ReturnType<typeof Bun.serve> | undefined;
  return {
    app,
    redis,
    keys,
    commands,
    dashboard,
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
    listenAdmin() {
      // As main.ts wires it: /healthz, /readyz, /metrics and the dashboard (behind the admin token) on the operators' port.
      const admin = createAdminApp({
        registry,
        notReadyReason: () => null,
        adminToken: TEST_ADMIN_TOKEN,
        routes: dashboard ? dashboardRoutes(dashboard, new StreamSlots(options.adminSseMaxClients ?? 100)) : undefined,
        openPaths: DASHBOARD_OPEN_PATHS,
      });
      adminServer ??= Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: admin.fetch });
      return `http://127.0.0.1:${adminServer.port}`;
    },
    async close() {
      dashboard?.stop();
      await adminServer?.stop(true);
      await server?.stop(true);
      await deleteKeysByPrefix(redis, keys.prefix);
      await redis.quit();
    },
  };
}
