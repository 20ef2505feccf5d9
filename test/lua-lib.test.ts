/**
 * The shared Lua library of the Redis scripts (shared/redis/scripts/_lib.lua), run in the stack's real
 * Redis: what it computes must equal what JavaScript computes. (Moved out of the unit tier: it needs Redis.)
 */
import { describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import libLua from "../shared/redis/scripts/_lib.lua" with { type: "text" };
import { stackEnv } from "../shared/dev/env.ts";

describe("Lua iso8601 matches JavaScript's toISOString", () => {
  test("over a spread of instants, leap days included", async () => {
    const redis = new Redis(stackEnv.REDIS_URL);
    const instants = [0, 951_782_400_000, 1_709_164_800_123, 4_107_542_399_999, 1_767_225_599_999];
    for (let i = 0; i < 200; i++) instants.push(Math.floor(Math.random() * 4_102_444_800_000));
    const script = `${libLua}\nlocal out = {}\nfor i, ms in ipairs(ARGV) do out[i] = iso8601(tonumber(ms)) end\nreturn out`;
    const formatted = (await redis.eval(script, 0, ...instants.map(String))) as string[];
    expect(formatted).toEqual(instants.map((ms) => new Date(ms).toISOString()));
    redis.disconnect();
  });
});
