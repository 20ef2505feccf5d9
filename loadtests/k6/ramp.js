// ramp: finds the highest allocation rate at which p99 stays under P99_MS (default 50) and no
// request fails. Arrival rate steps up from START (default 500/s) by STEP (500/s) every STEP_SECONDS
// (10 s) for STEPS steps (12); each request is tagged with its step, and the summary reports every
// step and the last passing one (steps pass in order: the first failing step ends the search).
// The run itself fails only when even the first step fails.
//
//   bun run load ramp [--env START=500 --env STEP=500 --env STEPS=12 --env STEP_SECONDS=10]
import http from "k6/http";
import exec from "k6/execution";
import { Counter, Trend } from "k6/metrics";
import { BASE_URL, SUMMARY_TREND_STATS, STOCK_IDS, envInt, loadTokens, perStockSubmetrics, summarize, unitsAllocated, allocationsOk, soldOut, rejected, serverErrors } from "./lib.js";

const tokens = loadTokens();
const START = envInt("START", 500);
const STEP = envInt("STEP", 500);
const STEPS = envInt("STEPS", 12);
const STEP_SECONDS = envInt("STEP_SECONDS", 10);
const P99_MS = envInt("P99_MS", 50);
if (STOCK_IDS.length === 0) throw new Error("STOCK_IDS is empty");
const rateOf = (i) => START + i * STEP;

const latency = new Trend("ramp_latency", true);
const requests = new Counter("ramp_requests");
const failed = new Counter("ramp_failed");

const stages = [];
for (let i = 0; i < STEPS; i++) {
  stages.push({ target: rateOf(i), duration: "1s" });
  stages.push({ target: rateOf(i), duration: `${STEP_SECONDS - 1}s` });
}

const thresholds = Object.assign(
  {
    // The run fails only if the system cannot take even the first step.
    "ramp_failed{step:0}": ["count==0"],
    "ramp_latency{step:0}": [`p(99)<${P99_MS}`],
  },
  perStockSubmetrics(STOCK_IDS),
);
for (let i = 0; i < STEPS; i++) {
  // Always-true entries: they only make each step's sub-metrics appear in the summary data.
  thresholds[`ramp_latency{step:${i}}`] = (thresholds[`ramp_latency{step:${i}}`] || []).concat(["max>=0"]);
  thresholds[`ramp_requests{step:${i}}`] = ["count>=0"];
  thresholds[`ramp_failed{step:${i}}`] = (thresholds[`ramp_failed{step:${i}}`] || []).concat(["count>=0"]);
}

export const options = {
  scenarios: {
    ramp: {
      executor: "ramping-arrival-rate",
      startRate: START,
      timeUnit: "1s",
      stages,
      preAllocatedVUs: envInt("VUS", 300),
      maxVUs: envInt("MAX_VUS", 1500),
      gracefulStop: "10s",
    },
  },
  thresholds,
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const pick = (n) => Math.floor(Math.random() * n);

export default function () {
  const step = Math.min(STEPS - 1, Math.floor((Date.now() - exec.scenario.startTime) / (STEP_SECONDS * 1000)));
  const tags = { step: String(step) };
  const stock = STOCK_IDS[pick(STOCK_IDS.length)];
  const res = http.post(`${BASE_URL}/api/stocks/${stock}/allocate`, '{"quantity":1}', {
    headers: { Authorization: `Bearer ${tokens[pick(tokens.length)]}`, "Content-Type": "application/json" },
    tags: { name: "allocate", step: String(step) },
    responseCallback: http.expectedStatuses(201, 409),
  });
  requests.add(1, tags);
  latency.add(res.timings.duration, tags);
  if (res.status === 201) {
    allocationsOk.add(1, { stock });
    unitsAllocated.add(1, { stock });
  } else if (res.status === 409) {
    // Stocks are sized so this should not happen; it is not a failure of the system, but count it.
    const code = res.json("code");
    if (code === "sold_out") soldOut.add(1);
    else rejected.add(1, { code: String(code) });
  } else {
    if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
    failed.add(1, tags);
  }
}

function stepReport(data) {
  const v = (name, stat) => (data.metrics[name] && data.metrics[name].values ? data.metrics[name].values[stat] : undefined);
  const steps = [];
  let lastPassing = null;
  let stillPassing = true;
  for (let i = 0; i < STEPS; i++) {
    const rate = rateOf(i);
    const prev = i === 0 ? START : rateOf(i - 1);
    const expected = (prev + rate) / 2 + rate * (STEP_SECONDS - 1);
    const n = v(`ramp_requests{step:${i}}`, "count") || 0;
    const p99 = v(`ramp_latency{step:${i}}`, "p(99)");
    const p50 = v(`ramp_latency{step:${i}}`, "med");
    const bad = v(`ramp_failed{step:${i}}`, "count") || 0;
    // Delivered: at least 95 % of the arrivals this step should have had (else VUs ran out: overload).
    const delivered = n >= 0.95 * expected;
    const pass = n > 0 && delivered && bad === 0 && p99 !== undefined && p99 < P99_MS;
    if (stillPassing && pass) lastPassing = { step: i, rate };
    if (!pass) stillPassing = false;
    steps.push({ step: i, rate, requests: n, expected: Math.round(expected), p50, p99, failed: bad, pass });
  }
  return { steps, lastPassing };
}

export function handleSummary(data) {
  return summarize("ramp", data, () => {
    const { steps, lastPassing } = stepReport(data);
    const fmt = (x) => (x === undefined ? "-" : x.toFixed(1));
    const lines = ["step   rate/s  requests  expected   p50 ms   p99 ms  failed  pass"];
    for (const s of steps) {
      lines.push(
        `${String(s.step).padStart(4)} ${String(s.rate).padStart(8)} ${String(s.requests).padStart(9)} ${String(s.expected).padStart(9)} ` +
          `${fmt(s.p50).padStart(8)} ${fmt(s.p99).padStart(8)} ${String(s.failed).padStart(7)}  ${s.pass ? "yes" : "no"}`,
      );
    }
    lines.push(
      lastPassing
        ? `highest passing rate: ${lastPassing.rate}/s (step ${lastPassing.step}; p99 < ${P99_MS} ms, no failure, arrivals delivered)`
        : `no step passed (p99 < ${P99_MS} ms with no failure) — not even ${START}/s`,
    );
    return { lines, fields: { steps, lastPassing, p99LimitMs: P99_MS } };
  });
}
