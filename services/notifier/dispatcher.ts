/**
 * The delivery loop of one endpoint. The log in PostgreSQL is the truth; the loop keeps the pending
 * deliveries of its endpoint in memory as one queue per stock, sorted by version, fed three ways: a
 * full load at start, the consumer handing over what it has just logged (offer), and a periodic
 * re-scan that picks up what other processes logged and re-sent dead letters.
 *
 * Order: only a stock's head (its lowest pending version) is ever sent, and the stock stays "in
 * flight" until the attempt's result is committed. So a receiver never gets a version while an
 * earlier one is still being retried; the stock's next version waits behind it, while other stocks
 * (up to `concurrency` requests at once) and other endpoints (their own loops) go on. The in-memory
 * head is the true head: a stock's events are logged in version order by one consumer at a time, so
 * when a version is visible, every earlier pending one is too.
 *
 * Crash safety: a send whose result was not committed is sent again after a restart, with the same
 * webhook-id (the event id). If recording fails (PostgreSQL down), results stay in memory and are
 * retried; their stocks stay in flight, so nothing is re-sent meanwhile and order holds.
 */
import type postgres from "postgres";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Endpoint } from "../../shared/webhooks/endpoints.ts";
import { eventBodies, pendingDeliveries, recordAttempts, type AttemptRecord, type PendingDelivery } from "./delivery-log.ts";
import { failureReason, type NotifierMetrics } from "./metrics.ts";
import { decide, type RetrySchedule } from "./schedule.ts";
import { sendWebhook, signedTarget, type SendOptions } from "./sender.ts";

/** Pending deliveries above which bodies are not kept in memory. */
const MAX_BODIES_HELD = 20_000;

export interface DispatcherOptions {
  sql: postgres.Sql;
  endpoint: Endpoint;
  schedule: RetrySchedule;
  send: SendOptions;
  concurrency: number;
  /** How often waiting retries are checked for being due. */
  pollIntervalMs: number;
  /** How often the log is re-scanned for pending deliveries this loop has not seen. */
  rescanIntervalMs: number;
  logger: Logger;
  metrics: NotifierMetrics;
}

export interface Dispatcher {
  readonly endpoint: Endpoint;
  /** Deliveries just committed to the log by this process's consumer. */
  offer(deliveries: readonly PendingDelivery[]): void;
  /** Pending deliveries held in memory. */
  size(): number;
  /** Stop taking work, let the sends in flight finish, record them, return. */
  stop(): Promise<void>;
}

