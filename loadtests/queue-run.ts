/**
 * The `queue` load scenario's own steps (loadtests/k6/queue.js, docs/waiting-room.md): before k6, the
 * bench stock's line is filled (BENCH_BUYERS waiting tickets to poll); after it, the room's
 * invariants are checked in Redis: shared/verify/room.ts, plus one StockAllocated per used admission
 * (no allocation without admission) and every unit sold.
 */
import { createKeyLayout } from "../shared/domain/keys.ts";
import type { RedisClient } from "../shared/redis/client.ts";
import { checkRoom } from "../shared/verify/room.ts";
import { findOutboxKeys, readOutboxEvents } from "../shared/verify/redis.ts";
import type { StockEvent } from "../shared/domain/events.ts";
import { adminPost, type K6Summary } from "./support.ts";

const BENCH_BUYERS = 2000;
/** The api's OUTBOX_SHARDS in load runs (the config default). */
const SHARDS = 16;

interface QueueStock {
  id: string;
  quantity: number;
  createdLater?: boolean;
}

/**
 * Fills the bench stock's line, then creates the queue stock with a startsAt that leaves k6 time to
 * start (a few s), run the bench (BENCH_SECONDS) and join every buyer (3 s per 1,000, at least 15 s: a 50,000-buyer
 * run on the shared 2-core machine joined at ~350/s, so a shorter window put most joins after the start).
 */
