/**
 * The write side as Redis holds it, checked stock by stock (docs/design.md §2):
 *   I1  available + held + sold == total, every counter >= 0
 *   I4  every buyer's units <= perUserLimit, and Σ buyers == held + sold
 *   I2  the stock's events in the outbox: versions +1 with no gap, every event's counters conserve
 *       `total` and move exactly as its type says, the newest event's counters and version are the
 *       stock's; when the outbox still holds the stock's whole history (no relay trimmed it), the
 *       replay also proves I1 and I4 at every moment, not just at the end.
 *
 * Stocks are found by scanning the key prefix, so the verifier needs no list from the load test.
 */
import { scanKeys as scanAllMasters, type RedisClient } from "../redis/client.ts";
import { OUTBOX_EVENT_FIELD, parseEvent, type StockEvent } from "../domain/events.ts";
import { finding, type Finding, type StockState } from "./report.ts";

const SCAN_COUNT = 1000;
const READ_BATCH = 200;
const XRANGE_BATCH = 5000;

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Scans keys matching a glob on every master; returns them all (bounded by what the prefix holds). */
const scanKeys = (redis: RedisClient, match: string) => scanAllMasters(redis, match, SCAN_COUNT);

/** Stock hash keys under a prefix: `<prefix>:{<shard>}:stock:<id>` (buyers hashes end in `:buyers`, ids have no colon). */
export async function findStockKeys(redis: RedisClient, prefix: string): Promise<Map<string, string>> {
  // Glob-escape the prefix: it is [a-z0-9_-], so only the literal braces of the pattern need care.
  const pattern = new RegExp(`^${escapeRegex(prefix)}:\\{(\\d+)\\}:stock:([A-Za-z0-9_-]{1,64})$`);
  const byId = new Map<string, string>();
  for (const key of await scanKeys(redis, `${prefix}:*:stock:*`)) {
    const match = pattern.exec(key);
    if (match?.[2]) byId.set(match[2], key);
  }
  return byId;
}

/** Outbox stream keys under a prefix: `<prefix>:{<shard>}:outbox`. */
export async function findOutboxKeys(redis: RedisClient, prefix: string): Promise<string[]> {
  const pattern = new RegExp(`^${escapeRegex(prefix)}:\\{(\\d+)\\}:outbox$`);
  return (await scanKeys(redis, `${prefix}:*:outbox`)).filter((k) => pattern.test(k)).sort();
}

