/**
 * What happens after an attempt (pure logic, unit-tested): 2xx is delivered; anything else (a 3xx, as
 * redirects are not followed; 4xx; 5xx; no response) waits for the next slot of a bounded schedule —
 * base·2^(n-1), capped, ±20 % jitter, never sooner than the receiver's Retry-After (capped too) — and
 * is dead once the attempts are used up.
 */

export interface RetrySchedule {
  baseMs: number;
  maxMs: number;
  /** Attempts in all, the first one included. */
  maxAttempts: number;
}

export interface AttemptOutcome {
  /** HTTP status, or null when there was no response (refused, reset, timeout). */
  status: number | null;
  /** From Retry-After, when the response had one. */
  retryAfterMs: number | null;
}

export type Decision = { status: "delivered" } | { status: "pending"; delayMs: number } | { status: "dead" };

const JITTER = 0.2;

/** Wait before attempt `attemptsDone + 1` (attemptsDone ≥ 1). */
export function backoffDelayMs(schedule: RetrySchedule, attemptsDone: number, random: () => number = Math.random): number {
  const exponential = schedule.baseMs * 2 ** Math.min(Math.max(attemptsDone - 1, 0), 40);
  const capped = Math.min(schedule.maxMs, exponential);
  // Spread retries of many deliveries that failed together (a receiver coming back is not stampeded).
  return Math.max(0, Math.round(capped * (1 - JITTER + 2 * JITTER * random())));
}

const isSuccess = (status: number | null): boolean => status !== null && status >= 200 && status < 300;

/** After `attemptsDone` attempts (this one included), with this one's outcome. */
export function decide(schedule: RetrySchedule, attemptsDone: number, outcome: AttemptOutcome, random: () => number = Math.random): Decision {
  if (isSuccess(outcome.status)) return { status: "delivered" };
  if (attemptsDone >= schedule.maxAttempts) return { status: "dead" };
  const backoff = backoffDelayMs(schedule, attemptsDone, random);
  // Retry-After is honoured, but bounded by the schedule's cap: a receiver cannot park a delivery for ever.
  const delayMs = outcome.retryAfterMs === null ? backoff : Math.max(backoff, Math.min(outcome.retryAfterMs, schedule.maxMs));
  return { status: "pending", delayMs };
}

/** Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; null when absent or malformed. */
export function parseRetryAfter(value: string | null | undefined, nowMs: number = Date.now()): number | null {
  if (value === null || value === undefined) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return null;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}
