/** A stock's queue in a dispatcher's window (dispatcher.ts): its pending deliveries held in memory, by version; the loop's wait. */
import type { PendingDelivery } from "./delivery-log.ts";

/**
 * The window's bounds: stocks held, and versions read per stock. 1,024 × 8 = 8,192 deliveries at
 * most (plus what the consumer appends to stocks held in full, capped at MAX_HELD), a few MB; 1,024
 * stocks keep 256 requests in flight (the largest WEBHOOK_CONCURRENCY) with room for retries.
 */
export const MAX_STOCKS_HELD = 1_024;
export const PER_STOCK = 8;
export const MAX_HELD = MAX_STOCKS_HELD * PER_STOCK;

export interface StockQueue {
  /** Pending deliveries, by version; the first is the head. */
  items: PendingDelivery[];
  /** True when `items` holds every pending delivery of the stock (the last read found fewer than PER_STOCK). */
  complete: boolean;
}

/** Inserts one delivery into its stock's queue (by version; never in front of a head in flight). */
export function insertByVersion(queue: StockQueue, item: PendingDelivery, headInFlight: boolean): void {
  const items = queue.items;
  let at = items.length;
  // Nearly always an append (events come in version order); a re-sent dead letter goes before later versions.
  while (at > 0 && items[at - 1]!.version > item.version) at--;
  if (at === 0 && headInFlight && items.length > 0) at = 1;
  items.splice(at, 0, item);
}

/** Waits `ms`, or less if the function handed to `setWake` is called first (it is cleared, null, when the wait ends). */
export function sleepUnlessWoken(ms: number, setWake: (wake: (() => void) | null) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      setWake(null);
      resolve();
    }
    setWake(done);
  });
}
