/**
 * One typed args builder per Lua script (docs/design.md §13): the KEYS and ARGV order each script's
 * header names is written here and nowhere else. Every script runs through one of these, single or
 * pipelined (runScript / queueScript in scripts.ts take the call, never loose arrays), and each call
 * carries the type of the reply its script gives. test/script-calls.unit.test.ts holds every builder to
 * its script's header (as many KEYS and ARGV, all keys in one hash slot) and to the list in script-sources.ts.
 */
import type { KeyLayout } from "../domain/keys.ts";
import { DEFAULT_CURRENCY, DEFAULT_HOLD_SECONDS, IDEMPOTENCY_TTL_SECONDS, REQUEST_RECORD_TTL_SECONDS } from "../domain/policy.ts";
import { parseTraceparent } from "../trace.ts";
import type { ScriptArg, ScriptCall, ScriptName, ScriptReply } from "./scripts.ts";

const newEventId = () => Bun.randomUUIDv7();
/** The script argument for a trace header: the header when well-formed, else '' (none). */
const traceArg = (traceparent: string | undefined) => (traceparent && parseTraceparent(traceparent) ? traceparent : "");
const call = <Reply = ScriptReply>(script: ScriptName, keys: string[], args: ScriptArg[]): ScriptCall<Reply> => ({ script, keys, args });

/** What makes two allocate requests "the same" for an Idempotency-Key: the user, the stock and the quantity. */
export const allocateFingerprint = (userId: string, stockId: string, quantity: number) => JSON.stringify(["allocate", userId, stockId, quantity]);

/** KEYS 7-10 of allocate, cancel and expire: the stock's waiting room (untouched when it has none). */
function roomReleaseKeys(keys: KeyLayout, stockId: string): string[] {
  const room = keys.room(stockId);
  return [room.room, room.line, room.admitted, room.tickets];
}

// ---- the write side (shared/redis/commands.ts, the expirer)

/** A stock as its creator describes it (what commands.ts createStock takes, less the id and the room). */
export interface StockSpec {
  name: string;
  description?: string;
  price: number;
  currency?: string;
  quantity: number;
  perUserLimit?: number;
  holdSeconds?: number;
  /** Epoch ms; default now. */
  startsAt?: number;
  /** Epoch ms; default never. */
  endsAt?: number;
  traceparent?: string;
}

export interface CreateStockArgs extends StockSpec {
  stockId: string;
  outboxMaxLength: number;
  retainSeconds: number;
  /** A waiting room: its admission TTL, secret seed and public commitment. */
  room?: { admissionTtlSeconds: number; seed: string; commitment: string };
}

/** create_stock.lua: KEYS 1-5, ARGV 1-17. */
export function createStockCall(keys: KeyLayout, a: CreateStockArgs): ScriptCall {
  const shard = keys.shardOf(a.stockId);
  return call("fsCreateStock", [keys.stock(a.stockId), keys.outbox(shard), keys.stockIdsTaken(shard), keys.room(a.stockId).room, keys.rooms(shard)], [
    a.stockId,
    newEventId(),
    a.name,
    a.description ?? "",
    a.price,
    a.currency ?? DEFAULT_CURRENCY,
    a.quantity,
    a.perUserLimit ?? a.quantity,
    a.holdSeconds ?? DEFAULT_HOLD_SECONDS,
    a.startsAt ?? "",
    a.endsAt ?? "",
    a.outboxMaxLength,
    a.retainSeconds,
    traceArg(a.traceparent),
    a.room?.admissionTtlSeconds ?? "",
    a.room?.seed ?? "",
    a.room?.commitment ?? "",
  ]);
}

export interface AllocateArgs {
  stockId: string;
  userId: string;
  quantity: number;
  idempotencyKey?: string;
  /** The Admission-Token header: required (and checked by allocate.lua) on a waiting-room stock. */
  admissionToken?: string;
  /** W3C traceparent of the request, stored with the event in the outbox (ignored when malformed). */
  traceparent?: string;
}

