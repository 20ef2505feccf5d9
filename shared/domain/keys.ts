/**
 * Every Redis key name is built here, so the layout lives in one place (docs/design.md §3).
 *
 * Cluster-ready: all keys of one stock, its holds, its buyers and its shard's outbox carry the
 * shard's hash tag `{n}`, so one script only ever touches one hash slot. A stock's shard is a
 * stable hash of its id; an allocation id carries its shard (`s<n>-<uuidv7>`), so it can be
 * found without a scan.
 *
 * No two different inputs may build the same key (a collision would let one user read another's
 * records). Every variable part is therefore either checked against an alphabet without the `:`
 * separator (stock ids, allocation ids, shard numbers: asserted here, so a key cannot be built from
 * an unchecked id) or length-prefixed (`<length>.<text>`, for user ids and Idempotency-Keys, which may
 * contain `:`). The verifier scans `stock:<id>` and `hold:<id>` keys, so those keep their plain form.
 */

export const STOCK_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const ALLOCATION_ID_PATTERN = /^s(\d{1,4})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** FNV-1a, 32 bit: stable across processes, languages and restarts (unlike a runtime hash). */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export interface KeyLayout {
  readonly prefix: string;
  readonly shards: number;
  shardOf(stockId: string): number;
  allShards(): number[];
  stock(stockId: string): string;
  /** Hash userId → units the user currently holds or bought of this stock (per-user limit, I4). */
  stockBuyers(stockId: string): string;
  hold(allocationId: string): string;
  /** What every hold key of a shard starts with (hold(id) = holdKeyPrefix(shard) + id): snapshot.lua reads holds by name. */
  holdKeyPrefix(shard: number): string;
  holdsDue(shard: number): string;
  /**
   * Every stock id ever created in a shard (hash id → creation ms), kept after the stock expires, with
   * no TTL: an id is never reused, because the read models keep the old stock's versions for ever.
   */
  stockIdsTaken(shard: number): string;
  /** Idempotency record, scoped to one user and one stock (so it shares the stock's slot). */
  idempotency(stockId: string, userId: string, key: string): string;
  /**
   * Record of one allocation request without Idempotency-Key (request id generated per HTTP request, a
   * UUID): a resend or retry of the same request finds it and gets the same hold (docs/design.md §3).
   */
  allocationRequest(stockId: string, requestId: string): string;
  outbox(shard: number): string;
  /** Sharded pub/sub channel on which cancel and expire announce units given back (docs/design.md §12). */
  released(shard: number): string;
  /** Entries the relay could not parse, kept for inspection (never sent to Kafka). */
  outboxDeadLetter(shard: number): string;
  /** Live relays (heartbeats), which split the shards between them. */
  relayMembers(): string;
  /** The lease that makes one relay at a time the reader of a shard's outbox (keeps stocks in order). */
  relayLease(shard: number): string;
  /**
   * Who last held the shard's lease and has not released it cleanly (no TTL): a relay that takes the
   * shard over fences that holder's Kafka transactional producer first (services/relay/sender.ts).
   */
  relayLeaseHolder(shard: number): string;
  /**
   * A stock's waiting room (docs/waiting-room.md), all in the stock's slot: the room hash (TTL, seed,
   * commitment, counters), the pre-queue (joined before startsAt, drawn at the start), the line (after
   * the draw, in admission order), the admitted tickets (scored by admission expiry), the tickets
   * (id → record), the users (user id → ticket id) and the published draw (a list, in drawn order).
   */
  room(stockId: string): RoomKeys;
  /** The shard's set of stock ids with a waiting room still to sweep (the expirer's TTL and draw tick). */
  rooms(shard: number): string;
  newAllocationId(stockId: string): string;
  /** The shard an allocation id belongs to, or null when the id is malformed or out of range. */
  shardOfAllocation(allocationId: string): number | null;
}

interface RoomKeys {
  readonly room: string;
  readonly pre: string;
  readonly line: string;
  readonly admitted: string;
  readonly tickets: string;
  readonly users: string;
  readonly draw: string;
}

export function createKeyLayout(prefix: string, shards: number): KeyLayout {
  if (!Number.isInteger(shards) || shards < 1) throw new Error(`shards must be a positive integer, got ${shards}`);
  const tag = (shard: number) => `${prefix}:{${shard}}`;
  const shardOf = (stockId: string) => fnv1a32(stockId) % shards;
  const stockTag = (stockId: string) => tag(shardOf(checkedStockId(stockId)));
  return {
    prefix,
    shards,
    shardOf,
    allShards: () => Array.from({ length: shards }, (_, i) => i),
    stock: (stockId) => `${stockTag(stockId)}:stock:${stockId}`,
    stockBuyers: (stockId) => `${stockTag(stockId)}:stock:${stockId}:buyers`,
    hold: (allocationId) => {
      const shard = parseShard(allocationId, shards);
      if (shard === null) throw new Error(`malformed allocation id: ${allocationId}`);
      return `${tag(shard)}:hold:${allocationId}`; // = holdKeyPrefix(shard) + allocationId
    },
    holdKeyPrefix: (shard) => `${tag(shard)}:hold:`,
    holdsDue: (shard) => `${tag(shard)}:holds:due`,
    stockIdsTaken: (shard) => `${tag(shard)}:stock-ids`,
    idempotency: (stockId, userId, key) => `${stockTag(stockId)}:idem:${stockId}:${lengthPrefixed(userId)}:${lengthPrefixed(key)}`,
    allocationRequest: (stockId, requestId) => `${stockTag(stockId)}:req:${stockId}:${checkedRequestId(requestId)}`,
    outbox: (shard) => `${tag(shard)}:outbox`,
    released: (shard) => `${tag(shard)}:released`,
    outboxDeadLetter: (shard) => `${tag(shard)}:outbox:dead`,
    relayMembers: () => `${prefix}:relay:members`,
    relayLease: (shard) => `${tag(shard)}:outbox:relay-lease`,
    relayLeaseHolder: (shard) => `${tag(shard)}:outbox:relay-holder`,
    room: (stockId) => {
      const base = `${stockTag(stockId)}:room:${stockId}`;
      return { room: base, pre: `${base}:pre`, line: `${base}:line`, admitted: `${base}:admitted`, tickets: `${base}:tickets`, users: `${base}:users`, draw: `${base}:draw` };
    },
    rooms: (shard) => `${tag(shard)}:rooms`,
    newAllocationId: (stockId) => `s${shardOf(stockId)}-${Bun.randomUUIDv7()}`,
    shardOfAllocation: (allocationId) => parseShard(allocationId, shards),
  };
}

/** `<length>.<text>`: the length says where the part ends, so no two (user, key) pairs join to one string. */
function lengthPrefixed(part: string): string {
  return `${part.length}.${part}`;
}

function checkedStockId(stockId: string): string {
  if (!STOCK_ID_PATTERN.test(stockId)) throw new Error(`malformed stock id: ${JSON.stringify(stockId)}`);
  return stockId;
}

const REQUEST_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
function checkedRequestId(requestId: string): string {
  if (!REQUEST_ID_PATTERN.test(requestId)) throw new Error(`malformed request id: ${JSON.stringify(requestId)}`);
  return requestId;
}

function parseShard(allocationId: string, shards: number): number | null {
  const match = ALLOCATION_ID_PATTERN.exec(allocationId);
  if (!match) return null;
  const shard = Number(match[1]);
  return shard < shards ? shard : null;
}
