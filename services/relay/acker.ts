/**
 * After Kafka acknowledged a batch: dead letters, XACK and trimming, retried until Redis takes
 * them. Acks run in batch order with at most one in flight, overlapping the next read and send;
 * the relay waits for all of them (flush) before ownership changes and claims.
 */
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import { headerText } from "../../shared/kafka/event-message.ts";
import { TRACEPARENT, traceIdOf } from "../../shared/trace.ts";
import { eventIdOf, type Batch } from "./batches.ts";
import type { RelayContext } from "./context.ts";
import { errorMessage } from "./health.ts";
import { compareIds, nextId, pairs, RELAY_GROUP } from "./stream.ts";
import { DEAD_LETTER_MAX_LENGTH } from "../../shared/domain/policy.ts";

export class Acker {
  /** XACK + trim of the last sent batch (false once one failed for good, i.e. stopping with Redis down). */
  private inFlight: Promise<boolean> = Promise.resolve(true);

  constructor(private readonly ctx: RelayContext) {}

  /** Resolves when every enqueued ack is done. */
  flush(): Promise<boolean> {
    return this.inFlight;
  }

  /**
   * Queues the ack of a batch Kafka has, behind the previous one, and returns the *previous* ack's
   * outcome: so the caller runs one batch ahead, and stops (false) if an earlier ack gave up.
   */
  enqueue(batch: Batch, startedAt: number): Promise<boolean> {
    const { metrics, log } = this.ctx;
    const previous = this.inFlight;
    this.inFlight = previous.then(async (previousOk) => {
      if (!previousOk || !(await this.ackWithRetry(batch))) return false;
      for (const d of batch.dead) {
        log.error({ shard: d.entry.shard, entryId: d.entry.id, eventId: d.eventId, reason: d.reason }, "outbox entry failed validation; moved to dead-letter stream");
      }
      metrics.deadLetters.inc(batch.dead.length);
      metrics.relayed.inc(batch.messages.length);
      metrics.batches.inc();
      metrics.batchSize.observe(batch.entries.length);
      const seconds = (performance.now() - startedAt) / 1000;
      metrics.batchSeconds.observe(seconds);
      log.debug(
        { events: batch.messages.length, firstEventId: eventIdOf(batch.messages[0]), lastEventId: eventIdOf(batch.messages.at(-1)), ms: Math.round(seconds * 1000) },
        "batch relayed",
      );
      // One line per event at debug (follow a request by its trace id); skipped cheaply otherwise.
      if (log.isLevelEnabled("debug")) {
        for (const m of batch.messages) log.debug({ eventId: eventIdOf(m), traceId: traceIdOf(headerText(m.headers, TRACEPARENT)) }, "event relayed");
      }
      return true;
    });
    return previous;
  }

  private async ackWithRetry(batch: Batch): Promise<boolean> {
    const { stop, redisState } = this.ctx;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.ackAndTrim(batch);
        redisState.markUp();
        return true;
      } catch (err) {
        redisState.markDown(err);
        // Stopping with Redis down: give up; the entries stay pending and are re-sent later (duplicates, never loss).
        if (stop.stopping && attempt >= 2) return false;
        await (stop.stopping ? sleep(200) : stop.pause(backoffMs(attempt)));
      }
    }
  }

  /**
   * Dead letters + XACK + XINFO GROUPS + XPENDING in one round trip, then XTRIM in a second (all
   * keys carry the shard's hash tag, so on a cluster both go to the shard's master).
   * Trim point: the oldest entry still pending anywhere in the group (so nothing unacknowledged is
   * ever removed), or, when nothing is pending, just past the group's last-delivered id (everything
   * delivered is then acknowledged). The last-delivered id is read *before* the pending summary
   * (pipeline order is execution order): an entry delivered in between is above it, so it is safe.
   * Undelivered entries are above the last-delivered id, so they are never trimmed either.
   * Our own last acked id is a floor when the group info is unavailable.
   */
  private async ackAndTrim({ shard, entries, dead }: Batch): Promise<void> {
    const { redis, keys, consumerName, log } = this.ctx;
    const stream = keys.outbox(shard);
    const ids = entries.map((e) => e.id);
    const p = redis.pipeline();
    for (const d of dead) {
      const { id, fields } = d.entry;
      // Capped (approximately, so trimming stays O(1)): it is for inspection, not a log of record.
      p.call("XADD", keys.outboxDeadLetter(shard), "MAXLEN", "~", DEAD_LETTER_MAX_LENGTH, "*", "reason", d.reason, "sourceStream", stream, "sourceId", id, "consumer", consumerName, ...(fields ?? []));
    }
    p.call("XACK", stream, RELAY_GROUP, ...ids);
    p.call("XINFO", "GROUPS", stream);
    p.call("XPENDING", stream, RELAY_GROUP);
    const results = (await p.exec()) ?? [];
    for (const [err] of results) if (err) throw err;

    const at = dead.length;
    const groups = ((results[at + 1]![1] as unknown[]) ?? []).map(pairs);
    const summary = results[at + 2]![1] as [number, string | null, string | null, unknown];
    let floor = ids[0]!;
    for (const id of ids) if (compareIds(id, floor) > 0) floor = id;
    const delivered = groups.find((g) => g.name === RELAY_GROUP)?.["last-delivered-id"];
    if (typeof delivered === "string" && compareIds(delivered, floor) > 0) floor = delivered;
    const minId = summary[0] > 0 && summary[1] ? summary[1] : nextId(floor);
    // Trimming is housekeeping: a failure here loses nothing and the next batch trims again.
    await redis.call("XTRIM", stream, "MINID", minId).catch((err: unknown) => log.debug({ err: errorMessage(err) }, "outbox trim failed"));
  }
}
