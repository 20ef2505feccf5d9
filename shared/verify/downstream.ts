/**
 * The downstream stores an operator's tool reads (`bun run verify`, `bun run repair`): Kafka's
 * address, and every read model of the registry (shared/read-models.ts) that `layers` names, opened
 * by its own `open()` from the one typed config (shared/config.ts `downstreamSchema`). PostgreSQL also
 * gets a small pool of its own for verify's detail check (event rows, orders). close() ends what was opened.
 */
import type postgres from "postgres";
import { downstreamSchema, parseConfig } from "../config.ts";
import { readModelsNamed, type ReadModelReader } from "../read-models.ts";

export interface Downstream {
  kafka?: { brokers: string[]; topic: string };
  sql?: postgres.Sql;
  readModels: ReadModelReader[];
  close(): Promise<void>;
}

/** `layers` may name others too (redis, …): only the downstream ones are opened. */
export async function openDownstream(layers: Iterable<string>, env: Record<string, string | undefined> = process.env): Promise<Downstream> {
  const wanted = new Set<string>(layers);
  const config = parseConfig(downstreamSchema, env);
  const closers: Array<() => Promise<unknown>> = [];
  const out: Downstream = {
    readModels: [],
    async close() {
      for (const close of closers) await close().catch(() => {});
    },
  };
  if (wanted.has("kafka")) out.kafka = { brokers: config.KAFKA_BROKERS, topic: config.KAFKA_TOPIC };
  for (const model of readModelsNamed(wanted)) {
    const reader = await model.open(config);
    out.readModels.push(reader);
    closers.push(() => reader.close());
  }
  if (wanted.has("postgres")) {
    const { default: connect } = await import("postgres");
    const sql = connect(config.DATABASE_URL, { max: 2, onnotice: () => {} });
    out.sql = sql;
    closers.push(() => sql.end({ timeout: 2 }));
  }
  return out;
}
