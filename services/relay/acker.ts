/**
 * After Kafka acknowledged a batch: dead letters, XACK and trimming, retried until Redis takes
 * them. Acks of up to three transactions run at once (shards in parallel, each shard's batches in
 * order), overlapping the next read and send;
 * the relay waits for all of them (flush) before ownership changes and claims.
 *
 * Trimming also runs on its own for owned shards that went quiet with acknowledged entries possibly
 * left behind (tidy, called every heartbeat): the trim after an ack is the only other one, so
 * without it a shard whose last trim did not happen or stopped short stays untrimmed until new
 * traffic arrives. Causes: the relay whose XACK was the shard's last one died before its XTRIM
 * (kill -9 between the two round trips; the next owner never acks anything there, so never trims),
 * its XTRIM failed, or the trim stopped at an entry pending elsewhere that was acknowledged later
 * by a relay that then died or failed to trim.
 */
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import { headerText } from "../../shared/kafka/event-message.ts";
import { TRACEPARENT, traceIdOf } from "../../shared/trace.ts";
import { eventIdOf, type Batch } from "./batches.ts";
import type { RelayContext } from "./context.ts";
import { errorMessage } from "./health.ts";
import { heartbeatMs } from "./ownership.ts";
import { compareIds, nextId, pairs, RELAY_GROUP } from "./stream.ts";
import { DEAD_LETTER_MAX_LENGTH } from "../../shared/domain/policy.ts";

/**
 * How many transactions' acks may be under way at once. The relay sends the next transaction while
 * earlier ones are acknowledged; it waits only when this many are still acking (an ack is one Redis
 * round trip per shard, which on a loaded machine took longer than a whole Kafka transaction).
 */
const MAX_ACK_GROUPS_IN_FLIGHT = 3;

export class Acker {
  /** Every ack and tidy enqueued so far, settled or not (false once one failed for good, i.e. stopping with Redis down). */
  private inFlight: Promise<boolean> = Promise.resolve(true);
  /** The ack groups not yet waited for by the caller, oldest first. */
  private readonly unawaited: Promise<boolean>[] = [];
  /**
   * Shards whose last trim may have left acknowledged entries behind (it stopped at a pending
   * entry, failed, or the shard was just acquired), with when that trim ran (0 = never). A trim that
   * found nothing pending removes the shard: everything left is then undelivered, and its own ack trims it.
   */
  private readonly untrimmed = new Map<number, number>();
  private tidying = false;
  /** A shard is tidied once no trim has run on it for this long (so never on the hot path). */
  private readonly quietMs: number;

  constructor(private readonly ctx: RelayContext) {
    this.quietMs = heartbeatMs(ctx.cfg.RELAY_LEASE_MS);
  }

  /** Resolves when every enqueued ack is done. */
  flush(): Promise<boolean> {
    return this.inFlight;
  }

  /** Just acquired: the previous owner may have acknowledged its last batch without trimming (killed in between). */
  acquired(shard: number): void {
    this.untrimmed.set(shard, 0);
  }

  /**
   * Starts acknowledging batches Kafka has (one transaction's: any shards) at once, alongside the
   * groups still under way, and returns when fewer than MAX_ACK_GROUPS_IN_FLIGHT are left: false if
   * one of them gave up (the caller stops). Within a group the shards are acknowledged in parallel
   * (one round trip each, pipelined), each shard's batches in order. Acks of different groups may
   * land in any order: XACK is per entry, and trim() is safe whatever has been acknowledged.
   */
  enqueue(batches: readonly Batch[], startedAt: number): Promise<boolean> {
    const group = this.ackGroup(batches, startedAt);
    const earlier = this.inFlight;
    this.inFlight = Promise.all([earlier, group]).then(([a, b]) => a && b);
    this.unawaited.push(group);
    const due = this.unawaited.splice(0, Math.max(0, this.unawaited.length - (MAX_ACK_GROUPS_IN_FLIGHT - 1)));
    return Promise.all(due).then((results) => !results.includes(false));
  }

  private async ackGroup(batches: readonly Batch[], startedAt: number): Promise<boolean> {
    const ackStarted = performance.now();
    const byShard = new Map<number, Batch[]>();
    for (const b of batches) byShard.set(b.shard, [...(byShard.get(b.shard) ?? []), b]);
    const results = await Promise.all(
      [...byShard.values()].map(async (list) => {
        for (const batch of list) if (!(await this.ackWithRetry(batch))) return false;
        return true;
      }),
    );
    if (results.includes(false)) return false;
    this.ctx.metrics.stepSeconds.observe({ step: "ack" }, (performance.now() - ackStarted) / 1000);
    for (const batch of batches) this.acknowledged(batch, startedAt);
    return true;
  }

