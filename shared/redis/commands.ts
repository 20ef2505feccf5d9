/**
 * The write side: one typed function per Lua script, plus the strong reads.
 * Each maps the script's result code to a value or a DomainError; nothing here decides
 * anything the script has not already decided atomically.
 */
import { DomainError } from "../domain/errors.ts";
import type { KeyLayout } from "../domain/keys.ts";
import { DEFAULT_CURRENCY, DEFAULT_HOLD_SECONDS, DEFAULT_OUTBOX_MAX_LENGTH, IDEMPOTENCY_TTL_SECONDS, REQUEST_RECORD_TTL_SECONDS } from "../domain/policy.ts";
import { allocationViewFromHash, pairsToObject, stockViewFromHash, type AllocationView, type StockView } from "../domain/views.ts";
import { retryLostReply, retryUnexecuted, type RedisClient } from "./client.ts";
import { FAST, type Durability } from "./durability.ts";
import { runScript, type ScriptArg, type ScriptReply } from "./scripts.ts";
import { parseTraceparent } from "../trace.ts";

export interface CommandOptions {
  /** HOLD_RETENTION_SECONDS: how long a finished hold stays readable (then Redis deletes it). */
  holdRetentionSeconds?: number;
  /** OUTBOX_MAX_LENGTH: above this many entries in its shard's outbox, allocate and create answer outbox_full. */
  outboxMaxLength?: number;
  /** REDIS_DURABILITY: what a write waits for before it is answered (durability.ts); default fast (nothing). */
  durability?: Durability;
}

export interface CreateStockInput {
  id?: string;
  name: string;
  description?: string;
  price: number;
  currency?: string;
  quantity: number;
  perUserLimit?: number;
  holdSeconds?: number;
  /** Epoch ms; default now. */
  startsAt?: number;
  /** Epoch ms; default never. */
  endsAt?: number;
  /** A waiting room (docs/waiting-room.md): admission TTL seconds; absent for none. */
  waitingRoom?: { admissionTtlSeconds: number };
  traceparent?: string;
}

export interface AllocateInput {
  stockId: string;
  userId: string;
  quantity: number;
  idempotencyKey?: string;
  /** The Admission-Token header: required (and checked by allocate.lua) on a waiting-room stock. */
  admissionToken?: string;
  /** W3C traceparent of the request, stored with the event in the outbox (ignored when malformed). */
  traceparent?: string;
}

export interface AllocateResult {
  allocation: AllocationView;
  /** True when an earlier request with the same Idempotency-Key produced this answer. */
  replayed: boolean;
}

interface HoldChangeInput {
  allocationId: string;
  userId: string;
  traceparent?: string;
}

type ExpireOutcome = "expired" | "not_due" | "not_active" | "stock_missing";

export interface StockCommands {
  readonly keys: KeyLayout;
  /** The barrier its writes pass (REDIS_DURABILITY), for the other commands the api answers writes with (the waiting room's joins). */
  readonly durability: Durability;
  createStock(input: CreateStockInput): Promise<StockView>;
  allocate(input: AllocateInput): Promise<AllocateResult>;
  purchase(input: HoldChangeInput): Promise<AllocationView>;
  cancel(input: HoldChangeInput): Promise<AllocationView>;
  expire(allocationId: string, stockId: string, traceparent?: string): Promise<ExpireOutcome>;
  getStock(stockId: string): Promise<StockView | null>;
  getAllocation(allocationId: string): Promise<AllocationView | null>;
}

const newEventId = () => Bun.randomUUIDv7();
/** The script argument for a trace header: the header when well-formed, else '' (none). */
const traceArg = (traceparent: string | undefined) => (traceparent && parseTraceparent(traceparent) ? traceparent : "");

/** What makes two allocate requests "the same" for an Idempotency-Key: the stock and the quantity. */
export const allocateFingerprint = (userId: string, stockId: string, quantity: number) => JSON.stringify(["allocate", userId, stockId, quantity]);

/** The stored record of an allocation made with an Idempotency-Key (written by allocate.lua). */
export interface IdempotencyRecord {
  fingerprint: string;
  response: string;
}

const NOT_ADMITTED_REASONS: Record<string, string> = {
  missing: "no Admission-Token, or a malformed one",
  unknown: "no such admission for this user and stock",
  waiting: "the ticket is still waiting",
  expired: "the admission expired",
  done: "the admission was already used",
};

/** A waiting room's 32-byte secret seed and its public commitment hex(sha256(seed bytes)) (docs/waiting-room.md). */
function newRoomSeed(): { seed: string; commitment: string } {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return { seed: Buffer.from(bytes).toString("hex"), commitment: new Bun.CryptoHasher("sha256").update(bytes).digest("hex") };
}

