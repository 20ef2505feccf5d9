/** projector-search binary: wiring only (shared/stores/search/sink.ts, docs/read-side.md). */
import { projectorSearchSchema } from "../../shared/config.ts";
import { runProjector } from "../../shared/projection/run-projector.ts";
import { createSearchClient } from "../../shared/stores/search/mapping.ts";
import { createSearchProjector } from "../../shared/stores/search/sink.ts";

await runProjector("projector-search", projectorSearchSchema, ({ config, logger, registry, kafka }) => {
  const es = createSearchClient(config.ELASTICSEARCH_URL, { requestTimeoutMs: 30_000, maxRetries: 1 });
  return {
    projector: createSearchProjector({
      ...kafka,
      es,
      index: config.ELASTICSEARCH_INDEX_ALIAS,
      refresh: config.PROJECTOR_SEARCH_REFRESH,
      refreshMinSpacingMs: config.PROJECTOR_SEARCH_REFRESH_SPACING_MS,
      refreshInterval: config.ELASTICSEARCH_REFRESH_INTERVAL,
      logger,
      registry,
    }),
    close: () => es.close(),
  };
});
