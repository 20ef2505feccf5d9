/**
 * The report of `bun run bench:allocate`: one row per target and stock count (the median over
 * repeats) and the table with the ratios the issues ask for (ours / HTTP ceiling, / PostgreSQL,
 * cluster / one node, the front door's goals). Pure: allocate.ts measures, this formats.
 */

export interface Row {
  target: string;
  stocks: number | null;
  closed?: { rps: number; p50: number; p99: number; requests: number; ok: boolean };
  open?: { rate: number; achieved: number; p50: number; p99: number; dropped: number; ok: boolean };
  /** CPU time of the server process (and of the store's processes where we can attribute it) per request. */
  serverCpuUsPerReq?: number;
  storeCpuUsPerReq?: number;
  check?: string;
  note?: string;
  /** min and max throughput over the rounds (when repeated). */
  rpsRange?: [number, number];
}

export interface ReportOptions {
  vus: string;
  rate: string;
  /** The "many stocks" count (--stocks). */
  many: number;
  syncModes: string[];
  luaTable: string;
}

const fmt = (v: number | undefined, digits = 1) => (v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits));
const int = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? "–" : Math.round(v).toLocaleString("en-US"));

function median(values: number[]): number {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** One row per target and stock count: the median over repeats. */
export function mergeRows(rows: Row[]): Row[] {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const key = `${r.target}|${r.stocks}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const first = g[0]!;
    const pick = (f: (r: Row) => number | undefined) => median(g.map((r) => f(r) ?? Number.NaN));
    return {
      ...first,
      rpsRange: g.length > 1 ? ([Math.min(...g.map((r) => r.closed?.rps ?? Number.NaN)), Math.max(...g.map((r) => r.closed?.rps ?? Number.NaN))] as [number, number]) : undefined,
      closed: first.closed && {
        rps: pick((r) => r.closed?.rps),
        p50: pick((r) => r.closed?.p50),
        p99: pick((r) => r.closed?.p99),
        requests: pick((r) => r.closed?.requests),
        ok: g.every((r) => r.closed?.ok !== false),
      },
      open: first.open && {
        rate: first.open.rate,
        achieved: pick((r) => r.open?.achieved),
        p50: pick((r) => r.open?.p50),
        p99: pick((r) => r.open?.p99),
        dropped: pick((r) => r.open?.dropped),
        ok: g.every((r) => r.open?.ok !== false),
      },
      serverCpuUsPerReq: pick((r) => r.serverCpuUsPerReq),
      storeCpuUsPerReq: first.storeCpuUsPerReq === undefined ? undefined : pick((r) => r.storeCpuUsPerReq),
      check: g.map((r) => r.check).filter(Boolean).join("; "),
    };
  });
}

export function reportTable(final: Row[], o: ReportOptions): string {
  const lines = [
    `| target | stocks | throughput (req/s, ${o.vus} VUs closed) | p50 ms | p99 ms | p50 ms @ ${o.rate}/s open | p99 ms @ ${o.rate}/s open | server CPU µs/req | store CPU µs/req |`,
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of final) {
    lines.push(
      `| ${r.target} | ${r.stocks ?? "–"} | ${int(r.closed?.rps)}${r.rpsRange ? ` (${int(r.rpsRange[0])}–${int(r.rpsRange[1])})` : ""}${r.closed?.ok === false ? " ✗" : ""} | ${fmt(r.closed?.p50)} | ${fmt(r.closed?.p99)} | ` +
        `${fmt(r.open?.p50)} | ${fmt(r.open?.p99)}${r.open && r.open.dropped > 0 ? ` (${int(r.open.dropped)} dropped)` : ""}${r.open?.ok === false ? " ✗" : ""} | ` +
        `${fmt(r.serverCpuUsPerReq, 0)} | ${fmt(r.storeCpuUsPerReq, 0)} |`,
    );
  }
  const rps = (target: string, stocks: number | null) => final.find((r) => r.target === target && r.stocks === stocks)?.closed?.rps;
  const ratio = (a?: number, b?: number) => (a && b ? `${(a / b).toFixed(2)}×` : "–");
  const bare = rps("hono-bare", null);
  lines.push("");
  for (const n of [1, o.many]) {
    const api = rps("api", n);
    const parts: string[] = [];
    for (const sync of o.syncModes) {
      const fn = rps(`pg-fn sync ${sync}`, n);
      const tx = rps(`pg-tx sync ${sync}`, n);
      const best = Math.max(fn ?? 0, tx ?? 0) || undefined;
      if (best) parts.push(`ours / PostgreSQL sync ${sync} = ${ratio(api, best)} vs its best (fn ${ratio(api, fn)}, tx ${ratio(api, tx)})`);
    }
    lines.push(
      `- ${n === 1 ? "one hot stock" : `${n} stocks`}: ours / HTTP ceiling = ${bare && api ? `${((api / bare) * 100).toFixed(0)}%` : "–"}` +
        (parts.length ? `; ${parts.join("; ")}` : ""),
    );
  }
  for (const n of [1, o.many]) {
    const single = rps("api", n);
    const cluster = rps("api-cluster", n);
    if (single && cluster) lines.push(`- ${n === 1 ? "one hot stock" : `${n} stocks`}: api on the cluster / on one node = ${ratio(cluster, single)}`);
  }
  if (o.luaTable) lines.push("", o.luaTable);
  const row = (target: string, stocks: number | null) => final.find((r) => r.target === target && r.stocks === stocks);
  const bareRow = row("hono-bare", null);
  for (const [label, target, goal] of [
    ["allocate on a live stock", "api", "goal ≥ 0.7× req/s, ≤ 1.5× CPU"],
    ["sold_out from memory", "api-sold-out", "goal ≥ 0.9× req/s"],
    ["allocate, API_WORKERS = cores", "api-workers", "no goal; the other processes share the same 2 cores"],
  ] as const) {
    const r = row(target, 1);
    if (!r || !bareRow) continue;
    const cpu = r.serverCpuUsPerReq && bareRow.serverCpuUsPerReq ? `${(r.serverCpuUsPerReq / bareRow.serverCpuUsPerReq).toFixed(2)}×` : "–";
    lines.push(`- ${label} / bare Hono: ${ratio(r.closed?.rps, bareRow.closed?.rps)} req/s, ${cpu} server CPU per request (${goal})${r.check ? `; ${r.check}` : ""}`);
  }
  return lines.join("\n");
}

/** One measured row as the progress line the bench prints. */
export function describeRow(row: Row): string {
  const c = row.closed;
  const o = row.open;
  return (
    `[bench] ${row.target}${row.stocks ? ` ×${row.stocks}` : ""}: ` +
    (c ? `closed ${c.rps.toFixed(0)}/s p50 ${c.p50.toFixed(1)} p99 ${c.p99.toFixed(1)} ms${c.ok ? "" : " (thresholds FAILED)"}` : "") +
    (o ? ` | open ${o.rate}/s → ${o.achieved.toFixed(0)}/s p50 ${o.p50.toFixed(1)} p99 ${o.p99.toFixed(1)} ms, dropped ${o.dropped}${o.ok ? "" : " (FAILED)"}` : "") +
    (row.serverCpuUsPerReq !== undefined ? ` | server CPU ${row.serverCpuUsPerReq.toFixed(0)} µs/req` : "") +
    (row.storeCpuUsPerReq !== undefined ? `, store ${row.storeCpuUsPerReq.toFixed(0)} µs/req` : "") +
    (row.check ? ` | ${row.check}` : "") +
    (row.note ? ` | ${row.note}` : "")
  );
}
