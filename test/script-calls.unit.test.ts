/**
 * Every Lua script's calling convention is built in one place, its args builder in shared/redis/calls.ts:
 * each builder gives its script as many KEYS and ARGV as the script's header names, every key in one hash
 * slot (one EVALSHA on one Redis Cluster master), and as many KEYS as scripts.ts tells Redis. Every script
 * of shared/redis/scripts/ has its builder here. allocate also gets a request record of its own when no
 * Idempotency-Key is sent.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createKeyLayout } from "../shared/domain/keys.ts";
import * as calls from "../shared/redis/calls.ts";
import { scriptKeyCount, type ScriptCall } from "../shared/redis/scripts.ts";

const dir = join(import.meta.dir, "..", "shared", "redis", "scripts");
/** The header: the comment lines the script starts with. */
const header = (file: string) => readFileSync(join(dir, file), "utf8").split("\n").filter((l, i, all) => all.slice(0, i + 1).every((x) => x.startsWith("--"))).join("\n");
const highest = (text: string, name: string) => Math.max(0, ...[...text.matchAll(new RegExp(`${name}\\[(\\d+)\\]`, "g"))].map((m) => Number(m[1])));
/** fsRelayLeaseAcquire → relay_lease_acquire.lua */
const fileOf = (script: string) => `${script.slice(2).replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase())}.lua`;
const keys = createKeyLayout("fs", 16);
const hold = { allocationId: keys.newAllocationId("s1"), userId: "u1", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" };

/** One call of every builder, as the code makes them. */
const SAMPLES: Record<string, ScriptCall<unknown>> = {
  createStock: calls.createStockCall(keys, { stockId: "s1", name: "n", price: 1, quantity: 2, outboxMaxLength: 10, retainSeconds: 60 }),
  allocate: calls.allocateCall(keys, { stockId: "s1", userId: "u1", quantity: 1 }, 10),
  purchase: calls.purchaseCall(keys, "s1", hold, 60),
  cancel: calls.cancelCall(keys, "s1", hold, 60),
  expire: calls.expireCall(keys, hold.allocationId, "s1", 60),
  dueHolds: calls.dueHoldsCall(keys, 3, 100),
  snapshot: calls.snapshotCall(keys, "s1", { seenVersion: 4, maxLiveHolds: 10, maxDueScan: 10 }),
  roomJoin: calls.roomJoinCall(keys, "s1", "u1", "t1", "secret"),
  roomStatus: calls.roomStatusCall(keys, "s1", "u1"),
  roomSummary: calls.roomSummaryCall(keys, "s1"),
  roomDraw: calls.roomDrawCall(keys, "s1", ["t2", "t1"]),
  roomSweep: calls.roomSweepCall(keys, "s1", 50),
  relayHeartbeat: calls.relayHeartbeatCall(keys, "c1", 10_000),
  relayLeaseAcquire: calls.relayLeaseAcquireCall(keys, 3, "c1", 10_000),
  relayLeaseRenew: calls.relayLeaseRenewCall(keys, 3, "c1", 10_000),
  relayLeaseConfirm: calls.relayLeaseConfirmCall(keys, 3, "c1", 10_000),
  relayLeaseRelease: calls.relayLeaseReleaseCall(keys, 3, "c1", true),
  relayEnsureGroup: calls.relayEnsureGroupCall(keys, 3, "relay"),
  relayDeleteIdleConsumers: calls.relayDeleteIdleConsumersCall(keys, 3, "relay", 60_000, "c1"),
  relayRead: calls.relayReadCall(keys, 3, "relay", "c1", 100),
  relayReadPending: calls.relayReadPendingCall(keys, 3, { group: "relay", consumer: "c1", count: 100, from: "0-0", claim: true }),
  relayClaim: calls.relayClaimCall(keys, 3, { group: "relay", consumer: "c1", minIdleMs: 1000, cursor: "0-0", count: 1000 }),
};

test("every script in shared/redis/scripts/ has an args builder", () => {
  const scripts = readdirSync(dir).filter((f) => f.endsWith(".lua") && !f.startsWith("_")).sort();
  expect(Object.values(SAMPLES).map((c) => fileOf(c.script)).sort()).toEqual(scripts);
});

test("each builder gives its script the KEYS and ARGV its header names, all keys in one hash slot", () => {
  for (const call of Object.values(SAMPLES)) {
    const text = header(fileOf(call.script));
    expect({ script: call.script, keys: call.keys.length }).toEqual({ script: call.script, keys: highest(text, "KEYS") });
    expect(call.keys.length).toBe(scriptKeyCount(call.script));
    // room_draw takes the drawn order, ARGV[1..n]: any length.
    if (!/ARGV\[1\.\.n\]/.test(text)) expect({ script: call.script, args: call.args.length }).toEqual({ script: call.script, args: highest(text, "ARGV") });
    const tags = new Set(call.keys.map((k) => /\{(\d+)\}/.exec(k)?.[1] ?? "untagged"));
    expect({ script: call.script, slots: tags.size }).toEqual({ script: call.script, slots: 1 });
  }
});

test("allocateCall: every key in the stock's slot, the Idempotency-Key's record at KEYS[5]", () => {
  for (const stockId of ["a", "sneaker-42", "z9"]) {
    const call = calls.allocateCall(keys, { stockId, userId: "u:1", quantity: 2, idempotencyKey: "k1" }, 1000);
    const tags = new Set(call.keys.map((k) => /\{(\d+)\}/.exec(k)?.[1]));
    expect([...tags]).toEqual([String(keys.shardOf(stockId))]);
    expect(call.keys[4]).toBe(keys.idempotency(stockId, "u:1", "k1"));
  }
});

test("without an Idempotency-Key each call gets a request record of its own, and a new allocation id", () => {
  const input = { stockId: "s", userId: "u", quantity: 1 };
  const [a, b] = [calls.allocateCall(keys, input, 1000), calls.allocateCall(keys, input, 1000)];
  expect(a.keys[4]).not.toBe(b.keys[4]);
  expect(a.args[3]).not.toBe(b.args[3]);
  expect(a.args[9]).toBe("");
});
