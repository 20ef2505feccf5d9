/**
 * compose.yaml cannot run here (no Docker engine), so its structure is checked instead: health checks,
 * start order, one container per existing service built from the one Dockerfile, the environment of
 * docs/design.md §10, admin ports, and server versions that match the native stack (scripts/stack.sh).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { apiWorkerAdminPort, SERVICE_NAMES, SERVICES, WORKER_NAMES } from "../shared/services.ts";

const ROOT = join(import.meta.dir, "..");
const compose = parse(readFileSync(join(ROOT, "compose.yaml"), "utf8"), { merge: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const services = compose.services;
const stackScript = readFileSync(join(ROOT, "scripts", "stack.sh"), "utf8");
const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string; args?: Record<string, string> };
  command?: string[];
  environment?: Record<string, string | number | boolean | null>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[]; interval?: string; timeout?: string; retries?: number; start_period?: string };
  init?: boolean;
  restart?: string;
  profiles?: string[];
  entrypoint?: string[];
}

// The one registry of binaries (shared/services.ts) is what compose, the Dockerfile and Prometheus must agree with.
const APP_SERVICES = SERVICE_NAMES;
const ADMIN_PORTS: Record<string, number> = Object.fromEntries(WORKER_NAMES.map((n) => [n, SERVICES[n].adminPort]));
const API_ADMIN_PORT = SERVICES.api.adminPort;
const CLUSTER_NODES = [0, 1, 2, 3, 4, 5].map((i) => `redis-cluster-${i}`);
const KAFKA_CLUSTER_NODES = [1, 2, 3].map((i) => `kafka-cluster-${i}`);
const isOneShot = (s: Service) => s.restart === "no";
const parseSeconds = (d: string | undefined) => Number(/^(\d+)s$/.exec(d ?? "")?.[1] ?? 0);
const stackVersion = (name: string) => new RegExp(`^${name}=(\\S+)$`, "m").exec(stackScript)?.[1];

describe("compose.yaml", () => {
  test("has the servers, the Kafka UI, the one-shot migrate and every service", () => {
    expect(Object.keys(services).sort()).toEqual(
      ["api", "elasticsearch", "expirer", "kafka", "kafka-ui", "migrate", "notifier", "postgres", "projector-postgres", "projector-search", "redis", "relay",
        "prometheus", "grafana", ...CLUSTER_NODES, "redis-cluster-init", ...KAFKA_CLUSTER_NODES].sort(),
    );
  });

  test("the optional kafka-cluster profile: three KRaft brokers like stack.sh up kafka-cluster (RF 3, min ISR 2, no unclean election), opt-in for the apps", () => {
    const kafkaCluster = readFileSync(join(ROOT, "scripts", "stack", "kafka-cluster.sh"), "utf8");
    const voters = KAFKA_CLUSTER_NODES.map((n, i) => `${i + 1}@${n}:9093`).join(",");
    for (const [i, name] of KAFKA_CLUSTER_NODES.entries()) {
      const s = services[name]!;
      const e = s.environment!;
      const port = 9192 + i;
      expect(s.profiles).toEqual(["kafka-cluster"]);
      expect(s.image).toBe(services.kafka!.image!);
      expect(e.KAFKA_NODE_ID).toBe(i + 1);
      expect(e.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe(voters);
      expect(String(e.KAFKA_ADVERTISED_LISTENERS)).toBe(`INTERNAL://${name}:19092,EXTERNAL://127.0.0.1:${port}`);
      expect(e.CLUSTER_ID).toBe(services["kafka-cluster-1"]!.environment!.CLUSTER_ID!);
      expect([e.KAFKA_DEFAULT_REPLICATION_FACTOR, e.KAFKA_MIN_INSYNC_REPLICAS, e.KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE]).toEqual([3, 2, "false"]);
      expect([e.KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR, e.KAFKA_TRANSACTION_STATE_LOG_MIN_ISR, e.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR]).toEqual([3, 2, 3]);
      expect(s.ports).toEqual([`127.0.0.1:${port}:${port}`]);
      expect(s.healthcheck!.test.join(" ")).toContain(`${name}:19092`);
      expect(s.volumes).toEqual([`${name}-data:/var/lib/kafka/data`]);
      // The native cluster's failure detection is the same.
      expect(kafkaCluster).toContain(`broker.session.timeout.ms=${e.KAFKA_BROKER_SESSION_TIMEOUT_MS}`);
    }
    expect(stackScript).toContain('KAFKA_CLUSTER_BASE_PORT="${FLASHSALE_KAFKA_CLUSTER_BASE_PORT:-9192}"');
    // The apps use the single broker unless KAFKA_BROKERS names the cluster's.
    for (const name of APP_SERVICES) expect(services[name]!.environment!.KAFKA_BROKERS).toBe("${KAFKA_BROKERS:-kafka:19092}");
  });

  test("the optional cluster profile: 3 masters + 3 replicas like stack.sh up redis-cluster, created once, opt-in for the apps", () => {
    for (const [i, name] of CLUSTER_NODES.entries()) {
      const s = services[name]!;
      const port = 7000 + i;
      expect(s.profiles).toEqual(["cluster"]);
      expect(s.image).toBe("redis:7");
      const cmd = s.command!.join(" ");
      expect(cmd).toContain(`--port ${port}`);
      expect(cmd).toContain("--cluster-enabled yes");
      expect(cmd).toContain("--appendonly yes --appendfsync everysec");
      expect(cmd).toContain("--maxmemory-policy noeviction");
      expect(cmd).toContain(`--cluster-announce-hostname ${name}`);
      expect(s.ports).toEqual([`127.0.0.1:${port}:${port}`]);
      expect(s.healthcheck!.test).toEqual(["CMD", "redis-cli", "-p", String(port), "ping"]);
    }
    // The native stack uses the same ports and node timeout.
    expect(stackScript).toContain('REDIS_CLUSTER_BASE_PORT="${FLASHSALE_REDIS_CLUSTER_BASE_PORT:-7000}"');
    expect(stackScript).toContain('REDIS_CLUSTER_NODE_TIMEOUT="${FLASHSALE_REDIS_CLUSTER_NODE_TIMEOUT:-5000}"');
    const init = services["redis-cluster-init"]!;
    expect(init.profiles).toEqual(["cluster"]);
    expect(isOneShot(init)).toBe(true);
    expect(Object.keys(init.depends_on ?? {}).sort()).toEqual([...CLUSTER_NODES].sort());
    expect(String(init.command)).toContain("--cluster-replicas 1 --cluster-yes");
    // Without REDIS_CLUSTER_NODES the apps use the single node: the variable is passed through, empty by default.
    for (const name of APP_SERVICES) expect(services[name]!.environment!.REDIS_CLUSTER_NODES).toBe("${REDIS_CLUSTER_NODES:-}");
  });

  test("server images are the versions the native stack runs", () => {
    expect(services.redis?.image).toBe("redis:7");
    expect(services.postgres?.image).toBe("postgres:15");
    expect(services.kafka?.image).toBe(`apache/kafka:${stackVersion("KAFKA_VERSION")}`);
    expect(services.elasticsearch?.image).toBe(`docker.elastic.co/elasticsearch/elasticsearch:${stackVersion("ES_VERSION")}`);
    expect(services.elasticsearch?.image).toMatch(/:8\.19\.\d+$/);
    expect(services["kafka-ui"]?.image).toMatch(/^kafbat\/kafka-ui:v\d+\.\d+\.\d+$/);
  });

  test("every service has a health check, or is a one-shot that others wait to complete", () => {
    for (const [name, s] of Object.entries(services)) {
      if (isOneShot(s)) {
        expect(s.healthcheck, `${name} is one-shot`).toBeUndefined();
        continue;
      }
      expect(s.healthcheck?.test?.length, `${name} healthcheck`).toBeGreaterThan(0);
      expect(["CMD", "CMD-SHELL"]).toContain(s.healthcheck!.test[0]!);
    }
  });

  test("depends_on names existing services with a condition that fits them", () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        const target = services[dep];
        expect(target, `${name} depends on unknown ${dep}`).toBeDefined();
        if (condition === "service_healthy") expect(target!.healthcheck, `${name} waits for ${dep} to be healthy`).toBeDefined();
        else if (condition === "service_completed_successfully") expect(isOneShot(target!), `${dep} must be one-shot`).toBe(true);
        else throw new Error(`${name} → ${dep}: unexpected condition ${condition}`);
      }
    }
    // Nobody reads the read side before its schema exists.
    expect(services.api?.depends_on?.migrate?.condition).toBe("service_completed_successfully");
    expect(services["projector-postgres"]?.depends_on?.migrate?.condition).toBe("service_completed_successfully");
    expect(services.migrate?.depends_on?.postgres?.condition).toBe("service_healthy");
  });

  test("restart policies: every long-running container comes back when it exits on its own; one-shots do not", () => {
    for (const [name, s] of Object.entries(services)) {
      if (isOneShot(s)) continue;
      expect(["unless-stopped", "always", "on-failure"], `${name} restart`).toContain(String(s.restart).split(":")[0]!);
    }
    for (const name of APP_SERVICES) expect(services[name]!.restart, name).toBe("unless-stopped");
  });

  test("each service waits for the servers it needs (shared/services.ts) to be healthy, and for migrate when it reads or writes PostgreSQL", () => {
    for (const name of APP_SERVICES) {
      const deps = services[name]!.depends_on ?? {};
      const needs: readonly string[] = SERVICES[name].needs;
      const expected: Record<string, { condition: string }> = Object.fromEntries(needs.map((server) => [server, { condition: "service_healthy" }]));
      if (needs.includes("postgres")) expected.migrate = { condition: "service_completed_successfully" };
      expect(deps, name).toEqual(expected);
      // A first start on empty servers: a service stays not ready while it waits out a broker; the
      // start period keeps compose from calling that unhealthy.
      expect(parseSeconds(services[name]!.healthcheck!.start_period), `${name} start_period`).toBeGreaterThanOrEqual(30);
    }
  });

  test("no cycles in depends_on", () => {
    const visiting = new Set<string>();
    const done = new Set<string>();
    const visit = (n: string) => {
      if (done.has(n)) return;
      if (visiting.has(n)) throw new Error(`depends_on cycle through ${n}`);
      visiting.add(n);
      for (const d of Object.keys(services[n]?.depends_on ?? {})) visit(d);
      visiting.delete(n);
      done.add(n);
    };
    for (const n of Object.keys(services)) visit(n);
  });

  test("built services come from the one Dockerfile and name an existing entry point", () => {
    for (const [name, s] of Object.entries(services)) {
      if (!s.build) continue;
      expect(s.build.context).toBe(".");
      expect(s.build.dockerfile).toBe("Dockerfile");
      const target = s.build.args?.SERVICE;
      expect(target, `${name} build arg SERVICE`).toBe(name);
      const entry = target === "migrate" ? join(ROOT, "scripts", "migrate.ts") : join(ROOT, "services", target!, "main.ts");
      // A service folder without main.ts yet is being written; only existing folders are held to it.
      if (target === "migrate" || existsSync(join(ROOT, "services", target!))) {
        expect(existsSync(entry), `${entry} for ${name}`).toBe(true);
      }
    }
    for (const name of APP_SERVICES) expect(services[name]?.build, `${name} is built`).toBeDefined();
  });

  test("application containers: init, the docs/design.md §10 environment, health on their port", () => {
    for (const name of APP_SERVICES) {
      const s = services[name]!;
      expect(s.init, `${name} init`).toBe(true);
      const env = s.environment ?? {};
      for (const key of ["REDIS_URL", "KAFKA_BROKERS", "DATABASE_URL", "ELASTICSEARCH_URL", "OUTBOX_SHARDS", "LOG_LEVEL"]) {
        expect(env[key], `${name} ${key}`).toBeDefined();
      }
      const port = name === "api" ? 3000 : ADMIN_PORTS[name]!;
      if (name === "api") {
        expect(Number(env.PORT)).toBe(3000);
        expect(Number(env.ADMIN_PORT), "api ADMIN_PORT (/metrics off the public port)").toBe(API_ADMIN_PORT);
        expect(s.ports).toContain(`127.0.0.1:${API_ADMIN_PORT}:${API_ADMIN_PORT}`);
        expect(String(env.ADMIN_TOKEN).length).toBeGreaterThanOrEqual(16);
        expect(String(env.JWT_SECRET).length).toBeGreaterThanOrEqual(32);
      } else {
        expect(Number(env.ADMIN_PORT), `${name} ADMIN_PORT`).toBe(port);
      }
      // Health is readiness, on every port it serves (the api: public and operators' port).
      for (const p of name === "api" ? [port, API_ADMIN_PORT] : [port]) expect(s.healthcheck!.test.join(" ")).toContain(`127.0.0.1:${p}/readyz`);
      expect(s.healthcheck!.test.join(" ")).not.toContain("/healthz");
      expect(s.ports).toContain(`127.0.0.1:${port}:${port}`);
    }
    // Every service sees the same shard count, or the relay would miss outboxes.
    const shards = new Set(APP_SERVICES.map((n) => services[n]!.environment!.OUTBOX_SHARDS));
    expect(shards.size).toBe(1);
  });

  test("servers listen on the native stack's ports, on loopback only", () => {
    expect(services.redis?.ports).toEqual(["127.0.0.1:6379:6379"]);
    expect(services.postgres?.ports).toEqual(["127.0.0.1:5432:5432"]);
    expect(services.kafka?.ports).toEqual(["127.0.0.1:9092:9092"]);
    expect(services.elasticsearch?.ports).toEqual(["127.0.0.1:9200:9200"]);
    for (const [name, s] of Object.entries(services)) {
      for (const p of s.ports ?? []) expect(p, `${name} port ${p}`).toMatch(/^127\.0\.0\.1:/);
    }
  });

  test("server settings match docs/design.md: AOF everysec, KRaft single node, ES single-node without security", () => {
    expect(services.redis?.command).toEqual(expect.arrayContaining(["--appendonly", "yes", "--appendfsync", "everysec"]));
    // A limit, and writes refused at it rather than holds and events evicted (docs/design.md §3), here and in the native stack.
    expect(services.redis?.command).toEqual(expect.arrayContaining(["--maxmemory", "--maxmemory-policy", "noeviction"]));
    for (const script of ["servers.sh", "redis-cluster.sh"]) {
      expect(readFileSync(join(ROOT, "scripts", "stack", script), "utf8")).toMatch(/--maxmemory "\$REDIS(_CLUSTER)?_MAXMEMORY" --maxmemory-policy noeviction/);
    }
    const k = services.kafka!.environment!;
    expect(k.KAFKA_PROCESS_ROLES).toBe("broker,controller");
    expect(k.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR).toBe(1);
    expect(k.KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR).toBe(1);
    expect(k.KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS).toBe(0);
    expect(String(k.KAFKA_ADVERTISED_LISTENERS)).toContain("kafka:19092");
    for (const name of APP_SERVICES) expect(services[name]!.environment!.KAFKA_BROKERS).toBe("${KAFKA_BROKERS:-kafka:19092}");
    const e = services.elasticsearch!.environment!;
    expect(e["discovery.type"]).toBe("single-node");
    expect(e["xpack.security.enabled"]).toBe("false");
    expect(e.ES_JAVA_OPTS).toBe("-Xms1g -Xmx1g");
    for (const [name, s] of Object.entries(services)) {
      for (const v of s.volumes ?? []) {
        const source = v.split(":")[0]!;
        // A bind mount names a file of the repository; anything else is a declared volume.
        if (source.startsWith("./")) expect(existsSync(join(ROOT, source)), `${name} mounts ${source}`).toBe(true);
        else expect(Object.keys(compose.volumes ?? {}), `${name} volume ${v}`).toContain(source);
      }
    }
  });
});

describe("compose monitoring", () => {
  test("Prometheus: the native stack's version, its rules, and a scrape job for the api and every worker by container name", () => {
    const p = services.prometheus!;
    const nativeVersion = /version (\d+\.\d+\.\d+)/.exec(Bun.spawnSync(["promtool", "--version"]).stdout.toString())?.[1];
    if (nativeVersion) expect(p.image).toBe(`prom/prometheus:v${nativeVersion}`);
    expect(p.volumes).toEqual(
      expect.arrayContaining(["./ops/prometheus/prometheus.compose.yml:/etc/prometheus/prometheus.yml:ro", "./ops/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"]),
    );
    const config = parse(readFileSync(join(ROOT, "ops", "prometheus", "prometheus.compose.yml"), "utf8")) as {
      rule_files: string[];
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    expect(config.rule_files).toEqual(["alerts.yml"]);
    const targets = Object.fromEntries(config.scrape_configs.map((j) => [j.job_name, j.static_configs[0]!.targets[0]]));
    expect(targets).toEqual({ api: `api:${API_ADMIN_PORT}`, ...Object.fromEntries(Object.entries(ADMIN_PORTS).map(([n, port]) => [n, `${n}:${port}`])) });
    // The api's dashboard scrapes the same workers.
    expect(String(services.api!.environment!.WORKER_METRICS_URLS).split(",")).toEqual(
      Object.entries(ADMIN_PORTS).map(([n, port]) => `http://${n}:${port}/metrics`),
    );
  });

  test("Grafana: the data source and the sale dashboard are provisioned and agree on the data source uid", () => {
    const g = services.grafana!;
    expect(g.image).toMatch(/^grafana\/grafana:\d+\.\d+\.\d+$/);
    expect(g.depends_on?.prometheus?.condition).toBe("service_healthy");
    const datasources = parse(readFileSync(join(ROOT, "ops", "grafana", "provisioning", "datasources", "prometheus.yml"), "utf8")) as {
      datasources: { uid: string; url: string }[];
    };
    expect(datasources.datasources[0]!.url).toBe("http://prometheus:9090");
    const dashboard = JSON.parse(readFileSync(join(ROOT, "ops", "grafana", "dashboards", "flashsale.json"), "utf8")) as {
      panels: { title: string; datasource: { uid: string }; targets: { expr: string }[] }[];
    };
    const titles = dashboard.panels.map((p) => p.title).join(" | ");
    for (const panel of ["Stock units", "per second, per stock", "Sold out", "Allocation outcomes", "Dead letters", "Relay lag per shard", "Relay backlog", "freshness p99", "consumer lag"]) {
      expect(titles).toContain(panel);
    }
    for (const p of dashboard.panels) {
      expect(p.datasource.uid, p.title).toBe(datasources.datasources[0]!.uid);
      expect(p.targets.length, p.title).toBeGreaterThan(0);
    }
  });
});

describe("Dockerfile and .dockerignore", () => {
  test("multi-stage: oven/bun 1.4.5 compiles the SERVICE, a slim runtime runs it unprivileged", () => {
    expect(dockerfile).toMatch(/^ARG BUN_VERSION=1\.4\.5$/m);
    expect(dockerfile).toMatch(/^FROM oven\/bun:\$\{BUN_VERSION\} AS build$/m);
    expect(dockerfile).toMatch(/^ARG SERVICE$/m);
    expect(dockerfile).toContain("bun build --compile");
    expect(dockerfile).toContain("bun install --frozen-lockfile");
    expect(dockerfile).toMatch(/^FROM debian:bookworm-slim AS runtime$/m);
    expect(dockerfile).toMatch(/^USER \d+:\d+$/m);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["\/app\/service"\]$/m);
    const packageJson = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { packageManager: string };
    expect(packageJson.packageManager).toBe("bun@1.4.5");
  });

  test(".dockerignore keeps local state out of the build context", () => {
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    for (const p of [".git", "node_modules", ".stack", "dist"]) expect(ignored).toContain(p);
    // …but not what the Dockerfile copies.
    for (const p of ["shared", "services", "scripts", "migrations", "package.json", "bun.lock"]) expect(ignored).not.toContain(p);
  });
});

describe("the registry of binaries (shared/services.ts)", () => {
  test("the Dockerfile builds any binary of the registry by its name (no list to keep), with the registry's runtime flags", () => {
    expect(dockerfile).toContain('*) entry="services/${SERVICE}/main.ts" ;;');
    expect(dockerfile).toMatch(/^# SERVICE: a binary of shared\/services\.ts/m);
    for (const name of SERVICE_NAMES) expect(existsSync(join(ROOT, "services", name, "main.ts")), name).toBe(true);
    for (const name of SERVICE_NAMES) {
      for (const flag of SERVICES[name].runtimeFlags) expect(dockerfile, `${name} ${flag}`).toContain(`--compile-exec-argv=${flag}`);
    }
  });

  test("native Prometheus scrapes every binary on its admin port", () => {
    const config = parse(readFileSync(join(ROOT, "ops", "prometheus", "prometheus.yml"), "utf8")) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = Object.fromEntries(config.scrape_configs.map((j) => [j.job_name, j.static_configs[0]!.targets[0]]));
    expect(targets).toEqual(Object.fromEntries(SERVICE_NAMES.map((n) => [n, `127.0.0.1:${SERVICES[n].adminPort}`])));
  });

  test("api workers' admin ports never take another binary's admin port", () => {
    const taken = new Set<number>(SERVICE_NAMES.map((n) => SERVICES[n].adminPort));
    for (let worker = 1; worker < 64; worker++) expect(taken.has(apiWorkerAdminPort(SERVICES.api.adminPort, worker)), `worker ${worker}`).toBe(false);
  });

  test("every registered binary has its services/<name>/main.ts, and no main.ts is unregistered", () => {
    const dirs = readdirSync(join(ROOT, "services")).filter((d) => existsSync(join(ROOT, "services", d, "main.ts")));
    expect(dirs.sort()).toEqual([...SERVICE_NAMES].sort());
  });
});
