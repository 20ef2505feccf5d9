/**
 * Retention (`bun run retention`, docs/webhooks.md "Retention"): what grows for ever is deleted by
 * age, in batches of `batch` rows (one short statement each, so no long lock and no huge WAL burst;
 * a pause between batches leaves room for the projectors and the notifier).
 *
 * - Webhook dead letters that died more than `webhookDays` ago (nobody re-sent them).
 * - Finished webhook deliveries (delivered or dead, and no longer a dead letter) created more than
 *   `webhookDays` ago. Pending ones are never deleted, whatever their age.
 * - Webhook events recorded more than `webhookDays` ago that no delivery refers to any more.
 * - stock_events of the stocks whose sale ended more than `stockEventsDays` ago, stock by stock.
 *   By then Redis has let the stock go too (keepUntil = endsAt + holdSeconds + hold retention), so
 *   the verifier no longer compares it; a stock without an end keeps its events, as Redis keeps it.
 *
 * The cost of deleting: an event id is the dedupe key of both logs, so a Kafka redelivery of an event
 * older than the retention (an offset reset to the beginning on the live group) would be applied or
 * sent again. Rebuilds are unaffected (they replay into fresh tables). Choose days well above the
 * longest outage a consumer group may need to catch up from.
 */
import type postgres from "postgres";
import { sleep } from "../../lifecycle.ts";

export interface RetentionOptions {
  /** Days after a sale's end that its stock_events are kept; 0 = never delete them. */
  stockEventsDays: number;
  /** Days finished deliveries, dead letters and webhook events are kept; 0 = never delete them. */
  webhookDays: number;
  /** Rows per DELETE. */
  batch: number;
  /** Pause between two batches. */
  pauseMs?: number;
  /** The clock (tests). */
  now?: Date;
}

export interface RetentionReport {
  deadLetters: number;
  deliveries: number;
  webhookEvents: number;
  stockEvents: number;
  /** DELETE statements run. */
  batches: number;
}

const daysBefore = (now: Date, days: number) => new Date(now.getTime() - days * 86_400_000);

export async function pruneOnce(sql: postgres.Sql, options: RetentionOptions): Promise<RetentionReport> {
  const now = options.now ?? new Date();
  const report: RetentionReport = { deadLetters: 0, deliveries: 0, webhookEvents: 0, stockEvents: 0, batches: 0 };
  /** Runs one batch statement until it deletes fewer rows than a batch. */
  const drain = async (one: () => Promise<{ count: number }>): Promise<number> => {
    let total = 0;
    for (;;) {
      const { count } = await one();
      report.batches += 1;
      total += count;
      if (count < options.batch) return total;
      await sleep(options.pauseMs ?? 20);
    }
  };
  const limit = options.batch;
  if (options.webhookDays > 0) {
    const cut = daysBefore(now, options.webhookDays);
    report.deadLetters = await drain(
      () => sql`
        DELETE FROM webhook_dead_letters WHERE (endpoint_id, event_id) IN (
          SELECT endpoint_id, event_id FROM webhook_dead_letters WHERE died_at < ${cut} LIMIT ${limit})`,
    );
    report.deliveries = await drain(
      () => sql`
        DELETE FROM webhook_deliveries WHERE (endpoint_id, event_id) IN (
          SELECT d.endpoint_id, d.event_id FROM webhook_deliveries d
          WHERE d.status <> 'pending' AND d.created_at < ${cut}
            AND NOT EXISTS (SELECT 1 FROM webhook_dead_letters l WHERE l.endpoint_id = d.endpoint_id AND l.event_id = d.event_id)
          LIMIT ${limit})`,
    );
    report.webhookEvents = await drain(
      () => sql`
        DELETE FROM webhook_events WHERE event_id IN (
          SELECT e.event_id FROM webhook_events e
          WHERE e.recorded_at < ${cut} AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.event_id)
          LIMIT ${limit})`,
    );
  }
  if (options.stockEventsDays > 0) {
    const cut = daysBefore(now, options.stockEventsDays);
    report.stockEvents = await drain(
      () => sql`
        DELETE FROM stock_events WHERE event_id IN (
          SELECT e.event_id FROM stocks s JOIN stock_events e ON e.aggregate_id = s.stock_id
          WHERE s.ends_at < ${cut} LIMIT ${limit})`,
    );
  }
  return report;
}
