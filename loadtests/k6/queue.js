// queue: the waiting room under a crowd (issue 24, docs/waiting-room.md).
//   1. bench: BENCH_VUS VUs reading GET /api/stocks/:id and as many polling GET /queue/me (a waiting
//      ticket's poll), side by side for BENCH_SECONDS on the bench stock, so both see the same
//      machine (shared, noisy): the poll's req/s against the stock read's.
//   2. queue: BUYERS buyers (default 50,000) join the pre-queue of the queue stock (UNITS units, limit
//      1) before START_AT, poll once after it (the draw gives each its place), then paced by that
//      place: near the head (position p <= NEAR) every p × POLL_MS_PER_PLACE (at least MIN_POLL_MS,
//      jittered); further back only when the room's public figures (GET .../queue, read by each VU
//      every FIGURES_MS) say enough tickets ahead were admitted to bring it within NEAR, or sold out,
//      or after MAX_BACKOFF_MS. An admitted buyer allocates with its Admission-Token and purchases
//      (CANCEL_PCT % cancel instead, IGNORE_PCT % let the admission expire), until every buyer's
//      ticket is final (done, expired, sold_out). With an exponential backoff (to 5 s, then 90 s by
//      place) 50,000 buyers asked more polls of the shared 2-core machine than it serves (~500/s):
//      the answers queued for seconds and the first round of polls after the start, which tells the
//      buyers the draw admitted, outlasted their admissions.
// Pass = every unit sold exactly once through an admission, no allocation refused (a token is
// used within its TTL), no 5xx; loadtests/run.ts then checks the room's invariants in Redis.
//
//   bun run load queue [--buyers 50000] [--units 1000]
import http from "k6/http";
import exec from "k6/execution";
import { sleep } from "k6";
import { Counter, Trend } from "k6/metrics";
import { BASE_URL, SUMMARY_TREND_STATS, STOCK_IDS, allocate, changeHold, envInt, getRetryingLost, loadTokens, LOST_RETRIES, perStockSubmetrics, serverErrors, summarize, unexpected } from "./lib.js";

const tokens = loadTokens();
const BUYERS = envInt("BUYERS", 50000);
const UNITS = envInt("UNITS", 1000);
const VUS = envInt("VUS", 250);
const START_AT = envInt("START_AT", 0);
const BENCH_SECONDS = envInt("BENCH_SECONDS", 10);
const BENCH_VUS = envInt("BENCH_VUS", 32);
const BENCH_BUYERS = envInt("BENCH_BUYERS", 2000);
const CANCEL_PCT = envInt("CANCEL_PCT", 5);
const IGNORE_PCT = envInt("IGNORE_PCT", 1);
const POLL_BATCH = envInt("POLL_BATCH", 10);
const MIN_POLL_MS = envInt("MIN_POLL_MS", 1000);
const POLL_MS_PER_PLACE = envInt("POLL_MS_PER_PLACE", 100);
const NEAR = envInt("NEAR", 100);
const FIGURES_MS = envInt("FIGURES_MS", 5000);
const MAX_BACKOFF_MS = envInt("MAX_BACKOFF_MS", 600000);
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
// When (ms after START_AT) the polls answered sold_out and waiting were sent.
const soldOutSentAt = new Trend("queue_sold_out_sent_at_ms", true);
const waitingSentAt = new Trend("queue_waiting_sent_at_ms", true);

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
  // Joining is idempotent (one ticket per user): safe to send again after a connection reset.
  const send = () => http.post(`${BASE_URL}/api/stocks/${STOCK}/queue`, null, { headers: auth(i), tags: { name: "join" } });
  let res = send();
  for (let n = 0; res.status === 0 && n < LOST_RETRIES; n++) res = send();
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

/** The room's public figures (GET /api/stocks/:id/queue: one read per VU, no user, cacheable), read every FIGURES_MS. */
function readFigures(fig) {
  const res = getRetryingLost(`${BASE_URL}/api/stocks/${STOCK}/queue`, { tags: { name: "room figures" } });
  if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
  else if (res.status !== 200) unexpected.add(1, { status: String(res.status), route: "figures" });
  else {
    const body = res.json();
    fig.admissions = body.admissions;
    fig.soldOut = body.soldOut;
  }
  fig.at = Date.now();
}

