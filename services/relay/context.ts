/** What every part of the relay is given: its settings, connections and shared run state. */
import type { RedisClient } from "../../shared/redis/client.ts";
import type { RelayConfig } from "../../shared/config.ts";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Availability, StopSignal } from "./health.ts";
import type { RelayMetrics } from "./metrics.ts";

export type RelaySettings = Pick<
  RelayConfig,
  | "KAFKA_TOPIC"
  | "KAFKA_DLQ_TOPIC"
  | "KAFKA_PARTITIONS"
  | "RELAY_BATCH_SIZE"
  | "RELAY_LINGER_MS"
  | "RELAY_BLOCK_MS"
  | "RELAY_CLAIM_IDLE_MS"
  | "RELAY_CONSUMER_NAME"
  | "RELAY_LEASE_MS"
  | "RELAY_COMPRESSION"
  | "RELAY_MIN_REPLICAS"
  | "RELAY_REPLICA_WAIT_MS"
  | "RELAY_TRANSACTIONS"
  | "RELAY_TEST_FREEZE_BEFORE"
>;

/** A single Redis node or a Redis Cluster (REDIS_CLUSTER_NODES): the relay reads either. */
export type { RedisClient };

let frozenOnce = false;

/**
 * The RELAY_TEST_FREEZE_BEFORE hook: at `point`, once per process, log and stop this process
 * (SIGSTOP to itself), as a pause by the kernel, a GC or a stalled VM would, at the worst moment.
 * A test sees the line, moves the lease, and resumes it with SIGCONT. Never set in production.
 */
export function freezeForTest(ctx: Pick<RelayContext, "cfg" | "log">, point: NonNullable<RelaySettings["RELAY_TEST_FREEZE_BEFORE"]>, shard?: number): void {
  if (ctx.cfg.RELAY_TEST_FREEZE_BEFORE !== point || frozenOnce) return;
  frozenOnce = true;
  ctx.log.warn({ point, shard }, point === "send" ? "test hook: freezing before the send" : "test hook: freezing before the claim");
  ctx.log.flush();
  process.kill(process.pid, "SIGSTOP");
}

export interface RelayContext {
  /** Commands connection (acks, trims, claims, leases, scrapes); never blocks. */
  redis: RedisClient;
  keys: KeyLayout;
  cfg: RelaySettings;
  log: Logger;
  metrics: RelayMetrics;
  consumerName: string;
  stop: StopSignal;
  redisState: Availability;
  kafkaState: Availability;
}
