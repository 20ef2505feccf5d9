/**
 * `bun run load <scenario>`: one load test end to end, isolated from everything else on the stack.
 *
 *   1. a fresh Redis key prefix (and with --pipeline: a throwaway database, topic, ES alias, groups)
 *   2. starts the api (and with --pipeline the relay and both projectors; with --expirer the expirer)
 *   3. creates the stocks through the admin API, mints one JWT per buyer
 *   4. runs loadtests/k6/<scenario>.js (its thresholds decide pass/fail)
 *   5. runs the verifier (shared/verify) on every stock, with what k6 saw
 *   6. stops what it started, removes what it created (unless --keep), exits non-zero on any failure
 *
 * scenarios: spike | steady | browse | ramp | queue   (see loadtests/README.md; queue always starts the expirer)
 * options:   --rate N  --duration 60s  --stocks N  --pipeline  --expirer  --hold-seconds N
 *            --env K=V (repeatable, passed to k6)  --keep  --log-level info  --profile (CPU profile of the api)
 *            --baseline (spike only: first the same k6 script against bare Hono answering the same
 *                        201/409 mix, the HTTP ceiling of the spike on this machine, in the same run)
 *            --warmup N (seconds of requests on a stock whose sale has not started, before the
 *                        measured run, so a freshly started server is not measured while its JIT
 *                        compiles; the baseline gets the same. Default 10 for the spike, else 0)
 * Redis: REDIS_URL, or the cluster when REDIS_CLUSTER_NODES is set (passed on to every service, and
 * the verifier scans every master), e.g. REDIS_CLUSTER_NODES=$(bash scripts/stack.sh env redis-cluster | cut -d= -f2).
 */
import { parseArgs } from "node:util";
import { freePort, stackEnv } from "../shared/dev/env.ts";
import { existsSync } from "node:fs";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { redisTargetFromEnv } from "../shared/config.ts";
import { createRedis, deleteKeysByPrefix, type RedisClient } from "../shared/redis/client.ts";
import { formatReport, type Layer } from "../shared/verify/report.ts";
import { verify, type VerifyOptions } from "../shared/verify/verify.ts";
import { adminPost, cpuSeconds, createMigratedDatabase, dropDatabase, htmlReportOf, machine, mintTokens, newLoadRun, runK6, startApi, startProcess, uniquePrefix, waitHealthy, type Child, type K6Summary } from "./support.ts";
import { compareSpikes, createWarmupStock, runSpikeBaseline, warmUp } from "./spike-baseline.ts";
import { prepareQueue, verifyQueue } from "./queue-run.ts";

const SCENARIOS = ["spike", "steady", "browse", "ramp", "queue"] as const;
type Scenario = (typeof SCENARIOS)[number];

const { REDIS_URL, DATABASE_URL, KAFKA_BROKERS, ELASTICSEARCH_URL } = stackEnv;

interface StockSpec {
  id: string;
  name: string;
  description: string;
  price: number;
  quantity: number;
  perUserLimit: number;
  holdSeconds: number;
  startsAt?: string;
  waitingRoom?: { enabled: true; admissionTtlSeconds: number };
  /** Created by the scenario's own preparation rather than up front (the queue stock: its startsAt is relative to k6's start). */
  createdLater?: boolean;
}

const WORDS = ["sneaker", "console", "headphones", "watch", "jacket", "camera", "backpack", "vinyl", "lamp", "keyboard"];
const COLOURS = ["red", "black", "white", "blue", "green"];

