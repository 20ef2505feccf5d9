/**
 * API_WORKERS=N (docs/design.md §12): N api processes on one port. Each binds PORT with SO_REUSEPORT
 * (Bun.serve `reusePort`, Linux), and the kernel spreads new connections over them. The processes
 * share nothing but Redis: each has its own refusal cache (fed by the same pub/sub), rate-limit
 * buckets and metrics registry.
 *
 * The process started by the user is a small supervisor: it starts the workers (the same program
 * with API_WORKER_INDEX set), passes SIGTERM/SIGINT on, and exits when they have; if one worker dies
 * on its own, it stops the others and exits with that code, so whatever started it (up.sh, compose,
 * systemd) sees the failure and restarts the whole group.
 */
import type { Logger } from "../../shared/logger.ts";

export const workerIndex = (): number | null => {
  const raw = process.env.API_WORKER_INDEX;
  return raw === undefined || raw === "" ? null : Number(raw);
};

/**
 * In a worker: exit when the supervisor is gone (SIGKILLed, so it could not pass a signal on), so no
 * orphan keeps serving the port. Checked once a second; the timer does not keep the process alive.
 */
export function exitWithSupervisor(logger: Logger): void {
  const supervisor = process.ppid;
  setInterval(() => {
    if (process.ppid !== supervisor) {
      logger.error({ supervisor }, "api supervisor is gone; exiting");
      process.exit(1);
    }
  }, 1_000).unref();
}

export async function superviseWorkers(count: number, logger: Logger): Promise<never> {
  // Same runtime, same runtime flags (e.g. --max-http-header-size), same entry point.
  const cmd = [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
  let stopping = false;
  const children = Array.from({ length: count }, (_, i) =>
    Bun.spawn(cmd, { env: { ...process.env, API_WORKER_INDEX: String(i) }, stdio: ["ignore", "inherit", "inherit"] }),
  );
  logger.info({ workers: count, pids: children.map((c) => c.pid) }, "api workers started");

  const stopAll = (signal: NodeJS.Signals) => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      stopping = true;
      stopAll("SIGTERM");
    });
  }
  const codes = await Promise.all(
    children.map(async (child, i) => {
      const code = await child.exited;
      if (!stopping) {
        logger.error({ worker: i, pid: child.pid, code, signal: child.signalCode }, "api worker exited on its own; stopping the others");
        stopping = true;
        stopAll("SIGTERM");
      }
      return code;
    }),
  );
  const failed = codes.find((c) => c !== 0);
  logger.info({ codes }, "api workers stopped");
  process.exit(failed ?? 0);
}
