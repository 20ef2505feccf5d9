/**
 * The spike's ceiling on this machine, for `bun run load spike --baseline` (run.ts): the same k6
 * script, tokens and arrival schedule against bare Hono (loadtests/baselines/hono-bare.ts) answering
 * the same mix, UNITS × 201 then 409 sold_out. It shares the cores with k6 exactly as the api does, so
 * the ratio of the two is what the api costs. And the warm-up both get first (--warmup): requests on a
 * stock whose sale has not started, so a freshly started server is not measured while its JIT compiles.
 */
import { join } from "node:path";
import { adminPost, cpuSeconds, runK6, startProcess, waitHealthy, type K6Summary } from "./support.ts";
import { freePort } from "../shared/dev/env.ts";

export interface SpikeRun {
  summary: K6Summary;
  /** CPU seconds the server process used during the k6 run. */
  serverCpuSeconds: number;
}

export type Warmup = { seconds: number; stock: string };

/** A stock whose sale starts in a year: allocating it answers 409 not_started and changes nothing. */
export async function createWarmupStock(baseUrl: string, adminToken: string, prefix: string): Promise<string> {
  const id = `${prefix}-warmup`;
  const startsAt = new Date(Date.now() + 365 * 24 * 3600 * 1000).toISOString();
  await adminPost(baseUrl, adminToken, "/api/stocks", { id, name: "Warm-up (not on sale)", price: 1, quantity: 1, startsAt });
  return id;
}

export async function warmUp(baseUrl: string, k6Env: Record<string, string>, warmup: Warmup): Promise<void> {
  const env = { BASE_URL: baseUrl, TOKENS_FILE: k6Env.TOKENS_FILE!, WARMUP_STOCK: warmup.stock, DURATION: `${warmup.seconds}s` };
  const run = await runK6("warmup.js", env, "");
  if (run.exitCode !== 0) throw new Error(`warm-up against ${baseUrl} failed (k6 exit ${run.exitCode}): an answer other than 409 not_started`);
}

export async function runSpikeBaseline(dir: string, k6Env: Record<string, string>, warmup: Warmup | null): Promise<{ summary: K6Summary | null; serverCpuSeconds: number }> {
  const port = await freePort();
  const env = { PORT: String(port), UNITS: k6Env.UNITS ?? "1000", ...(warmup ? { WARMUP_STOCK: warmup.stock } : {}) };
  const bare = startProcess("hono-bare", [process.execPath, "loadtests/baselines/hono-bare.ts"], env, dir);
  try {
    await waitHealthy(`http://127.0.0.1:${port}/healthz`, bare);
    if (warmup) await warmUp(`http://127.0.0.1:${port}`, k6Env, warmup);
    console.log("[load] baseline: the same spike against bare Hono (no auth, no store)");
    const before = cpuSeconds(bare.proc.pid);
    const run = await runK6("spike.js", { ...k6Env, BASE_URL: `http://127.0.0.1:${port}` }, join(dir, "spike-baseline-summary.json"), { htmlReport: true });
    return { summary: run.summary, serverCpuSeconds: cpuSeconds(bare.proc.pid) - before };
  } finally {
    await bare.stop();
  }
}

export function compareSpikes(ours: SpikeRun, bare: SpikeRun): string {
  const figures = ({ summary, serverCpuSeconds }: SpikeRun) => {
    const latency = summary.metrics["http_req_duration{name:allocate}"]?.values ?? {};
    const requests = summary.metrics["http_reqs"]?.values ?? {};
    const cpuUs = (serverCpuSeconds * 1e6) / (requests.count ?? Number.NaN);
    return { p50: latency.med ?? Number.NaN, p99: latency["p(99)"] ?? Number.NaN, rate: requests.rate ?? Number.NaN, cpuUs };
  };
  const a = figures(ours);
  const b = figures(bare);
  const ms = (v: number) => `${v.toFixed(v < 10 ? 1 : 0)} ms`;
  return [
    "[load] spike vs its HTTP ceiling (same k6 script and arrivals, same run):",
    `[load]   api        p50 ${ms(a.p50)}, p99 ${ms(a.p99)}, ${a.rate.toFixed(0)} req/s over the run, server CPU ${a.cpuUs.toFixed(0)} µs/request`,
    `[load]   bare Hono  p50 ${ms(b.p50)}, p99 ${ms(b.p99)}, ${b.rate.toFixed(0)} req/s over the run, server CPU ${b.cpuUs.toFixed(0)} µs/request`,
    `[load]   api p99 / bare p99 = ${(a.p99 / b.p99).toFixed(1)}×`,
  ].join("\n");
}
