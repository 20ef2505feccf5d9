/**
 * Prometheus: the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`,
 * each alert fires on its trouble), every metric the rules, the Grafana dashboard and the live dashboard
 * read is one the code exports, and a real Prometheus (Debian's, `bash scripts/install.sh prometheus`)
 * scrapes a real api and a real relay and loads the rules.
 */
import { afterAll, expect, test } from "bun:test";
import { Glob, type Subprocess } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { METRIC } from "../services/api/dashboard/collector.ts";
import { freePort } from "../shared/dev/env.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { createRedis, keyHolders } from "../shared/redis/client.ts";
import { parseMemoryInfo, registerRedisMemoryGauges } from "../shared/redis/memory-metrics.ts";
import { createTestApi, REDIS_UNDER_TEST } from "./support/api.ts";
import { createHarness, REPO_ROOT, spawnRelay } from "./support/relay-harness.ts";

const OPS = join(REPO_ROOT, "ops");
// Free ports, not fixed ones: a parallel run must not collide.
let PROMETHEUS_PORT = 0;
let RELAY_ADMIN_PORT = 0;

function run(...cmd: string[]): { code: number; out: string } {
  const proc = Bun.spawnSync(cmd, { cwd: join(OPS, "prometheus"), stdout: "pipe", stderr: "pipe" });
  return { code: proc.exitCode, out: `${proc.stdout.toString()}${proc.stderr.toString()}` };
}

/** The alert rules of ops/prometheus/alerts.yml, counted from the file (every rule there is an alert). */
const ALERT_COUNT = [...readFileSync(join(OPS, "prometheus", "alerts.yml"), "utf8").matchAll(/- alert: \w+/g)].length;

test("promtool: the rules and both configs are valid", () => {
  const rules = run("promtool", "check", "rules", "alerts.yml");
  expect(rules.out).toContain(`SUCCESS: ${ALERT_COUNT} rules found`);
  expect(rules.code).toBe(0);
  const config = run("promtool", "check", "config", "prometheus.yml", "prometheus.compose.yml");
  expect(config.code).toBe(0);
});