/** allocate.lua: KEYS 1-10 and ARGV 1-10, built once per request (a lost reply is retried with the same call). */
export function allocateCall(keys: KeyLayout, input: AllocateArgs, outboxMaxLength: number): ScriptCall {
  const shard = keys.shardOf(input.stockId);
  const allocationId = keys.newAllocationId(input.stockId);
  const key = input.idempotencyKey;
  // The user is in the fingerprint as well as in the key, so a record can never answer another user
  // even if two key names ever met; a JSON array cannot join two different tuples into one string.
  const fingerprint = allocateFingerprint(input.userId, input.stockId, input.quantity);
  // Without an Idempotency-Key the request still gets a record, under an id of its own: a reply
  // lost with its connection is retried with the very same call, and the script answers the hold
  // it made the first time instead of making a second one (docs/design.md §3).
  const recordKey = key === undefined ? keys.allocationRequest(input.stockId, crypto.randomUUID()) : keys.idempotency(input.stockId, input.userId, key);
  return call(
    "fsAllocate",
    [keys.stock(input.stockId), keys.stockBuyers(input.stockId), keys.hold(allocationId), keys.holdsDue(shard), recordKey, keys.outbox(shard), ...roomReleaseKeys(keys, input.stockId)],
    [
      input.stockId,
      input.userId,
      input.quantity,
      allocationId,
      newEventId(),
      fingerprint,
      key === undefined ? REQUEST_RECORD_TTL_SECONDS : IDEMPOTENCY_TTL_SECONDS,
      outboxMaxLength,
      traceArg(input.traceparent),
      input.admissionToken ?? "",
    ],
  );
}

export interface HoldChangeArgs {
  allocationId: string;
  userId: string;
  traceparent?: string;
}

/** purchase.lua: KEYS 1-4, ARGV 1-5. */
export function purchaseCall(keys: KeyLayout, stockId: string, input: HoldChangeArgs, retainSeconds: number): ScriptCall {
  const shard = keys.shardOf(stockId);
  return call(
    "fsPurchase",
    [keys.hold(input.allocationId), keys.stock(stockId), keys.holdsDue(shard), keys.outbox(shard)],
    [input.allocationId, input.userId, newEventId(), retainSeconds, traceArg(input.traceparent)],
  );
}

/** cancel.lua: KEYS 1-10, ARGV 1-5. */
export function cancelCall(keys: KeyLayout, stockId: string, input: HoldChangeArgs, retainSeconds: number): ScriptCall {
  const shard = keys.shardOf(stockId);
  return call(
    "fsCancel",
    [keys.hold(input.allocationId), keys.stock(stockId), keys.stockBuyers(stockId), keys.holdsDue(shard), keys.outbox(shard), keys.released(shard), ...roomReleaseKeys(keys, stockId)],
    [input.allocationId, input.userId, newEventId(), retainSeconds, traceArg(input.traceparent)],
  );
}

/** expire.lua: KEYS 1-10, ARGV 1-4; the expirer queues these in a pipeline. */
export function expireCall(keys: KeyLayout, allocationId: string, stockId: string, retainSeconds: number, traceparent?: string): ScriptCall {
  const shard = keys.shardOf(stockId);
  return call(
    "fsExpire",
    [keys.hold(allocationId), keys.stock(stockId), keys.stockBuyers(stockId), keys.holdsDue(shard), keys.outbox(shard), keys.released(shard), ...roomReleaseKeys(keys, stockId)],
    [allocationId, newEventId(), retainSeconds, traceArg(traceparent)],
  );
}

/** due_holds.lua: the ids of a shard's holds that are due, by Redis' clock. */
export const dueHoldsCall = (keys: KeyLayout, shard: number, limit: number) => call<string[]>("fsDueHolds", [keys.holdsDue(shard)], [limit]);

/** snapshot.lua (`bun run repair`): KEYS 1-3, ARGV 1-6. */
export function snapshotCall(keys: KeyLayout, stockId: string, a: { seenVersion: number; maxLiveHolds: number; maxDueScan: number }): ScriptCall {
  const shard = keys.shardOf(stockId);
  return call(
    "fsSnapshot",
    [keys.stock(stockId), keys.outbox(shard), keys.holdsDue(shard)],
    [stockId, Bun.randomUUIDv7(), a.seenVersion, keys.holdKeyPrefix(shard), a.maxLiveHolds, a.maxDueScan],
  );
}

// ---- the waiting room (shared/redis/room.ts)

const roomOf = (keys: KeyLayout, stockId: string) => ({ stock: keys.stock(stockId), ...keys.room(stockId) });

/** room_join.lua: KEYS 1-7; ARGV user id, a new ticket id and its secret. */
export function roomJoinCall(keys: KeyLayout, stockId: string, userId: string, ticketId: string, secret: string): ScriptCall {
  const r = roomOf(keys, stockId);
  return call("fsRoomJoin", [r.stock, r.room, r.pre, r.line, r.admitted, r.tickets, r.users], [userId, ticketId, secret]);
}

/** room_status.lua: KEYS 1-6; ARGV the user id. */
export function roomStatusCall(keys: KeyLayout, stockId: string, userId: string): ScriptCall {
  const r = roomOf(keys, stockId);
  return call("fsRoomStatus", [r.stock, r.room, r.pre, r.line, r.tickets, r.users], [userId]);
}

