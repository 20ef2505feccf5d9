/**
 * The downstream stores an operator's tool reads (`bun run verify`, `bun run repair`): Kafka's
 * address, a small PostgreSQL pool and an Elasticsearch client, only for the layers asked for,
 * from the one typed config (shared/config.ts `downstreamSchema`). close() ends what was opened.
 */
import type { Client } from "@elastic/elasticsearch";
import type postgres from "postgres";
import { downstreamSchema, parseConfig } from "../config.ts";

export interface Downstream {
  kafka?: { brokers: string[]; topic: string };
  sql?: postgres.Sql;
  es?: Client;
  esIndex?: string;
  close(): Promise<void>;
}

/** `layers` may name others too (redis, …): only the downstream ones are opened. */
export async function openDownstream(layers: Iterable<string>, env: Record<string, string | undefined> = process.env): Promise<Downstream> {
  const wanted = new Set<string>(layers);
  const config = parseConfig(downstreamSchema, env);
  const closers: Array<() => Promise<unknown>> = [];
  const out: Downstream = {
    async close() {
      for (const close of closers) await close().catch(() => {});
    },
  };
  if (wanted.has("kafka")) out.kafka = { brokers: config.KAFKA_BROKERS, topic: config.KAFKA_TOPIC };
  if (wanted.has("postgres")) {
    const { default: connect } = await import("postgres");
    const sql = connect(config.DATABASE_URL, { max: 2, onnotice: () => {} });
    out.sql = sql;
    closers.push(() => sql.end({ timeout: 2 }));
  }
  if (wanted.has("search")) {
    const { createSearchClient } = await import("../stores/search/mapping.ts");
    const es = createSearchClient(config.ELASTICSEARCH_URL, { requestTimeoutMs: 10_000 });
    out.es = es;
    out.esIndex = config.ELASTICSEARCH_INDEX_ALIAS;
    closers.push(() => es.close());
  }
  return out;
}
