/**
 * The write side against a reference model (test/sim: fast-check fc.commands + fc.asyncModelRun), on
 * the single node and on the Redis Cluster: random sequences of create, allocate (with and without
 * Idempotency-Key, replays, a reused key with another body), purchase, cancel, deadlines passing and
 * the expirer, end of sale, api restarts, relay kill -9 and connections killed mid-command. Every
 * answer, every stock view, every hold, each user's units, the Kafka history of every stock and the
 * verifier's invariants must match the model.
 *
 * Budget: 1,400 operations on the single node and 600 on the cluster (2,000 per test run; SIM_OPS sets
 * both), a fresh seed
 * each time unless SIM_SEED is set. A failure prints the seed, the path and the shrunk counterexample,
 * and the command that replays it: bun run sim --redis <r> --seed <s> --path <p> --replay-path <r>.
 * The long campaign: bun run sim --ops 200000 (docs/guarantees.md).
 */
import { describe, expect, test } from "bun:test";
import { runSim } from "./sim/run.ts";

// Per set-up; the cluster is ~3x slower per operation (more round trips, six nodes), so it gets fewer.
const OPS = { single: Number(process.env.SIM_OPS ?? 1_400), cluster: Number(process.env.SIM_OPS ?? 600) };

describe("the write side against its model", () => {
  for (const redis of ["single", "cluster"] as const) {
    test(`${OPS[redis]} random operations on the ${redis === "single" ? "single node" : "Redis Cluster"}`, async () => {
      const result = await runSim({ redis, ops: OPS[redis], seed: process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED) });
      console.log(
        `[sim] ${redis}: ${result.ops} operations in ${result.runs} runs, ${(result.ms / 1000).toFixed(1)} s, seed ${result.seed}; ` +
          `${result.counts.apiRestarts} api restarts, ${result.counts.relayKills} relay kills, ${result.counts.clientKills} connections killed mid-command`,
      );
      expect(result.report).toBeUndefined();
      expect(result.ok).toBe(true);
      expect(result.ops).toBeGreaterThanOrEqual(OPS[redis]);
    }, 240_000);
  }
});