function fail(reply: ScriptReply, context: Record<string, unknown>): never {
  const [code, detail, extra] = reply;
  switch (code) {
    case "not_found":
      throw new DomainError("not_found", context.allocationId ? "no such allocation" : "no such stock", context);
    case "stock_exists":
      throw new DomainError("stock_exists", `stock ${String(context.stockId)} already exists`, context);
    case "stock_id_taken":
      throw new DomainError("stock_id_taken", `stock id ${String(context.stockId)} was used by a sale that has ended and expired; ids are never reused, choose another`, context);
    case "sold_out":
      throw new DomainError("sold_out", "not enough units left", { ...context, available: Number(detail) }, extra === undefined ? {} : { version: Number(extra) });
    case "limit_exceeded":
      throw new DomainError("limit_exceeded", "per-user limit reached for this stock", { ...context, remaining: Number(detail) });
    case "not_started":
      throw new DomainError("not_started", "the sale has not started yet", context, detail === undefined ? {} : { startsInMs: Number(detail) });
    case "ended":
      throw new DomainError("ended", "the sale has ended", context);
    case "hold_expired":
      throw new DomainError("hold_expired", "the hold has expired", context);
    case "hold_not_active":
      throw new DomainError("hold_not_active", `the hold is ${String(detail)}`, { ...context, holdStatus: detail });
    case "forbidden":
      throw new DomainError("forbidden", "this allocation belongs to another user", context);
    case "idempotency_key_reused":
      throw new DomainError("idempotency_key_reused", "Idempotency-Key was used for a different request", context);
    case "stock_missing":
      // The hold outlived its stock (deleted by hand): nothing is changed, and no counter hash re-created.
      throw new DomainError("not_found", "the stock of this allocation no longer exists", context);
    case "not_admitted":
      throw new DomainError("not_admitted", `this stock has a waiting room: allocate with the Admission-Token of your admitted ticket (${NOT_ADMITTED_REASONS[String(detail)] ?? "not admitted"})`, context);
    case "outbox_full":
      throw new DomainError("outbox_full", "the event pipeline is behind (outbox full); nothing was changed, retry shortly", context);
    default:
      // 'invalid' (arguments the commands built), 'corrupt' (stored data a script refused to build on)
      // and anything unknown: bugs, not bad input, so a 500 that is logged.
      throw new Error(`script returned ${String(code)} ${String(detail ?? "")}`);
  }
}

/** A script call: the KEYS and ARGV one script takes, built in one place for single calls and pipelines alike. */
export interface ScriptCall {
  keys: string[];
  args: ScriptArg[];
}

/** expire.lua's calling convention (see its header); the expirer queues these in a pipeline. */
export function expireCall(keys: KeyLayout, allocationId: string, stockId: string, retainSeconds: number, traceparent?: string): ScriptCall {
  const shard = keys.shardOf(stockId);
  return {
    keys: [keys.hold(allocationId), keys.stock(stockId), keys.stockBuyers(stockId), keys.holdsDue(shard), keys.outbox(shard), keys.released(shard), ...roomReleaseKeys(keys, stockId)],
    args: [allocationId, newEventId(), retainSeconds, traceArg(traceparent)],
  };
}

/** allocate.lua's calling convention (see its header): KEYS 1-10 and ARGV 1-10, built once per request. */
export function allocateCall(keys: KeyLayout, input: AllocateInput, outboxMaxLength: number): ScriptCall {
  const shard = keys.shardOf(input.stockId);
  const allocationId = keys.newAllocationId(input.stockId);
  const key = input.idempotencyKey;
  // What makes two requests "the same" for an Idempotency-Key: the user, the stock and the quantity.
  // The user is in it as well as in the key, so a record can never answer another user even if
  // two key names ever met; a JSON array cannot join two different tuples into one string.
  const fingerprint = allocateFingerprint(input.userId, input.stockId, input.quantity);
  // Without an Idempotency-Key the request still gets a record, under an id of its own: a reply
  // lost with its connection is retried with the very same call, and the script answers the hold
  // it made the first time instead of making a second one (docs/design.md §3).
  const recordKey = key === undefined ? keys.allocationRequest(input.stockId, crypto.randomUUID()) : keys.idempotency(input.stockId, input.userId, key);
  return {
    keys: [keys.stock(input.stockId), keys.stockBuyers(input.stockId), keys.hold(allocationId), keys.holdsDue(shard), recordKey, keys.outbox(shard), ...roomReleaseKeys(keys, input.stockId)],
    args: [
      input.stockId,
      input.userId,
      input.quantity,
      allocationId,
      newEventId(),
      fingerprint,
      key === undefined ? REQUEST_RECORD_TTL_SECONDS : IDEMPOTENCY_TTL_SECONDS,
      outboxMaxLength,
      traceArg(input.traceparent),
      input.admissionToken ?? "",
    ],
  };
}

/** KEYS 7-10 of allocate, cancel and expire: the stock's waiting room (untouched when it has none). */
function roomReleaseKeys(keys: KeyLayout, stockId: string): string[] {
  const room = keys.room(stockId);
  return [room.room, room.line, room.admitted, room.tickets];
}

