/**
 * The waiting room's commands (docs/waiting-room.md): join, the poll's read, the public figures, the
 * draw, and the expirer's sweep. Each script's KEYS and ARGV come from its args builder in calls.ts.
 * Admission itself happens inside the scripts that change what is free: allocate, cancel, expire,
 * room_join, room_draw and room_sweep (the _room.lua helpers).
 */
import { DomainError } from "../domain/errors.ts";
import type { KeyLayout } from "../domain/keys.ts";
import { drawOrder, estimateWaitSeconds, type DrawView, type RoomView, type TicketState, type TicketView } from "../domain/room.ts";
import { retryUnexecuted, type RedisClient } from "./client.ts";
import { roomDrawCall, roomJoinCall, roomStatusCall, roomSummaryCall, roomSweepCall } from "./calls.ts";
import { FAST, type Durability } from "./durability.ts";
import { runScript, type ScriptCall } from "./scripts.ts";

interface JoinResult {
  ticket: TicketView;
  /** False when the user already had a ticket (answered 200 with it). */
  created: boolean;
}

type SweepOutcome = "swept" | "draw_due" | "before_start" | "finished" | "gone";

export interface RoomCommands {
  join(stockId: string, userId: string): Promise<JoinResult>;
  /** The user's ticket as the poll answers it; null when the user has no ticket. Read only. */
  status(stockId: string, userId: string): Promise<TicketView | null>;
  summary(stockId: string): Promise<RoomView>;
  /** Draws the pre-queue when the start has passed and it is not drawn yet; true when this call drew it. */
  ensureDrawn(stockId: string): Promise<boolean>;
  draw(stockId: string): Promise<DrawView>;
  /** The expirer's step for one room (expires unused admissions, admits, draws when due). */
  sweep(stockId: string, maxExpire: number): Promise<{ outcome: SweepOutcome; expired: number; admitted: number }>;
  /** Stock ids of a shard whose rooms are still swept. */
  roomsOf(shard: number): Promise<string[]>;
}

