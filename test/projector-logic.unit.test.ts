/** Pure projector logic: batch retry/split/DLQ decisions, PostgreSQL plans, search documents. */
import { describe, expect, test } from "bun:test";
import type { StockEvent } from "../shared/domain/events.ts";
import { projectBatch, SystemicRejection, type BatchControl, type ProjectionSink, type RawMessage } from "../shared/projection/batch.ts";
import { isPostgresOutage, RejectedEventError, StoreUnavailableError } from "../shared/projection/errors.ts";
import { minuteOf, planPostgresBatch } from "../shared/stores/postgres/plan.ts";
import { buildStockDocument, completeDocument, planSearchBatch } from "../shared/stores/search/documents.ts";
import { StockSim } from "../shared/dev/stock-sim.ts";

const message = (value: string | StockEvent, offset: number): RawMessage => ({
  key: null,
  value: Buffer.from(typeof value === "string" ? value : JSON.stringify(value)),
  offset: String(offset),
});

const control = (overrides: Partial<BatchControl> = {}): BatchControl => ({
  shouldAbort: () => false,
  waitAfterOutage: async () => {},
  recovered: () => {},
  maxDataAttempts: 3,
  waitAfterDataError: async () => {},
  ...overrides,
});

function scenario(count: number) {
  const sim = new StockSim();
  const events: StockEvent[] = [sim.create("a", { total: 1000 })];
  while (events.length < count) events.push(sim.allocate("a", `u${events.length}`)!);
  return events;
}