/**
 * When a buyer polls its own ticket next. Near the head of the line (position <= NEAR), after
 * position x POLL_MS_PER_PLACE (MIN_POLL_MS..., jittered). Further back its place only moves when
 * tickets ahead are admitted, which the room's public figures count: it polls again when
 * position - (admissions since its poll) reaches NEAR, when the figures say sold out, or after
 * MAX_BACKOFF_MS at the latest.
 */
function isDue(s, fig, now) {
  if (s.next <= now) return true;
  if (s.position <= NEAR) return false;
  // (A waiting answer after the figures said sold out would poll again at once: only the pace then.)
  return (fig.soldOut && !s.soldOutThen) || s.position - (fig.admissions - s.admissionsThen) <= NEAR;
}

/**
 * One VU's buyers: i = share, share + VUS, ... Each is a small state machine driven by its next poll
 * time; the polls that are due go out together (http.batch, at most POLL_BATCH in parallel), so one
 * VU keeps up with its buyers' pace even when answers are slow.
 */
export function queue() {
  const share = exec.scenario.iterationInTest;
  const mine = [];
  for (let i = share; i < BUYERS; i += VUS) mine.push(i);
  for (const i of mine) join(i);
  const wait = Math.max(0, START_AT - Date.now()) / 1000;
  if (wait > 0) sleep(wait + Math.random());
  // Everyone polls once after the start: the draw has given each its place.
  const state = new Map(mine.map((i) => [i, { next: 0, position: 0, admissionsThen: 0, soldOutThen: false, joinedAt: START_AT, ignored: false }]));
  const fig = { admissions: 0, soldOut: false, at: 0 };
  while (state.size > 0) {
    if (Date.now() - fig.at >= FIGURES_MS) readFigures(fig);
    const now = Date.now();
    const due = [];
    for (const [i, s] of state) if (due.length < POLL_BATCH && isDue(s, fig, now)) due.push(i);
    if (due.length === 0) {
      sleep(0.2);
      continue;
    }
    const batchStart = Date.now();
    const answers = http.batch(due.map((i) => ["GET", `${BASE_URL}/api/stocks/${STOCK}/queue/me`, null, { headers: auth(i), tags: { name: "poll" } }]));
    // Every admitted buyer of the batch allocates first, then the holds are settled: a purchase never
    // delays another buyer's allocate (an admission lasts its TTL from the moment it was given).
    const holds = [];
    due.forEach((i, k) => {
      const s = state.get(i);
      const poll = { headers: auth(i), tags: { name: "poll" } };
      const retryStart = Date.now();
      const retried = answers[k].status === 0;
      const res = retried ? getRetryingLost(`${BASE_URL}/api/stocks/${STOCK}/queue/me`, poll) : answers[k];
      polls.add(1);
      if (res.status !== 200) {
        if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
        else if (res.status !== 429) unexpected.add(1, { status: String(res.status), route: "poll" });
        s.next = Date.now() + MIN_POLL_MS;
        return;
      }
      const t = res.json();
      // When the poll was sent (its answer was read in Redis after that): queue-run.ts compares the
      // latest waiting one with the moment the last unit was gone. A batch's requests start together,
      // each once a connection is free (blocked) and open (connecting); k6 gives no clock time per answer.
      const sentAt = (retried ? retryStart : batchStart) + res.timings.blocked + res.timings.connecting - START_AT;
      if (t.state === "admitted" && !s.ignored) {
        const view = claim(i, t, s);
        if (view !== null) holds.push([i, view]);
        s.position = 0;
        s.next = Date.now();
      } else if (t.state === "waiting" || t.state === "admitted") {
        if (t.state === "waiting") waitingSentAt.add(sentAt);
        s.position = t.position;
        s.admissionsThen = fig.admissions;
        s.soldOutThen = fig.soldOut;
        const pace = t.position > NEAR ? MAX_BACKOFF_MS : Math.max(MIN_POLL_MS, t.position * POLL_MS_PER_PLACE);
        s.next = Date.now() + pace * (0.5 + Math.random() / 2);
      } else {
        if (t.state === "sold_out") soldOutSentAt.add(sentAt);
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
    trends: ["queue_wait_to_admission_ms", "queue_sold_out_sent_at_ms", "queue_waiting_sent_at_ms"],
  }));
}
