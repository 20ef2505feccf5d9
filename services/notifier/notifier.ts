/**
 * notifier: the stock events as Standard Webhooks (README "Webhooks").
 *
 *   Kafka (own consumer group) ──shared projection consumer──> delivery log in PostgreSQL, one
 *   transaction per batch, offsets committed after it ──> per-endpoint delivery loops ──> receivers
 *
 * The consumer never waits for a receiver: it only logs the events (and a pending delivery per
 * subscribed endpoint), so a slow or failing endpoint holds up neither the partition nor the other
 * endpoints. Delivery is at least once: a delivery is marked delivered only after a 2xx.
 * Constructible in-process (tests, the bench); main.ts adds the admin server and signals.
 */
import type postgres from "postgres";
import type { Registry } from "prom-client";
import type { EventType } from "../../shared/domain/events.ts";
import type { Logger } from "../../shared/logger.ts";
import { prom } from "../../shared/metrics.ts";
import { isPostgresOutage } from "../../shared/projection/errors.ts";
import { probeEvents } from "../../shared/projection/probe.ts";
import { retryStart } from "../../shared/retry.ts";
import { type ConsumerWorker, createProjector, type Projector, type ProjectorKafkaOptions } from "../../shared/projection/projector.ts";
import { checkWebhookUrl } from "../../shared/webhooks/address-policy.ts";
import { syncConfiguredEndpoint } from "../../shared/webhooks/endpoints.ts";
import type { SecretBox } from "../../shared/webhooks/secret-box.ts";
import { createDelivery, type Delivery } from "./delivery.ts";
import { logEvents } from "./delivery-log.ts";
import type { LeaseWindow } from "./lease.ts";
import { createNotifierMetrics, type NotifierMetrics } from "./metrics.ts";
import type { RetrySchedule } from "./schedule.ts";
import type { SendOptions } from "./sender.ts";

const NOTIFIER_GROUP = "notifier";

export interface NotifierOptions extends Omit<ProjectorKafkaOptions, "groupId"> {
  groupId?: string;
  sql: postgres.Sql;
  logger: Logger;
  registry?: Registry;
  /** Decrypts the stored secrets, encrypts the configured one (shared/webhooks/secret-box.ts). */
  box: SecretBox;
  /** The endpoint from config (WEBHOOK_URL…); unset removes a previously configured one. */
  configured?: { url?: string; secret?: string; eventTypes?: EventType[] };
  schedule: RetrySchedule;
  send: SendOptions;
  concurrency: number;
  pollIntervalMs: number;
  /** Endpoint table re-read, and a standby's try for the lease; default 2 s. */
  refreshIntervalMs?: number;
  /** Each delivery loop's re-read of its held stocks and page of the log; default 2 s. */
  rescanIntervalMs?: number;
  /** Bounds of the delivery lease's window; default 5 s … 60 s. */
  leaseWindow?: LeaseWindow;
}

export interface Notifier extends ConsumerWorker {
  readonly projector: Projector;
  readonly delivery: Delivery;
  readonly metrics: NotifierMetrics;
  /** Consumer first (finish the batch, commit, leave the group), then the deliveries in flight. */
  stop(): Promise<void>;
}

export function createNotifier(options: NotifierOptions): Notifier {
  const { sql, logger } = options;
  const registry = options.registry ?? new prom.Registry();
  const metrics = createNotifierMetrics(registry);
  const delivery = createDelivery({
    sql,
    box: options.box,
    schedule: options.schedule,
    send: options.send,
    concurrency: options.concurrency,
    pollIntervalMs: options.pollIntervalMs,
    refreshIntervalMs: options.refreshIntervalMs,
    rescanIntervalMs: options.rescanIntervalMs,
    leaseWindow: options.leaseWindow,
    logger,
    metrics,
  });
  const projector = createProjector({
    ...options,
    groupId: options.groupId ?? NOTIFIER_GROUP,
    registry,
    sink: {
      store: "postgresql (webhook delivery log)",
      apply: async (events) => {
        const result = await logEvents(sql, events);
        if (result.deliveries.length > 0) delivery.offer(result.deliveries);
        return result;
      },
      // Partitions another process logged until now: the window's stocks may have versions it never handed over.
      assigned: () => delivery.invalidate(),
      isOutage: isPostgresOutage,
      probe: () => probeLog(sql),
      ping: async () => {
        await sql`SELECT 1`;
      },
    },
  });
  let stopped = false;
  let waiting: string | null = null;
  return {
    projector,
    delivery,
    metrics,
    registry,
    async start() {
      // A database that is down at start is waited for (with backoff), like the consumer waits for it later.
      const configured = await retryStart(() => syncConfiguredEndpoint(sql, options.box, options.configured ?? {}), {
        logger,
        what: "postgresql (webhook endpoints)",
        stopped: () => stopped,
        onWaiting: (reason) => (waiting = reason),
      });
      if (configured) {
        logger.info({ endpoint: configured.id, url: configured.url, eventTypes: configured.eventTypes }, "configured endpoint");
        // Said once at start: otherwise a refused address shows only as failed attempts, and each
        // stock's first event holds back its later ones until its attempts are used up.
        const check = await checkWebhookUrl(configured.url, { allowPrivate: options.send.allowPrivate, resolve: options.send.resolve }).catch(() => null);
        if (check && !check.ok) logger.warn({ endpoint: configured.id, url: configured.url, reason: check.reason }, "configured endpoint's address is refused (SSRF policy): every delivery to it will fail; WEBHOOK_ALLOW_PRIVATE_NETWORKS=true allows loopback and private receivers (development only)");
      }
      if (options.send.allowPrivate) logger.warn("WEBHOOK_ALLOW_PRIVATE_NETWORKS is on: webhooks may go to loopback and private addresses (development only)");
      if (!options.box.currentKeyId) logger.warn("WEBHOOK_SECRETS_KEY is unset: webhook secrets are stored in plain text (docs/webhooks.md)");
      await delivery.start();
      await projector.start();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await projector.stop();
      await delivery.stop();
    },
    notReadyReason: async () => waiting ?? projector.notReadyReason(),
  };
}

class ProbeRollback extends Error {}

/** The shared probe lifecycle (shared/projection/probe.ts) through the real log statement, rolled back. */
async function probeLog(sql: postgres.Sql): Promise<void> {
  try {
    await sql.begin(async (tx) => {
      await logEvents(tx as unknown as postgres.Sql, probeEvents());
      throw new ProbeRollback();
    });
  } catch (err) {
    if (!(err instanceof ProbeRollback)) throw err;
  }
}