describe("projectBatch", () => {
  test("unparseable and unknown-schema messages are poison; the rest is applied in order", async () => {
    const events = scenario(4);
    const seen: string[] = [];
    const sink: ProjectionSink = {
      apply: async (batch) => {
        seen.push(...batch.map((e) => e.eventId));
        return { applied: batch, duplicates: 0 };
      },
      isOutage: () => false,
      probe: async () => {},
    };
    const v2 = { ...events[1]!, schemaVersion: 2 };
    const outcome = await projectBatch(
      [message(events[0]!, 0), message("{not json", 1), message(JSON.stringify(v2), 2), message(events[2]!, 3), message(events[3]!, 4)],
      sink,
      control(),
    );
    expect(outcome.status).toBe("done");
    if (outcome.status !== "done") return;
    expect(seen).toEqual([events[0]!.eventId, events[2]!.eventId, events[3]!.eventId]);
    expect(outcome.poison.map((p) => [p.message.offset, p.reason])).toEqual([
      ["1", "unparseable"],
      ["2", "unparseable"],
    ]);
  });

  test("an event the store keeps rejecting is isolated by splitting; the others land", async () => {
    const events = scenario(37);
    const bad = events[23]!.eventId;
    const landed = new Set<string>();
    let calls = 0;
    const sink: ProjectionSink = {
      apply: async (batch) => {
        calls++;
        if (batch.some((e) => e.eventId === bad)) throw new RejectedEventError("value out of range");
        for (const e of batch) landed.add(e.eventId);
        return { applied: batch, duplicates: 0 };
      },
      isOutage: (err) => err instanceof StoreUnavailableError,
      probe: async () => {},
    };
    const outcome = await projectBatch(events.map(message), sink, control());
    expect(outcome.status).toBe("done");
    if (outcome.status !== "done") return;
    expect(outcome.poison).toHaveLength(1);
    expect(outcome.poison[0]!.reason).toBe("rejected");
    expect(outcome.poison[0]!.message.offset).toBe("23");
    expect(landed.size).toBe(36);
    expect(calls).toBeLessThan(25); // 3 on the batch, ~2 per level, 3 on the single event
  });

  /** A sink that rejects the events in `bad` (and any batch holding one) and applies the rest. */
  function rejectingSink(bad: Set<string>, probe: () => Promise<void> = async () => {}) {
    const landed: string[] = [];
    let probes = 0;
    const sink: ProjectionSink = {
      apply: async (batch) => {
        if (batch.some((e) => bad.has(e.eventId))) throw new RejectedEventError("integer out of range");
        landed.push(...batch.map((e) => e.eventId));
        return { applied: batch, duplicates: 0 };
      },
      isOutage: (err) => err instanceof StoreUnavailableError,
      probe: async () => {
        probes++;
        await probe();
      },
    };
    return { sink, landed, probes: () => probes };
  }

  test("poison at the head of a batch: [bad, bad, bad, good, good] dead-letters the three and applies the two", async () => {
    const events = scenario(5);
    const { sink, landed, probes } = rejectingSink(new Set(events.slice(0, 3).map((e) => e.eventId)));
    const outcome = await projectBatch(events.map(message), sink, control());
    expect(outcome.status).toBe("done");
    if (outcome.status !== "done") return;
    expect(outcome.poison.map((p) => [p.message.offset, p.reason])).toEqual([
      ["0", "rejected"],
      ["1", "rejected"],
      ["2", "rejected"],
    ]);
    expect(landed).toEqual([events[3]!.eventId, events[4]!.eventId]);
    expect(probes()).toBe(1); // asked once: nothing had been accepted when the first was rejected
  });

  test("a batch of only poison events is dead-lettered whole once the probe shows the store accepts valid writes", async () => {
    const events = scenario(6);
    const { sink, landed, probes } = rejectingSink(new Set(events.map((e) => e.eventId)));
    const outcome = await projectBatch(events.map(message), sink, control());
    expect(outcome).toMatchObject({ status: "done", applied: [] });
    if (outcome.status !== "done") return;
    expect(outcome.poison.map((p) => p.message.offset)).toEqual(["0", "1", "2", "3", "4", "5"]);
    expect(landed).toEqual([]);
    expect(probes()).toBe(1);
  });

  test("poison after accepted events needs no probe", async () => {
    const events = scenario(5);
    const { sink, probes } = rejectingSink(new Set([events[4]!.eventId]), async () => {
      throw new Error("must not be asked");
    });
    const outcome = await projectBatch(events.map(message), sink, control());
    expect(outcome).toMatchObject({ status: "done" });
    if (outcome.status === "done") expect(outcome.poison.map((p) => p.message.offset)).toEqual(["4"]);
    expect(probes()).toBe(0);
  });

  test("a store that rejects everything, the probe too, is a systemic failure, not poison: nothing is dead-lettered", async () => {
    const events = scenario(40);
    let broken = true;
    let outages = 0;
    const sink: ProjectionSink = {
      apply: async (batch) => {
        if (broken) throw new RejectedEventError("relation is broken");
        return { applied: batch, duplicates: 0 };
      },
      isOutage: () => false,
      probe: async () => {
        if (broken) throw new RejectedEventError("relation is broken");
      },
    };
    const outcome = await projectBatch(
      events.map(message),
      sink,
      control({
        waitAfterOutage: async (err) => {
          expect(err).toBeInstanceOf(SystemicRejection);
          if (++outages === 3) broken = false; // the migration is fixed
        },
      }),
    );
    expect(outcome).toMatchObject({ status: "done", poison: [] });
    if (outcome.status === "done") expect(outcome.applied.length).toBe(40);
    expect(outages).toBe(3);
  });

  test("an outage is retried until the store is back and never dead-letters", async () => {
    const events = scenario(5);
    let failures = 0;
    let recovered = 0;
    const sink: ProjectionSink = {
      apply: async (batch) => {
        if (failures++ < 7) throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
        return { applied: batch, duplicates: 0 };
      },
      isOutage: isPostgresOutage,
      probe: async () => {},
    };
    const outcome = await projectBatch(events.map(message), sink, control({ recovered: () => recovered++ }));
    expect(outcome).toMatchObject({ status: "done", poison: [] });
    expect(recovered).toBe(1);
  });

  test("an outage during shutdown abandons the batch (nothing to commit)", async () => {
    let stopping = false;
    const sink: ProjectionSink = {
      apply: async () => {
        stopping = true;
        throw new StoreUnavailableError("down");
      },
      isOutage: (err) => err instanceof StoreUnavailableError,
      probe: async () => {},
    };
    const outcome = await projectBatch(scenario(3).map(message), sink, control({ shouldAbort: () => stopping }));
    expect(outcome.status).toBe("aborted");
  });
});