/** Reads counters and buyers of every stock (pipelined, in batches). */
export async function readStocks(redis: RedisClient, keysById: Map<string, string>): Promise<StockState[]> {
  const entries = [...keysById.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const states: StockState[] = [];
  for (let i = 0; i < entries.length; i += READ_BATCH) {
    const batch = entries.slice(i, i + READ_BATCH);
    // One command per key, sent together by auto-pipelining (an explicit pipeline cannot span the
    // slots of a cluster's masters).
    const replies = await Promise.all(
      batch.map(([, key]) => Promise.all([redis.hmget(key, "total", "available", "held", "sold", "version", "perUserLimit"), redis.hgetall(`${key}:buyers`)])),
    );
    batch.forEach(([stockId, key], j) => {
      const [counters, buyers] = replies[j]!;
      const [total, available, held, sold, version, perUserLimit] = (counters as (string | null)[]).map((v) => (v === null ? Number.NaN : Number(v)));
      states.push({
        stockId,
        key,
        total: total!,
        available: available!,
        held: held!,
        sold: sold!,
        version: version!,
        perUserLimit: perUserLimit!,
        buyers: new Map(Object.entries(buyers as Record<string, string>).map(([user, units]) => [user, Number(units)])),
      });
    });
  }
  return states;
}

/** I1 and I4 on one stock's current state. */
export function checkStockState(s: StockState): Finding[] {
  const out: Finding[] = [];
  const id = s.stockId;
  for (const field of ["total", "available", "held", "sold", "version", "perUserLimit"] as const) {
    if (!Number.isInteger(s[field])) out.push(finding("redis", "I1", id, `${field} is missing or not an integer (${String(s[field])})`));
  }
  if (out.length > 0) return out;
  if (s.available < 0) out.push(finding("redis", "I1", id, `available ${s.available} < 0 (oversold)`));
  if (s.held < 0) out.push(finding("redis", "I1", id, `held ${s.held} < 0`));
  if (s.sold < 0) out.push(finding("redis", "I1", id, `sold ${s.sold} < 0`));
  if (s.available + s.held + s.sold !== s.total) {
    out.push(finding("redis", "I1", id, `available ${s.available} + held ${s.held} + sold ${s.sold} = ${s.available + s.held + s.sold} != total ${s.total}`));
  }
  let sum = 0;
  let over = 0;
  let worst: [string, number] | null = null;
  for (const [user, units] of s.buyers) {
    if (!Number.isInteger(units) || units <= 0) {
      out.push(finding("redis", "I4", id, `buyer ${user} has ${units} units (must be a positive integer)`));
      continue;
    }
    sum += units;
    if (units > s.perUserLimit) {
      over++;
      if (!worst || units > worst[1]) worst = [user, units];
    }
  }
  if (worst) out.push(finding("redis", "I4", id, `${over} buyer(s) over perUserLimit ${s.perUserLimit}, e.g. ${worst[0]} with ${worst[1]}`));
  if (sum !== s.held + s.sold) out.push(finding("redis", "I4", id, `Σ buyers' units ${sum} != held ${s.held} + sold ${s.sold}`));
  return out;
}

/** Every event in the given outbox streams, grouped by stock in stream order (a stock lives on one shard). */
export async function readOutboxEvents(redis: RedisClient, outboxKeys: string[]): Promise<{ byStock: Map<string, StockEvent[]>; bad: Finding[]; count: number }> {
  const byStock = new Map<string, StockEvent[]>();
  const bad: Finding[] = [];
  let count = 0;
  for (const key of outboxKeys) {
    let start = "-";
    for (;;) {
      const entries = await redis.xrange(key, start, "+", "COUNT", XRANGE_BATCH);
      for (const [id, fields] of entries) {
        count++;
        const index = fields.indexOf(OUTBOX_EVENT_FIELD);
        const parsed = parseEvent(index >= 0 ? fields[index + 1] : null);
        if (!parsed.ok) {
          bad.push(finding("redis", "I2", null, `outbox ${key} entry ${id} is not a valid event: ${parsed.error}`));
          continue;
        }
        const list = byStock.get(parsed.event.aggregateId);
        if (list) list.push(parsed.event);
        else byStock.set(parsed.event.aggregateId, [parsed.event]);
      }
      if (entries.length < XRANGE_BATCH) break;
      start = `(${entries[entries.length - 1]![0]}`;
    }
  }
  return { byStock, bad, count };
}

/** Does any outbox carry a consumer group (a relay that acknowledges and trims)? */
export async function outboxIsRelayed(redis: RedisClient, outboxKeys: string[]): Promise<boolean> {
  for (const key of outboxKeys) {
    const groups = (await redis.call("XINFO", "GROUPS", key)) as unknown[];
    if (groups.length > 0) return true;
  }
  return false;
}

const counterDeltas: Record<StockEvent["eventType"], (q: number) => [number, number, number]> = {
  StockCreated: () => [0, 0, 0],
  StockAllocated: (q) => [-q, q, 0],
  PurchaseCompleted: (q) => [0, -q, q],
  StockReleased: (q) => [q, -q, 0],
  StockSnapshot: () => [0, 0, 0],
};

/**
 * I2 (and I1/I4 over time) from a stock's events. `complete` says the outbox is known to hold the
 * stock's whole history (no relay has trimmed it); otherwise only the retained tail is checked.
 */
export function checkStockEvents(s: StockState, events: readonly StockEvent[], complete: boolean): Finding[] {
  const out: Finding[] = [];
  const id = s.stockId;
  const push = (message: string, invariant: "I1" | "I2" | "I4" = "I2") => {
    if (out.length < 5) out.push(finding("redis", invariant, id, message));
  };
  if (events.length === 0) {
    if (complete) push(`no events in the outbox but the stock is at version ${s.version}`);
    return out;
  }
  const first = events[0]!;
  const fullHistory = first.version === 1;
  if (complete && !fullHistory) push(`outbox starts at version ${first.version}, expected 1 (events lost)`);
  if (fullHistory && first.eventType !== "StockCreated") push(`version 1 is ${first.eventType}, expected StockCreated`);

  const users = new Map<string, number>();
  let prev: StockEvent | null = null;
  for (const e of events) {
    const p = e.payload;
    if (p.available < 0) push(`event v${e.version} (${e.eventType}) shows available ${p.available} < 0`, "I1");
    if (p.available + p.held + p.sold !== s.total) {
      push(`event v${e.version} (${e.eventType}) counters ${p.available}+${p.held}+${p.sold} != total ${s.total}`, "I1");
    }
    if (prev) {
      // A repair snapshot jumps the version on purpose (shared/redis/scripts/snapshot.lua).
      if (e.version !== prev.version + 1 && e.eventType !== "StockSnapshot") push(`version ${prev.version} is followed by ${e.version} (gap or reorder)`);
      if (e.eventType === "StockCreated") push(`second StockCreated at v${e.version}`);
      else if (e.eventType === "StockSnapshot") {
        const q = prev.payload;
        if (p.available !== q.available || p.held !== q.held || p.sold !== q.sold) push(`v${e.version} StockSnapshot restates counters that moved without an event`);
      } else {
        const [da, dh, ds] = counterDeltas[e.eventType](e.payload.quantity);
        const q = prev.payload;
        if (p.available - q.available !== da || p.held - q.held !== dh || p.sold - q.sold !== ds) {
          push(
            `v${e.version} ${e.eventType} of ${e.payload.quantity} moved counters by ` +
              `${p.available - q.available}/${p.held - q.held}/${p.sold - q.sold}, expected ${da}/${dh}/${ds} (a change without its event?)`,
          );
        }
      }
    }
    if (fullHistory && e.eventType !== "StockCreated" && e.eventType !== "StockSnapshot") {
      const user = e.payload.userId;
      const delta = e.eventType === "StockAllocated" ? e.payload.quantity : e.eventType === "StockReleased" ? -e.payload.quantity : 0;
      const units = (users.get(user) ?? 0) + delta;
      users.set(user, units);
      if (units > s.perUserLimit) push(`after v${e.version} user ${user} has ${units} units > perUserLimit ${s.perUserLimit}`, "I4");
      if (units < 0) push(`after v${e.version} user ${user} has ${units} units < 0`, "I4");
    }
    prev = e;
  }
  const last = events[events.length - 1]!;
  if (last.version !== s.version) push(`newest event is v${last.version} but the stock is at version ${s.version}`);
  const lp = last.payload;
  if (lp.available !== s.available || lp.held !== s.held || lp.sold !== s.sold) {
    push(`newest event says ${lp.available}/${lp.held}/${lp.sold} but the stock hash says ${s.available}/${s.held}/${s.sold} (available/held/sold)`);
  }
  if (fullHistory && events.length !== s.version) push(`${events.length} events for version ${s.version}`);
  if (fullHistory) {
    for (const [user, units] of users) {
      const now = s.buyers.get(user) ?? 0;
      if (units !== now) push(`events give user ${user} ${units} units, the buyers hash ${now}`, "I4");
    }
    for (const [user] of s.buyers) if (!users.has(user)) push(`buyer ${user} has units but no event allocated any`, "I4");
  }
  return out;
}

/**
 * Units given back by the expirer, per stock, from the hold hashes (kept 7 days after they end).
 * Needed to compare with what a load test saw when holds may expire during the run and the outbox
 * no longer holds every event.
 */
export async function expiredUnitsFromHolds(redis: RedisClient, prefix: string): Promise<Map<string, number>> {
  const pattern = new RegExp(`^${escapeRegex(prefix)}:\\{\\d+\\}:hold:`);
  const keys = (await scanKeys(redis, `${prefix}:*:hold:*`)).filter((k) => pattern.test(k));
  const out = new Map<string, number>();
  for (let i = 0; i < keys.length; i += 1000) {
    const replies = await Promise.all(keys.slice(i, i + 1000).map((key) => redis.hmget(key, "stockId", "status", "quantity")));
    for (const [stockId, status, quantity] of replies) {
      if (status === "expired" && stockId) out.set(stockId, (out.get(stockId) ?? 0) + Number(quantity));
    }
  }
  return out;
}
