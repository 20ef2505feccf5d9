/**
 * What the verifier reports: one finding per broken invariant, naming the stock, so a failed load
 * test says exactly which stock and which rule, not just "mismatch".
 */
import { READ_MODEL_NAMES } from "../read-models.ts";

/** redis, kafka, or a read model's name (shared/read-models.ts: postgres, search, …). */
export type Layer = string;
export const ALL_LAYERS: readonly Layer[] = ["redis", "kafka", ...READ_MODEL_NAMES];

/** I1 no oversell, I2 no lost event, I4 per-user limit, I6 convergence; "k6" = what the load test saw. */
export type Invariant = "I1" | "I2" | "I4" | "I6" | "k6";

export interface Finding {
  layer: Layer | "k6";
  invariant: Invariant;
  /** The stock concerned; null for a finding about the run as a whole. */
  stockId: string | null;
  message: string;
}

export interface StockState {
  stockId: string;
  /** The stock hash key in Redis. */
  key: string;
  total: number;
  available: number;
  held: number;
  sold: number;
  version: number;
  perUserLimit: number;
  /** userId → units held or bought (the stock's buyers hash). */
  buyers: Map<string, number>;
}

export interface VerifyReport {
  ok: boolean;
  prefix: string;
  layers: Layer[];
  stocks: number;
  totals: { total: number; available: number; held: number; sold: number; events: number };
  /** Layer → what was checked there, for the printed summary. */
  notes: string[];
  findings: Finding[];
  durationMs: number;
}

export function finding(layer: Finding["layer"], invariant: Invariant, stockId: string | null, message: string): Finding {
  return { layer, invariant, stockId, message };
}

/** Stock ids named by the findings, sorted, each once. */
function failedStocks(findings: readonly Finding[]): string[] {
  return [...new Set(findings.map((f) => f.stockId).filter((s): s is string => s !== null))].sort();
}

/** A short human report: one line per finding (capped), then the verdict. */
export function formatReport(report: VerifyReport, maxLines = 50): string {
  const lines: string[] = [];
  lines.push(
    `verify prefix=${report.prefix} layers=${report.layers.join(",")} stocks=${report.stocks} ` +
      `total=${report.totals.total} available=${report.totals.available} held=${report.totals.held} sold=${report.totals.sold} ` +
      `events=${report.totals.events} (${report.durationMs} ms)`,
  );
  for (const note of report.notes) lines.push(`  · ${note}`);
  for (const f of report.findings.slice(0, maxLines)) {
    lines.push(`  ✗ [${f.invariant} ${f.layer}] ${f.stockId ?? "(run)"}: ${f.message}`);
  }
  if (report.findings.length > maxLines) lines.push(`  … and ${report.findings.length - maxLines} more findings`);
  const stocks = failedStocks(report.findings);
  lines.push(
    report.ok
      ? "verify: OK, every invariant holds"
      : `verify: FAILED, ${report.findings.length} finding(s)${stocks.length ? ` on stock(s): ${stocks.slice(0, 20).join(", ")}${stocks.length > 20 ? ", …" : ""}` : ""}`,
  );
  return lines.join("\n");
}
