/**
 * The delivery side of the notifier: one dispatcher per live endpoint, kept in step with the endpoint
 * table (added, removed or changed endpoints are picked up within a few seconds), and the backlog
 * gauges.
 *
 * One process delivers at a time: the one holding a session advisory lock in PostgreSQL (the delivery
 * lease). Several notifier processes may consume (each logs the events of its partitions); only the
 * lease holder sends, so two processes never send the same delivery or break a stock's order. The
 * lease goes with its connection: a killed process loses it at once, a standby takes it within one
 * lease check.
 */
import type postgres from "postgres";
import { sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";
import { listEndpoints, type Endpoint } from "../../shared/webhooks/endpoints.ts";
import type { SecretBox } from "../../shared/webhooks/secret-box.ts";
import { backlog, type PendingDelivery } from "./delivery-log.ts";
import { startDispatcher, type Dispatcher } from "./dispatcher.ts";
import type { NotifierMetrics } from "./metrics.ts";
import type { RetrySchedule } from "./schedule.ts";
import type { SendOptions } from "./sender.ts";

/** Fixed key of the delivery lease ("flashntf" in ASCII). */
export const DELIVERY_LEASE_KEY = 0x666c6173686e7466n;

export interface DeliveryOptions {
  sql: postgres.Sql;
  box: SecretBox;
  schedule: RetrySchedule;
  send: SendOptions;
  concurrency: number;
  pollIntervalMs: number;
  /** How often each loop re-reads its pending deliveries from the log (other processes', re-sent dead letters). */
  rescanIntervalMs?: number;
  /** How often the endpoint table is re-read and the lease checked. */
  refreshIntervalMs?: number;
  logger: Logger;
  metrics: NotifierMetrics;
}

export interface Delivery {
  start(): Promise<void>;
  /** Deliveries this process's consumer has just logged (committed). */
  offer(deliveries: readonly { endpointId: string; delivery: PendingDelivery }[]): void;
  stop(): Promise<void>;
  isLeader(): boolean;
}

const sameEndpoint = (a: Endpoint, b: Endpoint) =>
  a.url === b.url && a.secret === b.secret && JSON.stringify(a.eventTypes) === JSON.stringify(b.eventTypes);

export function createDelivery(options: DeliveryOptions): Delivery {
  const { sql, logger, metrics } = options;
  const refreshMs = options.refreshIntervalMs ?? 2_000;
  const dispatchers = new Map<string, Dispatcher>();
  let lease: postgres.ReservedSql | null = null;
  let stopping = false;
  let loop: Promise<void> | null = null;

  async function holdLease(): Promise<boolean> {
    try {
      if (lease) {
        await lease`SELECT 1`;
        return true;
      }
      const conn = await sql.reserve();
      const [row] = await conn<{ locked: boolean }[]>`SELECT pg_try_advisory_lock(${DELIVERY_LEASE_KEY.toString()}::bigint) AS locked`;
      if (row?.locked) {
        lease = conn;
        logger.info("delivery lease taken: this process delivers");
        return true;
      }
      conn.release();
      return false;
    } catch (err) {
      // The lease connection is gone (so is the lock): stop sending until it is ours again.
      logger.warn({ err }, "delivery lease lost or unavailable");
      lease?.release();
      lease = null;
      return false;
    }
  }

  async function stopAll(): Promise<void> {
    await Promise.all([...dispatchers.values()].map((d) => d.stop()));
    dispatchers.clear();
  }

  async function syncDispatchers(): Promise<void> {
    const undecryptable = (id: string, err: unknown) => logger.error({ endpoint: id, err }, "cannot decrypt the endpoint's secret: not delivering to it");
    const live = new Map((await listEndpoints(sql, options.box, undecryptable)).map((e) => [e.id, e]));
    for (const [id, d] of dispatchers) {
      const now = live.get(id);
      if (!now || !sameEndpoint(now, d.endpoint)) {
        dispatchers.delete(id);
        await d.stop();
        logger.info({ endpoint: id }, now ? "endpoint changed, restarting its delivery loop" : "endpoint removed, its delivery loop stopped");
      }
    }
    for (const [id, endpoint] of live) {
      if (dispatchers.has(id)) continue;
      dispatchers.set(id, startDispatcher({ ...options, rescanIntervalMs: options.rescanIntervalMs ?? 2_000, endpoint }));
      logger.info({ endpoint: id, url: endpoint.url, eventTypes: endpoint.eventTypes }, "delivering to endpoint");
    }
  }

  async function refreshGauges(): Promise<void> {
    const now = Date.now();
    for (const row of await backlog(sql)) {
      const labels = { endpoint: row.endpointId };
      metrics.backlog.set(labels, row.pending);
      metrics.deadLetterBacklog.set(labels, row.dead);
      metrics.oldestPendingSeconds.set(labels, row.oldestCreatedAt ? Math.max(0, now - row.oldestCreatedAt.getTime()) / 1000 : 0);
    }
  }

  async function run(): Promise<void> {
    while (!stopping) {
      const leader = await holdLease();
      metrics.deliveryLeader.set(leader ? 1 : 0);
      try {
        if (leader) await syncDispatchers();
        else if (dispatchers.size > 0) await stopAll();
        await refreshGauges();
      } catch (err) {
        logger.warn({ err }, "cannot refresh endpoints or backlog, retrying");
      }
      const until = Date.now() + refreshMs;
      while (!stopping && Date.now() < until) await sleep(Math.min(100, until - Date.now()));
    }
  }

  return {
    async start() {
      loop = run();
    },
    offer(deliveries) {
      const byEndpoint = new Map<string, PendingDelivery[]>();
      for (const { endpointId, delivery } of deliveries) {
        const list = byEndpoint.get(endpointId);
        if (list) list.push(delivery);
        else byEndpoint.set(endpointId, [delivery]);
      }
      // Not the leader, or an endpoint whose loop is not started yet: its re-scan finds them in the log.
      for (const [id, list] of byEndpoint) dispatchers.get(id)?.offer(list);
    },
    async stop() {
      stopping = true;
      await loop;
      await stopAll();
      if (lease) {
        await lease`SELECT pg_advisory_unlock(${DELIVERY_LEASE_KEY.toString()}::bigint)`.catch(() => {});
        lease.release();
        lease = null;
      }
      metrics.deliveryLeader.set(0);
    },
    isLeader: () => lease !== null,
  };
}
