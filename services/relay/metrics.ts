/** The relay's Prometheus metrics. Outbox gauges are read from Redis when scraped. */
import { BATCH_SIZE_BUCKETS, metricsOn, prom, STAGE_SECONDS_BUCKETS, STEP_SECONDS_BUCKETS } from "../../shared/metrics.ts";
import type { Registry } from "prom-client";

export interface ShardSnapshot {
  shard: number;
  length: number;
  pending: number;
  /** now − occurredAt of the oldest entry not yet relayed (0 when there is none). */
  lagSeconds: number;
}

export function createRelayMetrics(registry: Registry, snapshot: () => Promise<ShardSnapshot[] | null>) {
  const registers = [registry];
  // The four outbox gauges share one Redis read per scrape.
  let cached: { at: number; value: Promise<ShardSnapshot[] | null> } | undefined;
  const read = () => {
    const now = Date.now();
    if (!cached || now - cached.at > 250) cached = { at: now, value: snapshot().catch(() => null) };
    return cached.value;
  };

  const m = metricsOn(registry);
  return {
    relayed: m.counter("flashsale_relay_events_relayed_total", "Events produced to Kafka and acknowledged in the outbox"),
    batches: m.counter("flashsale_relay_batches_total", "Batches produced to Kafka and acknowledged"),
    batchSeconds: m.histogram("flashsale_relay_batch_duration_seconds", "Time from a batch read from the outbox to its XACK (Kafka send included)", STEP_SECONDS_BUCKETS),
    batchSize: m.histogram("flashsale_relay_batch_events", "Events per relayed batch", BATCH_SIZE_BUCKETS),
    readStageSeconds: m.histogram(
      "flashsale_relay_stage_xadd_to_read_seconds",
      "Per event: its XADD (Redis time in the stream id) → read by the relay and on RELAY_MIN_REPLICAS replicas",
      STAGE_SECONDS_BUCKETS,
    ),
    publishStageSeconds: m.histogram(
      "flashsale_relay_stage_read_to_kafka_ack_seconds",
      "Per batch: read from the outbox → Kafka acknowledged it (transaction committed)",
      STAGE_SECONDS_BUCKETS,
    ),
    stepSeconds: m.histogram(
      "flashsale_relay_step_seconds",
      "Per transaction (one read round, all its shards): encode = entries → Kafka messages (parse, validate, headers); send = the produce requests (kafkajs encoding included); commit = EndTxn; ack = XACK + trim of every shard in it",
      STAGE_SECONDS_BUCKETS,
      ["step"],
    ),
    replicaWaitSeconds: m.histogram(
      "flashsale_relay_replica_wait_seconds",
      "Time WAIT took until RELAY_MIN_REPLICAS replicas had the entries just read",
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30],
    ),
    replicaStalls: m.counter(
      "flashsale_relay_replica_stalls_total",
      "Reads whose entries were held back because fewer than RELAY_MIN_REPLICAS replicas had them within RELAY_REPLICA_WAIT_MS",
    ),
    fenced: m.counter(
      "flashsale_relay_fenced_total",
      "Transactions not published because another relay fenced this relay's producer (or it had to be replaced); every shard is then acquired again",
    ),
    deadLetters: m.counter("flashsale_relay_dead_letters_total", "Outbox entries moved to the dead-letter stream (failed validation)"),
    sendFailures: m.counter("flashsale_relay_kafka_send_failures_total", "Failed Kafka sends (batch kept pending and retried)"),
    claimed: m.counter("flashsale_relay_claimed_entries_total", "Pending entries taken over from other consumers"),
    ownedShards: m.gauge("flashsale_relay_owned_shards", "Shards this relay currently holds the lease of"),
    kafkaUp: m.gauge("flashsale_relay_kafka_up", "1 when the last Kafka send or connect succeeded"),
    redisUp: m.gauge("flashsale_relay_redis_up", "1 when the last Redis call succeeded"),
    // The outbox gauges are read when scraped (collect), which metricsOn does not declare.
    outboxLength: new prom.Gauge({
      name: "flashsale_relay_outbox_length",
      help: "Entries in the shard's outbox stream (XLEN)",
      labelNames: ["shard"] as const,
      registers,
      async collect() {
        for (const s of (await read()) ?? []) this.set({ shard: String(s.shard) }, s.length);
      },
    }),
    outboxPending: new prom.Gauge({
      name: "flashsale_relay_outbox_pending",
      help: "Entries read by a relay and not yet acknowledged (XPENDING count)",
      labelNames: ["shard"] as const,
      registers,
      async collect() {
        for (const s of (await read()) ?? []) this.set({ shard: String(s.shard) }, s.pending);
      },
    }),
    lag: new prom.Gauge({
      name: "flashsale_relay_lag_seconds",
      help: "now − occurredAt of the oldest event not yet relayed, over all shards (0 when caught up)",
      registers,
      async collect() {
        const snap = await read();
        if (snap) this.set(snap.reduce((max, s) => Math.max(max, s.lagSeconds), 0));
      },
    }),
    shardLag: new prom.Gauge({
      name: "flashsale_relay_shard_lag_seconds",
      help: "now − occurredAt of the shard's oldest event not yet relayed (0 when caught up)",
      labelNames: ["shard"] as const,
      registers,
      async collect() {
        for (const s of (await read()) ?? []) this.set({ shard: String(s.shard) }, s.lagSeconds);
      },
    }),
  };
}

export type RelayMetrics = ReturnType<typeof createRelayMetrics>;
