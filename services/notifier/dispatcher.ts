/**
 * The delivery loop of one endpoint. The log in PostgreSQL is the truth; the loop holds a bounded
 * window of it in memory: at most MAX_STOCKS_HELD stocks, each with its PER_STOCK lowest pending
 * versions (a stock's queue, sorted by version), so memory is flat however large the backlog
 * (test/notifier-backlog.test.ts: 200,000 pending). The window is fed four ways:
 *  - a page: the next stocks with pending deliveries after a cursor (by stock id, wrapping around at
 *    the end), taken whenever there is room, and at least every re-scan interval;
 *  - a refill: a stock whose held versions are all done but which had more pending reads its next ones;
 *  - the consumer handing over what it has just logged (offer): appended to a stock held in full, or,
 *    for a stock not held, a prompt refill of that stock when there is room;
 *  - a refresh of the held stocks every re-scan interval (what other processes logged, re-sent dead
 *    letters). Every read is done by the loop, one at a time.
 *
 * Order: only a stock's head (its lowest pending version) is ever sent, and the stock stays "in
 * flight" until the receiver acknowledged it (its next version may then go while the result is being
 * committed) or, for a failed attempt, until its retry time is committed. So a receiver never gets a
 * version while an earlier one is still being retried; other stocks (up to `concurrency` requests at
 * once) and other endpoints (their own loops) go on. The held head is the true head: a stock enters
 * the window only through a read of its lowest pending versions, and later versions are appended
 * only to a stock held in full (its events are logged in version order by one consumer at a time;
 * after our consumer takes over partitions, none is held in full until read again: invalidate()).
 *
 * Crash safety: a send whose result was not committed is sent again after a restart, with the same
 * webhook-id (the event id), after any later version it let go: a duplicate of an acknowledged
 * version, never one out of order. Until committed, a delivered event stays `known`, so no read brings
 * it back. If recording fails (PostgreSQL down), results stay in memory and are retried (a failed
 * attempt's stock stays in flight). Nothing is sent unless `mayDeliver()` (lease.ts) holds right before it.
 */
import type postgres from "postgres";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Endpoint } from "../../shared/webhooks/endpoints.ts";
import { eventBodiesRetrying, pendingPage, pendingPrefixes, recordAttempts, type AttemptRecord, type PendingDelivery } from "./delivery-log.ts";
import type { NotifierMetrics } from "./metrics.ts";
import { attemptRecord } from "./attempt.ts";
import { insertByVersion, MAX_HELD, MAX_STOCKS_HELD, PER_STOCK, sleepUnlessWoken, type StockQueue } from "./stock-queue.ts";
import type { RetrySchedule } from "./schedule.ts";
import { sendWebhook, signedTarget, type SendOptions } from "./sender.ts";

const REFILL_CHUNK = 256; // stocks per refill statement

export interface DispatcherOptions {
  sql: postgres.Sql;
  endpoint: Endpoint;
  schedule: RetrySchedule;
  send: SendOptions;
  concurrency: number;
  /** How often waiting retries are checked for being due. */
  pollIntervalMs: number;
  /** How often the held stocks are re-read and a page is taken even without room appearing. */
  rescanIntervalMs: number;
  logger: Logger;
  metrics: NotifierMetrics;
  /** True while this process holds the delivery lease (checked before every request). */
  mayDeliver: () => boolean;
}

export interface Dispatcher {
  readonly endpoint: Endpoint;
  /** Deliveries just committed to the log by this process's consumer. */
  offer(deliveries: readonly PendingDelivery[]): void;
  /** The consumer took over partitions another process logged: held stocks may lack versions logged there, so none is complete until read again. */
  invalidate(): void;
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

  const stocks = new Map<string, StockQueue>();
  const known = new Set<string>();
  const inFlight = new Set<string>();
  const ready: string[] = [];
  const readySet = new Set<string>();
  /** Stocks whose head waits for a retry, with its due time. */
  const waiting = new Map<string, number>();
  /** Results not yet committed; `released`: the stock moved on at once (delivered), not at the commit. */
  const toRecord: { stockId: string; item: PendingDelivery; record: AttemptRecord; released: boolean }[] = [];
  /** Held stocks whose queue ran empty while more were pending; stocks offered while not held. */
  const refill = new Set<string>();
  const wanted = new Set<string>();
  let cursor = "";
  let sending = 0;
  let stopping = false;
  let flushing: Promise<void> | null = null;
  let wake: (() => void) | null = null;
  /**
   * Deliveries finished (delivered or dead) while a read may be running: its snapshot can still show
   * them pending, and they must not be taken again. Keyed by event id, valued by a counter.
   */
  const completed = new Map<string, number>();
  let completions = 0;
  /** offer() calls so far, their count when the read in progress began (reads are serialized), and per stock at its last passed-over offer. */
  let offers = 0;
  let readStartedAtOffer = 0;
  const passedOver = new Map<string, number>();
  const heldPassed = new Map<string, { item: PendingDelivery; at: number }[]>();

