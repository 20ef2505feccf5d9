/**
 * Rebuild a read model from the whole topic, without downtime for readers (docs/read-side.md), for any
 * read model of the registry (shared/read-models.ts): `bun run rebuild <name>` (scripts/rebuild.ts rebuildModel).
 *
 * What every read model shares is here: a temporary consumer group that starts at the earliest offset
 * (`<live group>.rebuild-<stamp>`), a projector filling a fresh copy next to the live one, waiting until
 * it has caught up, the one-step switch of readers to the copy, deleting the temporary group. The live
 * projector keeps running throughout (its group is not reset: resetting it would mean stopping it and
 * showing readers an empty model). What a store does (a schema, an index, …) is its RebuildStore:
 * shared/stores/postgres/rebuild.ts and shared/stores/search/rebuild.ts.
 *
 * Keep the topic's retention unlimited (retention.ms=-1): a rebuild can only replay what Kafka kept.
 */
import type { Kafka } from "kafkajs";
import { createKafka } from "../kafka/client.ts";
import type { Logger } from "../logger.ts";
import { deleteGroup, fetchHighWatermarks, remaining, waitForGroup, type PartitionOffsets } from "./offsets.ts";
import type { Projector, ProjectorKafkaOptions } from "./projector.ts";


/** What `bun run rebuild` gives every read model's rebuild (shared/projection/rebuild.ts runs the shared part). */
export interface RebuildCommon {
  brokers: string[];
  topic: string;
  dlqTopic?: string;
  /** The live projector's group (the rebuild group is named after it). */
  liveGroupId: string;
  dropOld?: boolean;
  logger: Logger;
  /** Swap once the rebuild is at most this many messages behind the topic's end (where the store waits for the end). */
  maxLagToSwap?: number;
  timeoutMs?: number;
}

/** What one store does in a rebuild; rebuildReadModel calls these in this order. */
export interface RebuildStore {
  /** Creates the empty copy next to the live one (before the topic's end is read). */
  prepare(): Promise<void>;
  /** The projector that fills the copy, in the rebuild's own consumer group. */
  projector(kafka: ProjectorKafkaOptions & { logger: Logger }): Projector;
  /** Where the rebuild must be before the swap; default: the topic's end when it started. */
  swapAt?(kafka: Kafka): () => Promise<PartitionOffsets>;
  /**
   * true: the copy's projector stops before the swap (the swap itself copies what the live one applied
   * since); false: it runs on past the swap and drains what arrived around it.
   */
  readonly stopBeforeSwap: boolean;
  /** Readers (and the live projector) switch to the copy, in one step. */
  swap(): Promise<void>;
  /** Frees what projector() opened; called once the copy's projector has stopped. */
  close?(): Promise<void>;
}

export interface RebuildRun {
  eventsReplayed: number;
  seconds: number;
}

const stampNow = () => new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14) + Math.random().toString(36).slice(2, 5);

/** Replays the topic into `store(stamp)`'s copy and swaps readers over to it. */
export async function rebuildReadModel(options: RebuildCommon, store: (stamp: string) => RebuildStore): Promise<RebuildRun> {
  const started = performance.now();
  const { logger, topic, timeoutMs } = options;
  const stamp = stampNow();
  const groupId = `${options.liveGroupId}.rebuild-${stamp}`;
  const kafka = createKafka({ brokers: options.brokers, clientId: "rebuild", logger });
  const copy = store(stamp);
  await copy.prepare();
  const history = await fetchHighWatermarks(kafka, topic);
  const total = remaining(new Map(), history);
  logger.info({ groupId, events: total }, "rebuilding a read model into a fresh copy");

  const projector = copy.projector({ brokers: options.brokers, topic, dlqTopic: options.dlqTopic, groupId, logger });
  let running = true;
  const stop = async () => {
    if (!running) return;
    running = false;
    await projector.stop();
    await copy.close?.();
  };
  await projector.start();
  try {
    await waitForGroup(kafka, groupId, topic, history, { timeoutMs, onProgress: (left) => logger.info({ left, of: total }, "replaying") });
    if (copy.swapAt) await waitForGroup(kafka, groupId, topic, copy.swapAt(kafka), { timeoutMs });
    if (copy.stopBeforeSwap) await stop();
    await copy.swap();
    // What arrived around the swap: the rebuild writes it too (a no-op where the live one was first).
    if (running) await waitForGroup(kafka, groupId, topic, await fetchHighWatermarks(kafka, topic), { timeoutMs });
  } finally {
    await stop();
  }
  await deleteGroup(kafka, groupId).catch((err) => logger.warn({ err, groupId }, "could not delete the rebuild group"));
  return { eventsReplayed: total, seconds: (performance.now() - started) / 1000 };
}
