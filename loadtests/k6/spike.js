// spike: BUYERS distinct buyers (default 10,000), one request each with their own JWT, arrive
// within about SPIKE_SECONDS (default 2) at one hot stock of UNITS units (default 1,000).
// Pass = exactly UNITS × 201, the rest 409 sold_out, no 5xx, nothing else, p99 under P99_MS.
//
//   bun run load spike            (creates the stock, mints the tokens, runs this, verifies)
import exec from "k6/execution";
import { SUMMARY_TREND_STATS, STOCK_IDS, allocate, envInt, loadTokens, summarize } from "./lib.js";

const tokens = loadTokens();
const BUYERS = envInt("BUYERS", 10000);
const UNITS = envInt("UNITS", 1000);
const SECONDS = envInt("SPIKE_SECONDS", 2);
const P99_MS = envInt("P99_MS", 100);
const RATE = Math.ceil(BUYERS / SECONDS);
const STOCK = STOCK_IDS[0];
if (!STOCK) throw new Error("STOCK_IDS must name the hot stock");
if (tokens.length < BUYERS) throw new Error(`need ${BUYERS} tokens, the tokens file has ${tokens.length}`);

export const options = {
  scenarios: {
    spike: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      // One second of slack: k6's scheduler, starved of CPU, can fall a few arrivals short of
      // rate × duration; the extra arrivals find every buyer served and return at once.
      duration: `${SECONDS + 1}s`,
      // One VU per buyer (each its own connection, as real buyers): no arrival can be dropped however
      // long answers take under the burst. ~0.3 MB per VU, so 10,000 VUs ≈ 3 GB of k6 memory.
      preAllocatedVUs: envInt("VUS", BUYERS),
      maxVUs: envInt("MAX_VUS", BUYERS),
      gracefulStop: "30s",
    },
  },
  thresholds: {
    allocations_ok: [`count==${UNITS}`],
    alloc_sold_out: [`count==${BUYERS - UNITS}`],
    alloc_rejected: ["count==0"],
    server_errors: ["count==0"],
    unexpected: ["count==0"],
    // Every buyer made its request (arrivals past the 10,000th do nothing, so drops among them do not matter).
    "http_reqs{name:allocate}": [`count==${BUYERS}`],
    checks: ["rate==1"],
    "http_req_duration{name:allocate}": [`p(99)<${P99_MS}`],
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export default function () {
  // Each iteration is one buyer: iterationInTest is 0..BUYERS-1, unique across VUs.
  const i = exec.scenario.iterationInTest;
  if (i >= BUYERS) return;
  allocate(STOCK, tokens[i], { quantity: 1, idempotencyKey: `spike-${i}` });
}

export function handleSummary(data) {
  return summarize("spike", data, () => ({
    lines: [`buyers: ${BUYERS} arriving at ${RATE}/s on ${UNITS} units (dropped iterations, if any, are the slack second's arrivals after every buyer was served)`],
  }));
}
