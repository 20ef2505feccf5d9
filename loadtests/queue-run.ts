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

export async function verifyQueue(redis: RedisClient, prefix: string, stock: QueueStock, summary: K6Summary | null): Promise<{ breaches: string[]; lines: string[] }> {
  const keys = createKeyLayout(prefix, SHARDS);
  const room = await checkRoom(redis, keys, stock.id);
  const { byStock } = await readOutboxEvents(redis, await findOutboxKeys(redis, prefix));
  const allocated = (byStock.get(stock.id) ?? []).filter((e) => e.eventType === "StockAllocated").length;
  const [sold] = await redis.hmget(keys.stock(stock.id), "sold");
  const breaches = [...room.breaches];
  if (allocated !== (room.byState.done ?? 0)) breaches.push(`${allocated} allocations but ${room.byState.done ?? 0} admissions used: an allocation without admission`);
  if (Number(sold) !== stock.quantity) breaches.push(`sold ${sold} of ${stock.quantity}`);
  const bench = (summary as { bench?: { stockReadPerSecond: number; pollPerSecond: number; ratio: number } } | null)?.bench;
  const lines = [
    `[load] queue room: ${room.tickets} tickets ${JSON.stringify(room.byState)}, ${allocated} allocations, sold ${sold}/${stock.quantity}, reserved ${room.reserved}, available ${room.available}`,
    bench ? `[load] queue bench: GET /api/stocks/:id ${bench.stockReadPerSecond.toFixed(0)}/s, poll ${bench.pollPerSecond.toFixed(0)}/s (x${bench.ratio.toFixed(2)})` : "[load] queue bench: no figures",
    breaches.length === 0 ? "[load] queue room invariants: clean" : `[load] queue room invariants BROKEN:\n  ${breaches.join("\n  ")}`,
  ];
  return { breaches, lines };
}
