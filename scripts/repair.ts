/**
 * `bun run repair <stockId> [<stockId> …]`: re-projects stocks from Redis truth after drift
 * (logic and why in shared/verify/repair.ts). `bun run verify` names the stocks that need it.
 *
 *   bun run repair --prefix <REDIS_KEY_PREFIX> <stockId>… [--from kafka,postgres,search] [--seen-version <n>]
 *
 * Reads the usual environment (docs/design.md §10): REDIS_URL / REDIS_CLUSTER_NODES, OUTBOX_SHARDS,
 * KAFKA_BROKERS, KAFKA_TOPIC, DATABASE_URL, ELASTICSEARCH_URL, ELASTICSEARCH_INDEX_ALIAS. --from names
 * where to look for the highest version seen downstream (default: all three). Exit 0 when every
 * snapshot was appended (the relay publishes it, the projectors apply it), 1 on a refusal (e.g. more live
 * holds than one snapshot lists: retry when they have drained), 2 on a usage error.
 */
import { parseArgs } from "node:util";
import { parseConfig, relaySchema, redisTargetFromEnv } from "../shared/config.ts";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { createRedis } from "../shared/redis/client.ts";
import { repairStock, type RepairOptions } from "../shared/verify/repair.ts";

const USAGE = "usage: bun run repair [--prefix <redis key prefix>] <stockId>… [--from kafka,postgres,search] [--seen-version <n>]";

function usage(message: string): never {
  console.error(`${message}\n${USAGE}`);
  process.exit(2);
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        prefix: { type: "string", default: process.env.REDIS_KEY_PREFIX ?? "fs" },
        from: { type: "string", default: "kafka,postgres,search" },
        "seen-version": { type: "string" },
        help: { type: "boolean", default: false },
      },
    });
  } catch (err) {
    usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length === 0) usage("name at least one stock id");
  const from = new Set(values.from.split(",").map((s) => s.trim()).filter(Boolean));
  for (const f of from) if (!["kafka", "postgres", "search"].includes(f)) usage(`--from: unknown ${f}`);
  let seenVersion: number | undefined;
  if (values["seen-version"] !== undefined) {
    seenVersion = Number(values["seen-version"]);
    if (!Number.isInteger(seenVersion) || seenVersion < 0) usage("--seen-version must be a non-negative integer");
  }
  const env = process.env;
  // The relay's config section has everything repair reads (Redis, shards, Kafka); validated the same way.
  const config = parseConfig(relaySchema, { ...env, REDIS_KEY_PREFIX: values.prefix });
  const redis = createRedis(redisTargetFromEnv(env), { lazyConnect: false });
  const closers: Array<() => Promise<unknown>> = [() => redis.quit()];
  const options: Omit<RepairOptions, "stockId"> = { redis, keys: createKeyLayout(config.REDIS_KEY_PREFIX, config.OUTBOX_SHARDS), seenVersion };
  try {
    if (from.has("kafka")) options.kafka = { brokers: config.KAFKA_BROKERS, topic: config.KAFKA_TOPIC };
    if (from.has("postgres")) {
      const { default: postgres } = await import("postgres");
      const sql = postgres(env.DATABASE_URL ?? "postgres://flashsale:flashsale@127.0.0.1:5432/flashsale", { max: 2, onnotice: () => {} });
      options.sql = sql;
      closers.push(() => sql.end({ timeout: 2 }));
    }
    if (from.has("search")) {
      const { createSearchClient } = await import("../shared/stores/search/mapping.ts");
      const es = createSearchClient(env.ELASTICSEARCH_URL ?? "http://127.0.0.1:9200", { requestTimeoutMs: 10_000 });
      options.es = es;
      options.esIndex = env.ELASTICSEARCH_INDEX_ALIAS ?? "stocks";
      closers.push(() => es.close());
    }
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
    for (const close of closers) await close().catch(() => {});
  }
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
