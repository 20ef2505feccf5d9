/**
 * Refresh after write, coalesced (PROJECTOR_SEARCH_REFRESH=after-write). A document is searchable
 * only after a refresh that started after it was indexed. With the index's refresh_interval alone,
 * a write waits 0..interval for the next scheduled refresh, then the refresh itself (~100 ms on two
 * busy cores): p99 ≈ interval + refresh. Here the projector asks for a refresh right after each bulk
 * ack instead; at most one runs at a time, and writes acked while one runs share the next. A write
 * then waits at most the refresh in flight + its own, and the projector knows when its documents
 * became visible (the commit_to_visible stage, which it cannot see with the interval alone).
 *
 * The cost is refreshes back to back while writes keep coming (up to ~1/refresh-time per second);
 * `minSpacingMs` bounds that rate. The index keeps its refresh_interval as a backstop for writers
 * that do not ask (the rebuild, a repair).
 */
import type { Client } from "@elastic/elasticsearch";

export interface Refresher {
  /** Resolves when a refresh that started after this call has completed (rejects if it failed). */
  request(): Promise<void>;
}

export function createRefresher(es: Client, index: string, options: { minSpacingMs?: number } = {}): Refresher {
  const minSpacingMs = options.minSpacingMs ?? 0;
  let running: Promise<void> | null = null;
  /** False while `running` still waits out the spacing: a write acked now is covered by it. */
  let runningStarted = false;
  let next: Promise<void> | null = null;
  let lastStart = 0;

  function start(): Promise<void> {
    const wait = Math.max(0, lastStart + minSpacingMs - Date.now());
    runningStarted = wait === 0;
    const run = (wait > 0 ? Bun.sleep(wait) : Promise.resolve()).then(async () => {
      lastStart = Date.now();
      runningStarted = true;
      await es.indices.refresh({ index });
    });
    running = run;
    const done = () => {
      if (running === run) running = null;
    };
    run.then(done, done);
    return run;
  }

  return {
    request() {
      if (!running) return start();
      if (!runningStarted) return running; // it has not begun: it will see this write
      // One is running (it may have started before the caller's write): the caller needs the next.
      if (!next) {
        const after = running.then(
          () => undefined,
          () => undefined,
        );
        next = after.then(() => {
          next = null;
          // Another caller may have started one meanwhile: it started after our writes too.
          return running ?? start();
        });
      }
      return next;
    },
  };
}
