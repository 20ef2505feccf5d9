/**
 * Redis Stream plumbing for the relay: reply parsing, id arithmetic, small Lua helpers.
 * Nothing here decides anything; the other relay files do.
 */
export { pairs } from "../../shared/redis/replies.ts";

export const RELAY_GROUP = "relay";

/** One outbox entry as Redis returned it; `fields` is null when the entry was deleted but still pending. */
export interface OutboxEntry {
  shard: number;
  id: string;
  fields: string[] | null;
}

/** Value of `field` in a flat [field, value, …] list. */
export function fieldValue(fields: string[] | null, field: string): string | undefined {
  if (!fields) return undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === field) return fields[i + 1];
  return undefined;
}

function splitId(id: string): [bigint, bigint] {
  const dash = id.indexOf("-");
  if (dash < 0) return [BigInt(id), 0n];
  return [BigInt(id.slice(0, dash)), BigInt(id.slice(dash + 1))];
}

export function compareIds(a: string, b: string): number {
  const [am, as] = splitId(a);
  const [bm, bs] = splitId(b);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

/** The smallest id greater than `id` (for XTRIM MINID, which keeps ids >= the threshold). */
export function nextId(id: string): string {
  const [ms, seq] = splitId(id);
  return seq === 0xffffffffffffffffn ? `${ms + 1n}-0` : `${ms}-${seq + 1n}`;
}

/** Epoch ms encoded in a stream id (the Redis time of the XADD). */
export function idTimeMs(id: string): number {
  const dash = id.indexOf("-");
  return Number(dash < 0 ? id : id.slice(0, dash));
}


export function isNoGroup(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith("NOGROUP");
}


/** A top-level string field of a JSON object, when the text parses at all (for logs and lag). */
export function sniffField(raw: string | undefined, field: string): string | undefined {
  if (raw === undefined) return undefined;
  try {
    const value = (JSON.parse(raw) as Record<string, unknown>)?.[field];
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}
