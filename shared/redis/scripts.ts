/**
 * Loads the Lua scripts into an ioredis client. ioredis' defineCommand runs them with EVALSHA
 * and falls back to EVAL on NOSCRIPT (after a Redis restart or failover), also inside pipelines.
 * The write-side scripts share _lib.lua (prepended); the relay's coordination scripts use none of it.
 * The .lua files are text imports, so `bun build --compile` embeds them in the binary.
 */
import type { ChainableCommander } from "ioredis";
import { retryUnexecuted, type RedisClient } from "./client.ts";
import allocateLua from "./scripts/allocate.lua" with { type: "text" };
import cancelLua from "./scripts/cancel.lua" with { type: "text" };
import createStockLua from "./scripts/create_stock.lua" with { type: "text" };
import dueHoldsLua from "./scripts/due_holds.lua" with { type: "text" };
import expireLua from "./scripts/expire.lua" with { type: "text" };
import libLua from "./scripts/_lib.lua" with { type: "text" };
import purchaseLua from "./scripts/purchase.lua" with { type: "text" };
import relayDeleteIdleConsumersLua from "./scripts/relay_delete_idle_consumers.lua" with { type: "text" };
import relayHeartbeatLua from "./scripts/relay_heartbeat.lua" with { type: "text" };
import relayLeaseAcquireLua from "./scripts/relay_lease_acquire.lua" with { type: "text" };
import relayLeaseReleaseLua from "./scripts/relay_lease_release.lua" with { type: "text" };
import relayLeaseRenewLua from "./scripts/relay_lease_renew.lua" with { type: "text" };
import relayLeaseConfirmLua from "./scripts/relay_lease_confirm.lua" with { type: "text" };
import relayEnsureGroupLua from "./scripts/relay_ensure_group.lua" with { type: "text" };
import relayClaimLua from "./scripts/relay_claim.lua" with { type: "text" };
import relayReadLua from "./scripts/relay_read.lua" with { type: "text" };
import relayReadPendingLua from "./scripts/relay_read_pending.lua" with { type: "text" };
import snapshotLua from "./scripts/snapshot.lua" with { type: "text" };
import roomLua from "./scripts/_room.lua" with { type: "text" };
import roomDrawLua from "./scripts/room_draw.lua" with { type: "text" };
import roomJoinLua from "./scripts/room_join.lua" with { type: "text" };
import roomStatusLua from "./scripts/room_status.lua" with { type: "text" };
import roomSummaryLua from "./scripts/room_summary.lua" with { type: "text" };
import roomSweepLua from "./scripts/room_sweep.lua" with { type: "text" };

/** `room: true`: the waiting-room helpers (_room.lua) are prepended too, after _lib.lua. */
const SCRIPTS = {
  fsCreateStock: { source: createStockLua, keys: 5 },
  fsAllocate: { source: allocateLua, keys: 10, room: true },
  fsPurchase: { source: purchaseLua, keys: 4 },
  fsCancel: { source: cancelLua, keys: 10, room: true },
  fsExpire: { source: expireLua, keys: 10, room: true },
  fsRoomJoin: { source: roomJoinLua, keys: 7, room: true },
  fsRoomStatus: { source: roomStatusLua, keys: 6, room: true },
  fsRoomSummary: { source: roomSummaryLua, keys: 5, room: true },
  fsRoomDraw: { source: roomDrawLua, keys: 7, room: true },
  fsRoomSweep: { source: roomSweepLua, keys: 9, room: true },
  fsDueHolds: { source: dueHoldsLua, keys: 1 },
  fsRelayHeartbeat: { source: relayHeartbeatLua, keys: 1 },
  fsRelayLeaseAcquire: { source: relayLeaseAcquireLua, keys: 2 },
  fsRelayLeaseRenew: { source: relayLeaseRenewLua, keys: 1 },
  fsRelayLeaseConfirm: { source: relayLeaseConfirmLua, keys: 2 },
  fsRelayLeaseRelease: { source: relayLeaseReleaseLua, keys: 2 },
  fsRelayDeleteIdleConsumers: { source: relayDeleteIdleConsumersLua, keys: 1 },
  fsRelayRead: { source: relayReadLua, keys: 2 },
  fsRelayReadPending: { source: relayReadPendingLua, keys: 2 },
  fsRelayClaim: { source: relayClaimLua, keys: 2 },
  fsRelayEnsureGroup: { source: relayEnsureGroupLua, keys: 1 },
  fsSnapshot: { source: snapshotLua, keys: 3 },
} satisfies Record<string, { source: string; keys: number; room?: boolean }>;

export type ScriptName = keyof typeof SCRIPTS;
export type ScriptReply = [string, ...unknown[]];
export type ScriptArg = string | number;

/** The full source Redis runs: the shared helpers followed by the script itself. */
export function scriptSource(name: ScriptName): string {
  const script = SCRIPTS[name] as { source: string; room?: boolean };
  return script.room ? `${libLua}\n${roomLua}\n${script.source}` : `${libLua}\n${script.source}`;
}

const defined = new WeakSet<RedisClient>();

function ensureDefined(redis: RedisClient): void {
  if (defined.has(redis)) return;
  for (const [name, script] of Object.entries(SCRIPTS)) {
    redis.defineCommand(name, { numberOfKeys: script.keys, lua: scriptSource(name as ScriptName) });
  }
  defined.add(redis);
}

/**
 * One script's KEYS and ARGV, built by its args builder in calls.ts (the only place that knows the
 * order); `Reply` is what the script answers.
 */
export interface ScriptCall<Reply = ScriptReply> {
  readonly script: ScriptName;
  readonly keys: string[];
  readonly args: ScriptArg[];
  /** Never set: carries the reply's type from the builder to runScript. */
  readonly reply?: Reply;
}

/** Runs one script on a client. Keys must all carry the same hash tag (checked by the key layout). */
export function runScript<Reply>(redis: RedisClient, call: ScriptCall<Reply>): Promise<Reply> {
  ensureDefined(redis);
  const { script: name, keys, args } = call;
  if (keys.length !== SCRIPTS[name].keys) throw new Error(`${name} takes ${SCRIPTS[name].keys} keys, got ${keys.length}`);
  const command = (redis as unknown as Record<ScriptName, (...a: ScriptArg[]) => Promise<Reply>>)[name];
  return retryUnexecuted(() => command.call(redis, ...keys, ...args));
}

/** Queues one script on a pipeline of a client that ran `prepareScripts`. */
export function queueScript(pipeline: ChainableCommander, call: ScriptCall<unknown>): void {
  const command = (pipeline as unknown as Record<ScriptName, (...a: ScriptArg[]) => ChainableCommander>)[call.script];
  command.call(pipeline, ...call.keys, ...call.args);
}

/** How many KEYS each script takes, as Redis is told (held to the builders by test/script-calls.unit.test.ts). */
export const scriptKeyCount = (name: ScriptName): number => SCRIPTS[name].keys;

/** Defines the scripts on a client up front (needed before building pipelines). */
export function prepareScripts(redis: RedisClient): void {
  ensureDefined(redis);
}
