// bench: the same allocate request against any target (our api, the bare Hono ceiling, the
// PostgreSQL alternative), so scripts/bench-allocate.ts can compare them side by side.
//   MODE=closed  VUS virtual users loop as fast as answers come (throughput ceiling)     [default]
//   MODE=open    RATE requests/s arrive whatever the latency (latency at equal load)
// Each request: POST /api/stocks/<random stock>/allocate, a random buyer's JWT, body {"quantity":1}.
import { SUMMARY_TREND_STATS, STOCK_IDS, allocate, envInt, envStr, loadTokens, summarize } from "./lib.js";

const tokens = loadTokens();
const MODE = envStr("MODE", "closed");
const DURATION = envStr("DURATION", "20s");
const VUS = envInt("VUS", 64);
const RATE = envInt("RATE", 1000);
if (STOCK_IDS.length === 0) throw new Error("STOCK_IDS is empty");

const scenario =
  MODE === "open"
    ? { executor: "constant-arrival-rate", rate: RATE, timeUnit: "1s", duration: DURATION, preAllocatedVUs: envInt("PRE_VUS", 200), maxVUs: envInt("MAX_VUS", 2000) }
    : { executor: "constant-vus", vus: VUS, duration: DURATION };

export const options = {
  scenarios: { bench: Object.assign({ gracefulStop: "10s" }, scenario) },
  thresholds: {
    server_errors: ["count==0"],
    unexpected: ["count==0"],
    checks: ["rate==1"],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
  const token = tokens[Math.floor(Math.random() * tokens.length)];
  const stock = STOCK_IDS[Math.floor(Math.random() * STOCK_IDS.length)];
  allocate(stock, token, { quantity: 1, limitOk: true });
}

export function handleSummary(data) {
  return summarize(`bench ${envStr("TARGET", "")} ${MODE}`, data);
}
