/**
 * How projector-postgres tells readers what it has applied (docs/read-side.md, read-your-writes):
 * after each batch commits, one `NOTIFY` on PROGRESS_CHANNEL carrying, per stock of the batch, the
 * highest version in it. The api LISTENs once per process and wakes the reads that wait for a
 * Consistency-Token (services/api/consistency/).
 *
 * Why the highest version of every event in the batch, new or not: a redelivered event was applied
 * by an earlier batch, and the stock row's version only grows (GREATEST in writer.ts), so once the
 * batch has committed, the store holds at least that version of each of these stocks; a stock row
 * at version v has every order and minute counter of the events up to v (one statement, and a
 * stock's events arrive in order on one partition).
 *
 * The NOTIFY is its own statement after the batch's: a notification is delivered only when its
 * transaction commits, so a reader is never woken before the rows are visible. A projector that dies
 * between the two only costs the waiters of that batch their wait (their read then says `stale`),
 * and the next batch of the stock notifies again. Payload: lines `<stock id> <version>`, split below
 * PostgreSQL's 8,000-byte limit; all chunks of a batch go in one round trip.
 */
import type postgres from "postgres";

/** The channel projector-postgres notifies and the api listens on (per database). */
export const PROGRESS_CHANNEL = "flashsale_progress";

/** Below PostgreSQL's NOTIFY payload limit (8,000 bytes) with room to spare. */
const MAX_PAYLOAD_BYTES = 7_000;

/** The highest version per stock among these events. */
function highestVersions(events: Iterable<{ aggregateId: string; version: number }>): Map<string, number> {
  const highest = new Map<string, number>();
  for (const { aggregateId, version } of events) {
    if (version > (highest.get(aggregateId) ?? 0)) highest.set(aggregateId, version);
  }
  return highest;
}

/** Payloads of `<stock id> <version>` lines, each under MAX_PAYLOAD_BYTES (stock ids are ASCII, ≤ 64 characters). */
export function progressPayloads(versions: ReadonlyMap<string, number>): string[] {
  const payloads: string[] = [];
  let current = "";
  for (const [stockId, version] of versions) {
    const line = `${stockId} ${version}`;
    if (current.length > 0 && current.length + 1 + line.length > MAX_PAYLOAD_BYTES) {
      payloads.push(current);
      current = "";
    }
    current = current.length === 0 ? line : `${current}\n${line}`;
  }
  if (current.length > 0) payloads.push(current);
  return payloads;
}

/** Parses one payload; lines that are not `<stock id> <positive integer>` are skipped (a reader never trusts a peer's bytes). */
export function parseProgressPayload(payload: string): Array<[stockId: string, version: number]> {
  const out: Array<[string, number]> = [];
  for (const line of payload.split("\n")) {
    const space = line.indexOf(" ");
    if (space <= 0) continue;
    const version = Number(line.slice(space + 1));
    if (Number.isSafeInteger(version) && version > 0) out.push([line.slice(0, space), version]);
  }
  return out;
}

/** After a batch has committed: tells the listeners which stock versions the store now has. */
export async function notifyProgress(sql: postgres.Sql, events: Iterable<{ aggregateId: string; version: number }>): Promise<void> {
  const payloads = progressPayloads(highestVersions(events));
  if (payloads.length === 0) return;
  await sql`SELECT pg_notify(${PROGRESS_CHANNEL}, p) FROM unnest(${payloads}::text[]) AS p`;
}
