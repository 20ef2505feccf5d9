/**
 * `bun run repair <stockId> [<stockId> …]`: re-projects stocks from Redis truth after drift
 * (logic and why in shared/verify/repair.ts). `bun run verify` names the stocks that need it.
 *
 *   bun run repair --prefix <REDIS_KEY_PREFIX> <stockId>… [--from kafka,postgres,search] [--seen-version <n>]
 *
 * Reads the usual environment (docs/design.md §10): REDIS_URL / REDIS_CLUSTER_NODES, OUTBOX_SHARDS,
 * KAFKA_BROKERS, KAFKA_TOPIC, DATABASE_URL, ELASTICSEARCH_URL, ELASTICSEARCH_INDEX_ALIAS. --from names
 * where to look for the highest version seen downstream (default: Kafka and every read model of shared/read-models.ts). Exit 0 when every
 * snapshot was appended (the relay publishes it, the projectors apply it), 1 on a refusal (e.g. more live
 * holds than one snapshot lists: retry when they have drained), 2 on a usage error.
 */
import { parseCommandLine, usageError } from "../shared/cli.ts";
import { usageOnConfigError, parseConfig, relaySchema, redisTargetFromEnv } from "../shared/config.ts";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { createRedis } from "../shared/redis/client.ts";
import { openDownstream } from "../shared/verify/downstream.ts";
import { READ_MODEL_NAMES } from "../shared/read-models.ts";
import { repairStock, type RepairOptions } from "../shared/verify/repair.ts";

const SOURCES = ["kafka", ...READ_MODEL_NAMES].join(",");
const USAGE = `usage: bun run repair [--prefix <redis key prefix>] <stockId>… [--from ${SOURCES}] [--seen-version <n>]`;

const usage: (message: string) => never = (message) => usageError(USAGE, message);

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(USAGE, {
    args: argv,
    allowPositionals: true,
    options: {
      prefix: { type: "string", default: process.env.REDIS_KEY_PREFIX ?? "fs" },
      from: { type: "string", default: SOURCES },
      "seen-version": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length === 0) usage("name at least one stock id");
  const from = new Set(values.from.split(",").map((s) => s.trim()).filter(Boolean));
  for (const f of from) if (f !== "kafka" && !READ_MODEL_NAMES.includes(f)) usage(`--from: unknown ${f} (known: kafka, ${READ_MODEL_NAMES.join(", ")})`);
  let seenVersion: number | undefined;
  if (values["seen-version"] !== undefined) {
    seenVersion = Number(values["seen-version"]);
    if (!Number.isInteger(seenVersion) || seenVersion < 0) usage("--seen-version must be a non-negative integer");
  }
  const env = process.env;
  // The relay's config section has everything repair reads (Redis, shards, Kafka); validated the same way.
  const config = parseConfig(relaySchema, { ...env, REDIS_KEY_PREFIX: values.prefix });
  const redis = createRedis(redisTargetFromEnv(env), { lazyConnect: false });
  const downstream = await openDownstream(from, env);
  const options: Omit<RepairOptions, "stockId"> = {
    redis,
    keys: createKeyLayout(config.REDIS_KEY_PREFIX, config.OUTBOX_SHARDS),
    seenVersion,
    kafka: downstream.kafka,
    readModels: downstream.readModels,
  };
  try {
    let failed = 0;
    for (const stockId of positionals) {
      try {
        const r = await repairStock({ ...options, stockId });
        console.log(
          `${stockId}: StockSnapshot at v${r.snapshotVersion} appended (Redis was at v${r.previousVersion}, highest seen downstream v${r.seenVersion}, ` +
            `${r.liveHolds} live holds listed); the relay publishes it, the projectors apply it`,
        );
      } catch (err) {
        failed++;
        console.error(`${stockId}: ${(err as Error).message}`);
      }
    }
    return failed === 0 ? 0 : 1;
  } finally {
    await downstream.close();
    await redis.quit().catch(() => {});
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)).catch(usageOnConfigError));
