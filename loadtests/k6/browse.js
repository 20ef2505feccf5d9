// browse: the look-to-book mix. Allocations at RATE/s (default 100) and, at 10× that, looks:
// strong stock reads (GET /api/stocks/:id, Redis) and, when the search endpoint exists (SEARCH=1,
// probed by the runner), full-text search (GET /api/stocks/search?q=, Elasticsearch). Search is a
// scenario of its own, reported separately, so a missing or slow search never hides the reads.
//
//   bun run load browse [--rate 200] [--duration 60s]
import http from "k6/http";
import { check } from "k6";
import { Counter } from "k6/metrics";
import { BASE_URL, SUMMARY_TREND_STATS, STOCK_IDS, allocate, envInt, envStr, loadTokens, perStockSubmetrics, serverErrors, summarize } from "./lib.js";

const tokens = loadTokens();
const RATE = envInt("RATE", 100);
const DURATION = envStr("DURATION", "60s");
const LOOKS = envInt("LOOK_TO_BOOK", 10);
const SEARCH = envStr("SEARCH", "0") === "1";
// Of the looks, this share are searches (when search exists); the rest are stock reads.
const SEARCH_SHARE = SEARCH ? envInt("SEARCH_SHARE", 0.3) : 0;
const P99_MS = envInt("P99_MS", 100);
const SEARCH_P99_MS = envInt("SEARCH_P99_MS", 250);
const durationS = Number(DURATION.replace(/s$/, ""));
if (STOCK_IDS.length === 0) throw new Error("STOCK_IDS is empty");

const readFailed = new Counter("read_failed");
const searchFailed = new Counter("search_failed");
const readRate = Math.round(RATE * LOOKS * (1 - SEARCH_SHARE));
const searchRate = Math.round(RATE * LOOKS * SEARCH_SHARE);

const arrival = (rate, exec) => ({
  executor: "constant-arrival-rate",
  rate,
  timeUnit: "1s",
  duration: DURATION,
  preAllocatedVUs: Math.max(20, Math.ceil(rate / 20)),
  maxVUs: Math.max(200, Math.ceil(rate / 2)),
  gracefulStop: "15s",
  exec,
});

const scenarios = { book: arrival(RATE, "book"), read: arrival(readRate, "read") };
if (searchRate > 0) scenarios.search = arrival(searchRate, "search");

const thresholds = Object.assign(
  {
    server_errors: ["count==0"],
    unexpected: ["count==0"],
    read_failed: ["count==0"],
    checks: ["rate==1"],
    [`dropped_iterations`]: [`count<=${Math.ceil((RATE + readRate + searchRate) * (Number.isFinite(durationS) ? durationS : 60) * 0.001)}`],
    "http_req_duration{name:allocate}": [`p(99)<${P99_MS}`],
    "http_req_duration{name:stock}": [`p(99)<${P99_MS}`],
  },
  perStockSubmetrics(STOCK_IDS),
);
if (searchRate > 0) {
  thresholds.search_failed = ["count==0"];
  thresholds["http_req_duration{name:search}"] = [`p(99)<${SEARCH_P99_MS}`];
}

export const options = { scenarios, thresholds, summaryTrendStats: SUMMARY_TREND_STATS };

const pick = (n) => Math.floor(Math.random() * n);
const TERMS = ["sneaker", "console", "headphones", "watch", "jacket", "camera", "backpack", "vinyl", "lamp", "keyboard", "red", "black edition", "limited"];

export function book() {
  allocate(STOCK_IDS[pick(STOCK_IDS.length)], tokens[pick(tokens.length)], { quantity: 1, limitOk: true });
}

export function read() {
  const res = http.get(`${BASE_URL}/api/stocks/${STOCK_IDS[pick(STOCK_IDS.length)]}`, { tags: { name: "stock" } });
  if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
  const ok = check(res, { "stock read: 200": (r) => r.status === 200 });
  if (!ok) readFailed.add(1, { status: String(res.status) });
}

export function search() {
  const q = encodeURIComponent(TERMS[pick(TERMS.length)]);
  const res = http.get(`${BASE_URL}/api/stocks/search?q=${q}`, { tags: { name: "search" } });
  if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
  const ok = check(res, { "search: 200": (r) => r.status === 200 });
  if (!ok) searchFailed.add(1, { status: String(res.status) });
}

export function handleSummary(data) {
  return summarize("browse", data, () => ({
    lines: [
      `look-to-book: ${RATE}/s allocations, ${readRate}/s stock reads, ${searchRate}/s searches` +
        (SEARCH ? "" : " (search endpoint not available: not run)"),
    ],
    fields: { lookToBook: { allocateRate: RATE, readRate, searchRate, searchAvailable: SEARCH } },
  }));
}
