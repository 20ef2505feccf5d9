/**
 * projector-postgres: Kafka stock events → PostgreSQL read models (stock_events, orders, stocks,
 * sales_by_minute), one transaction per batch (shared/stores/postgres/writer.ts), offsets
 * committed after the transaction commits. After each batch, a NOTIFY tells the api which stock
 * versions are in (progress.ts: read-your-writes).
 */
import type postgres from "postgres";
import type { Registry } from "prom-client";
import type { Logger } from "../../logger.ts";
import { isPostgresOutage } from "../../projection/errors.ts";
import { createProjector, type Projector, type ProjectorKafkaOptions } from "../../projection/projector.ts";
import { probeEvents } from "../../projection/probe.ts";
import { notifyProgress } from "./progress.ts";
import { applyEventsInTransaction, applyEventsToPostgres } from "./writer.ts";

const POSTGRES_PROJECTOR_GROUP = "projector-postgres";

export interface PostgresProjectorOptions extends Omit<ProjectorKafkaOptions, "groupId"> {
  groupId?: string;
  /** Tables are found through this connection's search_path (the rebuild points it at a new schema). */
  sql: postgres.Sql;
  logger: Logger;
  registry?: Registry;
}

export function createPostgresProjector(options: PostgresProjectorOptions): Projector {
  const { sql } = options;
  return createProjector({
    ...options,
    groupId: options.groupId ?? POSTGRES_PROJECTOR_GROUP,
    sink: {
      store: "postgresql",
      apply: async (events) => {
        const result = await applyEventsToPostgres(sql, events);
        // After the commit: wakes the api's reads waiting on a Consistency-Token (progress.ts). Not
        // worth failing a committed batch over: a lost notification only makes those reads `stale`.
        await notifyProgress(sql, events).catch((err: Error) => options.logger.warn({ err: err.message }, "progress notification failed"));
        return result;
      },
      isOutage: isPostgresOutage,
      probe: () => probePostgres(sql),
      ping: async () => {
        await sql`SELECT 1`;
      },
    },
  });
}

class ProbeRollback extends Error {}

/** The probe lifecycle (shared/projection/probe.ts) through the real statements, then rolled back. */
export async function probePostgres(sql: postgres.Sql): Promise<void> {
  try {
    await sql.begin(async (tx) => {
      await applyEventsInTransaction(tx, probeEvents());
      throw new ProbeRollback();
    });
  } catch (err) {
    if (!(err instanceof ProbeRollback)) throw err;
  }
}
