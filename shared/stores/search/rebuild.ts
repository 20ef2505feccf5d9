/**
 * `bun run rebuild search` (shared/projection/rebuild.ts runs the part every read model shares): a new
 * index `<alias>-v<N+1>` is filled; once it has everything the live one has, the live index is made
 * read-only (the live projector retries its writes as an outage), whatever it has newer is copied over
 * (external versions: only newer lands), and the alias is moved with one `_aliases` call; the live
 * projector's retry then lands in the new index. The rebuild drains what arrived meanwhile and stops.
 * The previous index stays, read-only (`--drop-old` deletes it).
 */
import type { Client } from "@elastic/elasticsearch";
import { fetchGroupOffsets } from "../../projection/offsets.ts";
import { rebuildReadModel, type RebuildCommon } from "../../projection/rebuild.ts";
import { copyNewerDocuments, createStockIndex, indicesOfAlias, nextIndexName, swapAlias } from "./mapping.ts";
import { createSearchProjector } from "./sink.ts";

export interface RebuildSearchOptions extends RebuildCommon {
  es: Client;
  alias: string;
}

export interface RebuildSearchResult {
  index: string;
  previous: string[];
  eventsReplayed: number;
  seconds: number;
}

export async function rebuildSearch(options: RebuildSearchOptions): Promise<RebuildSearchResult> {
  const { es, alias, logger } = options;
  let index = "";
  let previous: string[] = [];
  const run = await rebuildReadModel(options, () => ({
    async prepare() {
      index = await nextIndexName(es, alias);
      await createStockIndex(es, index);
      logger.info({ index }, "rebuilding the search index");
    },
    projector: (kafka) => createSearchProjector({ ...kafka, es, index, target: "index" }),
    // Swap only once the new index has everything the live one has, partition by partition: then
    // no reader sees a counter go back, and the live projector never writes a stock the new index
    // has not seen created.
    swapAt: (kafka) => () => fetchGroupOffsets(kafka, options.liveGroupId, options.topic),
    stopBeforeSwap: false,
    async swap() {
      // Freeze the live index: the live projector's writes now fail with a block (an outage to it:
      // retried, not committed), so what the old index shows is final. Copy whatever it has newer
      // than the rebuild, then swap: readers go from the old index to one at least as new, and the
      // live projector's retry lands in the new index through the alias.
      const old = (await indicesOfAlias(es, alias)).filter((i) => i !== index);
      if (old.length > 0) {
        await es.indices.addBlock({ index: old.join(","), block: "write" });
        await es.indices.refresh({ index: old.join(",") });
        for (const from of old) {
          const { copied, scanned } = await copyNewerDocuments(es, from, index);
          logger.info({ from, copied, scanned }, "copied documents the live projector had newer");
        }
      }
      await es.indices.refresh({ index });
      previous = await swapAlias(es, alias, index);
      logger.info({ alias, index, previous }, "alias swapped: readers now see the rebuilt index (the previous one stays read-only)");
    },
  }));
  if (options.dropOld && previous.length > 0) await es.indices.delete({ index: previous });
  return { index, previous, eventsReplayed: run.eventsReplayed, seconds: run.seconds };
}

/** What `bun run rebuild search` prints. */
export function describeSearchRebuild(result: RebuildSearchResult, alias: string, dropOld: boolean): string {
  return (
    `Search index rebuilt from ${result.eventsReplayed} events in ${result.seconds.toFixed(1)} s: ${alias} → ${result.index}` +
    (result.previous.length > 0 && !dropOld ? ` (previous ${result.previous.join(", ")} kept; delete it when satisfied)` : "")
  );
}
