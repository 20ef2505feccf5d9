/**
 * The Lua scripts' sources and key counts, in one table: what `createRedis` (client.ts) defines on
 * every client it makes (ioredis' `scripts` option, so they exist before the client's first command)
 * and what scripts.ts runs. _lib.lua is prepended to every script (the relay's use little of it),
 * _room.lua too to the waiting-room ones. The .lua files are text imports, so `bun build --compile`
 * embeds them in the binary.
 */
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

/** The full source Redis runs: the shared helpers followed by the script itself. */
export function scriptSource(name: ScriptName): string {
  const script = SCRIPTS[name] as { source: string; room?: boolean };
  return script.room ? `${libLua}\n${roomLua}\n${script.source}` : `${libLua}\n${script.source}`;
}

/** How many KEYS each script takes, as Redis is told (held to the builders by test/script-calls.unit.test.ts). */
export const scriptKeyCount = (name: ScriptName): number => SCRIPTS[name].keys;

export const SCRIPT_NAMES = Object.keys(SCRIPTS) as ScriptName[];

/** ioredis' `scripts` option: every script as a command of the client (EVALSHA, EVAL on NOSCRIPT). */
export const SCRIPT_COMMANDS: Record<ScriptName, { lua: string; numberOfKeys: number }> = Object.fromEntries(
  SCRIPT_NAMES.map((name) => [name, { lua: scriptSource(name), numberOfKeys: SCRIPTS[name].keys }]),
) as Record<ScriptName, { lua: string; numberOfKeys: number }>;
