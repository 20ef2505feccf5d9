/**
 * The waiting room's invariants, read from Redis in one MULTI (all keys of a room share the stock's
 * slot, so it runs on a cluster too): for the tests and the load-test verifier (docs/waiting-room.md).
 *   - reserved (units promised to admitted, unresolved tickets) <= available: admitted <= available;
 *   - reserved = sum of the admitted tickets' units, and the admitted set = the tickets in state admitted;
 *   - every ticket is in exactly the place its state says (pre-queue or line while waiting, the
 *     admitted set while admitted, neither once done or expired), once;
 *   - one ticket per user, and the users index agrees with the tickets (no ticket lost or doubled);
 *   - done = tickets in state done, expired = tickets in state expired.
 */
import type { KeyLayout } from "../domain/keys.ts";
import type { RedisClient } from "../redis/client.ts";

interface Ticket {
  u: string;
  s: string;
  q?: number;
  p?: number;
}

export interface RoomCheck {
  breaches: string[];
  tickets: number;
  byState: Record<string, number>;
  available: number;
  reserved: number;
  /** Ticket ids in state done (each one allocation). */
  done: string[];
}

export async function checkRoom(redis: RedisClient, keys: KeyLayout, stockId: string): Promise<RoomCheck> {
  const r = keys.room(stockId);
  const replies = (await redis
    .multi()
    .hmget(keys.stock(stockId), "available", "held")
    .hmget(r.room, "reserved", "done", "expired", "drawn")
    .hgetall(r.tickets)
    .hgetall(r.users)
    .zrange(r.pre, 0, -1)
    .zrange(r.line, 0, -1)
    .zrange(r.admitted, 0, -1)
    .exec()) as Array<[Error | null, unknown]>;
  const [stock, room, ticketsRaw, users, pre, line, admitted] = replies.map(([err, v]) => {
    if (err) throw err;
    return v;
  }) as [Array<string | null>, Array<string | null>, Record<string, string>, Record<string, string>, string[], string[], string[]];

  const breaches: string[] = [];
  const available = Number(stock[0] ?? 0);
  const reserved = Number(room[0] ?? 0);
  const tickets = new Map(Object.entries(ticketsRaw).map(([id, raw]) => [id, JSON.parse(raw) as Ticket]));
  const byState: Record<string, number> = {};
  let promised = 0;
  const done: string[] = [];
  for (const [id, t] of tickets) {
    byState[t.s] = (byState[t.s] ?? 0) + 1;
    if (t.s === "admitted") promised += Number(t.q ?? 0);
    if (t.s === "done") done.push(id);
    if (users[t.u] !== id) breaches.push(`ticket ${id} of ${t.u}: users index says ${users[t.u] ?? "nothing"}`);
  }
  if (Object.keys(users).length !== tickets.size) breaches.push(`${Object.keys(users).length} users but ${tickets.size} tickets`);
  if (reserved > available) breaches.push(`reserved ${reserved} > available ${available}`);
  if (reserved !== promised) breaches.push(`reserved ${reserved} != units of admitted tickets ${promised}`);

  const places = new Map<string, string[]>();
  const place = (id: string, where: string) => places.set(id, [...(places.get(id) ?? []), where]);
  for (const id of pre) place(id, "pre");
  for (const id of line) place(id, "line");
  for (const id of admitted) place(id, "admitted");
  for (const [id, where] of places) {
    const t = tickets.get(id);
    if (!t) breaches.push(`${where.join("+")} holds unknown ticket ${id}`);
    else if (where.length > 1) breaches.push(`ticket ${id} in ${where.join(" and ")}`);
  }
  for (const [id, t] of tickets) {
    const where = places.get(id)?.[0];
    const expected = t.s === "waiting" ? (where === "pre" || where === "line") : t.s === "admitted" ? where === "admitted" : where === undefined;
    if (!expected) breaches.push(`ticket ${id} is ${t.s} but in ${where ?? "no queue"}`);
  }
  if (Number(room[1] ?? 0) !== (byState.done ?? 0)) breaches.push(`room done ${room[1]} != done tickets ${byState.done ?? 0}`);
  if (Number(room[2] ?? 0) !== (byState.expired ?? 0)) breaches.push(`room expired ${room[2]} != expired tickets ${byState.expired ?? 0}`);
  return { breaches, tickets: tickets.size, byState, available, reserved, done };
}
