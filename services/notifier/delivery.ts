/**
 * The delivery side of the notifier: one dispatcher per live endpoint, kept in step with the endpoint
 * table (added, removed or changed endpoints are picked up within a few seconds), and the backlog
 * gauges.
 *
 * One process delivers at a time: the one holding the delivery lease (lease.ts: a session advisory
 * lock whose window follows the measured renewal time). Several notifier processes may consume (each
 * logs the events of its partitions); only the lease holder sends, so two processes never send the
 * same delivery or break a stock's order. A killed process loses the lease at once, a paused one after
 * the window; a standby takes it at its next poll. The lease is renewed on its own timer, apart from
 * the slower endpoint and backlog queries, and every request checks it first.
 */
import type postgres from "postgres";
import { sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";
import { listEndpoints, type Endpoint } from "../../shared/webhooks/endpoints.ts";
import type { SecretBox } from "../../shared/webhooks/secret-box.ts";
import { backlog, type PendingDelivery } from "./delivery-log.ts";
import { startDispatcher, type Dispatcher } from "./dispatcher.ts";
import { createDeliveryLease, type DeliveryLease, type LeaseWindow } from "./lease.ts";
import type { NotifierMetrics } from "./metrics.ts";
import type { RetrySchedule } from "./schedule.ts";
import type { SendOptions } from "./sender.ts";


export interface DeliveryOptions {
  sql: postgres.Sql;
  box: SecretBox;
  schedule: RetrySchedule;
  send: SendOptions;
  concurrency: number;
  pollIntervalMs: number;
  /** How often each loop re-reads its held stocks and takes a page of the log (other processes', re-sent dead letters). */
  rescanIntervalMs?: number;
  /** How often the endpoint table is re-read, and a standby tries to take the lease. */
  refreshIntervalMs?: number;
  /** Bounds of the lease window (NOTIFIER_LEASE_MIN / NOTIFIER_LEASE_MAX); default 5 s … 60 s. */
  leaseWindow?: LeaseWindow;
  logger: Logger;
  metrics: NotifierMetrics;
}

export interface Delivery {
  start(): Promise<void>;
  /** Deliveries this process's consumer has just logged (committed). */
  offer(deliveries: readonly { endpointId: string; delivery: PendingDelivery }[]): void;
  /** The consumer was (re)assigned partitions: every endpoint's window re-reads its stocks before trusting offers (Dispatcher.invalidate). */
  invalidate(): void;
  stop(): Promise<void>;
  isLeader(): boolean;
  readonly lease: DeliveryLease;
}

const sameEndpoint = (a: Endpoint, b: Endpoint) =>
  a.url === b.url && a.secret === b.secret && JSON.stringify(a.eventTypes) === JSON.stringify(b.eventTypes);

const DEFAULT_LEASE_WINDOW: LeaseWindow = { minMs: 5_000, maxMs: 60_000 };

export function createDelivery(options: DeliveryOptions): Delivery {
  const { sql, logger, metrics } = options;
  const refreshMs = options.refreshIntervalMs ?? 2_000;
  const lease = createDeliveryLease(sql, options.leaseWindow ?? DEFAULT_LEASE_WINDOW, logger);
  const dispatchers = new Map<string, Dispatcher>();
  let stopping = false;
  let loops: Promise<unknown> | null = null;
  /** Dispatcher changes one at a time (the lease loop stops them, the refresh loop starts them). */
  let changing: Promise<void> = Promise.resolve();
  const serially = (work: () => Promise<void>) => (changing = changing.then(work, work));

  const stopAll = () =>
    serially(async () => {
      if (dispatchers.size === 0) return;
      logger.info({ endpoints: dispatchers.size }, "delivery loops stopping (not the lease holder)");
      await Promise.all([...dispatchers.values()].map((d) => d.stop()));
      dispatchers.clear();
      logger.info("delivery loops stopped");
    });

  const syncDispatchers = () =>
    serially(async () => {
      if (!lease.valid()) return;
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
        if (dispatchers.has(id) || !lease.valid()) continue;
        dispatchers.set(id, startDispatcher({ ...options, rescanIntervalMs: options.rescanIntervalMs ?? 2_000, endpoint, mayDeliver: lease.valid }));
        logger.info({ endpoint: id, url: endpoint.url, eventTypes: endpoint.eventTypes }, "delivering to endpoint");
      }
    });

  async function refreshGauges(): Promise<void> {
    const now = Date.now();
    for (const row of await backlog(sql)) {
      const labels = { endpoint: row.endpointId };
      metrics.backlog.set(labels, row.pending);
      metrics.deadLetterBacklog.set(labels, row.dead);
      metrics.oldestPendingSeconds.set(labels, row.oldestCreatedAt ? Math.max(0, now - row.oldestCreatedAt.getTime()) / 1000 : 0);
    }
  }

  const pause = async (ms: number) => {
    const until = Date.now() + ms;
    while (!stopping && Date.now() < until) await sleep(Math.min(100, until - Date.now()));
  };

  /** Holds the lease: renews it every W/3 while held, tries to take it every refresh interval otherwise. */
  async function leaseLoop(): Promise<void> {
    while (!stopping) {
      let leader = false;
      try {
        leader = await lease.tryHold();
        metrics.deliveryLeader.set(leader ? 1 : 0);
        metrics.leaseWindowSeconds.set(lease.windowMs() / 1000);
        if (!leader && dispatchers.size > 0) await stopAll();
      } catch (err) {
        logger.error({ err }, "delivery lease loop failed, retrying");
      }
      await pause(leader ? lease.renewEveryMs() : refreshMs);
    }
  }

  /** The endpoint table and the backlog gauges. */
  async function refreshLoop(): Promise<void> {
    while (!stopping) {
      try {
        if (lease.valid()) await syncDispatchers();
        else if (dispatchers.size > 0) await stopAll();
        await refreshGauges();
      } catch (err) {
        logger.warn({ err }, "cannot refresh endpoints or backlog, retrying");
      }
      await pause(refreshMs);
    }
  }

  return {
    lease,
    async start() {
      loops = Promise.all([leaseLoop(), refreshLoop()]);
    },
    offer(deliveries) {
      const byEndpoint = new Map<string, PendingDelivery[]>();
      for (const { endpointId, delivery } of deliveries) {
        const list = byEndpoint.get(endpointId);
        if (list) list.push(delivery);
        else byEndpoint.set(endpointId, [delivery]);
      }
      // Not the leader, or an endpoint whose loop is not started yet: its pages find them in the log.
      for (const [id, list] of byEndpoint) dispatchers.get(id)?.offer(list);
    },
    invalidate() {
      for (const d of dispatchers.values()) d.invalidate();
    },
    async stop() {
      stopping = true;
      await loops;
      await stopAll();
      await lease.release();
      metrics.deliveryLeader.set(0);
    },
    isLeader: () => lease.valid(),
  };
}
