/**
 * The delivery lease: one notifier process sends at a time (docs/webhooks.md "The delivery lease").
 *
 * A session advisory lock in PostgreSQL on a connection of its own (a one-connection client). It goes with that connection, so
 * a killed process loses it at once. A *paused* process (SIGSTOP, a long GC pause, a frozen VM) keeps
 * its connection open, though, and would keep the lock for ever; so the lease connection carries
 * `idle_session_timeout` = the window W: PostgreSQL ends the session (and frees the lock) when the
 * holder has sent nothing for W. The holder renews every W/3 with a statement that also sets W.
 *
 * W is derived from what renewals measure, not fixed: a renewal's time is from when it was due to when
 * its answer came (timer lateness, i.e. event-loop stalls and GC pauses, plus the round trip to
 * PostgreSQL), and W = clamp(K × p99 of the last SAMPLES renewals, min, max). A slow database or a
 * busy process widens the window before it costs the lease; a healthy one keeps the floor, so a
 * paused process is replaced within about `min` (+ the standby's poll).
 *
 * Sending is fenced on this side too: `valid()` is true only until (start of the last successful
 * renewal) + W − margin, by the monotonic clock. PostgreSQL's timer starts after that statement
 * ended, so the lease is never believed longer here than PostgreSQL keeps it. A process that wakes
 * after a pause finds `valid()` false before it can send anything, whatever its timers do first.
 */
import postgres from "postgres";
import type { Logger } from "../../shared/logger.ts";

/** Fixed key of the delivery lease ("flashntf" in ASCII). */
const DELIVERY_LEASE_KEY = 0x666c6173686e7466n;
/** W = K × p99 renewal time, within [min, max]. */
export const LEASE_K = 4;
const SAMPLES = 200;

export interface LeaseWindow {
  /** Floor of the window (NOTIFIER_LEASE_MIN). */
  minMs: number;
  /** Ceiling of the window (NOTIFIER_LEASE_MAX). */
  maxMs: number;
}

/** The window for these renewal times (pure; unit-tested). */
export function leaseWindowMs(renewalMs: readonly number[], window: LeaseWindow): number {
  if (renewalMs.length === 0) return window.minMs;
  const sorted = [...renewalMs].sort((a, b) => a - b);
  const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
  return Math.round(Math.min(window.maxMs, Math.max(window.minMs, LEASE_K * p99)));
}

export interface DeliveryLease {
  /** Takes the lease if free, or renews it if held; false when another process holds it (or PostgreSQL is unreachable). */
  tryHold(): Promise<boolean>;
  /** True while this process may send (monotonic clock against the last renewal). */
  valid(): boolean;
  held(): boolean;
  /** The current window and the renewal interval. */
  windowMs(): number;
  renewEveryMs(): number;
  release(): Promise<void>;
}

/**
 * The lease's own single-connection client, opened like `sql` (same server, database and role). Not a
 * connection reserved from the pool: a pooled connection that PostgreSQL ended would go back to the
 * pool dead (postgres.js then fails on it outside any promise), and a client reconnects silently, so
 * every renewal checks that it still runs on the session that took the lock.
 */
function leaseClient(sql: postgres.Sql): postgres.Sql {
  const o = sql.options as unknown as { host: string[]; port: number[]; database: string; user: string; pass: string | null; ssl: unknown };
  return postgres({
    host: o.host as unknown as string,
    port: o.port as unknown as number,
    database: o.database,
    username: o.user,
    password: o.pass ?? undefined,
    ssl: o.ssl as postgres.Options<Record<string, never>>["ssl"],
    max: 1,
    connect_timeout: 5,
    onnotice: () => {},
    connection: { application_name: "notifier-lease" },
  });
}

export function createDeliveryLease(sql: postgres.Sql, window: LeaseWindow, logger: Logger): DeliveryLease {
  let client: postgres.Sql | null = null;
  /** Backend pid of the session that holds the lock; null when not held. */
  let pid: number | null = null;
  let validUntil = 0;
  let w = window.minMs;
  const samples: number[] = [];
  /** When the next renewal is due (monotonic), to measure its lateness. */
  let dueAt = 0;

  const margin = () => Math.min(1_000, w / 4);

  function drop(): void {
    const dead = client;
    client = null;
    pid = null;
    validUntil = 0;
    void dead?.end({ timeout: 0 }).catch(() => {});
  }

  function lost(err: unknown): void {
    logger.warn({ err }, "delivery lease lost or unavailable");
    drop();
  }

  return {
    async tryHold() {
      const started = performance.now();
      try {
        client ??= leaseClient(sql);
        if (pid !== null) {
          const next = leaseWindowMs(samples, window);
          const [row] = await client<{ mine: boolean }[]>`
            SELECT pg_backend_pid() = ${pid} AS mine,
                   CASE WHEN pg_backend_pid() = ${pid} THEN set_config('idle_session_timeout', ${`${next}ms`}, false) END`;
          // A new session (the client reconnected after PostgreSQL ended ours) does not hold the lock.
          if (!row?.mine) throw new Error("the lease session was ended (idle past the lease window, or PostgreSQL restarted)");
          const renewal = performance.now() - Math.min(started, dueAt || started);
          samples.push(renewal);
          if (samples.length > SAMPLES) samples.shift();
          if (next !== w) logger.info({ windowMs: next, previousMs: w, renewalMs: Math.round(renewal) }, "delivery lease window changed");
          w = next;
          validUntil = started + w - margin();
          dueAt = performance.now() + w / 3;
          return true;
        }
        // Only a session that got the lock gets the timeout.
        const [row] = await client<{ locked: boolean; pid: number }[]>`
          SELECT l.locked, pg_backend_pid() AS pid, CASE WHEN l.locked THEN set_config('idle_session_timeout', ${`${w}ms`}, false) END
          FROM (SELECT pg_try_advisory_lock(${DELIVERY_LEASE_KEY.toString()}::bigint) AS locked) l`;
        if (!row?.locked) {
          logger.debug("delivery lease held by another process");
          return false;
        }
        pid = row.pid;
        validUntil = started + w - margin();
        dueAt = performance.now() + w / 3;
        logger.info({ windowMs: w }, "delivery lease taken: this process delivers");
        return true;
      } catch (err) {
        // The lease session is gone (so is the lock: PostgreSQL ended an idle session, or it is down).
        if (pid !== null) lost(err);
        else {
          logger.debug({ err }, "delivery lease: cannot try");
          drop();
        }
        return false;
      }
    },
    valid: () => pid !== null && performance.now() < validUntil,
    held: () => pid !== null,
    windowMs: () => w,
    renewEveryMs: () => Math.max(50, Math.floor(w / 3)),
    async release() {
      const c = client;
      const held = pid !== null;
      client = null;
      pid = null;
      validUntil = 0;
      if (!c) return;
      if (held) await c`SELECT pg_advisory_unlock(${DELIVERY_LEASE_KEY.toString()}::bigint)`.catch(() => {});
      await c.end({ timeout: 1 }).catch(() => {});
    },
  };
}
