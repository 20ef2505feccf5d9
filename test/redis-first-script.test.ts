/**
 * A client's first script call in the same tick as its other commands, as an api restarted under
 * traffic makes them: every call answers, and nothing is thrown outside them.
 *
 * ioredis copies a client's commands into an auto-pipeline when it opens one. Scripts defined on the
 * client later (they were, at the first script call) are missing from a pipeline opened earlier in
 * the same tick; the script call then leaves the pipeline's callbacks one longer than its replies,
 * and ioredis throws an uncaught TypeError at exec ("Spread syntax requires ...iterable", ioredis
 * #1931), which killed the api in a waiting-room-restarts run. createRedis now defines every script
 * in the constructor (shared/redis/client.ts, `scripts`). On a client made without them, this test
 * records that TypeError.
 */
import { expect, test } from "bun:test";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { roomSummaryCall } from "../shared/redis/calls.ts";
import { createRedis, parseClusterNodes } from "../shared/redis/client.ts";
import { runScript } from "../shared/redis/scripts.ts";

const targets = [
  { name: "single node", target: { REDIS_URL: stackEnv.REDIS_URL } },
  { name: "cluster", target: { REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(stackEnv.REDIS_CLUSTER_NODES) } },
];

for (const { name, target } of targets) {
  test(`${name}: plain commands and the first script calls in one tick all answer, nothing thrown outside them`, async () => {
    const thrown: unknown[] = [];
    const record = (err: unknown) => thrown.push(err);
    process.on("uncaughtException", record);
    const redis = createRedis(target);
    try {
      const keys = createKeyLayout(uniqueName("firstscript"), 4);
      const stock = "s1";
      // One tick: a plain command opens the auto-pipeline of the stock's slot, then scripts on the same slot.
      const calls = [
        redis.exists(keys.stock(stock)),
        runScript(redis, roomSummaryCall(keys, stock)),
        redis.exists(keys.stock(stock)),
        runScript(redis, roomSummaryCall(keys, stock)),
      ];
      const settled = await Promise.allSettled(calls);
      await Bun.sleep(100); // a TypeError thrown at exec surfaces on a later tick
      expect(thrown.map(String)).toEqual([]);
      expect(settled.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "fulfilled", "fulfilled"]);
    } finally {
      process.off("uncaughtException", record);
      redis.disconnect();
    }
  });
}
