/**
 * `bun run sim`: the model-based simulation of the write side (test/sim/run.ts) from the command line.
 *
 *   bun run sim --ops 200000                      a long campaign (both Redis set-ups unless --redis)
 *   bun run sim --redis single --seed S --path P  replays a failed run exactly (the failure prints both)
 *        [--replay-path R]                        ... and its shrunk commands (fast-check's replayPath)
 *
 * SIM_PROFILE=1 prints the time per operation kind. Needs the stack (Redis, Kafka; the Redis Cluster for --redis cluster). Exits 1 when a run failed.
 */
import { parseArgs } from "node:util";
import { simProfile } from "./commands.ts";
import { runSim } from "./run.ts";

const { values } = parseArgs({
  options: {
    ops: { type: "string", default: "2000" },
    redis: { type: "string", default: "both" },
    seed: { type: "string" },
    path: { type: "string" },
    "replay-path": { type: "string" },
  },
});
const kinds = values.redis === "both" ? (["single", "cluster"] as const) : [values.redis];
let failed = false;
for (const redis of kinds) {
  if (redis !== "single" && redis !== "cluster") {
    console.error(`--redis must be single, cluster or both, not ${redis}`);
    process.exit(2);
  }
  const result = await runSim({
    redis,
    ops: Number(values.ops),
    seed: values.seed === undefined ? undefined : Number(values.seed),
    path: values.path,
    replayPath: values["replay-path"],
  });
  console.log(
    `[sim] ${redis}: ${result.ok ? "ok" : "FAILED"}: ${result.ops} operations in ${result.runs} runs, ${(result.ms / 1000).toFixed(1)} s, seed ${result.seed}; ` +
      `${result.counts.apiRestarts} api restarts, ${result.counts.relayKills} relay kills, ${result.counts.clientKills} connections killed mid-command`,
  );
  if (!result.ok) failed = true;
  for (const [name, ms] of simProfile) console.log(`  ${name}: ${ms.length} × ${(ms.reduce((a, b) => a + b, 0) / ms.length).toFixed(1)} ms = ${(ms.reduce((a, b) => a + b, 0) / 1000).toFixed(1)} s`);
}
process.exit(failed ? 1 : 0);
