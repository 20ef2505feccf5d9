/**
 * Group commit across partitions. kafkajs hands a fetch's batches to eachBatch one partition at a
 * time (up to partitionsConsumedConcurrently at once); applied separately, twelve small batches cost
 * twelve transactions (or bulks) and the next fetch waits for all of them. This sink wrapper merges
 * the apply calls that arrive while the store is busy (or within the same tick) into one call of
 * the underlying sink — one transaction, one bulk — and hands each caller its share of the result.
 *
 * Stocks never span partitions (key = stock id), so merging batches of different partitions changes
 * nothing about per-stock order. If a merged call fails, each caller's events are applied again on
 * their own, so errors stay attributable (poison isolation in batch.ts works per partition).
 */
import type { StockEvent } from "../domain/events.ts";
import type { ProjectionSink, SinkResult } from "./batch.ts";

interface Waiting {
  events: StockEvent[];
  resolve: (result: SinkResult) => void;
  reject: (err: unknown) => void;
}

export function combiningSink<S extends ProjectionSink>(sink: S, options: { maxEvents?: number } = {}): S {
  const maxEvents = options.maxEvents ?? 10_000;
  const queue: Waiting[] = [];
  let busy = false;

  function share(result: SinkResult, part: Waiting): SinkResult {
    const mine = new Set(part.events.map((e) => e.eventId));
    const applied = result.applied.filter((e) => mine.has(e.eventId));
    return { applied, duplicates: part.events.length - applied.length };
  }

  async function flush(): Promise<void> {
    busy = true;
    try {
      while (queue.length > 0) {
        // Take whole calls up to maxEvents (always at least one).
        const take: Waiting[] = [];
        let size = 0;
        while (queue.length > 0 && (take.length === 0 || size + queue[0]!.events.length <= maxEvents)) {
          const next = queue.shift()!;
          take.push(next);
          size += next.events.length;
        }
        if (take.length === 1) {
          const only = take[0]!;
          await sink.apply(only.events).then(only.resolve, only.reject);
          continue;
        }
        try {
          const result = await sink.apply(take.flatMap((w) => w.events));
          for (const part of take) part.resolve(share(result, part));
        } catch {
          // Attribute the failure: each caller's events on their own.
          await Promise.all(take.map((part) => sink.apply(part.events).then(part.resolve, part.reject)));
        }
      }
    } finally {
      busy = false;
    }
  }

  return {
    ...sink,
    apply(events: StockEvent[]): Promise<SinkResult> {
      return new Promise<SinkResult>((resolve, reject) => {
        queue.push({ events, resolve, reject });
        // Let the other partitions' calls of the same fetch join before the first flush.
        if (!busy) {
          busy = true;
          setImmediate(() => void flush());
        }
      });
    },
  };
}
