/**
 * The operator's side of the notifier's delivery log (migrations/002_webhooks.sql): dead letters put
 * back in the queue by `bun run notifier:resend`. The notifier writes and reads the rest of the log
 * (services/notifier/delivery-log.ts); a script may not import a service, so this lives here.
 */
import type postgres from "postgres";

/**
 * Puts dead letters back in the queue (attempts from 0, due now) and removes them from the
 * dead-letter table, in one transaction. A re-sent letter may reach the receiver after later versions
 * of its stock that were delivered meanwhile: the version in the body says where it belongs.
 */
export async function resendDeadLetters(sql: postgres.Sql, options: { endpointId?: string } = {}): Promise<number> {
  return sql.begin(async (tx) => {
    const moved = await tx<{ endpoint_id: string; event_id: string }[]>`
      DELETE FROM webhook_dead_letters l
      USING webhook_endpoints e
      WHERE e.endpoint_id = l.endpoint_id AND e.removed_at IS NULL
        ${options.endpointId ? tx`AND l.endpoint_id = ${options.endpointId}` : tx``}
      RETURNING l.endpoint_id, l.event_id::text`;
    if (moved.length === 0) return 0;
    await tx`
      UPDATE webhook_deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL
      FROM unnest(${moved.map((m) => m.endpoint_id)}::text[], ${moved.map((m) => m.event_id)}::uuid[]) AS m(endpoint_id, event_id)
      WHERE d.endpoint_id = m.endpoint_id AND d.event_id = m.event_id AND d.status = 'dead'`;
    return moved.length;
  });
}