export function createStockCommands(redis: RedisClient, keys: KeyLayout, options: CommandOptions = {}): StockCommands {
  const retainSeconds = options.holdRetentionSeconds ?? IDEMPOTENCY_TTL_SECONDS;
  const outboxMaxLength = options.outboxMaxLength ?? DEFAULT_OUTBOX_MAX_LENGTH;
  const durability = options.durability ?? FAST;
  const shardKeys = (stockId: string) => {
    const shard = keys.shardOf(stockId);
    return {
      stock: keys.stock(stockId),
      buyers: keys.stockBuyers(stockId),
      due: keys.holdsDue(shard),
      outbox: keys.outbox(shard),
      released: keys.released(shard),
    };
  };

  /** The stock an allocation belongs to, read from its hold; null when the hold does not exist. */
  async function stockOfHold(allocationId: string): Promise<string | null> {
    if (keys.shardOfAllocation(allocationId) === null) return null;
    return retryUnexecuted(() => redis.hget(keys.hold(allocationId), "stockId"));
  }

  async function changeHold(script: "fsPurchase" | "fsCancel", input: HoldChangeInput): Promise<AllocationView> {
    const stockId = await stockOfHold(input.allocationId);
    if (stockId === null) throw new DomainError("not_found", "no such allocation", { allocationId: input.allocationId });
    const k = shardKeys(stockId);
    const hold = keys.hold(input.allocationId);
    const scriptKeys =
      script === "fsPurchase" ? [hold, k.stock, k.due, k.outbox] : [hold, k.stock, k.buyers, k.due, k.outbox, k.released, ...roomReleaseKeys(keys, stockId)];
    const reply = await runScript(redis, script, scriptKeys, [input.allocationId, input.userId, newEventId(), retainSeconds, traceArg(input.traceparent)]);
    if (reply[0] === "ok" || reply[0] === "unchanged") {
      await durability.afterWrite(hold);
      return JSON.parse(String(reply[1])) as AllocationView;
    }
    return fail(reply, { allocationId: input.allocationId });
  }

  return {
    keys,
    durability,

    async createStock(input) {
      const stockId = input.id ?? Bun.randomUUIDv7();
      const k = shardKeys(stockId);
      const room = input.waitingRoom ? newRoomSeed() : null;
      const roomKeys = [keys.room(stockId).room, keys.rooms(keys.shardOf(stockId))];
      const reply = await runScript(redis, "fsCreateStock", [k.stock, k.outbox, keys.stockIdsTaken(keys.shardOf(stockId)), ...roomKeys], [
        stockId,
        newEventId(),
        input.name,
        input.description ?? "",
        input.price,
        input.currency ?? DEFAULT_CURRENCY,
        input.quantity,
        input.perUserLimit ?? input.quantity,
        input.holdSeconds ?? DEFAULT_HOLD_SECONDS,
        input.startsAt ?? "",
        input.endsAt ?? "",
        outboxMaxLength,
        retainSeconds,
        traceArg(input.traceparent),
        input.waitingRoom?.admissionTtlSeconds ?? "",
        room?.seed ?? "",
        room?.commitment ?? "",
      ]);
      if (reply[0] === "invalid") {
        // The caller's own input, which only the script can judge in full: an endsAt without startsAt
        // is compared with Redis' clock (startsAt defaults to now), so it is a 400, not a bug.
        const field = String(reply[1]);
        const message = field === "endsAt" ? "endsAt must be after startsAt (which defaults to now)" : `invalid ${field}`;
        throw new DomainError("invalid_request", `body.${field}: ${message}`, { errors: [{ in: "json", path: field, message }] });
      }
      if (reply[0] !== "ok") return fail(reply, { stockId });
      await durability.afterWrite(k.stock);
      return stockViewFromHash(stockId, pairsToObject(reply[1] as unknown[])) as StockView;
    },

    async allocate(input) {
      const call = allocateCall(keys, input, outboxMaxLength);
      // A lost reply is retried with the very same call: the request record makes the retry find its first run.
      const reply = await retryLostReply(() => runScript(redis, "fsAllocate", call.keys, call.args));
      if (reply[0] === "ok" || reply[0] === "replay") {
        // A replay is waited for too: its first run may be the one whose reply was lost, not yet durable.
        await durability.afterWrite(keys.stock(input.stockId));
        // A replay of our own request id is our retry finding its first run: a new hold to the caller.
        return { allocation: JSON.parse(String(reply[1])) as AllocationView, replayed: reply[0] === "replay" && input.idempotencyKey !== undefined };
      }
      return fail(reply, { stockId: input.stockId });
    },

    purchase: (input) => changeHold("fsPurchase", input),
    cancel: (input) => changeHold("fsCancel", input),

    async expire(allocationId, stockId, traceparent) {
      const call = expireCall(keys, allocationId, stockId, retainSeconds, traceparent);
      const reply = await runScript(redis, "fsExpire", call.keys, call.args);
      return reply[0] as ExpireOutcome;
    },

    async getStock(stockId) {
      return stockViewFromHash(stockId, await retryUnexecuted(() => redis.hgetall(keys.stock(stockId))));
    },

    async getAllocation(allocationId) {
      if (keys.shardOfAllocation(allocationId) === null) return null;
      return allocationViewFromHash(allocationId, await retryUnexecuted(() => redis.hgetall(keys.hold(allocationId))));
    },
  };
}
