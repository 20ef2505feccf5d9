/**
 * The invariant verifier run after every load test (scripts/verify.ts is its command line).
 *
 *   redis     I1, I4 on every stock hash under the prefix; I2 on the outbox (see redis.ts)
 *   kafka     outbox drained by the relay, every event in the topic (see pipeline.ts)
 *   postgres  I6 counters, I2 one event row per version, orders add up
 *   search    I6 counters of every stock document
 *   k6        the units the load test was granted (201s, minus what it cancelled) == held + sold
 *
 * Nothing here writes: the verifier only reads, so it can run against a live system.
 */
import type { Client } from "@elastic/elasticsearch";
import type { RedisClient } from "../redis/client.ts";
import type postgres from "postgres";
import type { StockEvent } from "../domain/events.ts";
import type { ReadModelReader } from "../read-models.ts";
import { checkKafka, checkPostgresDetail, checkReadModels, waitForRelayDrain } from "./pipeline.ts";
import { checkStockEvents, checkStockState, expiredUnitsFromHolds, findOutboxKeys, findStockKeys, outboxIsRelayed, readOutboxEvents, readStocks } from "./redis.ts";
import { finding, type Finding, type Layer, type StockState, type VerifyReport } from "./report.ts";

/** What a load test saw, from its k6 summary (loadtests/k6/lib.js writes it under `expect`). */
export interface LoadExpectation {
  /** Units granted by new (not replayed) 201 answers to allocate. */
  unitsAllocated: number;
  /** Units given back by successful cancels the load test made. */
  unitsReleased: number;
  /** New (not replayed) 201 answers to allocate. */
  allocations?: number;
  /** The same per stock, when the script tagged its requests by stock. */
  perStock?: Record<string, { allocated: number; released: number }>;
}

export interface VerifyOptions {
  redis: RedisClient;
  prefix: string;
  layers: Layer[];
  /** Only these stocks (default: every stock under the prefix). */
  stockIds?: string[];
  /** Outbox expectation: "full" = no relay ran, the outbox must hold every event since StockCreated;
   *  "tail" = a relay trims it; "auto" (default) = "tail" when a relay group exists, else "full". */
  outbox?: "full" | "tail" | "auto" | "skip";
  expect?: LoadExpectation;
  /** Needed for layer kafka. */
  kafka?: { brokers: string[]; topic: string };
  /** Needed for layer postgres. */
  sql?: postgres.Sql;
  /** Needed for layer search. */
  es?: Client;
  esIndex?: string;
  /** Read models of the registry, opened (shared/read-models.ts); checked when `layers` names them. A reader
   *  named postgres or search replaces `sql` / `es` for the counters (`sql` still serves the detail check). */
  readModels?: readonly ReadModelReader[];
  /** Holds may have expired during the run: count their units from the hold hashes (else from a full outbox). */
  countExpiredHolds?: boolean;
  /** How long to wait for the pipeline to drain and converge (ms). */
  deadlineMs?: number;
}

function sumBy(stocks: readonly StockState[], pick: (s: StockState) => number): number {
  return stocks.reduce((a, s) => a + pick(s), 0);
}

