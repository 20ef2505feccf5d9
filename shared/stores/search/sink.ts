/**
 * projector-search: Kafka stock events → Elasticsearch, one complete document per stock per batch,
 * indexed with version_type=external (version = stock version) so stale and repeated writes are
 * no-ops (shared/stores/search/writer.ts). The index behind the alias is created at start if
 * missing (shared/stores/search/mapping.ts).
 */
import type { Client } from "@elastic/elasticsearch";
import type { Registry } from "prom-client";
import type { Logger } from "../../logger.ts";
import { isElasticOutage } from "../../projection/errors.ts";
import { createProjector, type Projector, type ProjectorKafkaOptions } from "../../projection/projector.ts";
import { ensureStockIndex } from "./mapping.ts";
import { createRefresher } from "./refresher.ts";
import type { StaticFields } from "./documents.ts";
import { probeEvents } from "../../projection/probe.ts";
import { retryStart } from "../../retry.ts";
import { applyEventsToSearch, probeSearch } from "./writer.ts";

const SEARCH_PROJECTOR_GROUP = "projector-search";

export interface SearchProjectorOptions extends Omit<ProjectorKafkaOptions, "groupId"> {
  groupId?: string;
  es: Client;
  /** Where documents are written: the alias (live), or a concrete index (`target: "index"`, rebuild). */
  index: string;
  target?: "alias" | "index";
  logger: Logger;
  registry?: Registry;
  /**
   * "after-write": ask for a coalesced refresh after each bulk (refresher.ts), so documents are
   * searchable sooner and the visibility stage is measured; "interval": leave it to the index's
   * refresh_interval. Default "interval" (PROJECTOR_SEARCH_REFRESH). Only for the live alias (a rebuild's index refreshes at its swap).
   */
  refresh?: "after-write" | "interval";
  /** Least time between two refreshes this projector starts (after-write). */
  refreshMinSpacingMs?: number;
  /** The index's refresh_interval, set at start (a backstop with after-write). */
  refreshInterval?: string;
}

export function createSearchProjector(options: SearchProjectorOptions): Projector {
  const { es, index, logger } = options;
  const requireAlias = (options.target ?? "alias") === "alias";
  const knownStatics = new Map<string, StaticFields>(); // static fields never change: no mget once seen
  const refresher = requireAlias && (options.refresh ?? "interval") === "after-write" ? createRefresher(es, index, { minSpacingMs: options.refreshMinSpacingMs }) : null;
  let visible: Promise<void> = Promise.resolve();
  const projector = createProjector({
    ...options,
    groupId: options.groupId ?? SEARCH_PROJECTOR_GROUP,
    sink: {
      store: "elasticsearch",
      apply: async (events) => {
        const result = await applyEventsToSearch({ es, index, requireAlias, logger, knownStatics }, events);
        if (refresher && result.applied.length > 0) {
          visible = refresher.request();
          // A failed refresh only delays visibility (the next one, or the interval, catches up).
          visible.catch((err) => logger.warn({ err }, "refresh after write failed"));
        }
        return { applied: result.applied, duplicates: result.duplicates };
      },
      whenVisible: () => (refresher ? visible : null),
      isOutage: isElasticOutage,
      probe: () => probeSearch({ es, index, requireAlias, logger }, probeEvents()),
      ping: async () => {
        await es.cluster.health({ timeout: "1s" });
      },
    },
  });
  let waiting: string | null = null;
  let stopped = false;
  return {
    ...projector,
    async start() {
      // A cluster that is still starting (connection refused, 503) is waited for; 401/403 is not.
      if (requireAlias) {
        const concrete = await retryStart(() => ensureStockIndex(es, index, options.refreshInterval), {
          logger,
          what: `elasticsearch index behind alias ${index}`,
          stopped: () => stopped,
          onWaiting: (reason) => (waiting = reason),
        });
        logger.info({ alias: index, index: concrete }, "search index ready");
      }
      await projector.start();
    },
    async stop() {
      stopped = true;
      await projector.stop();
    },
    notReadyReason: async () => waiting ?? projector.notReadyReason(),
  };
}
