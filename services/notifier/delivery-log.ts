/**
 * The delivery log in PostgreSQL (migrations/002_webhooks.sql): what the consumer writes before it
 * commits its Kafka offsets, what the delivery loops read and update, and the dead letters.
 */
import type postgres from "postgres";
import type { StockEvent } from "../../shared/domain/events.ts";
import type { SinkResult } from "../../shared/projection/batch.ts";
import { backoffMs, sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";

/**
 * The body of a webhook: the Standard Webhooks payload structure, `{ type, timestamp, data }`, with
 * the event envelope as `data`. A receiver built on the spec's tooling dispatches on `type` (our
 * eventType) and reads `timestamp` (when the event occurred, ISO 8601). Stored as sent (and signed).
 */
function webhookPayload(event: StockEvent): string {
  return JSON.stringify({ type: event.eventType, timestamp: event.occurredAt, data: event });
}

/**
 * Logs each event once (dedupe by event id: a Kafka redelivery changes nothing) and, in the same
 * statement, a pending delivery for every live endpoint that subscribes to its type. One statement
 * is one transaction: after it returns the events are safe and the offsets may be committed.
 */
export async function logEvents(
  sql: postgres.Sql,
  events: readonly StockEvent[],
): Promise<SinkResult & { deliveries: { endpointId: string; delivery: PendingDelivery }[] }> {
  if (events.length === 0) return { applied: [], duplicates: 0, deliveries: [] };
  const bodies = events.map(webhookPayload);
  const rows = await sql<{ endpoint_id: string | null; event_id: string; next_attempt_at: Date | null }[]>`
    WITH ev AS (
      INSERT INTO webhook_events (event_id, event_type, stock_id, version, occurred_at, body)
      SELECT * FROM unnest(
        ${events.map((e) => e.eventId)}::uuid[], ${events.map((e) => e.eventType)}::text[],
        ${events.map((e) => e.aggregateId)}::text[], ${events.map((e) => e.version)}::int[],
        ${events.map((e) => e.occurredAt)}::timestamptz[], ${bodies}::text[])
      ON CONFLICT (event_id) DO NOTHING
      RETURNING event_id, event_type, stock_id, version
    ), d AS (
      INSERT INTO webhook_deliveries (endpoint_id, event_id, stock_id, version)
      SELECT e.endpoint_id, ev.event_id, ev.stock_id, ev.version
      FROM ev JOIN webhook_endpoints e ON e.removed_at IS NULL AND (e.event_types IS NULL OR ev.event_type = ANY (e.event_types))
      ON CONFLICT DO NOTHING
      RETURNING endpoint_id, event_id, next_attempt_at
    )
    SELECT d.endpoint_id, ev.event_id::text, d.next_attempt_at FROM ev LEFT JOIN d ON d.event_id = ev.event_id`;
  const byId = new Map(events.map((e, i) => [e.eventId, i]));
  const fresh = new Set<string>();
  const deliveries: { endpointId: string; delivery: PendingDelivery }[] = [];
  for (const r of rows) {
    fresh.add(r.event_id);
    if (r.endpoint_id === null) continue;
    const i = byId.get(r.event_id)!;
    const e = events[i]!;
    deliveries.push({
      endpointId: r.endpoint_id,
      delivery: {
        eventId: e.eventId,
        stockId: e.aggregateId,
        version: e.version,
        attempts: 0,
        dueAt: r.next_attempt_at!.getTime(),
        occurredAt: Date.parse(e.occurredAt),
        body: bodies[i]!,
      },
    });
  }
  const applied = events.filter((e) => fresh.has(e.eventId));
  return { applied, duplicates: events.length - applied.length, deliveries };
}

/** A pending delivery as the delivery loop holds it (the body is read when it is sent). */
export interface PendingDelivery {
  eventId: string;
  stockId: string;
  version: number;
  /** Attempts made so far. */
  attempts: number;
  dueAt: number;
  occurredAt: number;
  /** The body when the consumer handed it over (saves reading it back); read from webhook_events otherwise. */
  body?: string;
}

interface PendingRow {
  stock_id: string;
  event_id: string;
  version: number;
  attempts: number;
  next_attempt_at: Date;
  occurred_at: Date;
}

const toPending = (r: PendingRow): PendingDelivery => ({
  eventId: r.event_id,
  stockId: r.stock_id,
  version: r.version,
  attempts: r.attempts,
  dueAt: r.next_attempt_at.getTime(),
  occurredAt: r.occurred_at.getTime(),
});

/**
 * The next `stocks` stocks with pending deliveries of an endpoint after `after` (by stock id, skipping
 * `skip`), each with its `perStock` lowest pending versions: the delivery loop's page. Stocks are found
 * by a loose index scan (one index probe per stock, however many deliveries each has) on
 * webhook_deliveries_pending_stock, so a page costs the same with 10 or 10 million pending.
 * `last` is the last stock id the scan passed (the next page's `after`), null when it reached the end.
 */
export async function pendingPage(
  sql: postgres.Sql,
  endpointId: string,
  options: { after: string; stocks: number; perStock: number; skip: readonly string[] },
): Promise<{ deliveries: PendingDelivery[]; last: string | null }> {
  const rows = await sql<(PendingRow & { scanned: string })[]>`
    WITH RECURSIVE s(stock_id) AS (
      (SELECT stock_id FROM webhook_deliveries
       WHERE endpoint_id = ${endpointId} AND status = 'pending' AND stock_id > ${options.after} ORDER BY stock_id LIMIT 1)
      UNION ALL
      SELECT (SELECT d.stock_id FROM webhook_deliveries d
              WHERE d.endpoint_id = ${endpointId} AND d.status = 'pending' AND d.stock_id > s.stock_id ORDER BY d.stock_id LIMIT 1)
      FROM s WHERE s.stock_id IS NOT NULL
    ), picked AS (
      SELECT stock_id FROM s WHERE stock_id IS NOT NULL AND stock_id <> ALL (${options.skip as string[]}::text[]) LIMIT ${options.stocks}
    )
    SELECT p.stock_id, d.event_id::text, d.version, d.attempts, d.next_attempt_at, ev.occurred_at
    FROM picked p
    CROSS JOIN LATERAL (
      SELECT event_id, version, attempts, next_attempt_at FROM webhook_deliveries
      WHERE endpoint_id = ${endpointId} AND status = 'pending' AND stock_id = p.stock_id ORDER BY version LIMIT ${options.perStock}
    ) d
    JOIN webhook_events ev ON ev.event_id = d.event_id`;
  const deliveries = rows.map(toPending);
  const stocks = new Set(deliveries.map((d) => d.stockId));
  const last = stocks.size < options.stocks ? null : [...stocks].sort().at(-1)!;
  return { deliveries, last };
}

/** The `perStock` lowest pending versions of each of `stocks` (a refill of stocks already held). */
export async function pendingPrefixes(sql: postgres.Sql, endpointId: string, stocks: readonly string[], perStock: number): Promise<PendingDelivery[]> {
  if (stocks.length === 0) return [];
  const rows = await sql<PendingRow[]>`
    SELECT p.stock_id, d.event_id::text, d.version, d.attempts, d.next_attempt_at, ev.occurred_at
    FROM unnest(${stocks as string[]}::text[]) AS p(stock_id)
    CROSS JOIN LATERAL (
      SELECT event_id, version, attempts, next_attempt_at FROM webhook_deliveries
      WHERE endpoint_id = ${endpointId} AND status = 'pending' AND stock_id = p.stock_id ORDER BY version LIMIT ${perStock}
    ) d
    JOIN webhook_events ev ON ev.event_id = d.event_id`;
  return rows.map(toPending);
}

/** eventBodies, retried (with backoff) until PostgreSQL answers: a send cannot go without its body. */
export async function eventBodiesRetrying(sql: postgres.Sql, eventIds: string[], log: Logger): Promise<Map<string, string>> {
  for (let attempt = 0; eventIds.length > 0; attempt++) {
    try {
      return await eventBodies(sql, eventIds);
    } catch (err) {
      if (attempt === 0 || attempt % 10 === 0) log.warn({ err }, "cannot read event bodies, retrying");
      await sleep(backoffMs(attempt, 100, 5_000));
    }
  }
  return new Map();
}

/** The bodies to send, by event id. */
async function eventBodies(sql: postgres.Sql, eventIds: readonly string[]): Promise<Map<string, string>> {
  if (eventIds.length === 0) return new Map();
  const rows = await sql<{ event_id: string; body: string }[]>`
    SELECT event_id::text, body FROM webhook_events WHERE event_id = ANY (${eventIds as string[]}::uuid[])`;
  return new Map(rows.map((r) => [r.event_id, r.body]));
}

export interface AttemptRecord {
  eventId: string;
  status: "delivered" | "pending" | "dead";
  httpStatus: number | null;
  /** Already cut to the excerpt length. */
  error: string | null;
  at: Date;
  nextAttemptAt: Date | null;
}

/** Records a batch of attempts of one endpoint in one transaction; dead ones also go to the dead-letter table. */
export async function recordAttempts(sql: postgres.Sql, endpointId: string, records: readonly AttemptRecord[]): Promise<void> {
  if (records.length === 0) return;
  const dead = records.filter((r) => r.status === "dead").map((r) => r.eventId);
  // One statement is atomic by itself: the common case (no dead letter) needs no BEGIN/COMMIT round trips.
  if (dead.length === 0) return void (await updateAttempts(sql, endpointId, records));
  await sql.begin(async (tx) => {
    await updateAttempts(tx as unknown as postgres.Sql, endpointId, records);
    await tx`
      INSERT INTO webhook_dead_letters (endpoint_id, event_id, stock_id, version, attempts, last_status, last_error)
      SELECT endpoint_id, event_id, stock_id, version, attempts, last_status, last_error FROM webhook_deliveries
      WHERE endpoint_id = ${endpointId} AND event_id = ANY (${dead}::uuid[]) AND status = 'dead'
      ON CONFLICT (endpoint_id, event_id) DO UPDATE
        SET attempts = EXCLUDED.attempts, last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error, died_at = now()`;
  });
}

async function updateAttempts(sql: postgres.Sql, endpointId: string, records: readonly AttemptRecord[]): Promise<void> {
  await sql`
    UPDATE webhook_deliveries d SET
      status = r.status, attempts = d.attempts + 1, last_status = r.http_status, last_error = r.error,
      last_attempt_at = r.at, next_attempt_at = COALESCE(r.next_at, d.next_attempt_at),
      delivered_at = CASE WHEN r.status = 'delivered' THEN r.at END
    FROM unnest(
      ${records.map((r) => r.eventId)}::uuid[], ${records.map((r) => r.status)}::text[],
      ${records.map((r) => r.httpStatus) as number[]}::int[], ${records.map((r) => r.error) as string[]}::text[],
      ${records.map((r) => r.at.toISOString())}::timestamptz[], ${records.map((r) => r.nextAttemptAt?.toISOString() ?? null) as string[]}::timestamptz[]
    ) AS r(event_id, status, http_status, error, at, next_at)
    WHERE d.endpoint_id = ${endpointId} AND d.event_id = r.event_id AND d.status = 'pending'`;
}

export interface BacklogRow {
  endpointId: string;
  pending: number;
  oldestCreatedAt: Date | null;
  dead: number;
}

/** Pending deliveries and dead letters per live endpoint, for the backlog gauges. */
export async function backlog(sql: postgres.Sql): Promise<BacklogRow[]> {
  const rows = await sql<{ endpoint_id: string; pending: number; oldest: Date | null; dead: number }[]>`
    SELECT e.endpoint_id,
      (SELECT count(*)::int FROM webhook_deliveries d WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending') AS pending,
      (SELECT min(created_at) FROM webhook_deliveries d WHERE d.endpoint_id = e.endpoint_id AND d.status = 'pending') AS oldest,
      (SELECT count(*)::int FROM webhook_dead_letters l WHERE l.endpoint_id = e.endpoint_id) AS dead
    FROM webhook_endpoints e WHERE e.removed_at IS NULL`;
  return rows.map((r) => ({ endpointId: r.endpoint_id, pending: r.pending, oldestCreatedAt: r.oldest, dead: r.dead }));
}
