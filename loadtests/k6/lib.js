// Shared pieces of the k6 scenarios: run inputs, allocation outcomes as metrics, and a
// handleSummary that writes a JSON summary (with the `expect` block the verifier reads) and
// prints a short table. Plain k6 JavaScript (not type-checked by tsc; see tsconfig "exclude").
//
// Inputs (set by loadtests/run.ts; each can be given by hand):
//   BASE_URL      http://127.0.0.1:<port>
//   TOKENS_FILE   JSON { "users": ["b0", ...], "tokens": ["<jwt>", ...] } (absolute path)
//   STOCK_IDS     comma-separated stock ids
//   SUMMARY_FILE  where handleSummary writes its JSON (absolute path)
import http from "k6/http";
import { check } from "k6";
import { SharedArray } from "k6/data";
import { Counter } from "k6/metrics";

export const BASE_URL = (__ENV.BASE_URL || "http://127.0.0.1:3000").replace(/\/$/, "");
export const STOCK_IDS = (__ENV.STOCK_IDS || "").split(",").filter((s) => s.length > 0);

/** Pre-minted JWTs, one per buyer, loaded once and shared by every VU (SharedArray). */
export function loadTokens() {
  if (!__ENV.TOKENS_FILE) throw new Error("TOKENS_FILE is not set (run through `bun run load`, or mint with loadtests/tokens.ts)");
  return new SharedArray("tokens", () => JSON.parse(open(__ENV.TOKENS_FILE)).tokens);
}

