/**
 * Rebuild a read model from the whole topic, without downtime for readers (docs/read-side.md):
 *
 *   bun run rebuild <read model> [--drop-old]      (postgres, search: the names in shared/read-models.ts)
 *
 * Builds a fresh copy next to the live one with a temporary consumer group that starts at the earliest
 * offset, waits until it has caught up, switches readers over in one atomic step, then deletes the
 * temporary group (shared/projection/rebuild.ts; what each store does: shared/stores/<store>/rebuild.ts).
 * `--drop-old` deletes the previous copy. Reads the usual environment (docs/design.md §10): KAFKA_BROKERS,
 * KAFKA_TOPIC, KAFKA_DLQ_TOPIC, PROJECTOR_GROUP_ID, DATABASE_URL, ELASTICSEARCH_URL, ELASTICSEARCH_INDEX_ALIAS.
 * Exit 0 when rebuilt, 1 on a failure, 2 on a usage error.
 */
import { parseConfig, rebuildSchema, usageOnConfigError } from "../shared/config.ts";
import { createLogger, type Logger } from "../shared/logger.ts";
import { READ_MODEL_NAMES, READ_MODELS, type ReadModel } from "../shared/read-models.ts";

const USAGE = `usage: bun run rebuild ${READ_MODEL_NAMES.join("|")} [--drop-old]`;

/**
 * `bun run rebuild <name>`: one read model of the registry, with the Kafka and store addresses of the
 * typed config (shared/config.ts rebuildSchema) and its live group (PROJECTOR_GROUP_ID, else its
 * projector's name). Returns what the operator is told.
 */
export function rebuildModel(
  model: ReadModel,
  options: { env?: Record<string, string | undefined>; dropOld?: boolean; logger: Logger; timeoutMs?: number },
): Promise<string> {
  const config = parseConfig(rebuildSchema, options.env ?? process.env);
  return model.rebuild(config, {
    brokers: config.KAFKA_BROKERS,
    topic: config.KAFKA_TOPIC,
    dlqTopic: config.KAFKA_DLQ_TOPIC,
    liveGroupId: config.PROJECTOR_GROUP_ID ?? model.service,
    dropOld: options.dropOld,
    logger: options.logger,
    timeoutMs: options.timeoutMs,
  });
}

async function main(argv: string[]): Promise<number> {
  const [target, ...flags] = argv;
  const model = READ_MODELS.find((m) => m.name === target);
  const unknown = flags.filter((f) => f !== "--drop-old");
  if (!model || unknown.length > 0) {
    console.error(unknown.length > 0 ? `unknown option ${unknown[0]}\n${USAGE}` : USAGE);
    return 2;
  }
  const logger = createLogger("rebuild", process.env.LOG_LEVEL ?? "info");
  console.log(await rebuildModel(model, { dropOld: flags.includes("--drop-old"), logger }));
  return 0;
}

if (import.meta.main) {
  main(process.argv.slice(2))
    .catch(usageOnConfigError)
    .then(
      (code) => process.exit(code),
      (err: unknown) => {
        console.error(err instanceof Error ? (err.stack ?? err.message) : err);
        process.exit(1);
      },
    );
}