  private acknowledged(batch: Batch, startedAt: number): void {
    const { metrics, log } = this.ctx;
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
  }

  /**
   * Trims those of `shards` (the ones we hold) whose last trim may have left something and that
   * had no trim for a heartbeat. Queued behind the acks (so it never overlaps one and the shard's
   * bookkeeping stays in order); a failure leaves the shard for the next heartbeat. Costs nothing
   * while every shard's last trim was complete, and nothing on a busy shard (its acks trim it).
   */
  tidy(shards: Iterable<number>): void {
    if (this.tidying || this.ctx.stop.stopping) return;
    const now = Date.now();
    const due = [...shards].filter((s) => {
      const at = this.untrimmed.get(s);
      return at !== undefined && now - at >= this.quietMs;
    });
    if (due.length === 0) return;
    this.tidying = true;
    this.inFlight = this.inFlight.then(async (ok) => {
      for (const shard of due) {
        if (this.ctx.stop.stopping) break;
        try {
          const p = this.ctx.redis.pipeline();
          p.call("XINFO", "GROUPS", this.ctx.keys.outbox(shard));
          p.call("XPENDING", this.ctx.keys.outbox(shard), RELAY_GROUP);
          const results = (await p.exec()) ?? [];
          for (const [err] of results) if (err) throw err;
          const trimmed = await this.trim(shard, results[0]![1], results[1]![1], undefined);
          if (trimmed > 0) this.ctx.log.debug({ shard, trimmed }, "quiet shard trimmed");
        } catch (err) {
          this.untrimmed.set(shard, Date.now());
          this.ctx.log.debug({ shard, err: errorMessage(err) }, "quiet shard trim failed");
        }
      }
      this.tidying = false;
      return ok;
    });
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
   * keys carry the shard's hash tag, so on a cluster both go to the shard's master). The ack is done
   * after the first: the XTRIM is not awaited (it is safe whenever it runs, see trim(); commands on
   * one connection run in order, so a later trim never lands before an earlier one), so the relay's
   * next transaction waits for one round trip per ack, not two.
   */
  private async ackAndTrim({ shard, entries, dead }: Batch): Promise<void> {
    const { redis, keys, consumerName } = this.ctx;
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
    let acked = ids[0]!;
    for (const id of ids) if (compareIds(id, acked) > 0) acked = id;
    // Trimming is housekeeping: a failure here loses nothing; tidy() (or the next batch) trims again.
    void this.trim(shard, results[dead.length + 1]![1], results[dead.length + 2]![1], acked).catch((err: unknown) => {
      this.untrimmed.set(shard, Date.now());
      this.ctx.log.debug({ shard, err: errorMessage(err) }, "outbox trim failed");
    });
  }

  /**
   * XTRIM MINID from an XINFO GROUPS and an XPENDING (summary) reply read in that order, and
   * records whether the trim may have left acknowledged entries. Returns how many entries it removed.
   * Trim point: the oldest entry still pending anywhere in the group (so nothing unacknowledged is
   * ever removed), or, when nothing is pending, just past the group's last-delivered id (everything
   * delivered is then acknowledged). The last-delivered id is read *before* the pending summary
   * (pipeline order is execution order): an entry delivered in between is above it, so it is safe.
   * Undelivered entries are above the last-delivered id, so they are never trimmed either. This
   * holds whenever it runs, whoever acknowledged what: it needs no ack of ours. `acked` (our own
   * newest acknowledged id) is a floor when the group info is unavailable; without it, no trim.
   */
  private async trim(shard: number, groupsReply: unknown, pendingReply: unknown, acked: string | undefined): Promise<number> {
    const groups = ((groupsReply as unknown[]) ?? []).map(pairs);
    const summary = pendingReply as [number, string | null, string | null, unknown];
    const pending = summary[0] > 0 && summary[1] ? summary[1] : undefined;
    let floor = acked;
    const delivered = groups.find((g) => g.name === RELAY_GROUP)?.["last-delivered-id"];
    if (typeof delivered === "string" && (floor === undefined || compareIds(delivered, floor) > 0)) floor = delivered;
    const minId = pending ?? (floor === undefined ? undefined : nextId(floor));
    // Stopped at a pending entry: whoever acknowledges it may not trim after it (see the file's comment).
    if (pending) this.untrimmed.set(shard, Date.now());
    else this.untrimmed.delete(shard);
    if (minId === undefined) return 0;
    return Number(await this.ctx.redis.call("XTRIM", this.ctx.keys.outbox(shard), "MINID", minId));
  }
}