export async function prepareQueue(baseUrl: string, adminToken: string, tokensFile: string, stocks: QueueStock[], buyers: number): Promise<Record<string, string>> {
  const [queued, bench] = stocks as [QueueStock, QueueStock];
  const { tokens } = (await Bun.file(tokensFile).json()) as { tokens: string[] };
  const benchBuyers = Math.min(BENCH_BUYERS, buyers);
  const t0 = performance.now();
  for (let i = 0; i < benchBuyers; i += 200) {
    await Promise.all(
      tokens.slice(i, Math.min(i + 200, benchBuyers)).map(async (token) => {
        const res = await fetch(`${baseUrl}/api/stocks/${bench.id}/queue`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
        if (res.status !== 201) throw new Error(`bench join: HTTP ${res.status} ${await res.text()}`);
      }),
    );
  }
  const benchSeconds = Number(process.env.BENCH_SECONDS ?? 10);
  const startsAt = Date.now() + (5 + benchSeconds + Math.max(15, Math.ceil((buyers / 1000) * 3))) * 1000;
  const { createdLater: _, ...body } = queued as QueueStock & Record<string, unknown>;
  await adminPost(baseUrl, adminToken, "/api/stocks", { ...body, startsAt: new Date(startsAt).toISOString() });
  console.log(`[load] queue: ${benchBuyers} buyers wait in the bench stock's line (joined in ${Math.round(performance.now() - t0)} ms); the queue stock starts at ${new Date(startsAt).toISOString()}`);
  return { BUYERS: String(buyers), UNITS: String(queued.quantity), START_AT: String(startsAt), BENCH_BUYERS: String(benchBuyers), BENCH_SECONDS: String(benchSeconds) };
}

/** min, p50, p99 and max of a list of ms, as text. */
const spread = (ms: number[]) => {
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
  return sorted.length === 0 ? "none" : `min ${sorted[0]} ms, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted[sorted.length - 1]} ms (${sorted.length})`;
};

/**
 * The two timing goals, from this run's own records:
 * - unit returned → next admitted: every unit given back after the draw (a cancel's or a hold expiry's
 *   StockReleased, an admission's expiry `x`) against the admissions after the draw (`a`), both sorted:
 *   with a limit of 1 each returned unit admits exactly one ticket, the k-th returned the k-th admitted;
 * - last unit gone → waiting tickets read sold_out: the stock's last event (the last purchase) against
 *   when k6 sent the latest poll answered waiting and the earliest answered sold_out (the answer is read
 *   in Redis after the send: a waiting answer to a poll sent after the last unit was gone would break the goal).
 */
async function roomTimings(redis: RedisClient, keys: ReturnType<typeof createKeyLayout>, stockId: string, events: StockEvent[], summary: K6Summary | null, startAt: number): Promise<string[]> {
  const r = keys.room(stockId);
  const drawnAt = Number(await redis.hget(r.room, "drawnAt"));
  const tickets = Object.values(await redis.hgetall(r.tickets)).map((raw) => JSON.parse(raw) as { s: string; a?: number; x?: number });
  const at = (e: StockEvent) => Date.parse(e.occurredAt);
  const returned = [
    ...events.filter((e) => e.eventType === "StockReleased" && at(e) >= drawnAt).map(at),
    ...tickets.filter((t) => t.s === "expired" && t.x !== undefined).map((t) => t.x!),
  ].sort((a, b) => a - b);
  const admittedLater = tickets.filter((t) => t.a !== undefined && t.a > drawnAt).map((t) => t.a!).sort((a, b) => a - b);
  const lags = admittedLater.slice(0, returned.length).map((a, k) => a - returned[k]!);
  const [available, held] = (await redis.hmget(keys.stock(stockId), "available", "held")).map(Number);
  // The last event is the moment nothing was left only once nothing is left (no unit, no live hold).
  const lastGone = available === 0 && held === 0 ? Math.max(...events.map(at)) - startAt : undefined;
  const sent = (name: string, stat: string) => summary?.metrics[name]?.values[stat];
  const firstSoldOut = sent("queue_sold_out_sent_at_ms", "min");
  const lastWaiting = sent("queue_waiting_sent_at_ms", "max");
  const relative = (ms: number | undefined) => (ms === undefined || lastGone === undefined ? "none" : `${Math.round(ms - lastGone)} ms`);
  return [
    `[load] queue: unit returned → next admitted: ${spread(lags)}; ${returned.length} units returned after the draw, ${admittedLater.length} admitted after it`,
    `[load] queue: last unit gone ${lastGone ?? "(not yet)"} ms after the start; relative to it, the last poll answered waiting was sent at ${relative(lastWaiting)}, the first answered sold_out at ${relative(firstSoldOut)}`,
  ];
}

export async function verifyQueue(redis: RedisClient, prefix: string, stock: QueueStock, summary: K6Summary | null, startAt: number): Promise<{ breaches: string[]; lines: string[] }> {
  const keys = createKeyLayout(prefix, SHARDS);
  const room = await checkRoom(redis, keys, stock.id);
  const { byStock } = await readOutboxEvents(redis, await findOutboxKeys(redis, prefix));
  const events = byStock.get(stock.id) ?? [];
  const allocated = events.filter((e) => e.eventType === "StockAllocated").length;
  const [sold] = await redis.hmget(keys.stock(stock.id), "sold");
  const breaches = [...room.breaches];
  if (allocated !== (room.byState.done ?? 0)) breaches.push(`${allocated} allocations but ${room.byState.done ?? 0} admissions used: an allocation without admission`);
  if (Number(sold) !== stock.quantity) breaches.push(`sold ${sold} of ${stock.quantity}`);
  const bench = (summary as { bench?: { stockReadPerSecond: number; pollPerSecond: number; ratio: number } } | null)?.bench;
  const lines = [
    `[load] queue room: ${room.tickets} tickets ${JSON.stringify(room.byState)}, ${allocated} allocations, sold ${sold}/${stock.quantity}, reserved ${room.reserved}, available ${room.available}`,
    bench ? `[load] queue bench: GET /api/stocks/:id ${bench.stockReadPerSecond.toFixed(0)}/s, poll ${bench.pollPerSecond.toFixed(0)}/s (x${bench.ratio.toFixed(2)})` : "[load] queue bench: no figures",
    ...(await roomTimings(redis, keys, stock.id, events, summary, startAt)),
    breaches.length === 0 ? "[load] queue room invariants: clean" : `[load] queue room invariants BROKEN:\n  ${breaches.join("\n  ")}`,
  ];
  return { breaches, lines };
}
