/**
 * `bun run verify`: checks the invariants after a load test (logic in shared/verify/).
 *
 *   bun run verify --prefix <REDIS_KEY_PREFIX> [--layers redis,kafka,postgres,search]
 *                  [--k6-summary loadtests/results/<file>.json] [--stocks id,id] [--outbox auto|full|tail|skip]
 *                  [--deadline 60] [--json]
 *
 * Redis is REDIS_URL, or the cluster of REDIS_CLUSTER_NODES when set (every master is scanned).
 * Layers beyond redis read the usual environment (docs/design.md §10): KAFKA_BROKERS, KAFKA_TOPIC,
 * DATABASE_URL, ELASTICSEARCH_URL, ELASTICSEARCH_INDEX_ALIAS. Exit 0 when every invariant holds,
 * 1 when one does not (the findings name the stocks), 2 on a usage error.
 */
import { parseCommandLine, usageError } from "../shared/cli.ts";
import { usageOnConfigError, redisTargetFromEnv } from "../shared/config.ts";
import { createRedis } from "../shared/redis/client.ts";
import { openDownstream } from "../shared/verify/downstream.ts";
import { ALL_LAYERS, formatReport, type Layer } from "../shared/verify/report.ts";
import { expectationFromSummary, verify, type LoadExpectation, type VerifyOptions } from "../shared/verify/verify.ts";

const USAGE = `usage: bun run verify --prefix <redis key prefix> [--layers ${ALL_LAYERS.join(",")}]
       [--k6-summary <k6 summary json>] [--expect-units <n>] [--stocks <id,id>] [--outbox auto|full|tail|skip]
       [--deadline <seconds>] [--json]`;

const usage: (message: string) => never = (message) => usageError(USAGE, message);

export async function main(argv: string[]): Promise<number> {
  const { values } = parseCommandLine(USAGE, {
    args: argv,
    options: {
      prefix: { type: "string", default: process.env.REDIS_KEY_PREFIX },
      layers: { type: "string", default: "redis" },
      "k6-summary": { type: "string" },
      "expect-units": { type: "string" },
      stocks: { type: "string" },
      outbox: { type: "string", default: "auto" },
      deadline: { type: "string", default: "60" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.prefix) usage("--prefix (or REDIS_KEY_PREFIX) is required");
  const layers = values.layers.split(",").map((l) => l.trim()).filter(Boolean) as Layer[];
  for (const l of layers) if (!ALL_LAYERS.includes(l)) usage(`unknown layer ${l} (known: ${ALL_LAYERS.join(", ")})`);
  if (!layers.includes("redis")) layers.unshift("redis");
  const outbox = values.outbox as VerifyOptions["outbox"];
  if (!["auto", "full", "tail", "skip"].includes(outbox!)) usage(`--outbox must be auto, full, tail or skip`);
  const deadlineSeconds = Number(values.deadline);
  if (!Number.isFinite(deadlineSeconds) || deadlineSeconds < 0) usage("--deadline must be a number of seconds");

  let expect: LoadExpectation | undefined;
  if (values["k6-summary"]) expect = expectationFromSummary(await Bun.file(values["k6-summary"]).json());
  if (values["expect-units"] !== undefined) {
    const n = Number(values["expect-units"]);
    if (!Number.isInteger(n) || n < 0) usage("--expect-units must be a non-negative integer");
    expect = { unitsAllocated: n, unitsReleased: 0 };
  }

  const env = process.env;
  const redis = createRedis(redisTargetFromEnv(env), { lazyConnect: false });
  const downstream = await openDownstream(layers, env);
  const options: VerifyOptions = {
    redis,
    prefix: values.prefix,
    layers,
    outbox,
    expect,
    stockIds: values.stocks ? values.stocks.split(",").map((s) => s.trim()).filter(Boolean) : undefined,
    deadlineMs: deadlineSeconds * 1000,
    kafka: downstream.kafka,
    sql: downstream.sql,
    readModels: downstream.readModels,
  };
  try {
    const report = await verify(options);
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return report.ok ? 0 : 1;
  } finally {
    await downstream.close();
    await redis.quit().catch(() => {});
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)).catch(usageOnConfigError));
