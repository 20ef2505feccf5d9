/**
 * The waiting room (issue 24, docs/waiting-room.md) against the real Redis, single node and cluster:
 * admission is checked inside allocate.lua, admission follows live stock, the draw is verifiable.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { drawOrder, seedMatchesCommitment, type DrawView, type RoomView } from "../shared/domain/room.ts";
import { createTestApi, describeEachRedis } from "./support/api.ts";
import { conservationBreach, readCounters, readOutbox } from "./support/invariants.ts";
import { roomHelpers, waitFor } from "./support/room.ts";
import { StockCounters } from "../services/api/dashboard/stocks.ts";

describeEachRedis((target) => {
  const api = createTestApi({ shards: 8, redis: target.target });
  const room = roomHelpers(api);
  afterAll(() => api.close());
  const get = async <T>(path: string, headers: Record<string, string> = {}) => {
    const res = await api.request("GET", path, { headers });
    return { status: res.status, body: (await res.json()) as T & { code?: string } };
  };

  describe("turning it on", () => {
    test("waitingRoom is shown on the stock (TTL default 60); out-of-range TTLs are 400; a stock without it shows none", async () => {
      const id = await room.createRoomStock({ quantity: 5 });
      expect((await get<{ waitingRoom?: unknown }>(`/api/stocks/${id}`)).body.waitingRoom).toEqual({ enabled: true, admissionTtlSeconds: 60 });
      const custom = await room.createRoomStock({ quantity: 5 }, { admissionTtlSeconds: 3600 });
      expect((await get<{ waitingRoom?: unknown }>(`/api/stocks/${custom}`)).body.waitingRoom).toEqual({ enabled: true, admissionTtlSeconds: 3600 });
      for (const ttl of [4, 3601, 1.5]) {
        const res = await api.request("POST", "/api/stocks", { headers: api.admin, body: { name: "x", price: 1, quantity: 1, waitingRoom: { enabled: true, admissionTtlSeconds: ttl } } });
        expect(res.status).toBe(400);
      }
      const plain = await api.request("POST", "/api/stocks", { headers: api.admin, body: { name: "plain", price: 1, quantity: 1 } });
      const plainId = ((await plain.json()) as { id: string }).id;
      expect((await get<{ waitingRoom?: unknown }>(`/api/stocks/${plainId}`)).body.waitingRoom).toBeUndefined();
      const [buyer] = await room.buyers(1, "plain");
      const refused = await room.join(plainId, buyer!);
      // 409: the stock exists; its state (no room) refuses the join. A 404 read as "the stock is gone".
      expect({ status: refused.status, code: refused.body.code }).toEqual({ status: 409, code: "no_waiting_room" });
      expect((await room.allocate(plainId, buyer!, undefined)).status).toBe(201);
    });
  });

  describe("the draw", () => {
    test("pre-queue admitted in the published draw order, then arrivals in order; sha256(seed) = commitment", async () => {
      const startsAt = Date.now() + 1_500;
      const id = await room.createRoomStock({ quantity: 3, startsAt: new Date(startsAt).toISOString() }, { admissionTtlSeconds: 30 });
      const early = await room.buyers(20, "early");
      const joined = await Promise.all(early.map((b) => room.join(id, b)));
      expect(joined.every((j) => j.status === 201 && j.body.state === "waiting")).toBe(true);
      const ticketIds = joined.map((j) => j.body.ticketId);
      expect(new Set(ticketIds).size).toBe(20);
      expect(ticketIds.every((t) => /^[0-9a-f]{32}$/.test(t) && !t.includes("early"))).toBe(true);
      // Joining again: the same ticket, 200.
      const again = await room.join(id, early[0]!);
      expect(again.status).toBe(200);
      expect(again.body.ticketId).toBe(ticketIds[0]!);

      const before = await get<RoomView>(`/api/stocks/${id}/queue`);
      expect(before.body.commitment).toMatch(/^[0-9a-f]{64}$/);
      expect(before.body.seed).toBeUndefined();
      expect(before.body.waiting).toBe(20);
      expect((await get(`/api/stocks/${id}/queue/draw`)).body.code).toBe("draw_not_ready");
      expect((await room.allocate(id, early[0]!, undefined)).body.code).toBe("not_started");

      await Bun.sleep(Math.max(0, startsAt - Date.now()) + 50);
      const late = await room.buyers(5, "late");
      for (const b of late) expect((await room.join(id, b)).status).toBe(201); // after the start: arrival order

      const draw = await get<DrawView>(`/api/stocks/${id}/queue/draw`);
      expect(draw.status).toBe(200);
      expect(draw.body.commitment).toBe(before.body.commitment);
      expect(seedMatchesCommitment(draw.body.seed, draw.body.commitment)).toBe(true);
      expect(draw.body.tickets).toEqual(drawOrder(draw.body.seed, [...ticketIds].sort()));
      expect((await get<RoomView>(`/api/stocks/${id}/queue`)).body.seed).toBe(draw.body.seed);

      // Admission order, recorded as each admitted buyer allocates then cancels (a returned unit admits the next).
      const everyone = [...early, ...late];
      const byTicket = new Map<string, (typeof everyone)[number]>();
      for (const b of everyone) byTicket.set((await room.poll(id, b)).ticketId, b);
      const order: string[] = [];
      const lateTickets: string[] = [];
      for (const b of late) lateTickets.push((await room.poll(id, b)).ticketId);
      while (order.length < everyone.length) {
        const states = await Promise.all(everyone.map(async (b) => room.poll(id, b)));
        await room.expectSound(id);
        const admitted = states.filter((t) => t.state === "admitted");
        expect(admitted.length).toBeLessThanOrEqual(3); // admitted-unresolved <= available (3 units, limit 1)
        expect(admitted.length).toBe(Math.min(3, everyone.length - order.length));
        // Allocate-then-cancel for the admitted ticket earliest in the expected order.
        const next = admitted.find((t) => !order.includes(t.ticketId))!;
        const expectedNext = [...draw.body.tickets, ...lateTickets].find((t) => !order.includes(t));
        expect(admitted.map((t) => t.ticketId)).toContain(expectedNext!);
        const buyer = byTicket.get(expectedNext!)!;
        const token = states.find((t) => t.ticketId === expectedNext)!.admissionToken!;
        const held = await room.allocate(id, buyer, token);
        expect(held.status).toBe(201);
        order.push(expectedNext!);
        expect((await api.request("POST", `/api/allocations/${held.body.allocationId}/cancel`, { headers: buyer.headers })).status).toBe(200);
        expect(next).toBeDefined();
      }
      expect(order).toEqual([...draw.body.tickets, ...lateTickets]);
      const check = await room.expectSound(id);
      expect(check.byState.done).toBe(25);
    }, 30_000);
  });

  describe("the admission token, checked inside allocate.lua", () => {
    test("missing, malformed, another user's, another stock's, used and waiting tokens: 403 not_admitted, nothing changes; one allocation per token; replays work", async () => {
      const id = await room.createRoomStock({ quantity: 2, perUserLimit: 2 });
      const other = await room.createRoomStock({ quantity: 2 });
      const [alice, bob, carol] = await room.buyers(3, "tok");
      expect((await room.join(id, alice!)).body.state).toBe("admitted");
      expect((await room.join(id, bob!)).body.state).toBe("waiting"); // alice holds both units (perUserLimit 2)
      await room.join(other, carol!);
      const aliceToken = (await room.poll(id, alice!)).admissionToken!;
      const carolToken = (await room.poll(other, carol!)).admissionToken!;
      expect(aliceToken).toMatch(/^[0-9a-f]{32}\.[0-9a-f]{32}$/);
      const before = await readCounters(api.redis, api.keys, id);
      const outboxBefore = (await readOutbox(api.redis, api.keys)).length;

      for (const [buyer, token] of [
        [alice!, undefined],
        [alice!, "garbage"],
        [alice!, `${aliceToken.split(".")[0]}.${"0".repeat(32)}`],
        [bob!, aliceToken], // another user's
        [carol!, carolToken], // another stock's
        [bob!, (await room.poll(id, bob!)).ticketId + ".00"], // a waiting ticket
      ] as const) {
        const res = await room.allocate(id, buyer, token);
        expect(res.status).toBe(403);
        expect(res.body.code).toBe("not_admitted");
      }
      expect(await readCounters(api.redis, api.keys, id)).toEqual(before);
      expect((await readOutbox(api.redis, api.keys)).length).toBe(outboxBefore);

      // Quantity above the admission's units: refused, nothing changes.
      expect((await room.allocate(id, alice!, aliceToken, {}, 3)).body.code).toBe("limit_exceeded");
      expect(await readCounters(api.redis, api.keys, id)).toEqual(before);

      // Ten concurrent uses of one token (different Idempotency-Keys): exactly one allocation.
      const uses = await Promise.all(Array.from({ length: 10 }, (_, i) => room.allocate(id, alice!, aliceToken, { "Idempotency-Key": `k${i}` }, 2)));
      expect(uses.filter((u) => u.status === 201)).toHaveLength(1);
      expect(uses.filter((u) => u.status === 403 && u.body.code === "not_admitted")).toHaveLength(9);
      const winner = uses.findIndex((u) => u.status === 201);
      // The replay of the winning request answers the first allocation again, even though the token is used.
      const replay = await room.allocate(id, alice!, aliceToken, { "Idempotency-Key": `k${winner}` }, 2);
      expect(replay.status).toBe(201);
      expect(replay.body.allocationId).toBe(uses[winner]!.body.allocationId!);
      expect((await room.poll(id, alice!)).state).toBe("done");
      expect(await readCounters(api.redis, api.keys, id)).toMatchObject({ available: 0, held: 2 });

      // While a hold is live, bob keeps waiting (a unit may come back); the cancel admits him in the same script.
      expect(await room.poll(id, bob!)).toMatchObject({ state: "waiting", position: 1 });
      const cancelledAt = performance.now();
      await api.request("POST", `/api/allocations/${uses[winner]!.body.allocationId}/cancel`, { headers: alice!.headers });
      const bobTicket = await room.poll(id, bob!);
      expect(bobTicket.state).toBe("admitted"); // no wait: the cancel script admitted him
      console.log(`[room] unit returned by a cancel -> next ticket read admitted: ${(performance.now() - cancelledAt).toFixed(1)} ms (cancel + one poll)`);
      await room.expectSound(id);
    });
  });

  describe("operations", () => {
    test("/metrics: waiting, admitted, admissions, time waited, sold_out answers", async () => {
      const id = await room.createRoomStock({ quantity: 3 });
      const buyers = await room.buyers(5, "metrics");
      for (const b of buyers) await room.join(id, b);
      const metrics = async () => (await fetch(`${api.listenAdmin()}/metrics`)).text();
      const value = (text: string, name: string) => Number(new RegExp(`^${name}\\{stock="${id}"[^}]*\\} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
      let text = await metrics();
      expect(value(text, "flashsale_room_waiting")).toBe(2);
      expect(value(text, "flashsale_room_admitted")).toBe(3);
      expect(value(text, "flashsale_room_admissions_total")).toBe(3);
      expect(value(text, "flashsale_room_wait_seconds_total")).toBeGreaterThanOrEqual(0);
      const before = Number(/^flashsale_room_sold_out_answers_total(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1]);
      for (const b of buyers.slice(0, 3)) {
        const t = await room.poll(id, b);
        const held = await room.allocate(id, b, t.admissionToken);
        await api.request("POST", `/api/allocations/${held.body.allocationId}/purchase`, { headers: b.headers });
      }
      for (const b of buyers.slice(3)) expect((await room.poll(id, b)).state).toBe("sold_out");
      text = await metrics();
      expect(Number(/^flashsale_room_sold_out_answers_total(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1]) - before).toBe(2);
    });
  });

  test("the dashboard shows the room beside its stock", async () => {
    const id = await room.createRoomStock({ quantity: 2 });
    for (const b of await room.buyers(5, "dash")) await room.join(id, b);
    const counters = new StockCounters(api.redis, api.commands);
    counters.pin([id]);
    const panel = (await counters.panels(0)).find((p) => p.id === id);
    expect(panel?.room).toMatchObject({ waiting: 3, admitted: 2, soldOut: false });
    const plain = await api.request("POST", "/api/stocks", { headers: api.admin, body: { name: "plain", price: 1, quantity: 1 } });
    const plainId = ((await plain.json()) as { id: string }).id;
    counters.pin([plainId]);
    expect((await counters.panels(1)).find((p) => p.id === plainId)?.room).toBeUndefined();
  });

  describe("tied to live stock", () => {
    test("the last unit bought with no live hold: every waiting ticket is sold_out at once, joining answers 409 sold_out", async () => {
      const id = await room.createRoomStock({ quantity: 2 });
      const buyers = await room.buyers(30, "so");
      for (const b of buyers) await room.join(id, b);
      const tickets = await Promise.all(buyers.map((b) => room.poll(id, b)));
      const admitted = buyers.filter((_, i) => tickets[i]!.state === "admitted");
      expect(admitted).toHaveLength(2);
      const holds: string[] = [];
      for (const b of admitted) {
        const res = await room.allocate(id, b, (await room.poll(id, b)).admissionToken);
        holds.push(res.body.allocationId!);
      }
      // Units held: the others wait, with their positions.
      const waiting = buyers.filter((b) => !admitted.includes(b));
      expect(await room.poll(id, waiting[0]!)).toMatchObject({ state: "waiting", position: 1 });
      await api.request("POST", `/api/allocations/${holds[0]}/purchase`, { headers: admitted[0]!.headers });
      // One unit sold, one still held (it may come back): everyone keeps waiting, in place.
      expect(await room.poll(id, waiting.at(-1)!)).toMatchObject({ state: "waiting", position: waiting.length });
      await api.request("POST", `/api/allocations/${holds[1]}/purchase`, { headers: admitted[1]!.headers });
      const purchasedAt = performance.now();
      const states = await Promise.all(waiting.map((b) => room.poll(id, b)));
      const soldOutMs = performance.now() - purchasedAt;
      expect(states.every((t) => t.state === "sold_out" && t.position === 0)).toBe(true);
      console.log(`[room] time from the last purchase to all ${waiting.length} waiting tickets read sold_out: ${soldOutMs.toFixed(1)} ms`);
      expect(soldOutMs).toBeLessThan(1_000);
      const [late] = await room.buyers(1, "so-late");
      const joined = await room.join(id, late!);
      expect(joined.status).toBe(409);
      expect(joined.body.code).toBe("sold_out");
      expect((await get<RoomView>(`/api/stocks/${id}/queue`)).body).toMatchObject({ soldOut: true, admitted: 0, done: 2 });
      await room.expectSound(id);
    });

    test("an admission unused for its TTL expires (swept by the expirer) and admits the next", async () => {
      const id = await room.createRoomStock({ quantity: 1 }, { admissionTtlSeconds: 5 });
      const [first, second] = await room.buyers(2, "ttl");
      await room.join(id, first!);
      await room.join(id, second!);
      const token = (await room.poll(id, first!)).admissionToken!;
      expect((await room.poll(id, second!)).state).toBe("waiting");
      const expirer = room.expirer();
      expirer.start();
      try {
        const waited = await waitFor(async () => (await room.poll(id, second!)).state === "admitted", 8_000);
        console.log(`[room] second admitted ${waited.toFixed(0)} ms after the first admission (TTL 5 s)`);
        expect(waited).toBeGreaterThan(4_000);
      } finally {
        await expirer.stop();
      }
      expect((await room.poll(id, first!)).state).toBe("expired");
      const late = await room.allocate(id, first!, token);
      expect(late.status).toBe(403);
      expect(late.body.code).toBe("not_admitted");
      const check = await room.expectSound(id);
      expect(check.byState).toMatchObject({ expired: 1, admitted: 1 });
    }, 15_000);

    test("a hold that expires admits the next ticket within a second of its expiry (expire.lua)", async () => {
      const id = await room.createRoomStock({ quantity: 1, holdSeconds: 1 });
      const [first, second] = await room.buyers(2, "hx");
      await room.join(id, first!);
      await room.join(id, second!);
      const held = await room.allocate(id, first!, (await room.poll(id, first!)).admissionToken);
      const expiresAt = Date.parse((held.body as { expiresAt?: string }).expiresAt!);
      const expirer = room.expirer();
      expirer.start();
      try {
        await waitFor(async () => (await room.poll(id, second!)).state === "admitted", 5_000);
        const lag = Date.now() - expiresAt;
        console.log(`[room] hold expired -> next admitted: ${lag} ms after the hold's expiry (expirer interval 100 ms)`);
        expect(lag).toBeLessThan(1_000);
      } finally {
        await expirer.stop();
      }
      await room.expectSound(id);
    });

    test("a returned unit admits the next in the same step: a cancelled hold (cancel.lua), an admission used for fewer units than it was given (allocate.lua)", async () => {
      // No expirer runs: whatever is admitted here was admitted by the script that gave the unit back.
      const id = await room.createRoomStock({ quantity: 3, perUserLimit: 2 });
      const [first, second, third, fourth] = await room.buyers(4, "ret");
      for (const b of [first, second, third, fourth]) await room.join(id, b!);
      // 3 units, limit 2: the first is admitted for 2 units, the second for the last 1; the others wait.
      const tokens = [await room.poll(id, first!), await room.poll(id, second!)].map((t) => t.admissionToken);
      expect(tokens.every((t) => t !== undefined)).toBe(true);
      expect(await room.poll(id, third!)).toMatchObject({ state: "waiting", position: 1 });
      // The first takes 1 of its 2 units: the other one admits the third at once.
      expect((await room.allocate(id, first!, tokens[0], {}, 1)).status).toBe(201);
      expect((await room.poll(id, third!)).state).toBe("admitted");
      expect(await room.poll(id, fourth!)).toMatchObject({ state: "waiting", position: 1 });
      await room.expectSound(id);
      // The second takes its unit and cancels the hold: the unit admits the fourth at once.
      const held = await room.allocate(id, second!, tokens[1]);
      expect(held.status).toBe(201);
      expect(await room.poll(id, fourth!)).toMatchObject({ state: "waiting", position: 1 });
      expect((await api.request("POST", `/api/allocations/${held.body.allocationId}/cancel`, { headers: second!.headers })).status).toBe(200);
      expect((await room.poll(id, fourth!)).state).toBe("admitted");
      const check = await room.expectSound(id);
      expect(check.byState).toMatchObject({ done: 2, admitted: 2 });
    });

    test("200 buyers after the start, 20 units, buyers cancel at random: invariants hold at every step, 20 sold", async () => {
      const id = await room.createRoomStock({ quantity: 20 }, { admissionTtlSeconds: 30 });
      const buyers = await room.buyers(200, "crowd");
      await Promise.all(buyers.map((b) => room.join(id, b)));
      let checks = 0;
      const checker = (async () => {
        for (;;) {
          const c = await room.expectSound(id);
          checks++;
          if ((c.byState.waiting ?? 0) === 0 && (c.byState.admitted ?? 0) === 0) return;
          if (c.available === 0 && (await readCounters(api.redis, api.keys, id)).held === 0) return;
          await Bun.sleep(5);
        }
      })();
      let bought = 0;
      await Promise.all(
        buyers.map(async (b, i) => {
          for (;;) {
            const t = await room.poll(id, b);
            if (t.state === "sold_out" || t.state === "done" || t.state === "expired") return;
            if (t.state === "admitted") {
              const held = await room.allocate(id, b, t.admissionToken);
              expect(held.status).toBe(201);
              const action = i % 3 === 0 ? "cancel" : "purchase";
              const res = await api.request("POST", `/api/allocations/${held.body.allocationId}/${action}`, { headers: b.headers });
              expect(res.status).toBe(200);
              if (action === "purchase") bought++;
              return;
            }
            await Bun.sleep(20);
          }
        }),
      );
      await checker;
      expect(bought).toBe(20);
      const counters = await readCounters(api.redis, api.keys, id);
      expect(conservationBreach(counters)).toBeNull();
      expect(counters).toMatchObject({ available: 0, held: 0, sold: 20 });
      const check = await room.expectSound(id);
      // No allocation without admission: one StockAllocated per done ticket.
      const allocations = (await readOutbox(api.redis, api.keys)).filter((e) => e.aggregateId === id && e.eventType === "StockAllocated");
      expect(allocations.length).toBe(check.byState.done!);
      console.log(`[room] crowd: ${checks} invariant checks, states ${JSON.stringify(check.byState)}`);
    }, 60_000);
  });
});
