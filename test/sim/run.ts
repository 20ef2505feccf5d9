/**
 * A seeded model-based simulation of the write side (fast-check fc.commands + fc.asyncModelRun):
 * random sequences of the operations of test/sim/commands.ts against the real api and Redis (single
 * node or cluster), a relay process and Kafka. After every step the stock's view must equal the
 * model's; after every run, checkRun() below compares everything else. A failure prints its seed and
 * path, fast-check shrinks it to a short sequence, and `bun run sim --seed <s> --path <p>` replays it.
 *
 * Used by test/model-write-side.test.ts (a fixed budget in every test run) and test/sim/cli.ts
 * (`bun run sim`, the long campaign).
 */
import fc from "fast-check";
import { parseClusterNodes } from "../../shared/redis/client.ts";
import { formatReport } from "../../shared/verify/report.ts";
import { checkStockEvents, checkStockState, readOutboxEvents, readStocks } from "../../shared/verify/redis.ts";
import { verify as verifyRedis } from "../../shared/verify/verify.ts";
import { stackEnv } from "../../shared/dev/env.ts";
import { recordTime, relayKill, SimMismatch, simCommands, type SimRun } from "./commands.ts";
import { WriteSideModel, type ModelEvent } from "./model.ts";
import { SimSystem } from "./system.ts";

export interface SimOptions {
  /** Operations to run at least (runs are added until the count is reached). */
  ops: number;
  redis: "single" | "cluster";
  seed?: number;
  path?: string;
  /** fc.commands' replayPath, printed with a counterexample: replays the shrunk commands exactly. */
  replayPath?: string;
  /** Longest sequence per run. */
  maxCommands?: number;
  /** Relay kill -9 once in this many operations, on average. */
  relayKillEvery?: number;
  log?: (line: string) => void;
}

export interface SimResult {
  ok: boolean;
  ops: number;
  runs: number;
  seed: number;
  ms: number;
  counts: SimSystem["counts"];
  /** fast-check's report (seed, path, shrunk counterexample) when a run failed. */
  report?: string;
}

/** What Kafka carried for one stock, first copy of each event, by version. */
function topicHistory(sys: SimSystem, stockId: string): { version: number; type: string; allocationId?: string; reason?: string; counters?: string }[] {
  const seen = new Set<string>();
  const out = [];
  for (const m of sys.reader.messages) {
    if (m.aggregateId !== stockId || seen.has(m.eventId)) continue;
    seen.add(m.eventId);
    const e = JSON.parse(m.value) as { eventType: string; version: number; payload: Record<string, unknown> };
    const p = e.payload;
    out.push({
      version: e.version,
      type: e.eventType,
      allocationId: p.allocationId as string | undefined,
      reason: p.reason as string | undefined,
      counters: p.available === undefined ? undefined : `${p.available}/${p.held}/${p.sold}`,
    });
  }
  return out.sort((a, b) => a.version - b.version);
}

const modelHistory = (events: readonly ModelEvent[]) =>
  events.map((e) => ({
    version: e.version,
    type: e.type,
    allocationId: e.allocationId,
    reason: e.reason,
    counters: `${e.available}/${e.held}/${e.sold}`,
  }));

/** After a run: holds, per-user units, the Kafka history per stock, and the verifier's invariants. */
async function checkRun(run: SimRun): Promise<void> {
  const { model, sys } = run;
  for (const h of model.holds) {
    const got = await sys.request("GET", `/api/allocations/${h.allocationId}`, { userId: h.userId });
    if (got.body.status !== h.status) throw new SimMismatch(`hold ${h.allocationId}: status ${String(got.body.status)}, model says ${h.status}`);
  }
  for (const s of model.stocks) {
    // I4: what each user holds or bought, as Redis counts it for the per-user limit.
    const buyers = Object.entries(await sys.ops.hgetall(sys.keys.stockBuyers(s.id))).filter(([, v]) => v !== "0");
    const want = [...s.buyers].filter(([, v]) => v !== 0).map(([u, v]) => [u, String(v)]);
    if (JSON.stringify(buyers.sort()) !== JSON.stringify(want.sort())) throw new SimMismatch(`stock ${s.id} buyers ${JSON.stringify(buyers)}, model says ${JSON.stringify(want)}`);
  }
  // Kafka (read_committed): every stock's history, gap-free, exactly what the model says happened.
  const deadline = Date.now() + 30_000;
  for (const s of model.stocks) {
    let got = topicHistory(sys, s.id);
    while (got.length < s.events.length && Date.now() < deadline) {
      await Bun.sleep(50);
      got = topicHistory(sys, s.id);
    }
    const want = modelHistory(s.events);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      throw new SimMismatch(`stock ${s.id}: Kafka history ${JSON.stringify(got)}\n  model says ${JSON.stringify(want)}`);
    }
  }
  // DESIGN §2 on Redis itself, the verifier's own checks (shared/verify/redis.ts): I1 and I4 on each
  // stock's hash, I2 on the outbox tail the relay has not trimmed yet. Keys come from the layout
  // (the verifier's SCAN of the shared Redis would cost seconds per run; verifyAll does it once).
  const stocks = await readStocks(sys.ops, new Map(model.stocks.map((s) => [s.id, sys.keys.stock(s.id)])));
  const { byStock, bad } = await readOutboxEvents(sys.ops, sys.keys.allShards().map((n) => sys.keys.outbox(n)));
  const findings = [...bad, ...stocks.flatMap((s) => [...checkStockState(s), ...checkStockEvents(s, byStock.get(s.stockId) ?? [], false)])];
  if (findings.length > 0) throw new SimMismatch(`verifier findings:\n${findings.map((f) => `  ${f.invariant} ${f.stockId ?? ""}: ${f.message}`).join("\n")}`);
}

