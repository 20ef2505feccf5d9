/**
 * Child-process bookkeeping for tests that start binaries and kill them: whatever a test started is
 * gone when it ends, even when an assertion failed half-way (a leftover relay or projector would
 * keep consuming the next test's topic).
 */
import { afterAll } from "bun:test";
import type { Subprocess } from "bun";
import { spawnService } from "../../shared/dev/env.ts";

/** Kills `child` if it still runs (SIGCONT first: a frozen process would not die until then) and waits for its exit. */
export async function killChild(child: Subprocess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  }
  await child.exited;
}

/**
 * The processes of one service binary that a test file starts again and again (kill -9, restart),
 * each through spawnService with `env()` (read at each start: a fixture's database exists only
 * from its beforeAll on). `adminPort` is the latest one's. An afterAll kills whatever still runs.
 */
export function serviceProcesses(name: string, env: () => Record<string, string>): { start(): Subprocess; readonly adminPort: number } {
  const children: Subprocess[] = [];
  let adminPort = 0;
  afterAll(async () => {
    for (const child of children) await killChild(child);
  });
  return {
    start() {
      const started = spawnService(name, env());
      adminPort = started.adminPort;
      children.push(started.child);
      return started.child;
    },
    get adminPort() {
      return adminPort;
    },
  };
}