  const nudge = () => wake?.();

  /** Puts a stock where its head belongs: ready now, waiting for a retry, or nowhere (empty, in flight). */
  function place(stock: string): void {
    if (inFlight.has(stock) || readySet.has(stock)) return;
    const head = stocks.get(stock)?.items[0];
    if (!head) {
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

  function insert(queue: StockQueue, item: PendingDelivery): void {
    known.add(item.eventId);
    insertByVersion(queue, item, inFlight.has(item.stockId));
  }

  /**
   * What a read of the log returned: for each stock, its lowest pending versions (up to `perStock`).
   * Held stocks and new ones alike take the rows they do not know; `complete` follows the read.
   */
  function merge(rows: readonly PendingDelivery[], read: readonly string[], perStock: number): void {
    const byStock = new Map<string, PendingDelivery[]>(read.map((s) => [s, []]));
    for (const r of rows) byStock.get(r.stockId)?.push(r);
    for (const [stock, list] of byStock) {
      let queue = stocks.get(stock);
      if (!queue) {
        if (list.length === 0) continue;
        stocks.set(stock, (queue = { items: [], complete: false }));
      }
      // Offers passed over since this read began may be newer than its snapshot: if the read saw the
      // whole rest of the stock, they are added (held stocks keep a few); otherwise, or if more were
      // passed over, the stock is not complete (else the next version offered would go first).
      const during = (heldPassed.get(stock) ?? []).filter((p) => p.at > readStartedAtOffer).map((p) => p.item);
      heldPassed.delete(stock);
      const whole = list.length < perStock; // a full read is never the whole rest, whatever was passed over meanwhile
      if (whole) list.push(...during);
      for (const item of list) if (!known.has(item.eventId) && !completed.has(item.eventId)) insert(queue, item);
      queue.complete = whole && (passedOver.get(stock) ?? 0) <= readStartedAtOffer;
      if (queue.complete) passedOver.delete(stock);
      refill.delete(stock);
      settle(stock);
    }
  }

  /** A stock with nothing held leaves the window when nothing more is pending, or waits for a refill. */
  function settle(stock: string): void {
    const queue = stocks.get(stock);
    if (!queue) return;
    if (queue.items.length === 0 && !inFlight.has(stock)) {
      if (queue.complete) {
        stocks.delete(stock);
        waiting.delete(stock);
        heldPassed.delete(stock);
      } else refill.add(stock);
      nudge();
      return;
    }
    place(stock);
  }

  function offer(items: readonly PendingDelivery[]): void {
    offers += 1;
    for (const item of items) {
      if (known.has(item.eventId)) continue;
      const queue = stocks.get(item.stockId);
      if (!queue) {
        // Earlier versions of it may be pending too: only a read of its lowest versions may bring it in.
        if (stocks.size + wanted.size < MAX_STOCKS_HELD) wanted.add(item.stockId);
        passedOver.set(item.stockId, offers);
        continue;
      }
      if (!queue.complete) {
        const passed = heldPassed.get(item.stockId) ?? [];
        if (passed.length < PER_STOCK) heldPassed.set(item.stockId, [...passed, { item, at: offers }]);
        else passedOver.set(item.stockId, offers); // its next refill reads them
        continue;
      }
      if (known.size >= MAX_HELD) {
        queue.complete = false;
        continue;
      }
      insert(queue, item);
      place(item.stockId);
    }
    if (wanted.size > 0) nudge();
    pump();
  }

  function invalidate(): void {
    offers += 1; // like an offer passing every held stock over: a read begun before cannot make one complete
    for (const [stock, queue] of stocks) {
      queue.complete = false;
      passedOver.set(stock, offers);
      settle(stock);
    }
    nudge();
  }

  function pump(): void {
    if (stopping || !options.mayDeliver()) return;
    const batch: PendingDelivery[] = [];
    while (sending + batch.length < options.concurrency && ready.length > 0) {
      const stock = ready.shift()!;
      readySet.delete(stock);
      const head = stocks.get(stock)?.items[0];
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
    const bodies = await eventBodiesRetrying(sql, batch.filter((b) => b.body === undefined).map((b) => b.eventId), log);
    await Promise.all(
      batch.map(async (item) => {
        try {
          // The lease is checked again right before the request: the body read may have taken a while.
          if (!options.mayDeliver()) {
            inFlight.delete(item.stockId);
            place(item.stockId);
            return;
          }
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
    log.debug({ eventId: item.eventId, stockId: item.stockId, version: item.version }, "sending");
    const result = await sendWebhook(target, { id: item.eventId, body }, options.send);
    const record = attemptRecord(item, result, schedule, { metrics, labels, log });
    // Delivered: the stock's next version may go now, while this result is recorded (header, "Order").
    const released = record.status === "delivered";
    toRecord.push({ stockId: item.stockId, item, record, released });
    if (released) {
      const queue = stocks.get(item.stockId);
      const at = queue?.items.indexOf(item) ?? -1;
      if (at >= 0) queue!.items.splice(at, 1);
      inFlight.delete(item.stockId);
      settle(item.stockId);
      pump();
    }
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
        for (const { stockId, item, record, released } of batch) {
          if (released) {
            // Left its queue when it was delivered; the stock may have a later version in flight now.
            known.delete(item.eventId);
            completed.set(item.eventId, completions++);
            continue;
          }
          const queue = stocks.get(stockId);
          if (record.status === "pending") {
            item.attempts += 1;
            item.dueAt = record.nextAttemptAt!.getTime();
          } else {
            const at = queue?.items.indexOf(item) ?? -1;
            if (at >= 0) queue!.items.splice(at, 1);
            known.delete(item.eventId);
            completed.set(item.eventId, completions++);
          }
          inFlight.delete(stockId);
          settle(stockId);
        }
        pump();
      }
    })().finally(() => {
      flushing = null;
    });
    return flushing;
  }

  /** One read of the log, with the completions that raced it filtered out (reads are serialized in the loop). */
  async function read(work: () => Promise<void>): Promise<void> {
    const since = completions;
    readStartedAtOffer = offers;
    await work();
    // Completions from before this read cannot show up as pending in later reads; newer ones are kept for one more.
    for (const [id, n] of completed) if (n < since) completed.delete(id);
  }

  async function refillStocks(): Promise<void> {
    const room = MAX_STOCKS_HELD - stocks.size;
    const chosen = [...refill, ...[...wanted].filter((s) => !stocks.has(s)).slice(0, Math.max(0, room))].slice(0, REFILL_CHUNK);
    wanted.clear();
    if (chosen.length === 0) return;
    for (const s of chosen) refill.delete(s);
    await read(async () => merge(await pendingPrefixes(sql, endpoint.id, chosen, PER_STOCK), chosen, PER_STOCK));
  }

  /** The next stocks after the cursor, as many as there is room for. Returns whether the scan reached the end. */
  async function takePage(): Promise<boolean> {
    const room = MAX_STOCKS_HELD - stocks.size;
    if (room <= 0) return false;
    let reachedEnd = false;
    await read(async () => {
      const page = await pendingPage(sql, endpoint.id, { after: cursor, stocks: room, perStock: PER_STOCK, skip: [...stocks.keys()] });
      merge(page.deliveries, [...new Set(page.deliveries.map((d) => d.stockId))], PER_STOCK);
      reachedEnd = page.last === null;
      cursor = page.last ?? "";
    });
    return reachedEnd;
  }

  /** Re-reads the held stocks: what other processes logged, re-sent dead letters. */
  async function refreshHeld(): Promise<void> {
    const held = [...stocks.keys()];
    for (let i = 0; i < held.length; i += REFILL_CHUNK) {
      const chunk = held.slice(i, i + REFILL_CHUNK);
      await read(async () => merge(await pendingPrefixes(sql, endpoint.id, chunk, PER_STOCK), chunk.filter((s) => stocks.has(s)), PER_STOCK));
    }
  }

  const loop = (async () => {
    let lastRescan = 0;
    let pageAfter = 0;
    let attempt = 0;
    while (!stopping) {
      try {
        if (refill.size > 0 || wanted.size > 0) await refillStocks();
        const now = Date.now();
        if (now - lastRescan >= options.rescanIntervalMs) {
          await refreshHeld();
          const reachedEnd = await takePage();
          lastRescan = Date.now();
          // More pages wait behind this one: take them as room appears, not only at the next re-scan.
          pageAfter = reachedEnd ? Infinity : 0;
        } else if (pageAfter <= now && stocks.size < MAX_STOCKS_HELD) {
          if (await takePage()) pageAfter = Infinity;
        }
        attempt = 0;
      } catch (err) {
        if (attempt++ % 10 === 0) log.warn({ err }, "cannot read the delivery log, retrying");
      }
      const now = Date.now();
      for (const [stock, dueAt] of waiting) if (dueAt <= now) place(stock);
      pump();
      // A refill waiting goes at once, unless the log could not be read (then the poll interval, at least).
      if (attempt > 0 || (refill.size === 0 && wanted.size === 0)) {
        await sleepUnlessWoken(options.pollIntervalMs, (w) => (wake = w));
      }
    }
  })();

  return {
    endpoint,
    offer,
    invalidate,
    size: () => known.size,
    async stop() {
      stopping = true;
      nudge();
      await loop;
      // Sends in flight end within the attempt timeout; their results are recorded before we return.
      while (sending > 0) await sleep(10);
      while (toRecord.length > 0 || flushing) await (flushing ?? flush());
    },
  };
}
