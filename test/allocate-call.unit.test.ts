/**
 * allocate.lua's calling convention, built in one place (allocateCall in shared/redis/commands.ts):
 * as many KEYS and ARGV as the script's header names, every key in the stock's hash slot (one
 * EVALSHA on one Redis Cluster master), and a request record of its own when no Idempotency-Key.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { allocateCall } from "../shared/redis/commands.ts";

const header = readFileSync(join(import.meta.dir, "..", "shared", "redis", "scripts", "allocate.lua"), "utf8").split("\n").slice(0, 40).join("\n");
const highest = (name: string) => Math.max(...[...header.matchAll(new RegExp(`${name}\\[(\\d+)\\]`, "g"))].map((m) => Number(m[1])));
const keys = createKeyLayout("fs", 16);

test("allocateCall gives allocate.lua the KEYS and ARGV its header names, all keys in the stock's slot", () => {
  for (const stockId of ["a", "sneaker-42", "z9"]) {
    const call = allocateCall(keys, { stockId, userId: "u:1", quantity: 2, idempotencyKey: "k1" }, 1000);
    expect(call.keys.length).toBe(highest("KEYS"));
    expect(call.args.length).toBe(highest("ARGV"));
    const tags = new Set(call.keys.map((k) => /\{(\d+)\}/.exec(k)?.[1]));
    expect([...tags]).toEqual([String(keys.shardOf(stockId))]);
    expect(call.keys[4]).toBe(keys.idempotency(stockId, "u:1", "k1"));
  }
});

test("without an Idempotency-Key each call gets a request record of its own, and a new allocation id", () => {
  const input = { stockId: "s", userId: "u", quantity: 1 };
  const [a, b] = [allocateCall(keys, input, 1000), allocateCall(keys, input, 1000)];
  expect(a.keys[4]).not.toBe(b.keys[4]);
  expect(a.args[3]).not.toBe(b.args[3]);
  expect(a.args[9]).toBe("");
});
