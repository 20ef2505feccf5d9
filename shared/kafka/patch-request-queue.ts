/**
 * Runtime fix for a kafkajs 2.2.4 bug (tulios/kafkajs#1704, #1751; unmerged fixes #1755, #1768).
 *
 * RequestQueue.scheduleCheckPendingRequests computes `throttledUntil - Date.now()` with
 * throttledUntil = -1 when nothing is throttled, and schedules a timer with that negative delay
 * (run after 1 ms) even when no request is pending; the timer calls checkPendingRequests, which
 * schedules again. So every broker connection spins a ~1 ms timer for ever (~800 wake-ups/s,
 * a few % of a core per connection when idle), and Bun/Node ≥ 23 print a TimeoutNegativeWarning.
 *
 * The fix (the one proposed upstream): with nothing pending and no throttle in effect there is
 * nothing to check, so schedule nothing. A request that cannot go out at once is added to
 * `pending` by push(), which schedules the check itself; a freed in-flight slot triggers
 * checkPendingRequests from fulfillRequest. With requests pending, behaviour is unchanged.
 *
 * Imported for its side effect by shared/kafka/client.ts. kafkajs is pinned exactly; if the
 * internals change shape, the patch does nothing.
 */
// @ts-expect-error kafkajs ships no types for its internals
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";

interface QueueInternals {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
  scheduleCheckPendingRequests(): void;
  __flashsalePatched?: boolean;
}

const proto = (RequestQueue as { prototype?: QueueInternals } | undefined)?.prototype;
if (proto && typeof proto.scheduleCheckPendingRequests === "function" && !proto.__flashsalePatched) {
  const original = proto.scheduleCheckPendingRequests;
  proto.scheduleCheckPendingRequests = function (this: QueueInternals) {
    if (!this.throttleCheckTimeoutId && this.pending.length === 0 && this.throttledUntil - Date.now() <= 0) return;
    original.call(this);
  };
  proto.__flashsalePatched = true;
}

