/**
 * projector-search: Kafka stock events → Elasticsearch, one complete document per stock per batch,
 * indexed with version_type=external (version = stock version) so stale and repeated writes are
 * no-ops (shared/stores/search/writer.ts). The index behind the alias is created at start if
 * missing (shared/stores/search/mapping.ts).
 */
import type { Client } from "@elastic/elasticsearch";
import type { Registry } from "prom-client";
import { backoffMs, sleep } from "../../lifecycle.ts";
import type { Logger } from "../../logger.ts";
import { isElasticOutage } from "../../projection/errors.ts";
import { createProjector, type Projector, type ProjectorKafkaOptions } from "../../projection/projector.ts";
import { ensureStockIndex } from "./mapping.ts";
import type { StaticFields } from "./documents.ts";
import { probeEvents } from "../../projection/probe.ts";
import { applyEventsToSearch, probeSearch } from "./writer.ts";

export const SEARCH_PROJECTOR_GROUP = "projector-search";

export interface SearchProjectorOptions extends Omit<ProjectorKafkaOptions, "groupId"> {
  groupId?: string;
  es: Client;
  /** Where documents are written: the alias (live), or a concrete index (`target: "index"`, rebuild). */
  index: string;
  target?: "alias" | "index";
  logger: Logger;
  registry?: Registry;
}

export function createSearchProjector(options: SearchProjectorOptions): Projector {
  const { es, index, logger } = options;
  const requireAlias = (options.target ?? "alias") === "alias";
  const knownStatics = new Map<string, StaticFields>(); // static fields never change: no mget once seen
  const projector = createProjector({
    ...options,
    groupId: options.groupId ?? SEARCH_PROJECTOR_GROUP,
    sink: {
      apply: async (events) => {
        const result = await applyEventsToSearch({ es, index, requireAlias, logger, knownStatics }, events);
        return { applied: result.applied, duplicates: result.duplicates };
      },
      isOutage: isElasticOutage,
      probe: () => probeSearch({ es, index, requireAlias, logger }, probeEvents()),
      ping: async () => {
        await es.cluster.health({ timeout: "1s" });
      },
    },
  });
  return {
    ...projector,
    async start() {
      // A cluster that is still starting is an outage like any other: wait for it.
      for (let attempt = 0; requireAlias; attempt++) {
        try {
          const concrete = await ensureStockIndex(es, index);
          logger.info({ alias: index, index: concrete }, "search index ready");
          break;
        } catch (err) {
          if (!isElasticOutage(err)) throw err;
          logger.warn({ err, attempt }, "elasticsearch unavailable at start, retrying");
          await sleep(backoffMs(attempt));
        }
      }
      await projector.start();
    },
  };
}
