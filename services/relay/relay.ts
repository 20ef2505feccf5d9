/**
 * The relay (issue 4): moves events from the per-shard Redis Stream outboxes to Kafka,
 * at least once, in stream order per shard, and trims what Kafka has acknowledged.
 *
 *   own the shard (lease, see ownership.ts); if its previous holder did not release it cleanly,
 *       fence that relay's Kafka producer first (sender.ts), then confirm the lease
 *     → take over what is pending on it (XAUTOCLAIM min-idle 0) and re-send our PEL (XREADGROUP … 0)
 *     → loop: XREADGROUP … > over all owned shards (one call, BLOCK, dedicated connection)
 *             validate each entry (parseEvent); bad ones → dead-letter stream
 *             produce everything read in one Kafka transaction (this process's one transactional
 *             producer, all shards; acks=all), await the commit
 *             XACK, then XTRIM MINID to the oldest still-pending id (or past the last acked one)
 *     → every claim interval: XAUTOCLAIM entries idle > RELAY_CLAIM_IDLE_MS and re-send them
 *     → every heartbeat (RELAY_LEASE_MS/3): re-trim owned shards that went quiet after a trim that may have
 *       left acknowledged entries (stopped at a pending entry, failed, or the shard was just acquired)
 *
 * Kafka down: the batch stays in memory and pending, and is re-sent in a new transaction (the
 * failed one aborted, so read-committed consumers never see a copy) with capped exponential backoff.
 * Redis down: the loop backs off and retries. Each outage is logged once when it starts and once
 * when it ends. stop(): stop reading, let the in-flight send finish for a short grace (then
 * abandon it unacknowledged), release the leases, disconnect.
 *
 * Files, one job each:
 *   relay.ts     lifecycle (start, stop, readiness) and the loop that ties the parts together
 *   shards.ts    which shards are read and how (recovering / live), lease changes, claims  (+ ownership.ts: leases, membership)
 *   reader.ts    XREADGROUP: new entries of the live shards, our pending entries of one shard
 *   batches.ts   entries → Kafka messages / dead letters, split into batches (pure)
 *   sender.ts    the producer, send-with-retry, the stop grace
 *   acker.ts     dead letters, XACK and trim after Kafka acknowledged, in order; re-trims quiet shards
 *   snapshot.ts, metrics.ts   outbox gauges and counters;  health.ts  stop signal, dependency up/down
 *   stream.ts    Redis Stream reply parsing and id arithmetic
 */
import { hostname } from "node:os";
import type { Kafka } from "kafkajs";
import type { Registry } from "prom-client";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import { retryStart, StartCancelledError } from "../../shared/retry.ts";
import type { Logger } from "../../shared/logger.ts";
import { prom } from "../../shared/metrics.ts";
import { Acker } from "./acker.ts";
import { eventIdOf, toBatches } from "./batches.ts";
import type { RedisClient, RelayContext, RelaySettings } from "./context.ts";
import { Availability, errorMessage, StopSignal } from "./health.ts";
import { createRelayMetrics, type RelayMetrics, type ShardSnapshot } from "./metrics.ts";
import { OutboxReader, type ReadResult } from "./reader.ts";
import { KafkaSender, STOP_SEND_GRACE_MS } from "./sender.ts";
import { ShardState } from "./shards.ts";
import { readSnapshot } from "./snapshot.ts";
import { relayEnsureGroupCall } from "../../shared/redis/calls.ts";
import { runScript } from "../../shared/redis/scripts.ts";
import { idTimeMs, isNoGroup, RELAY_GROUP, type OutboxEntry } from "./stream.ts";

export type { RelaySettings } from "./context.ts";

export interface RelayDeps {
  /** Commands connection or Cluster client (caller owns it). The relay opens its own connections for blocking reads. */
  redis: RedisClient;
  kafka: Kafka;
  keys: KeyLayout;
  config: RelaySettings;
  logger: Logger;
  /** Where the relay's metrics go; a private registry when omitted. */
  registry?: Registry;
}

