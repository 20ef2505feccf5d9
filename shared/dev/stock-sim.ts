/**
 * A tiny in-memory model of the write side that emits well-formed events (shared/domain/events.ts):
 * versions +1 per stock from 1, counters after each event, allocation ids with a shard prefix.
 * Tests and the projector benchmark produce these straight to Kafka, without Redis or the relay.
 */
import type { EventOf, StockEvent } from "../domain/events.ts";
import type { StockCounters } from "../domain/views.ts";
import type { AllocationStatus } from "../domain/views.ts";

export interface SimStock {
  id: string;
  name: string;
  description: string;
  price: number;
  currency: string;
  total: number;
  available: number;
  held: number;
  sold: number;
  version: number;
  startsAt: string;
  endsAt: string | null;
}

export interface SimHold {
  allocationId: string;
  stockId: string;
  userId: string;
  quantity: number;
  status: AllocationStatus;
}

export interface StockSimOptions {
  /** Clock for occurredAt; defaults to the wall clock (so freshness metrics are meaningful). */
  now?: () => number;
}

export class StockSim {
  readonly stocks = new Map<string, SimStock>();
  readonly holds = new Map<string, SimHold>();
  private readonly now: () => number;

  constructor(options: StockSimOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  /** Every stock's counters now: what a converged read model must hold. */
  expectedCounters(): StockCounters[] {
    return [...this.stocks.values()].map((s) => ({ stockId: s.id, available: s.available, held: s.held, sold: s.sold, version: s.version }));
  }

  private envelope(stock: SimStock) {
    stock.version += 1;
    return {
      eventId: Bun.randomUUIDv7(),
      schemaVersion: 1 as const,
      aggregateType: "Stock" as const,
      aggregateId: stock.id,
      version: stock.version,
      occurredAt: new Date(this.now()).toISOString(),
    };
  }

  private counters(stock: SimStock) {
    return { available: stock.available, held: stock.held, sold: stock.sold };
  }

  create(
    id: string,
    options: Partial<Pick<SimStock, "name" | "description" | "price" | "currency" | "startsAt" | "endsAt">> & { total?: number } = {},
  ): EventOf<"StockCreated"> {
    if (this.stocks.has(id)) throw new Error(`stock ${id} exists`);
    const total = options.total ?? 100;
    const stock: SimStock = {
      id,
      name: options.name ?? `Item ${id}`,
      description: options.description ?? `A limited item called ${id}`,
      price: options.price ?? 1999,
      currency: options.currency ?? "EUR",
      total,
      available: total,
      held: 0,
      sold: 0,
      version: 0,
      startsAt: options.startsAt ?? new Date(this.now() - 60_000).toISOString(),
      endsAt: options.endsAt === undefined ? null : options.endsAt,
    };
    this.stocks.set(id, stock);
    return {
      ...this.envelope(stock),
      eventType: "StockCreated",
      payload: {
        name: stock.name,
        description: stock.description,
        price: stock.price,
        currency: stock.currency,
        total,
        perUserLimit: 5,
        holdSeconds: 600,
        startsAt: stock.startsAt,
        endsAt: stock.endsAt,
        ...this.counters(stock),
      },
    };
  }

  /** Null when the stock has fewer than `quantity` units available. */
  allocate(stockId: string, userId: string, quantity = 1): EventOf<"StockAllocated"> | null {
    const stock = this.mustStock(stockId);
    if (stock.available < quantity) return null;
    stock.available -= quantity;
    stock.held += quantity;
    const allocationId = `s0-${Bun.randomUUIDv7()}`;
    this.holds.set(allocationId, { allocationId, stockId, userId, quantity, status: "held" });
    return {
      ...this.envelope(stock),
      eventType: "StockAllocated",
      payload: {
        allocationId,
        userId,
        quantity,
        expiresAt: new Date(this.now() + 600_000).toISOString(),
        ...this.counters(stock),
      },
    };
  }

  purchase(allocationId: string): EventOf<"PurchaseCompleted"> {
    const hold = this.mustHold(allocationId);
    const stock = this.mustStock(hold.stockId);
    stock.held -= hold.quantity;
    stock.sold += hold.quantity;
    hold.status = "purchased";
    return {
      ...this.envelope(stock),
      eventType: "PurchaseCompleted",
      payload: {
        allocationId,
        userId: hold.userId,
        quantity: hold.quantity,
        amount: hold.quantity * stock.price,
        currency: stock.currency,
        ...this.counters(stock),
      },
    };
  }

  release(allocationId: string, reason: "expired" | "cancelled"): EventOf<"StockReleased"> {
    const hold = this.mustHold(allocationId);
    const stock = this.mustStock(hold.stockId);
    stock.held -= hold.quantity;
    stock.available += hold.quantity;
    hold.status = reason;
    return {
      ...this.envelope(stock),
      eventType: "StockReleased",
      payload: { allocationId, userId: hold.userId, quantity: hold.quantity, reason, ...this.counters(stock) },
    };
  }

  /**
   * Runs a write and then forgets it, as a failover to a lagging replica does: the event exists (Kafka
   * carried it) but the sim's state, versions included, is as before, so the next write re-uses its version.
   */
  forget<T>(write: () => T): T {
    const stocks = [...this.stocks.values()].map((s) => ({ ...s }));
    const holds = [...this.holds.values()].map((h) => ({ ...h }));
    const event = write();
    this.stocks.clear();
    for (const s of stocks) this.stocks.set(s.id, s);
    this.holds.clear();
    for (const h of holds) this.holds.set(h.allocationId, h);
    return event;
  }

  /** A repair snapshot (snapshot.lua): the stock now, its live holds, at a version above `seenVersion`. */
  snapshot(stockId: string, seenVersion = 0): EventOf<"StockSnapshot"> {
    const stock = this.mustStock(stockId);
    const previousVersion = stock.version;
    stock.version = Math.max(stock.version, seenVersion);
    return {
      ...this.envelope(stock),
      eventType: "StockSnapshot",
      payload: {
        name: stock.name,
        description: stock.description,
        price: stock.price,
        currency: stock.currency,
        total: stock.total,
        perUserLimit: 5,
        holdSeconds: 600,
        startsAt: stock.startsAt,
        endsAt: stock.endsAt,
        ...this.counters(stock),
        previousVersion,
        liveHolds: this.liveHolds(stockId).map((h) => h.allocationId).sort(),
      },
    };
  }

  /** Live holds, oldest first. */
  liveHolds(stockId?: string): SimHold[] {
    return [...this.holds.values()].filter((h) => h.status === "held" && (stockId === undefined || h.stockId === stockId));
  }

  private mustStock(id: string): SimStock {
    const stock = this.stocks.get(id);
    if (!stock) throw new Error(`no stock ${id}`);
    return stock;
  }

  private mustHold(id: string): SimHold {
    const hold = this.holds.get(id);
    if (!hold || hold.status !== "held") throw new Error(`no live hold ${id}`);
    return hold;
  }
}

/**
 * A realistic mix over `stockCount` stocks: StockCreated first per stock, then allocations, with
 * about half the holds purchased, a fifth cancelled, a tenth expired. Returns exactly `count` events.
 */
export function generateWorkload(
  sim: StockSim,
  options: { count: number; stockCount: number; prefix: string; users?: number; totalPerStock?: number },
): StockEvent[] {
  const events: StockEvent[] = [];
  const ids: string[] = [];
  const users = options.users ?? 5_000;
  for (let i = 0; i < options.stockCount && events.length < options.count; i++) {
    const id = `${options.prefix}-${i}`;
    ids.push(id);
    events.push(sim.create(id, { total: options.totalPerStock ?? 1_000_000, price: 500 + (i % 50) * 100 }));
  }
  const pending: string[] = [];
  let n = 0;
  while (events.length < options.count) {
    n++;
    const roll = Math.random();
    if (pending.length > 0 && roll < 0.45) {
      // Settle a random pending hold: purchase, cancel or expire.
      const index = Math.floor(Math.random() * pending.length);
      const allocationId = pending[index]!;
      pending[index] = pending[pending.length - 1]!;
      pending.pop();
      const kind = Math.random();
      events.push(kind < 0.6 ? sim.purchase(allocationId) : sim.release(allocationId, kind < 0.85 ? "cancelled" : "expired"));
      continue;
    }
    const stockId = ids[Math.floor(Math.random() * ids.length)]!;
    const event = sim.allocate(stockId, `u${n % users}`, 1 + (n % 3));
    if (event) {
      events.push(event);
      pending.push(event.payload.allocationId);
    }
  }
  return events;
}

/**
 * Drift and its repair, as events: a failover forgot a hold (ghost) whose StockAllocated reached Kafka,
 * and the repair snapshot lists the live holds the sim (Redis) has. Versions: created 1, live 2,
 * bought 3 + purchase 4, ghost 5 (forgotten), phantom 5 + its purchase 6 (both forgotten), expiring 5
 * (Redis re-uses the versions) + expiry 6, snapshot 7, after 8 (a real hold placed after the snapshot,
 * listed nowhere, never voided).
 */
export function repairScenario(sim: StockSim, stockId: string) {
  const created = sim.create(stockId, { total: 100, price: 10 });
  const live = sim.allocate(stockId, "liv", 1)!;
  const bought = sim.allocate(stockId, "buy", 2)!;
  const purchase = sim.purchase(bought.payload.allocationId);
  const ghost = sim.forget(() => sim.allocate(stockId, "ghost", 40)!);
  // A phantom purchase: held and bought, both forgotten (the read side keeps it: a business reconciliation).
  const [phantomHold, phantomPurchase] = sim.forget(() => {
    const hold = sim.allocate(stockId, "phantom", 5)!;
    return [hold, sim.purchase(hold.payload.allocationId)] as const;
  });
  const expiring = sim.allocate(stockId, "exp", 3)!;
  const expiry = sim.release(expiring.payload.allocationId, "expired");
  const snapshot = sim.snapshot(stockId, phantomPurchase.version);
  const after = sim.allocate(stockId, "after", 4)!;
  return { created, live, bought, purchase, ghost, phantomHold, phantomPurchase, expiring, expiry, snapshot, after };
}