/** Once per simulation: the whole verifier (shared/verify) over every stock the runs created. */
async function verifyAll(sys: SimSystem): Promise<string | undefined> {
  const report = await verifyRedis({ redis: sys.ops, prefix: sys.prefix, layers: ["redis", "kafka"], kafka: { brokers: stackEnv.KAFKA_BROKERS.split(","), topic: sys.topic }, outbox: "tail" });
  return report.ok ? undefined : formatReport(report);
}

export async function runSim(options: SimOptions): Promise<SimResult> {
  const log = options.log ?? ((line: string) => console.log(line));
  const sys = new SimSystem(
    options.redis === "cluster"
      ? { redis: { REDIS_URL: stackEnv.REDIS_URL, REDIS_CLUSTER_NODES: parseClusterNodes(stackEnv.REDIS_CLUSTER_NODES) }, clusterNodes: stackEnv.REDIS_CLUSTER_NODES }
      : { redis: { REDIS_URL: stackEnv.REDIS_URL } },
  );
  await sys.start();
  const seed = options.seed ?? Date.now() ^ (Math.random() * 0x7fffffff);
  const maxCommands = options.maxCommands ?? 150;
  const killEvery = options.relayKillEvery ?? 400;
  const ops = { count: 0 };
  let runs = 0;
  const started = Date.now();
  const command = fc.oneof(
    { weight: killEvery - 1, arbitrary: fc.oneof(...simCommands) },
    { weight: 1, arbitrary: relayKill },
  );
  // fast-check counts runs, not operations: runs past the budget pass at once, unless a failure is
  // being shrunk (each shrink step is a run that must really execute).
  let shrinking = false;
  const property = fc.asyncProperty(fc.commands([command], { maxCommands, size: "max", replayPath: options.replayPath }), async (cmds) => {
    if (ops.count >= options.ops && !shrinking && !options.path) return;
    const run: SimRun = { model: new WriteSideModel(), sys, runId: `r${runs++}`, ops, nextStock: 0, nextKey: 0 };
    try {
      await fc.asyncModelRun(() => ({ model: run, real: sys }), cmds);
      const t = performance.now();
      await checkRun(run);
      recordTime("end-of-run checks", performance.now() - t);
    } catch (err) {
      shrinking = true;
      throw err;
    }
  });
  try {
    const details = await fc.check(property, { seed, path: options.path, numRuns: options.path ? undefined : options.ops });
    const result: SimResult = { ok: !details.failed, ops: ops.count, runs, seed, ms: Date.now() - started, counts: { ...sys.counts } };
    const verifier = details.failed || runs === 0 ? undefined : await verifyAll(sys);
    if (verifier) {
      result.ok = false;
      result.report = `the verifier over all runs (seed ${seed}):\n${verifier}`;
      log(`[sim] FAILED on ${options.redis}: ${result.report}`);
    }
    if (details.failed) {
      const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
      result.report = `${fc.defaultReportMessage(details) ?? "failed"}\nError: ${error}`;
      const replayPath = /replayPath="([^"]+)"/.exec(result.report)?.[1];
      log(
        `[sim] FAILED on ${options.redis}; replay: bun run sim --redis ${options.redis} --seed ${details.seed} --path "${details.counterexamplePath}"` +
          (replayPath ? ` --replay-path "${replayPath}"` : ""),
      );
      log(result.report);
    }
    return result;
  } finally {
    await sys.stop();
  }
}