describe("isPostgresOutage", () => {
  test("connection loss, deadlock, missing table: outage; bad value: data", () => {
    expect(isPostgresOutage(Object.assign(new Error("x"), { code: "CONNECTION_CLOSED" }))).toBe(true);
    const pg = (code: string) => Object.assign(new Error("x"), { name: "PostgresError", code });
    expect(isPostgresOutage(pg("40P01"))).toBe(true);
    expect(isPostgresOutage(pg("57P01"))).toBe(true);
    expect(isPostgresOutage(pg("42P01"))).toBe(true);
    expect(isPostgresOutage(pg("22003"))).toBe(false);
    expect(isPostgresOutage(pg("23502"))).toBe(false);
    expect(isPostgresOutage(new TypeError("bad"))).toBe(false);
  });
});

describe("planPostgresBatch", () => {
  test("earliest and latest times compare instants, whatever their offset (the text fast path is for UTC only)", () => {
    const sim = new StockSim({ now: () => Date.parse("2030-01-01T10:00:30.000Z") });
    sim.create("s1", { total: 3 });
    const held = sim.allocate("s1", "alice", 1)!;
    const bought = sim.purchase(held.payload.allocationId);
    // 11:00+02:00 is 09:00Z: earlier than the hold at 10:00:30Z though it sorts later as text.
    const purchase = { ...bought, occurredAt: "2030-01-01T11:00:00.000+02:00" };
    const [order] = planPostgresBatch([held, purchase]).orders;
    expect(order).toMatchObject({ placed_at: purchase.occurredAt, updated_at: held.occurredAt });
    const both = planPostgresBatch([held, { ...bought, occurredAt: "2030-01-01T10:00:31.000Z" }], { minutes: false });
    expect(both.orders[0]).toMatchObject({ placed_at: held.occurredAt, updated_at: "2030-01-01T10:00:31.000Z" });
    expect(both.minutes).toEqual([]);
  });

  test("one row per stock (newest counters), per allocation (merged), per stock-minute (summed)", () => {
    const sim = new StockSim({ now: () => Date.parse("2030-01-01T10:00:30.000Z") });
    const created = sim.create("s1", { total: 3, price: 100 });
    const a1 = sim.allocate("s1", "alice", 2)!;
    const a2 = sim.allocate("s1", "bob", 1)!;
    const p1 = sim.purchase(a1.payload.allocationId);
    const r2 = sim.release(a2.payload.allocationId, "cancelled");
    // Any order gives the same plan.
    const plan = planPostgresBatch([r2, p1, a2, created, a1]);
    expect(plan.stocks).toHaveLength(1);
    expect(plan.stocks[0]).toMatchObject({ stock_id: "s1", name: "Item s1", available: 1, held: 0, sold: 2, version: 5 });
    expect(plan.stocks[0]!.first_unavailable_at).toBe(a2.occurredAt);
    expect(plan.stocks[0]!.sold_out_at).toBeNull();
    const byId = new Map(plan.orders.map((o) => [o.allocation_id, o]));
    expect(byId.get(a1.payload.allocationId)).toMatchObject({ status: "purchased", amount: 200, quantity: 2, held_at: a1.occurredAt });
    expect(byId.get(a2.payload.allocationId)).toMatchObject({ status: "cancelled", released_at: r2.occurredAt, user_id: "bob" });
    expect(plan.minutes).toEqual([
      {
        stock_id: "s1",
        minute: "2030-01-01T10:00:00.000Z",
        holds_placed: 2,
        units_allocated: 3,
        purchases: 1,
        units_sold: 2,
        revenue: 200,
        holds_expired: 0,
        units_expired: 0,
        holds_cancelled: 1,
        units_cancelled: 1,
        holds_voided: 0,
        units_voided: 0,
      },
    ]);
    expect(plan.snapshots).toEqual([]);
  });

  test("minuteOf truncates to the UTC minute", () => {
    expect(minuteOf("2030-01-01T10:59:59.999+02:00")).toBe("2030-01-01T08:59:00.000Z");
  });
});

