// queue: the waiting room under a crowd (issue 24, docs/waiting-room.md).
//   1. bench: BENCH_VUS VUs reading GET /api/stocks/:id and as many polling GET /queue/me (a waiting
//      ticket's poll), side by side for BENCH_SECONDS on the bench stock, so both see the same
//      machine (shared, noisy): the poll's req/s against the stock read's.
//   2. queue: BUYERS buyers (default 50,000) join the pre-queue of the queue stock (UNITS units, limit
//      1) before START_AT, then poll with backoff (0.5 s doubling to MAX_BACKOFF_MS, jittered); an admitted buyer
//      allocates with its Admission-Token and purchases (CANCEL_PCT % cancel instead, IGNORE_PCT %
//      let the admission expire), until every buyer's ticket is final (done, expired, sold_out).
// Pass = every unit sold exactly once through an admission, no allocation refused (a token is
// used within its TTL), no 5xx; loadtests/run.ts then checks the room's invariants in Redis.
//
//   bun run load queue [--buyers 50000] [--units 1000]
import http from "k6/http";
import exec from "k6/execution";
import { sleep } from "k6";
import { Counter, Trend } from "k6/metrics";
import { BASE_URL, SUMMARY_TREND_STATS, STOCK_IDS, allocate, changeHold, envInt, loadTokens, perStockSubmetrics, serverErrors, summarize, unexpected } from "./lib.js";

const tokens = loadTokens();
const BUYERS = envInt("BUYERS", 50000);
const UNITS = envInt("UNITS", 1000);
const VUS = envInt("VUS", 400);
const START_AT = envInt("START_AT", 0);
const BENCH_SECONDS = envInt("BENCH_SECONDS", 10);
const BENCH_VUS = envInt("BENCH_VUS", 32);
const BENCH_BUYERS = envInt("BENCH_BUYERS", 2000);
const CANCEL_PCT = envInt("CANCEL_PCT", 5);
const IGNORE_PCT = envInt("IGNORE_PCT", 1);
const POLL_BATCH = envInt("POLL_BATCH", 20);
const MAX_BACKOFF_MS = envInt("MAX_BACKOFF_MS", 5000);
const [STOCK, BENCH_STOCK] = STOCK_IDS;
if (!STOCK || !BENCH_STOCK) throw new Error("STOCK_IDS must name the queue stock and the bench stock");
if (tokens.length < BUYERS) throw new Error(`need ${BUYERS} tokens, the tokens file has ${tokens.length}`);

const joins = new Counter("queue_joins");
const lateJoins = new Counter("queue_joins_after_start");
const polls = new Counter("queue_polls");
const admitted = new Counter("queue_admitted");
const notAdmitted = new Counter("queue_not_admitted");
const finals = new Counter("queue_final");
const waitToAdmit = new Trend("queue_wait_to_admission_ms", true);

