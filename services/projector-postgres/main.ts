/** projector-postgres binary: wiring only (shared/stores/postgres/sink.ts, docs/read-side.md). */
import { projectorPostgresSchema } from "../../shared/config.ts";
import { runProjector } from "../../shared/projection/run-projector.ts";
import { createProjectorSql } from "../../shared/stores/postgres/client.ts";
import { createPostgresProjector } from "../../shared/stores/postgres/sink.ts";

await runProjector("projector-postgres", projectorPostgresSchema, ({ config, logger, registry, kafka }) => {
  // One merged transaction at a time normally; a few more while a failed merge is retried per partition.
  const sql = createProjectorSql(config.DATABASE_URL, { max: Math.min(config.PROJECTOR_CONCURRENCY, 4) + 1 });
  return { projector: createPostgresProjector({ ...kafka, sql, logger, registry }), close: () => sql.end({ timeout: 5 }) };
});