export interface Relay {
  readonly consumerName: string;
  readonly metrics: RelayMetrics;
  /**
   * Creates groups and topics, connects, starts relaying. Retries (with backoff) until it succeeds or
   * stop() is called; throws FatalStartError only on what retrying cannot fix (auth, bad settings).
   */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** null when ready; otherwise why not (for /readyz). */
  notReadyReason(): string | null;
  /** Shards this relay currently reads. */
  ownedShards(): number[];
  /** Outbox length, pending count and lag per shard, read from Redis. */
  snapshot(): Promise<ShardSnapshot[]>;
}

function defaultConsumerName(): string {
  return `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

export function createRelay(deps: RelayDeps): Relay {
  return new RelayImpl(deps);
}

class RelayImpl implements Relay {
  readonly consumerName: string;
  readonly metrics: RelayMetrics;
  private readonly ctx: RelayContext;
  private readonly shards: ShardState;
  private readonly reader: OutboxReader;
  private readonly sender: KafkaSender;
  private readonly acker: Acker;

  private groupsReady = false;
  private started = false;
  private phase = "starting";
  private stopPromise: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  /** A send was abandoned unacknowledged at stop: its transaction may still be open on the broker. */
  private abandoned = false;

  constructor(deps: RelayDeps) {
    this.consumerName = deps.config.RELAY_CONSUMER_NAME ?? defaultConsumerName();
    const log = deps.logger.child({ consumer: this.consumerName });
    this.metrics = createRelayMetrics(deps.registry ?? new prom.Registry(), () => this.snapshot());
    this.ctx = {
      redis: deps.redis,
      keys: deps.keys,
      cfg: deps.config,
      log,
      metrics: this.metrics,
      consumerName: this.consumerName,
      stop: new StopSignal(),
      kafkaState: new Availability("kafka", log, this.metrics.kafkaUp),
      redisState: new Availability("redis", log, this.metrics.redisUp),
    };
    this.reader = new OutboxReader(this.ctx);
    this.sender = new KafkaSender(deps.kafka, this.ctx);
    this.shards = new ShardState(this.ctx, {
      fence: (previousHolders) => this.sender.fence(previousHolders),
      acquired: (shard) => this.acker.acquired(shard),
      leftLive: (shard) => this.reader.forget(shard),
      beat: (held) => this.acker.tidy(held),
    });
    this.acker = new Acker(this.ctx);
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    if (this.started) throw new Error("relay already started");
    this.started = true;
    const { cfg, keys, log, stop, redisState, kafkaState } = this.ctx;
    log.info({ topic: cfg.KAFKA_TOPIC, shards: keys.shards, batchSize: cfg.RELAY_BATCH_SIZE, lingerMs: cfg.RELAY_LINGER_MS }, "relay starting");
    // Each step waits out what is not ready yet (a line per attempt, /readyz says what) and throws
    // only on what retrying cannot fix, or StartCancelledError when stopped meanwhile (shared/retry.ts).
    const waitFor = (what: string, state: typeof redisState, step: () => Promise<void>) =>
      retryStart(
        () =>
          step().catch((err: unknown) => {
            state.markDown(err); // the up/down gauge shows it too
            throw err;
          }),
        { logger: log, what, stopped: () => stop.stopping, onWaiting: (reason) => (this.phase = reason ?? this.phase) },
      );
    this.phase = "waiting for redis";
    try {
      await waitFor("redis (outbox consumer groups, shard membership)", redisState, async () => {
        await this.ensureGroups();
        await this.reader.init();
        await this.shards.ownership.startTimer();
      });
      redisState.markUp();
      this.phase = "waiting for kafka";
      await waitFor(`kafka topics ${cfg.KAFKA_TOPIC} and its DLQ with partition leaders`, kafkaState, () => this.sender.connect());
      kafkaState.markUp();
    } catch (err) {
      if (err instanceof StartCancelledError) return;
      throw err;
    }
    if (stop.stopping) return;
    this.loop = this.run();
    log.info("relay running");
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.shutdown();
    return this.stopPromise;
  }

  private async shutdown(): Promise<void> {
    const { log, stop } = this.ctx;
    stop.trigger();
    this.shards.ownership.stopTimer();
    // Clean release (the next owners need not fence us) only when the loop ended with every send settled.
    const settled = this.loop ? await Promise.race([this.loop.then(() => true), sleep(STOP_SEND_GRACE_MS + 3_000).then(() => false)]) : true;
    await Promise.race([this.shards.ownership.leave(settled && !this.abandoned).catch((err) => log.warn({ err: errorMessage(err) }, "could not release shard leases")), sleep(2_000)]);
    this.shards.clear();
    await this.sender.disconnect();
    this.reader.disconnect();
    log.info("relay stopped");
  }

  notReadyReason(): string | null {
    if (this.ctx.stop.stopping) return "stopping";
    if (!this.loop) return this.phase;
    if (!this.ctx.redisState.isUp) return "redis unavailable";
    if (!this.ctx.kafkaState.isUp) return "kafka unavailable";
    return null;
  }

  ownedShards(): number[] {
    return this.shards.owned();
  }

  snapshot(): Promise<ShardSnapshot[]> {
    return readSnapshot(this.ctx.redis, this.ctx.keys);
  }

  private async ensureGroups(): Promise<void> {
    const { redis, keys } = this.ctx;
    await Promise.all(keys.allShards().map((s) => runScript(redis, relayEnsureGroupCall(keys, s, RELAY_GROUP))));
    this.groupsReady = true;
  }

  // ---------------------------------------------------------------- main loop

  private async run(): Promise<void> {
    const { stop, redisState } = this.ctx;
    let attempt = 0;
    while (!stop.stopping) {
      try {
        if (!this.groupsReady) await this.ensureGroups();
        // Ownership changes and claims only ever happen with every sent batch acknowledged.
        await this.acker.flush();
        await this.shards.reconcile();
        if (stop.stopping) break;
        await this.shards.housekeeping();
        const recovering = this.shards.recoveringShards();
        if (recovering.length > 0) await this.recover(recovering);
        else await this.pump();
        redisState.markUp();
        attempt = 0;
      } catch (err) {
        if (isNoGroup(err)) this.groupsReady = false; // stream deleted under us: recreate and go on
        redisState.markDown(err);
        // A failed call may still have delivered entries to us (e.g. the reply was lost): re-read
        // our own pending entries before reading new ones, so nothing waits for a claim or jumps the queue.
        this.shards.recoverAllLive();
        await stop.pause(backoffMs(attempt++));
      }
    }
    await this.acker.flush();
  }

  /**
   * Steady state: read new entries of the live shards and relay them, prefetching the next read
   * while the current batch is produced. Returns to the main loop when ownership, a claim or
   * housekeeping needs attention, or on stop.
   */
  private async pump(): Promise<void> {
    const { stop, cfg } = this.ctx;
    if (this.shards.liveShards().length === 0) {
      await stop.pause(cfg.RELAY_BLOCK_MS);
      return;
    }
    let next: Promise<ReadResult> | undefined = this.reader.readNew(this.shards.liveShards());
    try {
      while (next) {
        const { entries, lost } = await next;
        const readAt = Date.now();
        for (const shard of lost) {
          this.ctx.log.warn({ shard }, "shard lease is no longer ours (found by the read); shard dropped");
          this.shards.lose(shard);
        }
        next = !stop.stopping && this.shards.steady() ? this.reader.readNew(this.shards.liveShards()) : undefined;
        if (entries.length > 0 && !(await this.relayEntries(entries, readAt))) return;
      }
    } finally {
      if (next) {
        // Left with a read in flight (stop or error): whatever it delivers stays pending on us;
        // the next owner claims it, or we re-read it before anything newer.
        next.catch(() => {});
        if (!stop.stopping) this.shards.recoverAllLive();
      }
    }
  }

  /**
   * Re-sends this consumer's pending entries of the given shards, each shard's oldest first, then
   * reads them with `>`. All shards at once: a round reads a batch of each and sends them in one
   * transaction, so after a reset (every shard recovering at once) the last shard is not kept waiting
   * for the others' history (one shard after another took ~1 s a shard under a broker failure).
   */
  private async recover(shards: readonly number[]): Promise<void> {
    const { stop, log } = this.ctx;
    const from = new Map(shards.map((s) => [s, "0-0"]));
    const resent = new Map(shards.map((s) => [s, 0]));
    while (!stop.stopping && from.size > 0) {
      const reads = await Promise.all([...from.keys()].map(async (shard) => ({ shard, entries: this.shards.isHeld(shard) ? await this.reader.readPending(shard, from.get(shard)!) : null })));
      const round: OutboxEntry[] = [];
      for (const { shard, entries } of reads) {
        if (entries === null) {
          if (this.shards.isHeld(shard)) log.warn({ shard }, "shard lease is no longer ours (found by the pending read); shard dropped");
          this.shards.lose(shard);
          from.delete(shard);
        } else if (entries.length === 0) {
          this.shards.markLive(shard);
          from.delete(shard);
          if (resent.get(shard)! > 0) log.info({ shard, resent: resent.get(shard) }, "pending entries re-sent");
        } else {
          round.push(...entries);
          resent.set(shard, resent.get(shard)! + entries.length);
          from.set(shard, entries.at(-1)!.id);
        }
      }
      if (round.length > 0 && !(await this.relayEntries(round, Date.now()))) return;
    }
  }

  // ---------------------------------------------------------------- one batch

  /**
   * Relays entries (each shard's in stream order, any shards): one-shard batches of at most
   * RELAY_BATCH_SIZE, all produced in one transaction (one commit for every shard read in this
   * round), then XACKed and trimmed while the next round is read and sent. Returns false when
   * stopping abandoned the send; after a fence (or a broken producer) every shard is dropped, to be
   * acquired again under a new producer epoch.
   */
  private async relayEntries(entries: OutboxEntry[], readAt: number): Promise<boolean> {
    const started = performance.now();
    const { metrics, log, cfg } = this.ctx;
    // Entries of a shard we no longer hold stay pending: its new owner claims and sends them.
    const held = entries.filter((e) => this.shards.isHeld(e.shard));
    if (held.length === 0) return true;
    for (const e of held) metrics.readStageSeconds.observe(Math.max(0, readAt - idTimeMs(e.id)) / 1000);
    const batches = toBatches(held, cfg.RELAY_BATCH_SIZE, this.consumerName);
    metrics.stepSeconds.observe({ step: "encode" }, (performance.now() - started) / 1000);
    const times = { sendMs: 0, commitMs: 0 };
    const outcome = await this.sender.send(batches, times);
    const messages = batches.flatMap((b) => b.messages);
    if (outcome === "abandoned") {
      this.abandoned = true;
      log.warn(
        { events: messages.length, firstEventId: eventIdOf(messages[0]), lastEventId: eventIdOf(messages.at(-1)) },
        "stopping: in-flight send abandoned unacknowledged (stays pending)",
      );
      return false;
    }
    if (outcome === "reset") {
      // Not published. Shards another relay took are claimed and sent by it; ours are acquired again.
      metrics.fenced.inc();
      this.shards.loseAll();
      return true;
    }
    if (messages.length > 0) {
      metrics.stepSeconds.observe({ step: "send" }, times.sendMs / 1000);
      if (cfg.RELAY_TRANSACTIONS) metrics.stepSeconds.observe({ step: "commit" }, times.commitMs / 1000);
      metrics.publishStageSeconds.observe(Math.max(0, Date.now() - readAt) / 1000);
    }
    // Kafka has them: acknowledge while the next rounds are read and sent (a few transactions' acks at
    // once, acker.ts); ownership changes and claims wait for every ack (acker.flush()).
    return this.acker.enqueue(batches, started);
  }
}