describe("search documents", () => {
  test("coalesces to the newest event per stock, statics from StockCreated or the stored doc", () => {
    const sim = new StockSim();
    const created = sim.create("s1", { total: 10, name: "Red sneaker" });
    const a = sim.allocate("s1", "u1", 3)!;
    const b = sim.allocate("s1", "u2", 1)!;
    const [entry] = planSearchBatch([a, created, b]);
    expect(entry!.newest.eventId).toBe(b.eventId);
    const doc = buildStockDocument(entry!, null);
    expect(doc).toMatchObject({ stockId: "s1", name: "Red sneaker", available: 6, held: 4, version: 3, complete: true, status: "live" });

    const c = sim.purchase(a.payload.allocationId);
    const [later] = planSearchBatch([c]);
    expect(buildStockDocument(later!, doc)).toMatchObject({ name: "Red sneaker", sold: 3, held: 1, version: 4, complete: true });
    const orphan = buildStockDocument(later!, null);
    expect(orphan).toMatchObject({ name: "", complete: false, version: 4 });
    expect(completeDocument(orphan, created)).toMatchObject({ name: "Red sneaker", version: 4, sold: 3, complete: true });
  });
});

describe("combiningSink", () => {
  test("merges concurrent calls into one, hands each its share, and isolates a failing caller", async () => {
    const { combiningSink } = await import("../shared/projection/combine.ts");
    const a = scenario(5);
    const sim = new StockSim();
    const b: StockEvent[] = [sim.create("b", { total: 10 }), sim.allocate("b", "u", 1)!];
    const calls: number[] = [];
    const inner: ProjectionSink = {
      apply: async (events) => {
        calls.push(events.length);
        if (events.some((e) => e.aggregateId === "poison")) throw new RejectedEventError("no");
        // the first event of every call counts as a duplicate
        return { applied: events.filter((e) => e.version !== 1), duplicates: events.filter((e) => e.version === 1).length };
      },
      isOutage: () => false,
      probe: async () => {},
    };
    const sink = combiningSink(inner);
    const [ra, rb] = await Promise.all([sink.apply(a), sink.apply(b)]);
    expect(calls).toEqual([7]);
    expect(ra.applied.map((e) => e.eventId)).toEqual(a.slice(1).map((e) => e.eventId));
    expect(ra.duplicates).toBe(1);
    expect(rb).toMatchObject({ duplicates: 1 });
    expect(rb.applied).toHaveLength(1);

    calls.length = 0;
    const poison = [{ ...a[1]!, aggregateId: "poison" }];
    const results = await Promise.allSettled([sink.apply(a), sink.apply(poison)]);
    expect(calls).toEqual([6, 5, 1]);
    expect(results[0].status).toBe("fulfilled");
    expect(results[1].status).toBe("rejected");
  });
});

describe("refresh after write (refresher.ts)", () => {
  test("one refresh at a time; a request while one runs waits for the next, shared by everyone who asked meanwhile", async () => {
    const { createRefresher } = await import("../shared/stores/search/refresher.ts");
    const started: number[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const releases: Array<() => void> = [];
    const es = {
      indices: {
        refresh: () => {
          started.push(Date.now());
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          return new Promise<void>((resolve) => releases.push(() => (inFlight--, resolve())));
        },
      },
    } as unknown as import("@elastic/elasticsearch").Client;
    const refresher = createRefresher(es, "idx");
    const first = refresher.request(); // starts refresh #1
    await Bun.sleep(1);
    const second = refresher.request(); // #1 started before this write: needs #2
    const third = refresher.request(); // shares #2
    expect(started.length).toBe(1);
    let secondDone = false;
    void second.then(() => (secondDone = true));
    releases.shift()!(); // #1 completes
    await first;
    await Bun.sleep(1);
    expect(secondDone).toBe(false);
    expect(started.length).toBe(2); // #2 started after #1
    releases.shift()!();
    await Promise.all([second, third]);
    expect(started.length).toBe(2);
    expect(maxInFlight).toBe(1);
  });

  test("with a spacing, a write acked while the next refresh still waits its turn is covered by that one", async () => {
    const { createRefresher } = await import("../shared/stores/search/refresher.ts");
    let refreshes = 0;
    const es = { indices: { refresh: async () => void refreshes++ } } as unknown as import("@elastic/elasticsearch").Client;
    const refresher = createRefresher(es, "idx", { minSpacingMs: 60 });
    await refresher.request(); // #1 at once
    const a = refresher.request(); // waits out the spacing
    const b = refresher.request(); // acked before #2 began: shares it
    expect(b).toBe(a);
    await Promise.all([a, b]);
    expect(refreshes).toBe(2);
  });
});
