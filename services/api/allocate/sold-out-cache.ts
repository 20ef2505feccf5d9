/**
 * Refusals from memory (docs/design.md §12). In a flash sale most allocate requests are doomed:
 * once allocate.lua has answered `sold_out` with 0 available, every later answer is the same until
 * units come back. Each api instance remembers, per stock:
 *   sold_out     at stock version v, until a "released" message with a higher version arrives
 *                (cancel.lua / expire.lua SPUBLISH it) or SOLD_OUT_CACHE_MS pass, whichever first;
 *   not_started  until the start time (measured in Redis time by the script, so clock skew is moot);
 *   ended        for good (a sale never reopens).
 * and answers those refusals without Redis. The time bound backstops a lost message: a buyer may
 * see `sold_out` for at most SOLD_OUT_CACHE_MS (plus one round trip) after a unit came back, and
 * for a few milliseconds (pub/sub latency) when nothing is lost.
 *
 * When an entry runs out, one request (the probe) goes to Redis while the others keep the entry's
 * answer; the probe's answer refreshes or drops the entry. So a stampede on a sold-out stock costs
 * Redis about 1000 / SOLD_OUT_CACHE_MS scripts per second per instance, whatever the request rate.
 *
 * This module is the cache alone: plain state, no I/O. allocator.ts consults and teaches it around
 * each allocation; released-subscriber.ts feeds it the "released" messages.
 */
import type { DomainError } from "../../../shared/domain/errors.ts";
import type { Registry } from "prom-client";
import { prom } from "../../../shared/metrics.ts";

type CachedCode = "sold_out" | "not_started" | "ended";

interface Entry {
  error: DomainError;
  /** sold_out: the stock version of the refusal (a release with a higher version invalidates it). */
  version: number;
  /** performance.now() after which the entry needs a probe. */
  until: number;
  /** performance.now() when the current probe left, or 0 when none is out. */
  probeSince: number;
}

/** A probe that has not come back after this long (a lost reply) lets the next request probe. */
const PROBE_TIMEOUT_MS = 1_000;
const DEFAULT_MAX_STOCKS = 10_000;

export interface RefusalCacheOptions {
  /** Time bound of a sold_out entry (SOLD_OUT_CACHE_MS); 0 turns the cache off. */
  ttlMs: number;
  maxStocks?: number;
  registry?: Registry;
  now?: () => number;
}

export class RefusalCache {
  private readonly entries = new Map<string, Entry>();
  /** Highest "released" version seen per stock, so a late sold_out reply cannot undo a release. */
  private readonly released = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly maxStocks: number;
  private readonly now: () => number;
  private readonly served?: prom.Counter<"code">;
  private readonly servedBound = new Map<string, prom.Counter.Internal>();
  /** Off until the release channel is subscribed (and again while it is down). */
  private live = false;

  constructor(options: RefusalCacheOptions) {
    this.ttlMs = options.ttlMs;
    this.maxStocks = options.maxStocks ?? DEFAULT_MAX_STOCKS;
    this.now = options.now ?? (() => performance.now());
    if (options.registry) {
      this.served = new prom.Counter({
        name: "flashsale_allocate_refusals_from_memory_total",
        help: "Allocate refusals answered from the api's memory, without Redis (docs/design.md §12)",
        labelNames: ["code"],
        registers: [options.registry],
      });
    }
  }

  get enabled(): boolean {
    return this.live && this.ttlMs > 0;
  }

  /** The release channel is (re)subscribed, or lost: either way, what we knew may be stale. */
  setLive(live: boolean): void {
    this.live = live;
    this.entries.clear();
  }

  /** A "units released" message: forget refusals older than it. */
  onReleased(stockId: string, version: number): void {
    if (!((this.released.get(stockId) ?? -1) >= version)) bounded(this.released, stockId, version, this.maxStocks);
    const entry = this.entries.get(stockId);
    if (entry && entry.error.code === "sold_out" && entry.version < version) this.entries.delete(stockId);
  }

  /**
   * The refusal to give without Redis, or null when the request must go to Redis. `probe` is set
   * when this request is the one that refreshes an expired entry (the caller reports back).
   */
  lookup(stockId: string): { error: DomainError } | { probe: boolean } {
    if (!this.enabled) return { probe: false };
    const entry = this.entries.get(stockId);
    if (!entry) return { probe: false };
    const now = this.now();
    if (now < entry.until) return { error: entry.error };
    if (entry.probeSince !== 0 && now - entry.probeSince < PROBE_TIMEOUT_MS) return { error: entry.error };
    entry.probeSince = now;
    return { probe: true };
  }

  /**
   * The cached refusal while it is fresh, without starting a probe (an expired entry is left for
   * `lookup` on the normal path). For routes/allocate-fast-path.ts.
   */
  peek(stockId: string): DomainError | null {
    if (!this.enabled) return null;
    const entry = this.entries.get(stockId);
    return entry !== undefined && this.now() < entry.until ? entry.error : null;
  }

  /** What Redis answered for an allocate of this stock (a refusal, or null for a success). */
  learn(stockId: string, error: DomainError | null): void {
    if (!this.enabled) return;
    const entry = error ? this.entryFor(error) : null;
    if (entry) bounded(this.entries, stockId, entry, this.maxStocks);
    else this.entries.delete(stockId);
  }

  /** A probe that told nothing about the stock (no answer, or an idempotent replay): let the next request try. */
  probeFailed(stockId: string): void {
    const entry = this.entries.get(stockId);
    if (entry) entry.probeSince = 0;
  }

  count(code: string): void {
    if (!this.served) return;
    let child = this.servedBound.get(code);
    if (!child) this.servedBound.set(code, (child = this.served.labels(code)));
    child.inc();
  }

  private entryFor(error: DomainError): Entry | null {
    const now = this.now();
    switch (error.code as CachedCode | string) {
      case "sold_out": {
        const version = error.hint.version;
        // Only "nothing left": with units left, a smaller quantity could still succeed.
        if (version === undefined || error.details.available !== 0) return null;
        if ((this.released.get(String(error.details.stockId)) ?? -1) > version) return null;
        return { error, version, until: now + this.ttlMs, probeSince: 0 };
      }
      case "not_started": {
        const ms = error.hint.startsInMs;
        return ms === undefined ? null : { error, version: 0, until: now + ms, probeSince: 0 };
      }
      case "ended":
        return { error, version: 0, until: Number.POSITIVE_INFINITY, probeSince: 0 };
      default:
        return null;
    }
  }
}

/** Map insert that keeps at most `max` entries, dropping the oldest inserted first. */
function bounded<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value as string);
}