const randomHex = (bytes: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
const noRoom = (stockId: string) => new DomainError("no_waiting_room", "this stock has no waiting room", { stockId });

/** Ticket ids and their secrets: 128 random bits each, hex (the token is `<ticket id>.<secret>`). */
const newTicketId = () => randomHex(16);

/**
 * `durability` (REDIS_DURABILITY, the api's): a join is answered only once its ticket passed the
 * barrier, like an allocation, so a ticket a buyer was told of survives a failover (with `replica`).
 * The expirer's writes need none: a lost sweep or draw is done again (the draw gives the same order).
 */
export function createRoomCommands(redis: RedisClient, keys: KeyLayout, durability: Durability = FAST): RoomCommands {
  const k = (stockId: string) => ({ stock: keys.stock(stockId), ...keys.room(stockId) });
  const run = (call: ScriptCall) => runScript(redis, call);

  async function status(stockId: string, userId: string): Promise<TicketView | null> {
    const reply = await run(roomStatusCall(keys, stockId, userId));
    if (reply[0] === "none") return null;
    if (reply[0] === "corrupt") throw new Error(`room_status: corrupt ${String(reply[1])}`);
    const [state, ticketId, position, token, now, startsAt, admissions, firstAdmitAt, free, ttl] = reply as [string, string, number, string, number, number, number, string, number, number];
    const view: TicketView = {
      ticketId,
      state: state as TicketState,
      position: Number(position),
      etaSeconds:
        state === "waiting"
          ? estimateWaitSeconds({
              position: Number(position),
              nowMs: Number(now),
              startsAtMs: Number(startsAt),
              admissions: Number(admissions),
              firstAdmitAtMs: firstAdmitAt === "" ? null : Number(firstAdmitAt),
              freeUnits: Number(free),
              ttlSeconds: Number(ttl),
            })
          : 0,
    };
    if (token !== "") view.admissionToken = token;
    return view;
  }

  async function ensureDrawn(stockId: string): Promise<boolean> {
    const r = k(stockId);
    // The pre-queue is closed once Redis' clock passed startsAt (room_join.lua), so this read is final;
    // room_draw.lua checks it is still exactly the pre-queue before it writes.
    for (let attempt = 0; attempt < 3; attempt++) {
      const [[, drawn], [, seed], [, ids]] = (await redis.pipeline().hget(r.room, "drawn").hget(r.room, "seed").zrange(r.pre, 0, -1).exec()) as [
        [unknown, string | null],
        [unknown, string | null],
        [unknown, string[]],
      ];
      if (seed === null || drawn === "1") return false;
      const reply = await run(roomDrawCall(keys, stockId, drawOrder(seed, ids)));
      if (reply[0] === "drawn") return true;
      if (reply[0] !== "changed") return false; // already, not_started, no_room
    }
    throw new Error(`room_draw: the pre-queue of ${stockId} kept changing after the start`);
  }

  return {
    async join(stockId, userId) {
      const reply = await run(roomJoinCall(keys, stockId, userId, newTicketId(), randomHex(16)));
      switch (reply[0]) {
        case "joined":
        case "existing": {
          if (reply[0] === "joined" && Number(reply[2]) === 1) await ensureDrawn(stockId);
          // "existing" too: the ticket answered may be one whose own join has not passed the barrier yet.
          await durability.afterWrite(keys.room(stockId).room);
          const ticket = await status(stockId, userId);
          if (!ticket) throw new Error(`room_join: ticket of ${userId} not found after joining`);
          return { ticket, created: reply[0] === "joined" };
        }
        case "not_found":
          throw new DomainError("not_found", "no such stock", { stockId });
        case "no_room":
          throw noRoom(stockId);
        case "sold_out":
          throw new DomainError("sold_out", "nothing left and nothing can come back: the waiting room is closed", { stockId, available: 0 });
        case "ended":
          throw new DomainError("ended", "the sale has ended", { stockId });
        default:
          throw new Error(`room_join returned ${reply.join(" ")}`);
      }
    },

    status,

    async summary(stockId) {
      const r = k(stockId);
      const reply = await run(roomSummaryCall(keys, stockId));
      if (reply[0] === "none") {
        if ((await retryUnexecuted(() => redis.exists(r.stock))) === 0) throw new DomainError("not_found", "no such stock", { stockId });
        throw noRoom(stockId);
      }
      const [commitment, seed, waiting, admitted, done, expired, closed, admissions, waitedMs] = reply as [string, string, ...number[]];
      return {
        commitment,
        ...(seed === "" ? {} : { seed }),
        waiting: Number(waiting),
        admitted: Number(admitted),
        done: Number(done),
        expired: Number(expired),
        soldOut: Number(closed) === 1,
        admissions: Number(admissions),
        waitedSeconds: Number(waitedMs) / 1000,
      };
    },

    ensureDrawn,

    async draw(stockId) {
      await ensureDrawn(stockId);
      const r = k(stockId);
      const [[, room], [, tickets]] = (await redis.pipeline().hmget(r.room, "commitment", "seed", "drawn").lrange(r.draw, 0, -1).exec()) as [
        [unknown, Array<string | null>],
        [unknown, string[]],
      ];
      const [commitment, seed, drawn] = room;
      if (!commitment || !seed) {
        if ((await retryUnexecuted(() => redis.exists(r.stock))) === 0) throw new DomainError("not_found", "no such stock", { stockId });
        throw noRoom(stockId);
      }
      if (drawn !== "1") throw new DomainError("draw_not_ready", "the draw happens at startsAt; the seed is secret until then", { stockId });
      return { commitment, seed, tickets };
    },

    async sweep(stockId, maxExpire) {
      let reply = await run(roomSweepCall(keys, stockId, maxExpire));
      if (reply[0] === "draw_due") {
        await ensureDrawn(stockId);
        reply = await run(roomSweepCall(keys, stockId, maxExpire));
      }
      if (reply[0] === "invalid") throw new Error(`room_sweep: invalid ${String(reply[1])}`);
      return { outcome: reply[0] as SweepOutcome, expired: Number(reply[1] ?? 0), admitted: Number(reply[2] ?? 0) };
    },

    roomsOf: (shard) => retryUnexecuted(() => redis.smembers(keys.rooms(shard))),
  };
}