export function envInt(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${raw}`);
  return n;
}

export function envStr(name, fallback) {
  const raw = __ENV[name];
  return raw === undefined || raw === "" ? fallback : raw;
}

// Outcomes. `units_*` carry a `stock` tag so the verifier can compare stock by stock.
export const unitsAllocated = new Counter("units_allocated");
export const unitsReleased = new Counter("units_released");
export const allocationsOk = new Counter("allocations_ok");
export const soldOut = new Counter("alloc_sold_out");
export const rejected = new Counter("alloc_rejected");
export const serverErrors = new Counter("server_errors");
export const unexpected = new Counter("unexpected");

const trendStats = ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "max"];
export const SUMMARY_TREND_STATS = trendStats;

/**
 * Tries again after a "connection reset" (status 0) on a keep-alive connection the server closed when
 * idle (Bun closes them after 10 s, k6 keeps them longer): safe for reads and idempotent writes only.
 */
export const LOST_RETRIES = 3;

/** GET that is sent again (up to LOST_RETRIES times) after a connection reset. */
export function getRetryingLost(url, params) {
  let res = http.get(url, params);
  for (let n = 0; res.status === 0 && n < LOST_RETRIES; n++) res = http.get(url, params);
  return res;
}

/** Headers of a user's JSON request. */
export function userHeaders(token, extra) {
  return Object.assign({ Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, extra || {});
}

function errorCode(res) {
  try {
    return res.json("code");
  } catch (_) {
    return undefined;
  }
}

/**
 * POST /api/stocks/:id/allocate and classify the answer. Expected outcomes are 201, 409 sold_out
 * and (when `limitOk`) 409 limit_exceeded; anything else counts as unexpected and fails checks.
 * Returns the allocation view on a 201 when `wantView` is set, else null.
 */
export function allocate(stockId, token, options) {
  const opts = options || {};
  const quantity = opts.quantity || 1;
  const headers = userHeaders(token, Object.assign(opts.idempotencyKey ? { "Idempotency-Key": `"${opts.idempotencyKey}"` } : {}, opts.headers || {}));
  const send = () =>
    http.post(`${BASE_URL}/api/stocks/${stockId}/allocate`, JSON.stringify({ quantity }), {
      headers,
      tags: { name: "allocate" },
      responseCallback: http.expectedStatuses(201, 409),
    });
  let res = send();
  // A keep-alive connection the server closed while this VU slept answers "connection reset" (status
  // 0); with an Idempotency-Key the request is safe to send again (the replay answers the same hold,
  // which this client then sees for the first time: counted as granted). A VU with many idle
  // connections (http.batch) may meet several closed ones in a row: up to LOST_RETRIES more tries.
  let retried = false;
  for (let n = 0; res.status === 0 && opts.idempotencyKey && opts.retryLost && n < LOST_RETRIES; n++) {
    retried = true;
    res = send();
  }
  if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
  let code;
  let expected = false;
  if (res.status === 201) {
    // A 201 holds exactly the quantity asked for; the body is only parsed when the caller needs it
    // (k6's JavaScript is the scarcest CPU on a shared box).
    expected = true;
    if (res.headers["Idempotent-Replayed"] !== "true" || retried) {
      allocationsOk.add(1, { stock: stockId });
      unitsAllocated.add(quantity, { stock: stockId });
    }
  } else if (res.status === 409) {
    code = errorCode(res);
    if (code === "sold_out") soldOut.add(1);
    else rejected.add(1, { code: String(code) });
    expected = code === "sold_out" || (opts.limitOk === true && code === "limit_exceeded");
  }
  if (!expected) unexpected.add(1, { status: String(res.status), code: String(code) });
  check(res, { "allocate: 201 or 409 sold_out/limit": () => expected });
  if (res.status !== 201 || !opts.wantView) return null;
  return res.json();
}

/** POST /api/allocations/:id/purchase or /cancel by the hold's owner. */
export function changeHold(action, view, token) {
  const send = () =>
    http.post(`${BASE_URL}/api/allocations/${view.allocationId}/${action}`, null, {
      headers: { Authorization: `Bearer ${token}` },
      tags: { name: action },
      responseCallback: http.expectedStatuses(200, 409),
    });
  let res = send();
  // Purchase and cancel are safe to repeat (a second one answers the hold as it is): a keep-alive
  // connection closed under the VU (status 0) is worth a few more tries (a lost purchase leaves the
  // hold to expire, and the sale waits for it).
  for (let n = 0; res.status === 0 && n < LOST_RETRIES; n++) res = send();
  if (res.status >= 500 || res.status === 0) serverErrors.add(1, { status: String(res.status) });
  const code = res.status === 409 ? errorCode(res) : undefined;
  // 409 hold_expired / hold_not_active can happen legitimately when a short hold expired first.
  const ok = res.status === 200 || (res.status === 409 && (code === "hold_expired" || code === "hold_not_active"));
  if (!ok) unexpected.add(1, { status: String(res.status), code: String(code) });
  if (res.status === 200 && action === "cancel") unitsReleased.add(view.quantity, { stock: view.stockId });
  check(res, { [`${action}: 200`]: () => ok });
  return res;
}

/** Threshold entries that only make a sub-metric appear in the summary data (always pass). */
export function perStockSubmetrics(stockIds) {
  const out = {};
  for (const id of stockIds) {
    out[`units_allocated{stock:${id}}`] = ["count>=0"];
    out[`units_released{stock:${id}}`] = ["count>=0"];
  }
  return out;
}

function metricValue(data, name, stat) {
  const m = data.metrics[name];
  if (!m || !m.values) return 0;
  const v = m.values[stat];
  return v === undefined ? 0 : v;
}

/** What the verifier checks against Redis: units granted by new 201s, minus units cancelled. */
export function expectationOf(data) {
  const perStock = {};
  for (const key of Object.keys(data.metrics)) {
    const match = /^units_(allocated|released)\{stock:([^}]+)\}$/.exec(key);
    if (!match) continue;
    const entry = perStock[match[2]] || (perStock[match[2]] = { allocated: 0, released: 0 });
    entry[match[1]] = metricValue(data, key, "count");
  }
  return {
    unitsAllocated: metricValue(data, "units_allocated", "count"),
    unitsReleased: metricValue(data, "units_released", "count"),
    allocations: metricValue(data, "allocations_ok", "count"),
    perStock: Object.keys(perStock).length > 0 ? perStock : undefined,
  };
}

/** Every threshold and whether it held. */
export function thresholdResults(data) {
  const out = [];
  for (const [name, m] of Object.entries(data.metrics)) {
    if (!m.thresholds) continue;
    for (const [expr, r] of Object.entries(m.thresholds)) {
      // Always-true helpers (count>=0, max>=0) only exist to surface sub-metrics; leave them out.
      if (expr === "count>=0" || expr === "max>=0") continue;
      out.push({ metric: name, threshold: expr, ok: r.ok });
    }
  }
  return out;
}

const pad = (s, n) => (String(s).length >= n ? String(s) : String(s) + " ".repeat(n - String(s).length));
const lpad = (s, n) => (String(s).length >= n ? String(s) : " ".repeat(n - String(s).length) + String(s));
const ms = (v) => (v === undefined || v === null ? "-" : v < 10 ? v.toFixed(2) : v.toFixed(1));

function trendRow(data, label, name) {
  const m = data.metrics[name];
  if (!m || !m.values || m.values.max === undefined) return null;
  const v = m.values;
  return `${pad(label, 28)} ${lpad(ms(v.med), 8)} ${lpad(ms(v["p(90)"]), 8)} ${lpad(ms(v["p(99)"]), 8)} ${lpad(ms(v.max), 9)}`;
}

/**
 * handleSummary body for every scenario: writes SUMMARY_FILE (JSON) and prints a short table.
 * `extra(data)` may add scenario-specific fields (e.g. the ramp's steps) and lines.
 */
export function summarize(scenario, data, extra) {
  const more = extra ? extra(data) : { fields: {}, lines: [] };
  const thresholds = thresholdResults(data);
  const failed = thresholds.filter((t) => !t.ok);
  const requests = metricValue(data, "http_reqs", "count");
  const durationS = data.state.testRunDurationMs / 1000;
  const lines = [];
  lines.push("");
  lines.push(`== ${scenario} ==  ${requests} requests in ${durationS.toFixed(1)} s (${metricValue(data, "http_reqs", "rate").toFixed(0)}/s), ` +
    `max VUs ${metricValue(data, "vus_max", "max")}, dropped iterations ${metricValue(data, "dropped_iterations", "count")}`);
  lines.push(`${pad("latency (ms)", 28)} ${lpad("p50", 8)} ${lpad("p90", 8)} ${lpad("p99", 8)} ${lpad("max", 9)}`);
  const rows = [["all requests", "http_req_duration"]];
  for (const key of Object.keys(data.metrics).sort()) {
    const match = /^http_req_duration\{name:([^}]+)\}$/.exec(key);
    if (match) rows.push([`  ${match[1]}`, key]);
  }
  for (const name of (more.trends || [])) rows.push([name, name]);
  for (const [label, name] of rows) {
    const row = trendRow(data, label, name);
    if (row) lines.push(row);
  }
  lines.push(
    `outcomes: 201 ${metricValue(data, "allocations_ok", "count")}, 409 sold_out ${metricValue(data, "alloc_sold_out", "count")}, ` +
      `409 other ${metricValue(data, "alloc_rejected", "count")}, 5xx/network ${metricValue(data, "server_errors", "count")}, ` +
      `unexpected ${metricValue(data, "unexpected", "count")}` +
      (data.metrics.checks ? `, checks ${(metricValue(data, "checks", "rate") * 100).toFixed(2)}%` : ""),
  );
  for (const line of more.lines || []) lines.push(line);
  for (const t of thresholds) lines.push(`  ${t.ok ? "✓" : "✗"} ${t.metric}: ${t.threshold}`);
  lines.push(failed.length === 0 ? `${scenario}: thresholds passed` : `${scenario}: ${failed.length} threshold(s) FAILED`);
  lines.push("");

  const summary = Object.assign(
    {
      scenario,
      ok: failed.length === 0,
      startedAt: new Date(Date.now() - data.state.testRunDurationMs).toISOString(),
      durationMs: data.state.testRunDurationMs,
      baseUrl: BASE_URL,
      env: Object.fromEntries(Object.entries(__ENV).filter(([k]) => !/TOKEN|SECRET/.test(k))),
      thresholds,
      expect: expectationOf(data),
      metrics: data.metrics,
      table: lines.join("\n"),
    },
    more.fields || {},
  );
  const out = { stdout: lines.join("\n") + "\n" };
  if (__ENV.SUMMARY_FILE) out[__ENV.SUMMARY_FILE] = JSON.stringify(summary, null, 2);
  return out;
}
