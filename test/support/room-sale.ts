/**
 * A sale through a waiting room over HTTP, for the tests that crash something under it (api and expirer
 * restarts, a Redis failover): buyers join, poll, allocate with their admission token and buy, and
 * what they were told is kept, so the test can check afterwards that no ticket was lost or doubled.
 */
import { expect } from "bun:test";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import type { TicketView } from "../../shared/domain/room.ts";
import type { RedisClient, RedisTarget } from "../../shared/redis/client.ts";
import { checkRoom } from "../../shared/verify/room.ts";
import { TEST_ADMIN_TOKEN, TEST_JWT_SECRET } from "./api.ts";
import { readCounters, readOutbox } from "./invariants.ts";

/** The environment of the api and the expirer a sale runs on: `target` (a cluster's nodes when it is one), `extra` on top. */
export function saleEnv(target: RedisTarget, sale: { prefix: string; port: number; shards: number }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: target.REDIS_URL,
    ...(target.REDIS_CLUSTER_NODES ? { REDIS_CLUSTER_NODES: target.REDIS_CLUSTER_NODES.map((n) => `${n.host}:${n.port}`).join(",") } : {}),
    REDIS_KEY_PREFIX: sale.prefix,
    OUTBOX_SHARDS: String(sale.shards),
    PORT: String(sale.port),
    ADMIN_TOKEN: TEST_ADMIN_TOKEN,
    JWT_SECRET: TEST_JWT_SECRET,
    RATE_LIMIT_IP: "off",
    EXPIRER_INTERVAL_MS: "100",
    ...extra,
  };
}

/** Resolves once `url` answers 2xx (a started binary's /readyz); fails after `timeoutMs`. */
export async function waitReady(url: string, timeoutMs = 30_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(50)) {
    if (await fetch(url).then((r) => r.ok, () => false)) return;
  }
  throw new Error(`${url} never ready`);
}

export function roomSale(base: string) {
  /** What the buyers were told: ticket ids at join, at their last poll, final states, allocations (201), purchases too late (409 hold_expired), allocations refused 403 (with when). */
  const told = { joined: new Map<number, string>(), seen: new Map<number, string>(), finals: new Map<number, string>(), allocations: [] as string[], lateHolds: 0, refusedLate: [] as { ticketId: string; at: number }[] };

  /** A request that waits out the api being down or its store unavailable (connection refused, 503). */
  const send = async (path: string, init: RequestInit = {}): Promise<Response> => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const res = await fetch(`${base}${path}`, init).catch(() => null);
      if (res && res.status !== 503) return res;
      await Bun.sleep(50);
    }
    throw new Error(`${path}: the api did not answer for 30 s`);
  };

  return {
    told,
    send,
    async createStock(body: Record<string, unknown>): Promise<void> {
      const res = await send("/api/stocks", { method: "POST", headers: { Authorization: `Bearer ${TEST_ADMIN_TOKEN}`, "Content-Type": "application/json" }, body: JSON.stringify(body) });
      expect(res.status).toBe(201);
    },
    async join(stockId: string, i: number, headers: Record<string, string>): Promise<string> {
      const res = await send(`/api/stocks/${stockId}/queue`, { method: "POST", headers });
      expect(res.status === 201 || res.status === 200).toBe(true);
      const { ticketId } = (await res.json()) as TicketView;
      told.joined.set(i, ticketId);
      return ticketId;
    },
    /**
     * Buyer i polls until its ticket is final; once admitted, i % 4 = 0 lets the admission expire,
     * i % 4 = 1 lets the hold expire, the others buy.
     */
    async buy(stockId: string, i: number, headers: Record<string, string>): Promise<void> {
      let ignored = false;
      for (const deadline = Date.now() + 60_000; Date.now() < deadline; await Bun.sleep(100)) {
        const t = (await (await send(`/api/stocks/${stockId}/queue/me`, { headers })).json()) as TicketView;
        told.seen.set(i, t.ticketId);
        if (t.state === "admitted" && !ignored) {
          if (i % 4 === 0) {
            ignored = true;
            continue;
          }
          const held = await send(`/api/stocks/${stockId}/allocate`, { method: "POST", headers: { ...headers, "Admission-Token": t.admissionToken!, "Idempotency-Key": `${stockId}-${i}` } });
          if (held.status === 403) {
            // Only an admission that ran out while the store was unavailable: checked against its expiry at the end.
            expect(((await held.json()) as { code?: string }).code).toBe("not_admitted");
            told.refusedLate.push({ ticketId: t.ticketId, at: Date.now() });
            ignored = true;
            continue;
          }
          expect(held.status).toBe(201);
          const { allocationId } = (await held.json()) as { allocationId: string };
          told.allocations.push(allocationId);
          if (i % 4 !== 1) {
            // A hold may run out while the store is unavailable (a failover takes seconds): then the unit goes to the next.
            const bought = await send(`/api/allocations/${allocationId}/purchase`, { method: "POST", headers });
            const outcome = bought.status === 200 ? "bought" : `${bought.status} ${((await bought.json()) as { code?: string }).code}`;
            if (outcome !== "bought") told.lateHolds++;
            expect(outcome === "bought" || outcome === "409 hold_expired").toBe(true);
          }
        } else if (t.state !== "waiting" && t.state !== "admitted") {
          told.finals.set(i, t.state);
          return;
        }
      }
      throw new Error(`buyer ${i} still waiting after 60 s`);
    },
    /**
     * Nothing lost or doubled: every buyer still has the ticket it was given, the room's invariants hold
     * (one ticket per user, each in one place), every unit is sold, one StockAllocated per allocation
     * answered and per used admission, and every ticket ended.
     */
    async expectNothingLostOrDoubled(redis: RedisClient, keys: KeyLayout, stockId: string, units: number, buyers: number) {
      expect(told.joined.size).toBe(buyers);
      expect(new Set(told.joined.values()).size).toBe(buyers);
      expect(told.seen).toEqual(told.joined);
      const check = await checkRoom(redis, keys, stockId);
      expect(check.breaches).toEqual([]);
      expect(check.tickets).toBe(buyers);
      expect(await readCounters(redis, keys, stockId)).toMatchObject({ total: units, available: 0, held: 0, sold: units });
      const allocated = (await readOutbox(redis, keys)).filter((e) => e.aggregateId === stockId && e.eventType === "StockAllocated");
      expect(allocated.length).toBe(check.byState.done!);
      expect(allocated.map((e) => (e.payload as { allocationId: string }).allocationId).sort()).toEqual([...told.allocations].sort());
      expect([...told.finals.values()].every((s) => s === "done" || s === "expired" || s === "sold_out")).toBe(true);
      expect(told.finals.size).toBe(buyers);
      // A 403 not_admitted came after that admission's expiry (x, Redis' clock on this machine), never before.
      for (const { ticketId, at } of told.refusedLate) {
        const t = JSON.parse((await redis.hget(keys.room(stockId).tickets, ticketId))!) as { s: string; x: number };
        expect({ ticketId, state: t.s, expiredBeforeTheAnswer: t.x <= at }).toEqual({ ticketId, state: "expired", expiredBeforeTheAnswer: true });
      }
      return check;
    },
    /** The final states, counted (for the test's log line). */
    finalsCounted: () => Object.fromEntries(Object.entries(Object.groupBy([...told.finals.values()], (s) => s)).map(([k, v]) => [k, v?.length])),
  };
}
