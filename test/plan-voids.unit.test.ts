/**
 * Pure projector-postgres logic for repair voids (plan.ts): which held orders a repair snapshot voids,
 * in any event order inside a batch, and how statuses merge across batches. The same rules against the
 * real PostgreSQL, batches in any order: test/projector-voids.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { mergeOrderStatus, planPostgresBatch, voidingSnapshot } from "../shared/stores/postgres/plan.ts";
import { repairScenario, StockSim } from "../shared/dev/stock-sim.ts";

describe("planPostgresBatch: repair voids", () => {
  test("a repair snapshot voids only the held orders placed before it that Redis does not list, in any event order", () => {
    const e = repairScenario(new StockSim({ now: () => Date.parse("2030-01-01T10:00:30.000Z") }), "s1");
    expect(e.ghost.version).toBe(5);
    expect(e.expiring.version).toBe(5);
    expect(e.snapshot.version).toBe(7);
    expect(e.snapshot.payload.liveHolds).toEqual([e.live.payload.allocationId]);
    const all = Object.values(e);
    for (const events of [all, [...all].reverse(), [e.snapshot, ...all.filter((x) => x !== e.snapshot)]]) {
      const plan = planPostgresBatch(events);
      const status = new Map(plan.orders.map((o) => [o.user_id, o.status]));
      expect(Object.fromEntries(status)).toEqual({ liv: "held", buy: "purchased", ghost: "voided", phantom: "purchased", exp: "expired", after: "held" });
      const ghost = plan.orders.find((o) => o.user_id === "ghost")!;
      expect(ghost).toMatchObject({ placed_version: 5, voided_at: e.snapshot.occurredAt, released_at: null });
      expect(plan.orders.find((o) => o.user_id === "after")!.placed_version).toBe(8);
      expect(plan.minutes).toHaveLength(1);
      expect(plan.minutes[0]).toMatchObject({ holds_placed: 6, units_allocated: 55, units_sold: 7, holds_voided: 1, units_voided: 40 });
      // allocated − sold − expired − cancelled − voided = the units still held.
      const m = plan.minutes[0]!;
      expect(m.units_allocated - m.units_sold - m.units_expired - m.units_cancelled - m.units_voided).toBe(1 + 4);
      expect(plan.snapshots).toEqual([
        { event_id: e.snapshot.eventId, stock_id: "s1", version: 7, occurred_at: e.snapshot.occurredAt, live_holds: [e.live.payload.allocationId] },
      ]);
    }
  });

  test("a snapshot without liveHolds (appended before the field existed) voids nothing", () => {
    const e = repairScenario(new StockSim(), "s1");
    const { liveHolds: _, ...payload } = e.snapshot.payload;
    const plan = planPostgresBatch([e.ghost, { ...e.snapshot, payload }]);
    expect(plan.orders[0]!.status).toBe("held");
    expect(plan.snapshots).toEqual([]);
  });

  test("voidingSnapshot: strictly above the placed version, not listed, the lowest such snapshot, held orders only", () => {
    const order = { allocation_id: "g", stock_id: "s1", status: "held" as const, placed_version: 5 };
    const snap = (version: number, live: string[] = [], stock = "s1") => ({ stock_id: stock, version, live_holds: live });
    expect(voidingSnapshot(order, [])).toBeNull();
    expect(voidingSnapshot(order, [snap(5)])).toBeNull(); // placed at the snapshot's version: not before it
    expect(voidingSnapshot(order, [snap(4)])).toBeNull(); // placed after the snapshot
    expect(voidingSnapshot(order, [snap(9, ["g"])])).toBeNull(); // Redis has it
    expect(voidingSnapshot(order, [snap(9, [], "s2")])).toBeNull(); // another stock's
    expect(voidingSnapshot(order, [snap(12), snap(9, ["g"]), snap(10)])).toEqual(snap(10));
    expect(voidingSnapshot({ ...order, placed_version: null }, [snap(9)])).toBeNull();
    for (const status of ["purchased", "expired", "cancelled", "voided"] as const) expect(voidingSnapshot({ ...order, status }, [snap(9)])).toBeNull();
  });

  test("mergeOrderStatus: a real end beats 'voided' beats 'held', whichever is stored first", () => {
    const ended = ["purchased", "expired", "cancelled"] as const;
    for (const end of ended) {
      expect(mergeOrderStatus("voided", end)).toBe(end);
      expect(mergeOrderStatus(end, "voided")).toBe(end);
      expect(mergeOrderStatus("held", end)).toBe(end);
      expect(mergeOrderStatus(end, "held")).toBe(end);
    }
    expect(mergeOrderStatus("held", "voided")).toBe("voided");
    expect(mergeOrderStatus("voided", "held")).toBe("voided"); // a late StockAllocated never resurrects a void
    expect(mergeOrderStatus("held", "held")).toBe("held");
  });

});