export const options = {
  scenarios: {
    bench_get: { executor: "constant-vus", vus: BENCH_VUS, duration: `${BENCH_SECONDS}s`, exec: "benchGet" },
    bench_poll: { executor: "constant-vus", vus: BENCH_VUS, duration: `${BENCH_SECONDS}s`, exec: "benchPoll" },
    queue: {
      // One long iteration per VU (iterationInTest 0..VUS-1 names its share of the buyers).
      executor: "shared-iterations",
      vus: VUS,
      iterations: VUS,
      startTime: `${BENCH_SECONDS}s`,
      maxDuration: envInt("MAX_MINUTES", 15) + "m",
      exec: "queue",
    },
  },
  thresholds: {
    server_errors: ["count==0"],
    unexpected: ["count==0"],
    queue_not_admitted: ["count==0"],
    [`queue_final`]: [`count==${BUYERS}`],
    "http_reqs{scenario:bench_get}": ["count>0"],
    "http_reqs{scenario:bench_poll}": ["count>0"],
    ...perStockSubmetrics([STOCK]),
  },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const auth = (i) => ({ Authorization: `Bearer ${tokens[i]}` });

export function benchGet() {
  const res = http.get(`${BASE_URL}/api/stocks/${BENCH_STOCK}`, { tags: { name: "bench stock read" } });
  if (res.status !== 200) unexpected.add(1, { status: String(res.status), route: "bench get" });
}

export function benchPoll() {
  // Rotate over the bench stock's waiting buyers: one buyer never exceeds its poll budget.
  const i = (exec.vu.idInTest * 7919 + exec.vu.iterationInScenario) % BENCH_BUYERS;
  const res = http.get(`${BASE_URL}/api/stocks/${BENCH_STOCK}/queue/me`, { headers: auth(i), tags: { name: "bench poll" } });
  if (res.status !== 200) unexpected.add(1, { status: String(res.status), route: "bench poll" });
}

function join(i) {
  const res = http.post(`${BASE_URL}/api/stocks/${STOCK}/queue`, null, { headers: auth(i), tags: { name: "join" } });
  if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
  if (res.status !== 201 && res.status !== 200) unexpected.add(1, { status: String(res.status), route: "join" });
  joins.add(1);
  if (Date.now() >= START_AT) lateJoins.add(1);
}

/**
 * An admitted buyer allocates with its token (or, IGNORE_PCT of them, lets the admission expire: its unit goes to the
 * next ticket). Returns the hold to settle after the batch's other allocations, or null.
 */
function claim(i, t, s) {
  admitted.add(1);
  waitToAdmit.add(Date.now() - s.joinedAt);
  if ((i * 2654435761) % 100 < IGNORE_PCT) {
    s.ignored = true;
    return null;
  }
  const view = allocate(STOCK, tokens[i], { quantity: 1, wantView: true, idempotencyKey: `queue-${i}`, retryLost: true, headers: { "Admission-Token": t.admissionToken } });
  if (view === null) notAdmitted.add(1);
  return view;
}

/** Buys the hold (CANCEL_PCT of buyers cancel it instead: a returned unit admits the next ticket). */
function settle(i, view) {
  changeHold((i * 2654435761) % 100 < IGNORE_PCT + CANCEL_PCT ? "cancel" : "purchase", view, tokens[i]);
}

/**
 * One VU's buyers: i = share, share + VUS, ... Each is a small state machine driven by its next poll
 * time; the polls that are due go out together (http.batch, at most POLL_BATCH in parallel), so one
 * VU keeps up with its buyers' backoff even when answers are slow.
 */
export function queue() {
  const share = exec.scenario.iterationInTest;
  const mine = [];
  for (let i = share; i < BUYERS; i += VUS) mine.push(i);
  for (const i of mine) join(i);
  const wait = Math.max(0, START_AT - Date.now()) / 1000;
  if (wait > 0) sleep(wait + Math.random());
  const state = new Map(mine.map((i) => [i, { next: 0, backoff: 500, joinedAt: START_AT, ignored: false }]));
  while (state.size > 0) {
    const now = Date.now();
    const due = [];
    for (const [i, s] of state) if (s.next <= now && due.length < POLL_BATCH) due.push(i);
    if (due.length === 0) {
      let earliest = Infinity;
      for (const s of state.values()) earliest = Math.min(earliest, s.next);
      sleep(Math.min(1, Math.max(0.01, (earliest - Date.now()) / 1000)));
      continue;
    }
    const answers = http.batch(due.map((i) => ["GET", `${BASE_URL}/api/stocks/${STOCK}/queue/me`, null, { headers: auth(i), tags: { name: "poll" } }]));
    // Every admitted buyer of the batch allocates first, then the holds are settled: a purchase never
    // delays another buyer's allocate (an admission lasts its TTL from the moment it was given).
    const holds = [];
    due.forEach((i, k) => {
      const s = state.get(i);
      const res = answers[k];
      polls.add(1);
      if (res.status !== 200) {
        if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
        else if (res.status !== 429) unexpected.add(1, { status: String(res.status), route: "poll" });
        s.next = Date.now() + s.backoff;
        return;
      }
      const t = res.json();
      if (t.state === "admitted" && !s.ignored) {
        const view = claim(i, t, s);
        if (view !== null) holds.push([i, view]);
        s.next = Date.now();
      } else if (t.state === "waiting" || t.state === "admitted") {
        s.backoff = Math.min(MAX_BACKOFF_MS, s.backoff * 2);
        s.next = Date.now() + s.backoff * (0.5 + Math.random() / 2);
      } else {
        finals.add(1, { state: t.state });
        state.delete(i);
      }
    });
    for (const [i, view] of holds) settle(i, view);
  }
}

export function handleSummary(data) {
  // Each bench ran BENCH_SECONDS with the same VUs, so its count per BENCH_SECONDS is its req/s.
  const rate = (name) => (data.metrics[name] && data.metrics[name].values ? data.metrics[name].values.count / BENCH_SECONDS : 0);
  const getRate = rate("http_reqs{scenario:bench_get}");
  const pollRate = rate("http_reqs{scenario:bench_poll}");
  return summarize("queue", data, () => ({
    fields: { bench: { stockReadPerSecond: getRate, pollPerSecond: pollRate, ratio: getRate > 0 ? pollRate / getRate : 0 } },
    lines: [
      `buyers ${BUYERS}, units ${UNITS}; joins after the start ${data.metrics.queue_joins_after_start ? data.metrics.queue_joins_after_start.values.count : 0}`,
      `bench: GET /api/stocks/:id ${getRate.toFixed(0)} req/s, GET /queue/me ${pollRate.toFixed(0)} req/s (x${(getRate > 0 ? pollRate / getRate : 0).toFixed(2)}), ${BENCH_VUS} VUs each`,
    ],
    trends: ["queue_wait_to_admission_ms"],
  }));
}
