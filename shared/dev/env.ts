import { mkdirSync } from "node:fs";

/**
 * Where the integration tests, benches and load runner find the real stack (`bun run stack up`, see README),
 * and helpers that keep test runs from seeing each other's data on shared servers.
 */
export const stackEnv = {
  REDIS_URL: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  /** The stack's Redis Cluster (`bash scripts/stack.sh up redis-cluster`), which the cluster variants of the suites use. */
  REDIS_CLUSTER_NODES: process.env.REDIS_CLUSTER_NODES ?? "127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005",
  KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
  DATABASE_URL: process.env.DATABASE_URL ?? "postgres://flashsale:flashsale@127.0.0.1:5432/flashsale",
  ELASTICSEARCH_URL: process.env.ELASTICSEARCH_URL ?? "http://127.0.0.1:9200",
};

/** A name no earlier or concurrent run uses: key prefixes, topics, groups, indices, databases. */
export function uniqueName(label: string): string {
  const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  return `t${label}${suffix}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
}

/**
 * A TCP port that is free right now on 127.0.0.1 (the kernel picks it). A random number in a range
 * can collide with a client's ephemeral port (Kafka and Redis connections hold many), so child
 * processes get one of these instead.
 */
export function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/**
 * Where a child process's stdout goes when FLASHSALE_TEST_CHILD_LOGS=<dir> asks to keep the logs: a
 * new file in that directory, which is created if missing (Bun's spawn reports a missing directory as
 * ENOENT on the executable, which sends you looking in the wrong place). Undefined when not asked.
 */
export function childLogFile(name: string): import("bun").BunFile | undefined {
  const dir = process.env.FLASHSALE_TEST_CHILD_LOGS;
  if (!dir) return undefined;
  mkdirSync(dir, { recursive: true });
  return Bun.file(`${dir}/${name}-${Date.now()}.log`);
}

/** A service binary started as its own process, with a free admin port. */
export interface ServiceProcess {
  child: import("bun").Subprocess;
  adminPort: number;
}

/**
 * Starts `bun services/<name>/main.ts` with this process's environment plus `env`, on a free
 * ADMIN_PORT, quiet unless LOG_LEVEL asks for more (its errors still reach the test's stderr).
 * `stdout: "pipe"` keeps its log lines (pino, on stdout) for the test to read.
 */
export function spawnService(name: string, env: Record<string, string>, options: { stdout?: "pipe" | "ignore" } = {}): ServiceProcess {
  const adminPort = freePort();
  const child = Bun.spawn([process.execPath, `services/${name}/main.ts`], {
    cwd: `${import.meta.dir}/../..`,
    env: {
      ...process.env,
      ADMIN_PORT: String(adminPort),
      LOG_LEVEL: process.env.LOG_LEVEL === "silent" ? "error" : (process.env.LOG_LEVEL ?? "error"),
      ...env,
    },
    // The services log to stdout (pino): FLASHSALE_TEST_CHILD_LOGS=<dir> keeps each child's log there.
    stdout: options.stdout ?? childLogFile(name) ?? "ignore",
    stderr: "inherit",
  });
  return { child, adminPort };
}