export async function verify(options: VerifyOptions): Promise<VerifyReport> {
  const started = Date.now();
  const deadline = started + (options.deadlineMs ?? 60_000);
  const findings: Finding[] = [];
  const notes: string[] = [];
  const { redis, prefix } = options;

  let keysById = await findStockKeys(redis, prefix);
  if (options.stockIds) {
    const wanted = new Set(options.stockIds);
    for (const id of wanted) if (!keysById.has(id)) findings.push(finding("redis", "I1", id, "stock not found in Redis"));
    keysById = new Map([...keysById].filter(([id]) => wanted.has(id)));
  }
  // Read the state before the outbox: events appended in between are then newer than the state
  // (never the reverse), which the tail check tolerates only in "tail" mode on a live system.
  const stocks = await readStocks(redis, keysById);
  if (stocks.length === 0) findings.push(finding("redis", "I1", null, `no stock under prefix "${prefix}" (wrong prefix?)`));
  for (const s of stocks) findings.push(...checkStockState(s));
  notes.push(`redis: ${stocks.length} stock(s), I1 (conservation, no negative counter) and I4 (buyers ≤ limit, Σ buyers = held + sold) on each`);

  // I2 on the outbox.
  const outboxKeys = await findOutboxKeys(redis, prefix);
  let events = 0;
  let byStock = new Map<string, StockEvent[]>();
  const mode = options.outbox ?? "auto";
  let complete = false;
  if (mode !== "skip") {
    complete = mode === "full" || (mode === "auto" && !(await outboxIsRelayed(redis, outboxKeys)));
    const read = await readOutboxEvents(redis, outboxKeys);
    byStock = read.byStock;
    events = read.count;
    findings.push(...read.bad);
    for (const s of stocks) findings.push(...checkStockEvents(s, byStock.get(s.stockId) ?? [], complete));
    notes.push(
      complete
        ? `outbox: ${events} event(s), the full history of each stock replayed (versions, counter moves, I1 and I4 at every event)`
        : `outbox: ${events} event(s) retained (relayed and trimmed), versions and counter moves of the tail checked`,
    );
  }

  // What the load test saw.
  if (options.expect) {
    const e = options.expect;
    // Holds that expired during the run gave units back without the load test knowing.
    let expiredBy = new Map<string, number>();
    if (options.countExpiredHolds) {
      expiredBy = await expiredUnitsFromHolds(redis, prefix);
    } else if (complete) {
      for (const [stockId, list] of byStock) {
        for (const ev of list) {
          if (ev.eventType === "StockReleased" && ev.payload.reason === "expired") {
            expiredBy.set(stockId, (expiredBy.get(stockId) ?? 0) + ev.payload.quantity);
          }
        }
      }
    }
    const expiredUnits = [...expiredBy.entries()].filter(([id]) => keysById.has(id)).reduce((a, [, n]) => a + n, 0);
    const heldSold = sumBy(stocks, (s) => s.held + s.sold);
    const want = e.unitsAllocated - e.unitsReleased - expiredUnits;
    if (heldSold !== want) {
      findings.push(
        finding("k6", "k6", null, `k6 was granted ${e.unitsAllocated} unit(s) and released ${e.unitsReleased}${expiredUnits ? ` (${expiredUnits} expired)` : ""}: expected held + sold = ${want}, Redis has ${heldSold}`),
      );
    }
    if (e.perStock) {
      for (const s of stocks) {
        const p = e.perStock[s.stockId] ?? { allocated: 0, released: 0 };
        const w = p.allocated - p.released - (expiredBy.get(s.stockId) ?? 0);
        if (w !== s.held + s.sold) findings.push(finding("k6", "k6", s.stockId, `k6 saw ${p.allocated} unit(s) granted, ${p.released} released: expected held + sold = ${w}, Redis has ${s.held + s.sold}`));
      }
    }
    if (e.allocations !== undefined && complete) {
      const allocated = [...byStock.values()].reduce((n, list) => n + list.filter((ev) => ev.eventType === "StockAllocated").length, 0);
      if (allocated !== e.allocations) findings.push(finding("k6", "k6", null, `k6 saw ${e.allocations} new 201 allocation(s), the outbox has ${allocated} StockAllocated events`));
    }
    notes.push(
      `k6: ${e.unitsAllocated} unit(s) granted by 201s, ${e.unitsReleased} released by cancels` +
        `${expiredUnits ? `, ${expiredUnits} expired` : ""}${e.allocations !== undefined ? ` (${e.allocations} allocations)` : ""} → held + sold ${heldSold}`,
    );
  }

  // Downstream layers, after the outbox drains.
  const downstream = options.layers.filter((l) => l !== "redis");
  if (downstream.length > 0 && stocks.length > 0) {
    const drain = await waitForRelayDrain(redis, outboxKeys, deadline);
    findings.push(...drain);
    if (drain.length === 0) notes.push(`relay: outbox drained (no lag, nothing pending) after ${Date.now() - started} ms`);
    if (options.layers.includes("kafka")) {
      if (!options.kafka) throw new Error("layer kafka needs brokers and a topic");
      const k = await checkKafka({ ...options.kafka, stocks, deadline });
      findings.push(...k.findings);
      notes.push(`kafka: ${k.messages} message(s) in ${options.kafka.topic}, ${k.duplicates} duplicate(s) (allowed, I3), every version of every stock looked for`);
    }
    const readers = (options.readModels ?? []).filter((r) => options.layers.includes(r.name));
    const byReader = new Set(readers.map((r) => r.name));
    const wantPg = options.layers.includes("postgres");
    const pgDirect = wantPg && !byReader.has("postgres");
    const esDirect = options.layers.includes("search") && !byReader.has("search");
    if (pgDirect && !options.sql) throw new Error("layer postgres needs a database connection");
    if (esDirect && (!options.es || !options.esIndex)) throw new Error("layer search needs an Elasticsearch client and index alias");
    for (const l of options.layers) {
      if (l !== "redis" && l !== "kafka" && l !== "postgres" && l !== "search" && !byReader.has(l)) throw new Error(`layer ${l} needs its read model opened (readModels)`);
    }
    const checked = options.layers.filter((l) => l !== "redis" && l !== "kafka");
    if (checked.length > 0) {
      const rm = await checkReadModels({ stocks, sql: pgDirect ? options.sql : undefined, es: esDirect ? options.es : undefined, index: options.esIndex, readers, deadline });
      findings.push(...rm);
      if (wantPg && options.sql && !rm.some((f) => f.layer === "postgres")) findings.push(...(await checkPostgresDetail(options.sql, stocks)));
      notes.push(`read models: ${checked.join(" and ")} compared with Redis stock by stock (counters, version${wantPg && options.sql ? ", event rows, orders" : ""}) after ${Date.now() - started} ms`);
    }
  }

  return {
    ok: findings.length === 0,
    prefix,
    layers: options.layers,
    stocks: stocks.length,
    totals: {
      total: sumBy(stocks, (s) => s.total),
      available: sumBy(stocks, (s) => s.available),
      held: sumBy(stocks, (s) => s.held),
      sold: sumBy(stocks, (s) => s.sold),
      events,
    },
    notes,
    findings,
    durationMs: Date.now() - started,
  };
}

/** Pulls the expectation out of a k6 summary JSON written by loadtests/k6/lib.js. */
export function expectationFromSummary(summary: unknown): LoadExpectation {
  const s = summary as { expect?: LoadExpectation };
  if (!s?.expect || typeof s.expect.unitsAllocated !== "number") {
    throw new Error("this k6 summary has no `expect` block (was it written by loadtests/k6/lib.js handleSummary?)");
  }
  return s.expect;
}
