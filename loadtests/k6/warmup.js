// warmup: brings a freshly started server's JIT up to speed before a measured run, without
// changing anything a verifier counts. VUS virtual users loop for DURATION on STOCK, a stock whose
// sale has not started: every answer is 409 `not_started`, yet each request runs the path of a doomed
// buyer in the spike (JWT, validation, the api's refusal from memory after one allocate script, and,
// as each carries a fresh Idempotency-Key, the GET of its record; docs/design.md §12).
//   bun run load spike --warmup 10   (the runner creates the stock and runs this before the spike)
import http from "k6/http";
import { BASE_URL, envInt, envStr, loadTokens, userHeaders } from "./lib.js";

const tokens = loadTokens();
const STOCK = envStr("WARMUP_STOCK", "");
if (!STOCK) throw new Error("WARMUP_STOCK must name a stock whose sale has not started");

export const options = {
  scenarios: { warmup: { executor: "constant-vus", vus: envInt("VUS", 32), duration: envStr("DURATION", "10s"), gracefulStop: "5s" } },
  // Anything but not_started means the warm-up changed state or failed: stop the run.
  thresholds: { http_req_failed: ["rate==0"] },
};

export default function () {
  const token = tokens[Math.floor(Math.random() * tokens.length)];
  http.post(`${BASE_URL}/api/stocks/${STOCK}/allocate`, JSON.stringify({ quantity: 1 }), {
    headers: userHeaders(token, { "Idempotency-Key": `warmup-${__VU}-${__ITER}` }),
    responseCallback: http.expectedStatuses(409),
  });
}

export function handleSummary(data) {
  const reqs = data.metrics.http_reqs ? data.metrics.http_reqs.values : { count: 0, rate: 0 };
  return { stdout: `warm-up: ${reqs.count} requests (${reqs.rate.toFixed(0)}/s) to ${BASE_URL}\n` };
}