/** The stocks a scenario sells, and how many buyers (tokens) it needs. */
function plan(scenario: Scenario, prefix: string, o: { stocks: number; holdSeconds: number; units?: number; buyers?: number }): { stocks: StockSpec[]; buyers: number } {
  const many = (count: number, quantity: number, perUserLimit: number): StockSpec[] =>
    Array.from({ length: count }, (_, i) => ({
      id: `${prefix}-s${i}`,
      name: `Limited ${COLOURS[i % COLOURS.length]} ${WORDS[i % WORDS.length]} #${i}`,
      description: `Flash-sale ${WORDS[i % WORDS.length]}, ${COLOURS[(i >> 1) % COLOURS.length]} edition, lot ${i}`,
      price: 1_000 + (i % 50) * 250,
      quantity,
      perUserLimit,
      holdSeconds: o.holdSeconds,
    }));
  switch (scenario) {
    case "spike": {
      const units = o.units ?? 1000;
      return {
        stocks: [{ id: `${prefix}-hot`, name: "Hot drop sneaker", description: "the one everyone wants", price: 19_900, quantity: units, perUserLimit: 1, holdSeconds: o.holdSeconds }],
        buyers: o.buyers ?? 10_000,
      };
    }
    case "queue": {
      // The queue stock is created by loadtests/queue-run.ts just before k6 starts (its startsAt closes the pre-queue).
      const buyers = o.buyers ?? 50_000;
      // Every buyer polls once after the start to learn its place, and the ones the draw admitted are
      // among them at random: their admission must outlast that first round of polls, which takes
      // buyers / ~250 s on the shared 2-core machine (60 s, the default, up to 15,000 buyers; 210 s for 50,000).
      const room = { enabled: true as const, admissionTtlSeconds: Math.max(60, Math.ceil(buyers / 250 / 30) * 30) };
      // Buyers buy or cancel at once; a hold whose purchase never arrived (the client gave up) comes back within a minute.
      const base = { price: 19_900, perUserLimit: 1, holdSeconds: Math.min(o.holdSeconds, 60), waitingRoom: room };
      return {
        stocks: [
          { ...base, id: `${prefix}-queued`, name: "Queued drop", description: "sold through the waiting room", quantity: o.units ?? 1000, createdLater: true },
          { ...base, id: `${prefix}-bench`, name: "Bench room", description: "one unit, a long line: the poll bench", quantity: 1 },
        ],
        buyers,
      };
    }
    case "steady":
    case "browse":
    case "ramp":
      // Enough units that the runs measure allocation, not sold_out.
      return { stocks: many(o.stocks, 5_000_000, 1000), buyers: o.buyers ?? 10_000 };
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: {
      rate: { type: "string" },
      duration: { type: "string" },
      stocks: { type: "string", default: "100" },
      units: { type: "string" },
      buyers: { type: "string" },
      pipeline: { type: "boolean", default: false },
      expirer: { type: "boolean", default: false },
      "hold-seconds": { type: "string", default: "600" },
      env: { type: "string", multiple: true, default: [] },
      keep: { type: "boolean", default: false },
      "log-level": { type: "string", default: "info" },
      "verify-deadline": { type: "string", default: "120" },
      profile: { type: "boolean", default: false },
      baseline: { type: "boolean", default: false },
      warmup: { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  const scenario = positionals[0] as Scenario | undefined;
  if (values.help || !scenario || !SCENARIOS.includes(scenario)) {
    console.error(`usage: bun run load <${SCENARIOS.join("|")}> [--rate N] [--duration 60s] [--stocks 100] [--pipeline] [--expirer]
       [--hold-seconds 600] [--units 1000] [--buyers 10000] [--env K=V ...] [--keep] [--log-level info] [--profile] [--baseline] [--warmup N]`);
    return values.help ? 0 : 2;
  }

  const loadRun = newLoadRun(scenario);
  const { id, dir, adminToken } = loadRun;
  const prefix = uniquePrefix(scenario.slice(0, 2));
  const children: Child[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  const redisTarget = redisTargetFromEnv({ REDIS_URL, REDIS_CLUSTER_NODES: process.env.REDIS_CLUSTER_NODES });
  const redis: RedisClient = createRedis(redisTarget);
  const layers: Layer[] = ["redis"];
  /** The workers this run started, for the api's dashboard (WORKER_METRICS_URLS). */
  const workerMetrics: string[] = [];
  let exitCode = 1;
  console.log(`[load] ${scenario}: run ${id}, redis prefix ${prefix}, results in ${dir}`);
  console.log(`[load] machine: ${JSON.stringify(machine())}`);

  try {
    const serviceEnv: Record<string, string> = { REDIS_URL, REDIS_KEY_PREFIX: prefix, LOG_LEVEL: values["log-level"]! };
    if (process.env.REDIS_CLUSTER_NODES) serviceEnv.REDIS_CLUSTER_NODES = process.env.REDIS_CLUSTER_NODES;
    // --- the pipeline, isolated: database, topic, alias and groups of this run only.
    if (values.pipeline) {
      const dbName = prefix;
      const dbUrl = await createMigratedDatabase(DATABASE_URL, dbName);
      cleanups.push(() => dropDatabase(DATABASE_URL, dbName));
      const topic = `flashsale.${prefix}`;
      const alias = `${prefix}-stocks`;
      Object.assign(serviceEnv, {
        DATABASE_URL: dbUrl,
        KAFKA_BROKERS,
        KAFKA_TOPIC: topic,
        ELASTICSEARCH_URL,
        ELASTICSEARCH_INDEX_ALIAS: alias,
      });
      cleanups.push(async () => {
        const { Kafka, logLevel } = await import("kafkajs");
        const { deleteTopics } = await import("../shared/kafka/client.ts");
        await deleteTopics(new Kafka({ clientId: "load-cleanup", brokers: KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING }), [topic], { withDlq: true });
      });
      cleanups.push(async () => {
        // ES refuses wildcard deletes (action.destructive_requires_name): name each index.
        const res = await fetch(`${ELASTICSEARCH_URL}/_cat/indices/${alias}-v*?format=json&h=index`);
        const indices = res.ok ? ((await res.json()) as { index: string }[]).map((r) => r.index) : [];
        for (const index of indices) await fetch(`${ELASTICSEARCH_URL}/${index}`, { method: "DELETE" });
      });
      const admins = { relay: await freePort(), pg: await freePort(), es: await freePort() };
      workerMetrics.push(...Object.values(admins).map((p) => `http://127.0.0.1:${p}/metrics`));
      // The relay first: it creates the topic the projectors subscribe to.
      const relay = startProcess("relay", [process.execPath, "services/relay/main.ts"], { ...serviceEnv, ADMIN_PORT: String(admins.relay) }, dir);
      children.push(relay);
      await waitHealthy(`http://127.0.0.1:${admins.relay}/readyz`, relay, 60_000);
      for (const [name, port, group] of [
        ["projector-postgres", admins.pg, `${prefix}-pg`],
        ["projector-search", admins.es, `${prefix}-es`],
      ] as const) {
        const child = startProcess(name, [process.execPath, `services/${name}/main.ts`], { ...serviceEnv, ADMIN_PORT: String(port), PROJECTOR_GROUP_ID: group }, dir);
        children.push(child);
        await waitHealthy(`http://127.0.0.1:${port}/readyz`, child, 60_000);
      }
      layers.push("kafka", "postgres", "search");
      console.log(`[load] pipeline up: topic ${topic}, database ${dbName}, alias ${alias}`);
    }
    if (values.expirer || scenario === "queue") {
      const port = await freePort();
      workerMetrics.push(`http://127.0.0.1:${port}/metrics`);
      const child = startProcess("expirer", [process.execPath, "services/expirer/main.ts"], { ...serviceEnv, ADMIN_PORT: String(port) }, dir);
      children.push(child);
      await waitHealthy(`http://127.0.0.1:${port}/readyz`, child);
    }

    // --- the api.
    // --profile: a CPU profile of the api for the whole run (written when it stops), in the results dir.
    const bunArgs = values.profile ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${dir}`] : [];
    const apiAdminPort = await freePort();
    // Unset, the list would default to the standard worker ports, which are not this run's: without
    // workers the dashboard scrapes the api's own admin port (its one target).
    const WORKER_METRICS_URLS = workerMetrics.length > 0 ? workerMetrics.join(",") : `http://127.0.0.1:${apiAdminPort}/metrics`;
    const { child: api, baseUrl } = await startApi(loadRun, { name: "api", logDir: dir, adminPort: apiAdminPort, bunArgs, env: { ...serviceEnv, WORKER_METRICS_URLS } });
    children.push(api);
    // The dashboard asks for this run's admin token (docs/security.md); scripts/dashboard-screenshot.ts reads it here.
    console.log(`[load] live dashboard: http://127.0.0.1:${apiAdminPort}/dashboard (admin token: ${adminToken})`);

    // --- stocks and buyers.
    const { stocks, buyers } = plan(scenario, prefix, {
      stocks: Number(values.stocks),
      holdSeconds: Number(values["hold-seconds"]),
      units: values.units ? Number(values.units) : undefined,
      buyers: values.buyers ? Number(values.buyers) : undefined,
    });
    for (const { createdLater, ...s } of stocks) if (!createdLater) await adminPost(baseUrl, adminToken, "/api/stocks", s);
    const tokensFile = join(dir, "tokens.json");
    const t0 = performance.now();
    await mintTokens(tokensFile, buyers, loadRun.jwtSecret);
    console.log(`[load] ${stocks.length} stock(s) created, ${buyers} buyer tokens minted in ${Math.round(performance.now() - t0)} ms`);

    // --- k6.
    const k6Env: Record<string, string> = {
      BASE_URL: baseUrl,
      TOKENS_FILE: tokensFile,
      STOCK_IDS: stocks.map((s) => s.id).join(","),
    };
    if (scenario === "spike") Object.assign(k6Env, { BUYERS: String(buyers), UNITS: String(stocks[0]!.quantity) });
    if (scenario === "queue") Object.assign(k6Env, await prepareQueue(baseUrl, adminToken, tokensFile, stocks, buyers));
    if (values.rate) k6Env.RATE = values.rate;
    if (scenario === "steady" && values.pipeline) k6Env.FRESHNESS = "1";
    if (values.duration) k6Env.DURATION = values.duration;
    if (scenario === "browse") {
      const probe = await fetch(`${baseUrl}/api/stocks/search?q=sneaker`);
      k6Env.SEARCH = probe.status === 200 ? "1" : "0";
      console.log(`[load] search endpoint: ${probe.status === 200 ? "available" : `not available (HTTP ${probe.status}); browse runs stock reads only`}`);
    }
    for (const kv of values.env!) {
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new Error(`--env expects KEY=VALUE, got ${kv}`);
      k6Env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const warmupSeconds = Number(values.warmup ?? (scenario === "spike" ? 10 : 0));
    if (!Number.isInteger(warmupSeconds) || warmupSeconds < 0) throw new Error("--warmup takes whole seconds, e.g. 10");
    const warmup = warmupSeconds > 0 ? { seconds: warmupSeconds, stock: await createWarmupStock(baseUrl, adminToken, prefix) } : null;
    let baseline: { summary: K6Summary | null; serverCpuSeconds: number } | null = null;
    if (values.baseline) {
      if (scenario !== "spike") throw new Error("--baseline is for the spike (bare Hono has no other routes)");
      baseline = await runSpikeBaseline(dir, k6Env, warmup);
    }
    if (warmup) await warmUp(baseUrl, k6Env, warmup);
    const apiCpuBefore = cpuSeconds(api.proc.pid);
    const k6 = await runK6(`${scenario}.js`, k6Env, join(dir, `${scenario}-summary.json`), { htmlReport: true });
    const k6ok = k6.exitCode === 0;
    const apiCpu = cpuSeconds(api.proc.pid) - apiCpuBefore;
    if (baseline?.summary && k6.summary) console.log(compareSpikes({ summary: k6.summary, serverCpuSeconds: apiCpu }, { summary: baseline.summary, serverCpuSeconds: baseline.serverCpuSeconds }));
    if (!k6.summary) console.error(`[load] k6 wrote no summary (exit ${k6.exitCode})`);
    if (existsSync(htmlReportOf(k6.summaryFile))) console.log(`[load] k6 HTML report: ${htmlReportOf(k6.summaryFile)}`);

    // --- verify. Writers stop first (the expirer would keep releasing holds while we read); the
    // relay and projectors keep running so the pipeline can drain.
    for (const child of children.filter((c) => c.name === "api" || c.name === "expirer")) await child.stop();
    const options: VerifyOptions = {
      redis,
      prefix,
      layers,
      expect: k6.summary?.expect,
      deadlineMs: Number(values["verify-deadline"]) * 1000,
      countExpiredHolds: values.expirer || scenario === "queue",
    };
    if (values.pipeline) {
      const { default: postgres } = await import("postgres");
      const { createSearchClient } = await import("../shared/stores/search/mapping.ts");
      options.kafka = { brokers: KAFKA_BROKERS.split(","), topic: serviceEnv.KAFKA_TOPIC! };
      options.sql = postgres(serviceEnv.DATABASE_URL!, { max: 2, onnotice: () => {} });
      options.es = createSearchClient(ELASTICSEARCH_URL, { requestTimeoutMs: 10_000 });
      options.esIndex = serviceEnv.ELASTICSEARCH_INDEX_ALIAS!;
    }
    const report = await verify(options);
    if (scenario === "queue") {
      const room = await verifyQueue(redis, prefix, stocks[0]!, k6.summary, Number(k6Env.START_AT));
      console.log(room.lines.join("\n"));
      if (room.breaches.length > 0) report.ok = false;
    }
    await options.sql?.end({ timeout: 2 });
    await options.es?.close();
    console.log(formatReport(report));
    await Bun.write(join(dir, "verify.json"), JSON.stringify(report, null, 2));

    exitCode = k6ok && report.ok ? 0 : 1;
    console.log(
      `[load] ${scenario}: k6 ${k6ok ? "passed" : `FAILED (exit ${k6.exitCode})`}, verifier ${report.ok ? "clean" : "FAILED"} → ${exitCode === 0 ? "PASS" : "FAIL"}  (${dir})`,
    );
  } catch (err) {
    console.error(`[load] ${scenario} aborted: ${(err as Error).stack ?? String(err)}`);
    exitCode = 1;
  } finally {
    for (const child of children.reverse()) {
      const code = await child.stop();
      if (code !== 0 && code !== null) console.error(`[load] ${child.name} exited with ${code} (log: ${child.logFile})`);
    }
    if (!values.keep) {
      // The tokens are signed with this run's throwaway secret; no use keeping 1.5 MB of them.
      await unlink(join(dir, "tokens.json")).catch(() => {});
      await deleteKeysByPrefix(redis, prefix).catch((err) => console.error(`[load] cleanup redis: ${err}`));
      for (const c of cleanups) await c().catch((err) => console.error(`[load] cleanup: ${err}`));
    } else {
      console.log(`[load] --keep: Redis keys under ${prefix}: left in place (bun run verify --prefix ${prefix})`);
    }
    await redis.quit();
  }
  return exitCode;
}

process.exit(await main());
