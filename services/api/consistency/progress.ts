/**
 * What one read store has applied, as far as this api process knows, and the reads waiting for more
 * (read-your-writes: docs/read-side.md). One instance per store per process, shared by every request:
 * a read with a Consistency-Token for (stock, version) asks `waitFor`, which answers at once when the
 * store is known to have it, and otherwise parks the read until `observe` learns it or the read's
 * wait runs out.
 *
 * Progress comes in two ways, never from a loop per request:
 *  - pushed: `observe` (PostgreSQL: the projector's NOTIFY, postgres-progress.ts);
 *  - read, batched: one `read(stockIds)` for all the stocks that have waiters, run (a) right after new
 *    waiters arrive (they may wait for something already applied, e.g. before this process listened)
 *    and (b) every `pollMs` while anyone waits. At most one read is in flight per store; stocks that
 *    gain waiters meanwhile go in the next. Nothing runs while nobody waits.
 * A read that fails (the store is down) is logged and retried at the next tick: waiting reads then
 * run out and answer `stale`; the read itself then fails or not as it always did.
 */
import type { Logger } from "../../../shared/logger.ts";
import type { ConsistencyPoint } from "../../../shared/domain/consistency-token.ts";

export interface StoreProgressOptions {
  /** The versions the store has now for these stocks (a stock it does not have is left out). */
  read(stockIds: readonly string[]): Promise<ReadonlyMap<string, number>>;
  /** While anyone waits, read their stocks this often (the search watermark; PostgreSQL's backstop for a lost NOTIFY). */
  pollMs: number;
  /** How many stocks' versions to remember (most recently raised first kept); default 10,000. */
  maxKnown?: number;
  logger?: Logger;
  /** For logs: "postgresql" or "elasticsearch". */
  store: string;
}

interface Waiter {
  version: number;
  done: (fresh: boolean) => void;
}

const DEFAULT_MAX_KNOWN = 10_000;

export class StoreProgress {
  /** Stock id → highest version the store is known to have; insertion order = least recently raised first. */
  private readonly known = new Map<string, number>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  /** Stocks whose waiters arrived since the last read started. */
  private readonly unchecked = new Set<string>();
  private reading = false;
  private pollTimer: ReturnType<typeof setTimeout> | null = null;
  private soonScheduled = false;
  private readonly maxKnown: number;
  private lastErrorLogMs = 0;
  /** Reads of the store made for waiters (tests and metrics tell pushes from reads). */
  reads = 0;

  constructor(private readonly options: StoreProgressOptions) {
    this.maxKnown = options.maxKnown ?? DEFAULT_MAX_KNOWN;
  }

  /** True when the store is known to have this stock at this version or later. */
  has(point: ConsistencyPoint): boolean {
    return (this.known.get(point.stockId) ?? 0) >= point.version;
  }

  /** The store has this stock at `version` (or later): remember it, and release the reads it satisfies. */
  observe(stockId: string, version: number): void {
    const before = this.known.get(stockId) ?? 0;
    if (version > before) {
      this.known.delete(stockId);
      this.known.set(stockId, version);
      if (this.known.size > this.maxKnown) this.known.delete(this.known.keys().next().value as string);
    }
    const waiting = this.waiters.get(stockId);
    if (!waiting) return;
    for (const waiter of waiting) if (waiter.version <= version) waiter.done(true);
  }

  /** Resolves true once the store has the point, false when `timeoutMs` runs out first. */
  waitFor(point: ConsistencyPoint, timeoutMs: number): Promise<boolean> {
    if (this.has(point)) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let set = this.waiters.get(point.stockId);
      if (!set) this.waiters.set(point.stockId, (set = new Set()));
      const waiting = set;
      const waiter: Waiter = {
        version: point.version,
        done: (fresh) => {
          clearTimeout(timer);
          waiting.delete(waiter);
          if (waiting.size === 0 && this.waiters.get(point.stockId) === waiting) this.waiters.delete(point.stockId);
          resolve(fresh);
        },
      };
      const timer = setTimeout(() => waiter.done(false), Math.max(0, timeoutMs));
      waiting.add(waiter);
      this.unchecked.add(point.stockId);
      this.readSoon();
    });
  }

  /** Check every waiting stock again now (after the notification channel reconnected: it may have missed some). */
  recheck(): void {
    for (const stockId of this.waiters.keys()) this.unchecked.add(stockId);
    this.readSoon();
  }

  /** How many reads wait now (tests, metrics). */
  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  close(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter.done(false);
  }

  /** One read for all new waiters of this turn of the event loop (a burst of reads costs one query). */
  private readSoon(): void {
    if (this.soonScheduled || this.reading) return;
    this.soonScheduled = true;
    setImmediate(() => {
      this.soonScheduled = false;
      void this.readNow(false);
    });
  }

  private schedulePoll(): void {
    if (this.pollTimer || this.waiters.size === 0) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      void this.readNow(true);
    }, this.options.pollMs);
  }

  private async readNow(everyone: boolean): Promise<void> {
    if (this.reading) return;
    const ids = everyone ? [...this.waiters.keys()] : [...this.unchecked].filter((id) => this.waiters.has(id));
    this.unchecked.clear();
    if (ids.length > 0) {
      this.reading = true;
      this.reads++;
      try {
        const versions = await this.options.read(ids);
        for (const [stockId, version] of versions) this.observe(stockId, version);
      } catch (err) {
        // One line per few seconds at most: every waiting read would otherwise log the same outage.
        const now = Date.now();
        if (now - this.lastErrorLogMs > 5_000) {
          this.lastErrorLogMs = now;
          this.options.logger?.warn({ err: (err as Error).message, store: this.options.store }, "consistency progress read failed");
        }
      } finally {
        this.reading = false;
      }
    }
    // Stocks that gained waiters while this read was in flight are read next, at once.
    if ([...this.unchecked].some((id) => this.waiters.has(id))) this.readSoon();
    this.schedulePoll();
  }
}
