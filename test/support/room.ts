/** Waiting-room test helpers: a stock with a room, buyers who join and poll, and the invariant check. */
import { expect } from "bun:test";
import { createExpirer, type Expirer } from "../../services/expirer/expirer.ts";
import type { TicketView } from "../../shared/domain/room.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { checkRoom } from "../../shared/verify/room.ts";
import type { TestApi } from "./api.ts";

export interface Buyer {
  userId: string;
  headers: Record<string, string>;
}

export function roomHelpers(api: TestApi) {
  return {
    async createRoomStock(body: Record<string, unknown>, room: Record<string, unknown> = {}): Promise<string> {
      const res = await api.request("POST", "/api/stocks", {
        headers: api.admin,
        body: { name: "Queued sneaker", price: 9_900, perUserLimit: 1, ...body, waitingRoom: { enabled: true, ...room } },
      });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: string }).id;
    },
    async buyers(count: number, label = "buyer"): Promise<Buyer[]> {
      return Promise.all(Array.from({ length: count }, async (_, i) => ({ userId: `${label}-${i}`, headers: await api.user(`${label}-${i}`) })));
    },
    async join(stockId: string, buyer: Buyer): Promise<{ status: number; body: TicketView & { code?: string } }> {
      const res = await api.request("POST", `/api/stocks/${stockId}/queue`, { headers: buyer.headers });
      return { status: res.status, body: (await res.json()) as TicketView & { code?: string } };
    },
    async poll(stockId: string, buyer: Buyer): Promise<TicketView> {
      const res = await api.request("GET", `/api/stocks/${stockId}/queue/me`, { headers: buyer.headers });
      expect(res.status).toBe(200);
      return (await res.json()) as TicketView;
    },
    async allocate(stockId: string, buyer: Buyer, token: string | undefined, extra: Record<string, string> = {}, quantity?: number) {
      const headers = { ...buyer.headers, ...extra, ...(token === undefined ? {} : { "Admission-Token": token }) };
      const res = await api.request("POST", `/api/stocks/${stockId}/allocate`, { headers, body: quantity === undefined ? undefined : { quantity } });
      return { status: res.status, body: (await res.json()) as { allocationId?: string; code?: string } };
    },
    /** Every room invariant holds right now (shared/verify/room.ts). */
    async expectSound(stockId: string) {
      const check = await checkRoom(api.redis, api.keys, stockId);
      expect(check.breaches).toEqual([]);
      return check;
    },
    expirer(): Expirer {
      return createExpirer({
        redis: api.redis,
        keys: api.keys,
        logger: createLogger("expirer-test", process.env.LOG_LEVEL ?? "silent"),
        registry: createMetricsRegistry("expirer"),
        intervalMs: 100,
        batchSize: 500,
      });
    },
  };
}

/** Polls `probe` until it is true; returns the milliseconds it took (fails after `timeoutMs`). */
export async function waitFor(probe: () => Promise<boolean>, timeoutMs = 5_000, everyMs = 10): Promise<number> {
  const started = performance.now();
  while (!(await probe())) {
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await Bun.sleep(everyMs);
  }
  return performance.now() - started;
}
