/**
 * Graceful shutdown: on SIGTERM or SIGINT, run the worker's stop function once (stop taking work,
 * finish the batch, commit, disconnect), then exit 0. A second signal or a stop that hangs past the
 * deadline exits 1, so an orchestrator is never left waiting.
 */
import type { Logger } from "./logger.ts";

export function onShutdown(logger: Logger, stop: () => Promise<void>, deadlineMs = 20_000): void {
  let stopping = false;
  const handle = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, "second signal during shutdown, exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "shutting down");
    const timer = setTimeout(() => {
      logger.error({ deadlineMs }, "shutdown deadline passed, exiting");
      process.exit(1);
    }, deadlineMs);
    stop().then(
      () => {
        clearTimeout(timer);
        logger.info("stopped cleanly");
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "error during shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => handle("SIGTERM"));
  process.on("SIGINT", () => handle("SIGINT"));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Capped exponential backoff with full jitter: attempt 0 → up to baseMs, doubling up to capMs. */
export function backoffMs(attempt: number, baseMs = 100, capMs = 5_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}
