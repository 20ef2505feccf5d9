/**
 * What one attempt's result means for its delivery (schedule.ts decides: delivered, retry, dead), counted
 * in the metrics and logged, as the record the dispatcher commits to the delivery log.
 */
import type { Logger } from "../../shared/logger.ts";
import type { AttemptRecord, PendingDelivery } from "./delivery-log.ts";
import { failureReason, type NotifierMetrics } from "./metrics.ts";
import { decide, type RetrySchedule } from "./schedule.ts";
import type { SendResult } from "./sender.ts";

export interface AttemptContext {
  metrics: NotifierMetrics;
  labels: { endpoint: string };
  log: Logger;
}

export function attemptRecord(item: PendingDelivery, result: SendResult, schedule: RetrySchedule, { metrics, labels, log }: AttemptContext): AttemptRecord {
  const attemptsDone = item.attempts + 1;
  const decision = decide(schedule, attemptsDone, result);
  const at = new Date();
  metrics.attemptSeconds.observe(labels, result.ms / 1000);
  if (decision.status === "delivered") {
    metrics.deliveries.inc(labels);
    metrics.lagSeconds.observe(labels, Math.max(0, at.getTime() - item.occurredAt) / 1000);
  } else {
    metrics.failures.inc({ ...labels, reason: failureReason(result.status, result.failure) });
    if (decision.status === "dead") {
      metrics.deadLetters.inc(labels);
      log.warn({ eventId: item.eventId, stockId: item.stockId, version: item.version, attempts: attemptsDone, status: result.status, failure: result.failure, error: result.excerpt }, "delivery dead after the last attempt");
    } else if (item.attempts === 0) {
      log.info({ eventId: item.eventId, status: result.status, failure: result.failure, error: result.excerpt, retryInMs: decision.delayMs }, "delivery failed, will retry");
    }
  }
  return {
    eventId: item.eventId,
    status: decision.status,
    httpStatus: result.status,
    error: decision.status === "delivered" ? null : result.excerpt,
    at,
    nextAttemptAt: decision.status === "pending" ? new Date(at.getTime() + decision.delayMs) : null,
  };
}