export function startDispatcher(options: DispatcherOptions): Dispatcher {
  const { sql, endpoint, schedule, logger, metrics } = options;
  const log = logger.child({ endpoint: endpoint.id });
  const target = signedTarget(endpoint.url, endpoint.secret);
  const labels = { endpoint: endpoint.id };

  const queues = new Map<string, PendingDelivery[]>();
  const known = new Set<string>();
  const inFlight = new Set<string>();
  const ready: string[] = [];
  const readySet = new Set<string>();
  /** Stocks whose head waits for a retry, with its due time. */
  const waiting = new Map<string, number>();
  const toRecord: { stockId: string; item: PendingDelivery; record: AttemptRecord }[] = [];
  let sending = 0;
  let stopping = false;
  let flushing: Promise<void> | null = null;
  /**
   * Deliveries finished (delivered or dead) while a re-scan may be reading: its snapshot can still
   * show them pending, and they must not be taken again. Keyed by event id, valued by a counter.
   */
  const completed = new Map<string, number>();
  let completions = 0;

  /** Puts a stock where its head belongs: ready now, waiting for a retry, or nowhere (empty, in flight). */
  function place(stock: string): void {
    if (inFlight.has(stock) || readySet.has(stock)) return;
    const head = queues.get(stock)?.[0];
    if (!head) {
      queues.delete(stock);
      waiting.delete(stock);
      return;
    }
    if (head.dueAt <= Date.now()) {
      waiting.delete(stock);
      readySet.add(stock);
      ready.push(stock);
    } else {
      waiting.set(stock, head.dueAt);
    }
  }

  function add(items: readonly PendingDelivery[]): void {
    const touched = new Set<string>();
    for (const item of items) {
      if (known.has(item.eventId)) continue;
      known.add(item.eventId);
      // Bodies handed over by the consumer are kept while the backlog is small; a large one reads them back when sending.
      if (known.size > MAX_BODIES_HELD) delete item.body;
      let queue = queues.get(item.stockId);
      if (!queue) queues.set(item.stockId, (queue = []));
      // Nearly always an append (events come in version order); a re-sent dead letter goes before later versions.
      let at = queue.length;
      while (at > 0 && queue[at - 1]!.version > item.version) at--;
      // Never in front of the head in flight: it is being sent and leaves the queue when recorded.
      if (at === 0 && inFlight.has(item.stockId) && queue.length > 0) at = 1;
      queue.splice(at, 0, item);
      touched.add(item.stockId);
    }
    for (const stock of touched) place(stock);
    pump();
  }

  function pump(): void {
    if (stopping) return;
    const batch: PendingDelivery[] = [];
    while (sending + batch.length < options.concurrency && ready.length > 0) {
      const stock = ready.shift()!;
      readySet.delete(stock);
      const head = queues.get(stock)?.[0];
      if (!head || inFlight.has(stock)) continue;
      if (head.dueAt > Date.now()) {
        place(stock);
        continue;
      }
      inFlight.add(stock);
      batch.push(head);
    }
    if (batch.length === 0) return;
    sending += batch.length;
    void sendBatch(batch);
  }

  async function sendBatch(batch: PendingDelivery[]): Promise<void> {
    let bodies = new Map<string, string>();
    const missing = batch.filter((b) => b.body === undefined).map((b) => b.eventId);
    for (let attempt = 0; missing.length > 0; attempt++) {
      try {
        bodies = await eventBodies(sql, missing);
        break;
      } catch (err) {
        if (attempt === 0 || attempt % 10 === 0) log.warn({ err }, "cannot read event bodies, retrying");
        await sleep(backoffMs(attempt, 100, 5_000));
      }
    }
    await Promise.all(
      batch.map(async (item) => {
        try {
          await deliver(item, item.body ?? bodies.get(item.eventId));
        } catch (err) {
          log.error({ err, eventId: item.eventId }, "delivery attempt failed unexpectedly");
        } finally {
          sending -= 1;
          void flush();
        }
      }),
    );
  }

  async function deliver(item: PendingDelivery, body: string | undefined): Promise<void> {
    if (body === undefined) throw new Error(`event ${item.eventId} has no body in webhook_events`);
    const result = await sendWebhook(target, { id: item.eventId, body }, options.send);
    const attemptsDone = item.attempts + 1;
    const decision = decide(schedule, attemptsDone, result);
    const at = new Date();
    metrics.attemptSeconds.observe(labels, result.ms / 1000);
    if (decision.status === "delivered") {
      metrics.deliveries.inc(labels);
      metrics.lagSeconds.observe(labels, Math.max(0, at.getTime() - item.occurredAt) / 1000);
    } else {
      metrics.failures.inc({ ...labels, reason: failureReason(result.status, result.failure) });
      if (decision.status === "dead") {
        metrics.deadLetters.inc(labels);
        log.warn({ eventId: item.eventId, stockId: item.stockId, version: item.version, attempts: attemptsDone, status: result.status }, "delivery dead after the last attempt");
      } else if (item.attempts === 0) {
        log.info({ eventId: item.eventId, status: result.status, failure: result.failure, retryInMs: decision.delayMs }, "delivery failed, will retry");
      }
    }
    toRecord.push({
      stockId: item.stockId,
      item,
      record: {
        eventId: item.eventId,
        status: decision.status,
        httpStatus: result.status,
        error: decision.status === "delivered" ? null : result.excerpt,
        at,
        nextAttemptAt: decision.status === "pending" ? new Date(at.getTime() + decision.delayMs) : null,
      },
    });
  }

  /** Commits the results gathered so far; only then do their stocks move on. */
  function flush(): Promise<void> {
    flushing ??= (async () => {
      for (let attempt = 0; toRecord.length > 0; ) {
        const batch = toRecord.splice(0, toRecord.length);
        try {
          await recordAttempts(sql, endpoint.id, batch.map((b) => b.record));
          attempt = 0;
        } catch (err) {
          toRecord.unshift(...batch);
          const wait = backoffMs(attempt++, 100, 5_000);
          if (attempt === 1 || attempt % 10 === 0) log.warn({ err, wait }, "cannot record delivery results, retrying (their stocks wait)");
          await sleep(wait);
          continue;
        }
        for (const { stockId, item, record } of batch) {
          const queue = queues.get(stockId);
          if (record.status === "pending") {
            item.attempts += 1;
            item.dueAt = record.nextAttemptAt!.getTime();
          } else {
            const at = queue?.indexOf(item) ?? -1;
            if (at >= 0) queue!.splice(at, 1);
            known.delete(item.eventId);
            completed.set(item.eventId, completions++);
          }
          inFlight.delete(stockId);
          place(stockId);
        }
        pump();
      }
    })().finally(() => {
      flushing = null;
    });
    return flushing;
  }

  async function rescan(): Promise<void> {
    const since = completions;
    const rows = await pendingDeliveries(sql, endpoint.id);
    add(rows.filter((r) => !completed.has(r.eventId)));
    // Completions from before this scan cannot show up as pending in later scans; newer ones are kept for one more.
    for (const [id, n] of completed) if (n < since) completed.delete(id);
  }

  const loop = (async () => {
    let lastScan = 0;
    let attempt = 0;
    while (!stopping) {
      if (Date.now() - lastScan >= options.rescanIntervalMs) {
        try {
          await rescan();
          lastScan = Date.now();
          attempt = 0;
        } catch (err) {
          if (attempt++ % 10 === 0) log.warn({ err }, "cannot read the delivery log, retrying");
        }
      }
      const now = Date.now();
      for (const [stock, dueAt] of waiting) if (dueAt <= now) place(stock);
      pump();
      await sleep(options.pollIntervalMs);
    }
  })();

  return {
    endpoint,
    offer: (deliveries) => add(deliveries),
    size: () => known.size,
    async stop() {
      stopping = true;
      await loop;
      // Sends in flight end within the attempt timeout; their results are recorded before we return.
      while (sending > 0) await sleep(10);
      while (toRecord.length > 0 || flushing) await (flushing ?? flush());
    },
  };
}
