/**
 * Releases holds whose time is up. Every tick, for each shard: read the due holds from the
 * shard's due set, then run the expire script for each, pipelined. The script re-checks status
 * and expiry atomically, so several expirers may run at once: a hold is released exactly once,
 * and the others see `not_active`.
 * Then it sweeps the shard's waiting rooms (docs/waiting-room.md): admissions unused for their TTL
 * end and admit the next tickets, and a pre-queue is drawn once its start has passed (room_sweep.lua,
 * room_draw.lua; both idempotent, so several expirers may sweep at once too).
 */
import type { RedisClient } from "../../shared/redis/client.ts";
import type { Registry } from "prom-client";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import { sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";
import { prom } from "../../shared/metrics.ts";
import { IDEMPOTENCY_TTL_SECONDS } from "../../shared/domain/policy.ts";
import { dueHoldsCall, expireCall } from "../../shared/redis/calls.ts";
import { prepareScripts, queueScript, runScript } from "../../shared/redis/scripts.ts";
import { continueTrace } from "../../shared/trace.ts";
import { createRoomCommands } from "../../shared/redis/room.ts";

export interface ExpirerOptions {
  redis: RedisClient;
  keys: KeyLayout;
  logger: Logger;
  registry: Registry;
  intervalMs: number;
  batchSize: number;
  /** HOLD_RETENTION_SECONDS: how long an expired hold stays readable; default IDEMPOTENCY_TTL_SECONDS (the policy). */
  holdRetentionSeconds?: number;
}

export interface Expirer {
  start(): void;
  /** Finishes the current tick, then resolves. */
  stop(): Promise<void>;
  /** One pass over every shard; returns how many holds it released. Exposed for tests. */
  tick(): Promise<number>;
  isHealthy(): boolean;
}

export function createExpirer(options: ExpirerOptions): Expirer {
  const { redis, keys, logger, intervalMs, batchSize } = options;
  const retainSeconds = options.holdRetentionSeconds ?? IDEMPOTENCY_TTL_SECONDS;
  prepareScripts(redis);
  const expired = new prom.Counter({ name: "flashsale_holds_expired_total", help: "Holds released because they timed out", registers: [options.registry] });
  const tickSeconds = new prom.Histogram({
    name: "flashsale_expirer_tick_seconds",
    help: "Duration of one pass over all shards",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [options.registry],
  });
  new prom.Gauge({
    name: "flashsale_holds_due_backlog",
    help: "Holds past their expiry not yet released, per shard",
    labelNames: ["shard"],
    registers: [options.registry],
    async collect() {
      // Redis' clock, like the due query: this process's clock may be off.
      const [seconds, micros] = await redis.time();
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      await Promise.all(keys.allShards().map(async (shard) => this.set({ shard }, await redis.zcount(keys.holdsDue(shard), "-inf", now))));
    },
  });

  const rooms = createRoomCommands(redis, keys);
  const roomAdmissionsExpired = new prom.Counter({
    name: "flashsale_room_admissions_expired_total",
    help: "Waiting-room admissions that ran out unused (their units went to the next tickets)",
    registers: [options.registry],
  });

  /** One sweep of every room of a shard; a room that fails is logged and the others still swept. */
  async function sweepRooms(shard: number): Promise<void> {
    const ids = await rooms.roomsOf(shard);
    await Promise.all(
      ids.map(async (stockId) => {
        try {
          const { outcome, expired: ended } = await rooms.sweep(stockId, batchSize);
          if (ended > 0) roomAdmissionsExpired.inc(ended);
          if (outcome === "finished" || outcome === "gone") logger.info({ stockId, outcome }, "waiting room no longer swept");
        } catch (err) {
          logger.error({ err: (err as Error).message, stockId }, "waiting-room sweep failed");
        }
      }),
    );
  }

  let running = false;
  let stopRequested = false;
  let loop: Promise<void> | null = null;
  // Not ready until a pass has reached Redis (it may not be up yet at start).
  let lastTickOk = false;
  let failing = false;

  /**
   * Releases up to one batch of due holds of a shard; returns [released, holds looked at, due entries
   * settled]. "Due" is judged by Redis' TIME inside due_holds.lua, the same clock expire.lua checks.
   */
  async function expireBatch(shard: number): Promise<[number, number, number]> {
    const due = keys.holdsDue(shard);
    const ids = await runScript(redis, dueHoldsCall(keys, shard, batchSize));
    if (ids.length === 0) return [0, 0, 0];
    const lookup = redis.pipeline();
    for (const id of ids) lookup.hget(keys.hold(id), "stockId");
    const stockIds = (await lookup.exec()) ?? [];

    const release = redis.pipeline();
    // One trace per batch, started here: its releases were caused by the clock, not by a request.
    const trace = continueTrace(undefined);
    ids.forEach((id, i) => {
      const stockId = stockIds[i]?.[1] as string | null;
      // A due entry without its hold has nothing to release: drop the index entry.
      if (!stockId) return void release.zrem(due, id);
      queueScript(release, expireCall(keys, id, stockId, retainSeconds, trace.traceparent));
    });
    const results = (await release.exec()) ?? [];
    let released = 0;
    let settled = 0; // due entries this batch removed: released, already finished, or stock gone
    for (const [err, reply] of results) {
      const outcome = Array.isArray(reply) ? String(reply[0]) : typeof reply === "number" ? "dropped" : "";
      if (err) logger.error({ err: err.message, shard, traceId: trace.traceId }, "expire script failed");
      else if (outcome === "expired") released++;
      else if (outcome === "stock_missing") logger.warn({ shard, reply }, "due hold whose stock no longer exists: due entry dropped");
      else if (outcome !== "not_active" && outcome !== "dropped") logger.error({ shard, reply }, "expire script refused a hold");
      if (!err && ["expired", "not_active", "stock_missing", "dropped"].includes(outcome)) settled++;
    }
    if (released > 0) logger.debug({ shard, released, traceId: trace.traceId }, "expired holds released");
    return [released, ids.length, settled];
  }

  async function tick(): Promise<number> {
    const end = tickSeconds.startTimer();
    let total = 0;
    for (const shard of keys.allShards()) {
      // Keep going while batches come back full, so a burst of expiries drains in one tick.
      for (;;) {
        const [released, seen, settled] = await expireBatch(shard);
        total += released;
        // A full batch that settled nothing (holds not due yet, or refused) would come back the same: stop.
        if (seen < batchSize || settled === 0 || stopRequested) break;
      }
      await sweepRooms(shard);
    }
    end();
    if (total > 0) {
      expired.inc(total);
      logger.info({ released: total }, "released expired holds");
    }
    return total;
  }

  async function run(): Promise<void> {
    while (running) {
      const started = Date.now();
      try {
        await tick();
        if (failing) logger.info("redis reachable again, expiring");
        lastTickOk = true;
        failing = false;
      } catch (err) {
        if (!failing) logger.error({ err: (err as Error).message }, "expirer tick failed; retrying every interval (waiting for redis)");
        lastTickOk = false;
        failing = true;
      }
      await sleep(Math.max(0, intervalMs - (Date.now() - started)));
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      stopRequested = false;
      loop = run();
    },
    async stop() {
      running = false;
      stopRequested = true;
      await loop;
    },
    tick,
    isHealthy: () => lastTickOk,
  };
}