/** room_summary.lua: KEYS 1-5, no ARGV. */
export function roomSummaryCall(keys: KeyLayout, stockId: string): ScriptCall {
  const r = roomOf(keys, stockId);
  return call("fsRoomSummary", [r.stock, r.room, r.pre, r.line, r.admitted], []);
}

/** room_draw.lua: KEYS 1-7; ARGV the pre-queue's ticket ids in the drawn order. */
export function roomDrawCall(keys: KeyLayout, stockId: string, order: string[]): ScriptCall {
  const r = roomOf(keys, stockId);
  return call("fsRoomDraw", [r.stock, r.room, r.pre, r.line, r.admitted, r.tickets, r.draw], order);
}

/** room_sweep.lua: KEYS 1-9; ARGV the stock id and the most admissions to expire. */
export function roomSweepCall(keys: KeyLayout, stockId: string, maxExpire: number): ScriptCall {
  const r = roomOf(keys, stockId);
  return call("fsRoomSweep", [r.stock, r.room, r.pre, r.line, r.admitted, r.tickets, r.users, r.draw, keys.rooms(keys.shardOf(stockId))], [stockId, maxExpire]);
}

// ---- the relay's coordination (services/relay): membership, shard leases, lease-guarded reads

/** relay_heartbeat.lua: the live members' names after this one's heartbeat. */
export const relayHeartbeatCall = (keys: KeyLayout, consumer: string, leaseMs: number) => call<string[]>("fsRelayHeartbeat", [keys.relayMembers()], [consumer, leaseMs]);
/** relay_lease_acquire.lua: [1, previous holder to fence ("" for none)] when the caller holds the shard's lease now, [0] otherwise. */
export const relayLeaseAcquireCall = (keys: KeyLayout, shard: number, consumer: string, leaseMs: number) =>
  call<[0] | [1, string]>("fsRelayLeaseAcquire", [keys.relayLease(shard), keys.relayLeaseHolder(shard)], [consumer, leaseMs]);
/** relay_lease_confirm.lua: 1 when the lease is still the caller's (renewed, and the caller recorded as its holder). */
export const relayLeaseConfirmCall = (keys: KeyLayout, shard: number, consumer: string, leaseMs: number) =>
  call<number>("fsRelayLeaseConfirm", [keys.relayLease(shard), keys.relayLeaseHolder(shard)], [consumer, leaseMs]);
/** relay_lease_renew.lua: 1 when the caller still held it and renewed it. */
export const relayLeaseRenewCall = (keys: KeyLayout, shard: number, consumer: string, leaseMs: number) =>
  call<number>("fsRelayLeaseRenew", [keys.relayLease(shard)], [consumer, leaseMs]);
/** relay_lease_release.lua; `clean` also deletes the holder record (the next owner need not fence the caller). */
export const relayLeaseReleaseCall = (keys: KeyLayout, shard: number, consumer: string, clean: boolean) =>
  call<number>("fsRelayLeaseRelease", [keys.relayLease(shard), keys.relayLeaseHolder(shard)], [consumer, clean ? "1" : "0"]);
/** relay_ensure_group.lua: the consumer group on a shard's outbox, created once. */
export const relayEnsureGroupCall = (keys: KeyLayout, shard: number, group: string) => call("fsRelayEnsureGroup", [keys.outbox(shard)], [group]);
/** relay_delete_idle_consumers.lua: consumers with nothing pending, idle longer than idleMs (never the caller). */
export const relayDeleteIdleConsumersCall = (keys: KeyLayout, shard: number, group: string, idleMs: number, self: string) =>
  call("fsRelayDeleteIdleConsumers", [keys.outbox(shard)], [group, idleMs, self]);

/** relay_read.lua: new entries, only while the caller holds the lease. */
export const relayReadCall = (keys: KeyLayout, shard: number, group: string, consumer: string, count: number) =>
  call<unknown>("fsRelayRead", [keys.relayLease(shard), keys.outbox(shard)], [group, consumer, count]);
/** relay_read_pending.lua: the caller's pending entries after `from`, claimed to it when `claim`. */
export const relayReadPendingCall = (keys: KeyLayout, shard: number, a: { group: string; consumer: string; count: number; from: string; claim: boolean }) =>
  call<unknown>("fsRelayReadPending", [keys.relayLease(shard), keys.outbox(shard)], [a.group, a.consumer, a.count, a.from, a.claim ? "1" : "0"]);
/** relay_claim.lua: XAUTOCLAIM … JUSTID from `cursor`, only while the caller holds the lease. */
export const relayClaimCall = (keys: KeyLayout, shard: number, a: { group: string; consumer: string; minIdleMs: number; cursor: string; count: number }) =>
  call<[0] | [1, string, number]>("fsRelayClaim", [keys.relayLease(shard), keys.outbox(shard)], [a.group, a.consumer, a.minIdleMs, a.cursor, a.count]);
