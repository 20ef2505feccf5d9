/**
 * The reference model of the write side (docs/design.md §2, §8): plain TypeScript, no Redis, no
 * clock. Every command of the simulation (test/sim/commands.ts) asks it what the api must answer and
 * applies the same change here; the real system must then agree, answer by answer and counter by counter.
 *
 * What it knows, per stock: the counters, the version, each user's units (I4), whether the sale
 * ended, and the history of events it expects on Kafka. Per hold: its owner, quantity, status and
 * whether its deadline has passed (the simulation moves deadlines, not clocks). Per Idempotency-Key
 * (scoped, as in Redis, by stock and user): the request's fingerprint and the first answer (I5).
 */

type HoldStatus = "held" | "purchased" | "cancelled" | "expired";

export interface ModelEvent {
  type: "StockCreated" | "StockAllocated" | "PurchaseCompleted" | "StockReleased";
  allocationId?: string;
  reason?: "cancelled" | "expired";
  version: number;
  /** The counters after the event (every event's payload carries them). */
  available: number;
  held: number;
  sold: number;
}

export interface ModelStock {
  id: string;
  total: number;
  available: number;
  held: number;
  sold: number;
  perUserLimit: number;
  version: number;
  ended: boolean;
  buyers: Map<string, number>;
  events: ModelEvent[];
}

export interface ModelHold {
  allocationId: string;
  stockId: string;
  userId: string;
  quantity: number;
  status: HoldStatus;
  /** Its deadline was moved into the past: purchase answers hold_expired, the expirer releases it. */
  due: boolean;
  /** The answer to the allocate that made it (a replay must repeat it). */
  answer: unknown;
}

/** What the api must answer: a status, and the problem `code` when it is not a success. */
export interface Expected {
  status: number;
  code?: string;
}

export class WriteSideModel {
  readonly stocks: ModelStock[] = [];
  readonly holds: ModelHold[] = [];
  /** `${stockId}\u0000${userId}\u0000${key}` → fingerprint (quantity) and the first answer. */
  readonly idempotency = new Map<string, { quantity: number; answer: unknown; status: number }>();
  /** Allocation ids in the order their deadlines passed: the expirer's order (due index by deadline). */
  readonly dueOrder: string[] = [];

  stock(id: string): ModelStock {
    const s = this.stocks.find((x) => x.id === id);
    if (!s) throw new Error(`model: no stock ${id}`);
    return s;
  }

  createStock(id: string, quantity: number, perUserLimit: number): void {
    this.stocks.push({
      id,
      total: quantity,
      available: quantity,
      held: 0,
      sold: 0,
      perUserLimit,
      version: 1,
      ended: false,
      buyers: new Map(),
      events: [{ type: "StockCreated", version: 1, available: quantity, held: 0, sold: 0 }],
    });
  }

  private emit(s: ModelStock, event: Pick<ModelEvent, "type" | "allocationId" | "reason">): void {
    s.version += 1;
    s.events.push({ ...event, version: s.version, available: s.available, held: s.held, sold: s.sold });
  }

  /** The answer allocate must give; `undefined` means 201 with a new hold. */
  allocateOutcome(stockId: string, userId: string, quantity: number, key: string | undefined): Expected | { replay: { status: number; answer: unknown } } | undefined {
    const s = this.stock(stockId);
    if (key !== undefined) {
      const record = this.idempotency.get(idemKey(stockId, userId, key));
      if (record) return record.quantity === quantity ? { replay: { status: record.status, answer: record.answer } } : { status: 422, code: "idempotency_key_reused" };
    }
    if (s.ended) return { status: 409, code: "ended" };
    if (s.available < quantity) return { status: 409, code: "sold_out" };
    if ((s.buyers.get(userId) ?? 0) + quantity > s.perUserLimit) return { status: 409, code: "limit_exceeded" };
    return undefined;
  }

  allocate(stockId: string, userId: string, quantity: number, key: string | undefined, allocationId: string, answer: unknown, status: number): void {
    const s = this.stock(stockId);
    s.available -= quantity;
    s.held += quantity;
    s.buyers.set(userId, (s.buyers.get(userId) ?? 0) + quantity);
    this.emit(s, { type: "StockAllocated", allocationId });
    this.holds.push({ allocationId, stockId, userId, quantity, status: "held", due: false, answer });
    if (key !== undefined) this.idempotency.set(idemKey(stockId, userId, key), { quantity, answer, status });
  }

  purchaseOutcome(h: ModelHold, userId: string): Expected {
    if (h.userId !== userId) return { status: 403, code: "forbidden" };
    if (h.status === "purchased") return { status: 200 };
    if (h.status === "expired") return { status: 409, code: "hold_expired" };
    if (h.status !== "held") return { status: 409, code: "hold_not_active" };
    if (h.due) return { status: 409, code: "hold_expired" };
    return { status: 200 };
  }

  purchase(h: ModelHold): void {
    if (h.status === "purchased") return; // answered again, nothing changes
    const s = this.stock(h.stockId);
    s.held -= h.quantity;
    s.sold += h.quantity;
    h.status = "purchased";
    this.emit(s, { type: "PurchaseCompleted", allocationId: h.allocationId });
  }

  /** Cancel does not look at the deadline: a due hold the expirer has not released yet may still be given back. */
  cancelOutcome(h: ModelHold, userId: string): Expected {
    if (h.userId !== userId) return { status: 403, code: "forbidden" };
    if (h.status === "cancelled") return { status: 200 };
    if (h.status !== "held") return { status: 409, code: "hold_not_active" };
    return { status: 200 };
  }

  cancel(h: ModelHold): void {
    if (h.status === "cancelled") return;
    this.release(h, "cancelled");
  }

  private release(h: ModelHold, reason: "cancelled" | "expired"): void {
    const s = this.stock(h.stockId);
    s.available += h.quantity;
    s.held -= h.quantity;
    s.buyers.set(h.userId, (s.buyers.get(h.userId) ?? 0) - h.quantity);
    h.status = reason;
    this.emit(s, { type: "StockReleased", allocationId: h.allocationId, reason });
  }

  /** The expirer's sweep: every held hold whose deadline passed is released, in the order their deadlines passed. */
  expireDue(order: readonly string[]): number {
    let n = 0;
    for (const id of order) {
      const h = this.holds.find((x) => x.allocationId === id);
      if (h && h.status === "held" && h.due) {
        this.release(h, "expired");
        n++;
      }
    }
    return n;
  }

  /** Holds whose deadline passed and that are still held: what the next sweep releases. */
  dueHolds(): ModelHold[] {
    return this.holds.filter((h) => h.status === "held" && h.due);
  }

  /** The stock view the api must show (GET /api/stocks/:id), the fields the model owns. */
  view(s: ModelStock): { available: number; held: number; sold: number; total: number; version: number; status: string } {
    const status = s.ended ? "ended" : s.available === 0 ? "sold_out" : "live";
    return { available: s.available, held: s.held, sold: s.sold, total: s.total, version: s.version, status };
  }
}

const idemKey = (stockId: string, userId: string, key: string) => `${stockId}\u0000${userId}\u0000${key}`;
