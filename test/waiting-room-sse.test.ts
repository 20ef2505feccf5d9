/**
 * The poll as a server-sent-event stream (issue 24, docs/waiting-room.md): `GET /api/stocks/:id/queue/me`
 * with `Accept: text/event-stream`, served over a real socket (Bun.serve on loopback), real Redis
 * (single node and the stack's cluster) and the expirer drawing at the start. One unit, two buyers in
 * the pre-queue: the stream of the buyer the draw admits says waiting → admitted (with its token) →
 * done and ends; the other's says waiting → waiting at position 1 → sold_out once the unit is bought,
 * and ends. Each event is the JSON poll's object, sent only when it changed.
 */
import { afterAll, expect, test } from "bun:test";
import { z } from "zod";
import { ticketViewShape, type TicketView } from "../shared/domain/room.ts";
import { createTestApi, describeEachRedis } from "./support/api.ts";
import { roomHelpers, type Buyer } from "./support/room.ts";

const ticketSchema = z.object(ticketViewShape).strict();

interface Received {
  ticket: TicketView;
  /** performance.now() when the event arrived. */
  at: number;
}

/** An open SSE stream: the events so far, and a promise that settles when the server ends the stream. */
async function openStream(url: string, headers: Record<string, string>) {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { ...headers, Accept: "text/event-stream" }, signal: controller.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("text/event-stream");
  const events: Received[] = [];
  const names: string[] = [];
  const ended = (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of res.body!) {
      buffered += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const fields = Object.fromEntries(block.split("\n").map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()]));
        names.push(fields.event ?? "");
        events.push({ ticket: ticketSchema.parse(JSON.parse(fields.data ?? "")) as TicketView, at: performance.now() });
      }
    }
    return buffered;
  })();
  return { events, names, ended, close: () => controller.abort() };
}

/** Waits until the stream has an event matching `probe` (fails after 5 s). */
async function nextEvent(stream: { events: Received[] }, probe: (t: TicketView) => boolean): Promise<Received> {
  for (const deadline = Date.now() + 5_000; Date.now() < deadline; await Bun.sleep(10)) {
    const found = stream.events.find((e) => probe(e.ticket));
    if (found) return found;
  }
  throw new Error(`no such event within 5 s; got ${JSON.stringify(stream.events.map((e) => e.ticket))}`);
}

describeEachRedis((target) => {
  const api = createTestApi({ shards: 4, redis: target.target });
  const room = roomHelpers(api);
  const expirer = room.expirer();
  const base = api.listen();
  afterAll(async () => {
    await expirer.stop();
    await api.close();
  });

  test("the stream sends the ticket whenever it changes: waiting → admitted → done, and waiting → sold_out; it ends after a final state", async () => {
    const startsAt = Date.now() + 1_500;
    const id = await room.createRoomStock({ quantity: 1, startsAt: new Date(startsAt).toISOString() }, { admissionTtlSeconds: 30 });
    const buyers = await room.buyers(2, "sse");
    const tickets = await Promise.all(buyers.map(async (b) => (await room.join(id, b)).body.ticketId));
    const streams = await Promise.all(buyers.map((b) => openStream(`${base}/api/stocks/${id}/queue/me`, b.headers)));
    // The first event at once: the ticket as it is (before the draw, position = the pre-queue's size).
    for (const [i, s] of streams.entries()) {
      const first = await nextEvent(s, () => true);
      expect(first.ticket).toMatchObject({ ticketId: tickets[i], state: "waiting", position: 2 });
      expect(first.ticket.admissionToken).toBeUndefined();
    }
    expirer.start();

    // The draw admits one of the two (which one is the draw's business).
    const admittedEvent = await Promise.race(streams.map(async (s, i) => ({ i, e: await nextEvent(s, (t) => t.state === "admitted") })));
    const winner = admittedEvent.i;
    const loser = 1 - winner;
    expect(admittedEvent.e.ticket.admissionToken).toStartWith(`${tickets[winner]}.`);
    expect(admittedEvent.e.ticket.position).toBe(0);
    await nextEvent(streams[loser]!, (t) => t.state === "waiting" && t.position === 1);

    // The admitted buyer allocates with the token: its stream says done and ends.
    const held = await room.allocate(id, buyers[winner] as Buyer, admittedEvent.e.ticket.admissionToken);
    expect(held.status).toBe(201);
    const allocatedAt = performance.now();
    const done = await nextEvent(streams[winner]!, (t) => t.state === "done");
    expect(await streams[winner]!.ended).toBe("");
    // A unit is held: nothing is over for the other buyer, who keeps waiting at position 1 (no event: nothing changed).
    await Bun.sleep(600);
    expect(streams[loser]!.events.at(-1)!.ticket).toMatchObject({ state: "waiting", position: 1 });

    // The hold is bought: nothing can come back, the waiting buyer's stream says sold_out and ends.
    const purchase = await api.request("POST", `/api/allocations/${held.body.allocationId}/purchase`, { headers: buyers[winner]!.headers });
    expect(purchase.status).toBe(200);
    const boughtAt = performance.now();
    const soldOut = await nextEvent(streams[loser]!, (t) => t.state === "sold_out");
    expect(await streams[loser]!.ended).toBe("");

    const states = streams.map((s) => s.events.map((e) => `${e.ticket.state}@${e.ticket.position}`));
    console.log(
      `[room-sse] ${target.name}: winner ${states[winner]!.join(" → ")}, done ${Math.round(done.at - allocatedAt)} ms after the allocation; ` +
        `other ${states[loser]!.join(" → ")}, sold_out ${Math.round(soldOut.at - boughtAt)} ms after the purchase`,
    );
    expect(states[winner]).toEqual(["waiting@2", "admitted@0", "done@0"]);
    expect(states[loser]).toEqual(["waiting@2", "waiting@1", "sold_out@0"]);
    for (const s of streams) expect(new Set(s.names)).toEqual(new Set(["ticket"]));
    // Within a second of the change (the stream re-reads every 250 ms).
    expect(done.at - allocatedAt).toBeLessThan(1_000);
    expect(soldOut.at - boughtAt).toBeLessThan(1_000);
    // Each event is what the JSON poll answers now (the final states do not move).
    expect(soldOut.ticket).toEqual(await room.poll(id, buyers[loser]!));
    expect(done.ticket).toEqual(await room.poll(id, buyers[winner]!));
  }, 30_000);
});
