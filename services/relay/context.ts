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
>;

/** A single Redis node or a Redis Cluster (REDIS_CLUSTER_NODES): the relay reads either. */
export type { RedisClient };

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
