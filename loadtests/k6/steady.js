// steady: a constant arrival rate (RATE/s, default 1,000; the 2-core dev box cannot hold 2,000) for DURATION (default 60s) across the
// stocks in STOCK_IDS (the runner creates 100), mixing allocations with purchases and cancels of
// earlier holds — the soak that keeps the relay and projectors fed. With FRESHNESS=1 (the runner
// sets it with --pipeline) a few buyers per second also time how long their new hold takes to show
// up in their order history (GET /api/orders/user/:id, PostgreSQL, eventually consistent).
//
//   bun run load steady [--rate 2000] [--duration 60s] [--pipeline]
import http from "k6/http";
import { sleep } from "k6";
import exec from "k6/execution";
import { SharedArray } from "k6/data";
import { Counter, Trend } from "k6/metrics";
import { BASE_URL, SUMMARY_TREND_STATS, STOCK_IDS, allocate, changeHold, envInt, envStr, loadTokens, perStockSubmetrics, summarize } from "./lib.js";

const tokens = loadTokens();
const users = new SharedArray("users", () => JSON.parse(open(__ENV.TOKENS_FILE)).users);
const RATE = envInt("RATE", 1000);
const DURATION = envStr("DURATION", "60s");
const P_PURCHASE = envInt("P_PURCHASE", 0.2);
const P_CANCEL = envInt("P_CANCEL", 0.15);
const P99_MS = envInt("P99_MS", 100);
const FRESHNESS = envStr("FRESHNESS", "0") === "1";
const durationS = Number(DURATION.replace(/s$/, ""));
if (STOCK_IDS.length === 0) throw new Error("STOCK_IDS is empty");

const freshness = new Trend("freshness_orders_ms", true);
const freshnessTimeouts = new Counter("freshness_timeouts");

const scenarios = {
  mix: {
    executor: "constant-arrival-rate",
    rate: RATE,
    timeUnit: "1s",
    duration: DURATION,
    preAllocatedVUs: envInt("VUS", Math.max(100, Math.ceil(RATE / 5))),
    maxVUs: envInt("MAX_VUS", 1500),
    gracefulStop: "15s",
    exec: "mix",
  },
};
if (FRESHNESS) {
  scenarios.freshness = {
    executor: "constant-arrival-rate",
    rate: envInt("FRESHNESS_RATE", 2),
    timeUnit: "1s",
    duration: DURATION,
    preAllocatedVUs: 20,
    maxVUs: 100,
    gracefulStop: "15s",
    exec: "fresh",
  };
}

const thresholds = Object.assign(
  {
    server_errors: ["count==0"],
    unexpected: ["count==0"],
    checks: ["rate==1"],
    // The arrival rate was really delivered (at most 0.1 % of arrivals found no free VU).
    dropped_iterations: [`count<=${Math.ceil(RATE * (Number.isFinite(durationS) ? durationS : 60) * 0.001)}`],
    "http_req_duration{name:allocate}": [`p(99)<${P99_MS}`],
    "http_req_duration{name:purchase}": [`p(99)<${P99_MS}`],
    "http_req_duration{name:cancel}": [`p(99)<${P99_MS}`],
  },
  perStockSubmetrics(STOCK_IDS),
);
if (FRESHNESS) {
  thresholds.freshness_orders_ms = [`p(99)<${envInt("FRESHNESS_P99_MS", 1000)}`];
  thresholds.freshness_timeouts = ["count==0"];
}

export const options = { scenarios, thresholds, summaryTrendStats: SUMMARY_TREND_STATS };

// Holds of this VU that are still open: purchase or cancel them later, as their owner.
const holds = [];
const MAX_OPEN_HOLDS = 20;

const pick = (n) => Math.floor(Math.random() * n);

export function mix() {
  const r = Math.random();
  if (holds.length > 0 && r < P_PURCHASE + P_CANCEL) {
    const h = holds.shift();
    changeHold(r < P_PURCHASE ? "purchase" : "cancel", h.view, tokens[h.t]);
    return;
  }
  const t = pick(tokens.length);
  const quantity = Math.random() < 0.2 ? 2 : 1;
  const key = `st-${exec.vu.idInTest}-${exec.vu.iterationInInstance}`;
  const view = allocate(STOCK_IDS[pick(STOCK_IDS.length)], tokens[t], { quantity, idempotencyKey: key, limitOk: true, wantView: true });
  if (view) {
    holds.push({ view, t });
    if (holds.length > MAX_OPEN_HOLDS) holds.shift(); // left held: the expirer or the soak's end takes it
  }
}

/** Allocate, then poll the owner's order history until the hold appears (bounded by 10 s). */
export function fresh() {
  const t = pick(tokens.length);
  const view = allocate(STOCK_IDS[pick(STOCK_IDS.length)], tokens[t], { quantity: 1, limitOk: true, wantView: true });
  if (!view) return;
  const started = Date.now();
  const url = `${BASE_URL}/api/orders/user/${users[t]}?limit=5`;
  const params = { headers: { Authorization: `Bearer ${tokens[t]}` }, tags: { name: "orders" } };
  while (Date.now() - started < 10000) {
    const res = http.get(url, params);
    if (res.status === 200 && res.body.indexOf(view.allocationId) >= 0) {
      freshness.add(Date.now() - started);
      return;
    }
    sleep(0.02);
  }
  freshnessTimeouts.add(1);
}

export function handleSummary(data) {
  return summarize("steady", data, () => ({ trends: FRESHNESS ? ["freshness_orders_ms"] : [], lines: [] }));
}