test("promtool test rules: every alert fires on the trouble it names", () => {
  const result = run("promtool", "test", "rules", "alerts.test.yml");
  expect(result.out).toContain("SUCCESS");
  expect(result.code).toBe(0);
  // Each alert of the file has a test case that expects it to fire.
  const alerts = [...readFileSync(join(OPS, "prometheus", "alerts.yml"), "utf8").matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
  const tests = readFileSync(join(OPS, "prometheus", "alerts.test.yml"), "utf8");
  for (const alert of alerts) expect(tests, alert).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
});

/** Every metric name the services register (`name: "…"` in files that use prom-client, or a declaring call's first argument). */
function exportedMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const dir of ["services", "shared"]) {
    for (const file of new Glob("**/*.ts").scanSync(join(REPO_ROOT, dir))) {
      const text = readFileSync(join(REPO_ROOT, dir, file), "utf8");
      if (!/prom\.(Counter|Gauge|Histogram)|FastHistogram\(|metricsOn\(/.test(text)) continue;
      for (const m of text.matchAll(/\bname: "([a-z_:][a-z0-9_:]*)"/g)) names.add(m[1]!);
      // A name as a declaring call's first argument: metricsOn's m.counter("…", …), m.gauge, m.histogram,
      // the FastHistograms of shared/projection/metrics.ts, memory-metrics.ts' perMaster.
      for (const m of text.matchAll(/\(\s*"(flashsale_[a-z0-9_:]*)"/g)) names.add(m[1]!);
    }
  }
  return names;
}

/** Names of our metrics used in a PromQL text (histogram series suffixes stripped). */
function metricsUsed(text: string): string[] {
  // Old unprefixed names are matched too, so a stale reference fails the check below.
  const used = text.match(/\b(flashsale|relay|projector|notifier|http|allocations|allocate|holds|expirer|stock)_[a-z0-9_]+/g) ?? [];
  return [...new Set(used.map((n) => n.replace(/_(bucket|count|sum)$/, "")))];
}

test("the rules, the Grafana dashboard and the live dashboard only read metrics the code exports", () => {
  const exported = exportedMetricNames();
  expect(exported.size).toBeGreaterThan(20);
  // Every metric of ours is flashsale_-prefixed (README "Metric names"); the runtime's process_* and
  // nodejs_* keep their standard names.
  expect([...exported].filter((n) => !n.startsWith("flashsale_"))).toEqual([]);
  const grafana = JSON.parse(readFileSync(join(OPS, "grafana", "dashboards", "flashsale.json"), "utf8")) as {
    panels: { title: string; targets?: { expr: string }[] }[];
  };
  const sources = {
    "alerts.yml": readFileSync(join(OPS, "prometheus", "alerts.yml"), "utf8"),
    "flashsale.json": grafana.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join("\n"),
    "dashboard collector": Object.values(METRIC).join("\n"),
  };
  for (const [source, text] of Object.entries(sources)) {
    const used = metricsUsed(text);
    expect(used.length, source).toBeGreaterThan(3);
    for (const name of used) expect(exported.has(name), `${source} reads ${name}`).toBe(true);
  }
});

// ------------------------------------------------------------------ a real Prometheus

const h = createHarness("prom");
const api = createTestApi({ prefix: h.prefix });
const dir = mkdtempSync(join(tmpdir(), "flashsale-prom-"));
let prometheus: Subprocess | undefined;
let relay: Subprocess | undefined;

afterAll(async () => {
  prometheus?.kill("SIGTERM");
  relay?.kill("SIGTERM");
  await Promise.all([prometheus?.exited, relay?.exited]);
  await api.close();
  await h.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

async function query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`http://127.0.0.1:${PROMETHEUS_PORT}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  return body.data.result;
}

test("the Redis memory gauges read INFO memory from every master (single node and cluster)", async () => {
  expect(parseMemoryInfo("# Memory\r\nused_memory:1048576\r\nmaxmemory:4294967296\r\nmaxmemory_policy:noeviction\r\n")).toEqual({
    usedBytes: 1_048_576,
    maxBytes: 4_294_967_296,
    policy: "noeviction",
  });
  for (const target of REDIS_UNDER_TEST) {
    const redis = createRedis(target.target);
    try {
      const registry = createMetricsRegistry("expirer");
      registerRedisMemoryGauges(registry, redis);
      const text = await registry.metrics();
      const used = [...text.matchAll(/^flashsale_redis_used_memory_bytes\{[^}]*node="([^"]+)"[^}]*\} (\d+)$/gm)];
      const masters = (await keyHolders(redis)).length;
      expect({ target: target.name, nodes: used.length }).toEqual({ target: target.name, nodes: masters });
      for (const m of used) expect(Number(m[2])).toBeGreaterThan(0);
      expect(text).toMatch(/^flashsale_redis_maxmemory_bytes\{.*\} \d+$/m);
      expect(text).toMatch(/^flashsale_redis_maxmemory_policy_info\{.*policy="[a-z-]+".*\} 1$/m);
    } finally {
      await redis.quit();
    }
  }
});

test("a real Prometheus scrapes the api and a relay and loads the alert rules", async () => {
  PROMETHEUS_PORT = await freePort();
  RELAY_ADMIN_PORT = await freePort();
  relay = spawnRelay(h.env({ ADMIN_PORT: String(RELAY_ADMIN_PORT) }));
  const adminUrl = new URL(api.listenAdmin());
  expect((await api.request("POST", "/api/stocks", { headers: api.admin, body: { id: "p1", name: "P", price: 1, quantity: 5 } })).status).toBe(201);
  // The repository's config with the targets moved to this test's processes and a fast scrape.
  const config = readFileSync(join(OPS, "prometheus", "prometheus.yml"), "utf8")
    .replace(/scrape_interval: \d+s/, "scrape_interval: 1s")
    .replace(/evaluation_interval: \d+s/, "evaluation_interval: 1s")
    .replace("127.0.0.1:9105", adminUrl.host)
    .replace("127.0.0.1:9101", `127.0.0.1:${RELAY_ADMIN_PORT}`)
    .replace("rule_files: [alerts.yml]", `rule_files: [${join(OPS, "prometheus", "alerts.yml")}]`);
  writeFileSync(join(dir, "prometheus.yml"), config);
  prometheus = Bun.spawn(
    ["prometheus", `--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${PROMETHEUS_PORT}`],
    { stdout: "ignore", stderr: "ignore" },
  );
  let up: Record<string, string> = {};
  for (let i = 0; i < 60 && !(up.api === "1" && up.relay === "1"); i++) {
    await Bun.sleep(500);
    up = Object.fromEntries((await query("up").catch(() => [])).map((r) => [r.metric.job!, r.value[1]]));
  }
  // (The other jobs point at the default worker ports: up or not, depending on what else runs.)
  expect(up).toMatchObject({ api: "1", relay: "1" });
  const created = await query(`sum(${metricsUsed("flashsale_http_requests_total")[0]}{job="api"})`);
  expect(Number(created[0]?.value[1])).toBeGreaterThanOrEqual(1);
  const shards = await query(`count(flashsale_relay_outbox_length{job="relay"})`);
  // What the servers really expose: nothing of ours without the prefix, HTTP status in `code`.
  const unprefixed = await query(`count by (__name__) ({job=~"api|relay", __name__!~"flashsale_.*|process_.*|nodejs_.*|up|scrape_.*"})`);
  expect(unprefixed.map((r) => r.metric.__name__)).toEqual([]);
  expect((await query(`count(flashsale_http_requests_total{job="api", code="201"})`)).length).toBe(1);
  expect(Number(shards[0]?.value[1])).toBe(4);
  const rules = (await (await fetch(`http://127.0.0.1:${PROMETHEUS_PORT}/api/v1/rules`)).json()) as {
    data: { groups: { rules: { name: string; health: string }[] }[] };
  };
  // Every Grafana panel's query parses and runs against the real server (most are empty here).
  const grafana = JSON.parse(readFileSync(join(OPS, "grafana", "dashboards", "flashsale.json"), "utf8")) as { panels: { targets: { expr: string }[] }[] };
  for (const { expr } of grafana.panels.flatMap((p) => p.targets)) {
    const res = await fetch(`http://127.0.0.1:${PROMETHEUS_PORT}/api/v1/query?query=${encodeURIComponent(expr)}`);
    expect(((await res.json()) as { status: string }).status, expr).toBe("success");
  }
  const loaded = rules.data.groups.flatMap((g) => g.rules);
  expect(loaded.length).toBe(ALERT_COUNT);
  for (const rule of loaded) expect(rule.health === "ok" || rule.health === "unknown", rule.name).toBe(true);
});
