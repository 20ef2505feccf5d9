/**
 * The write side: one typed function per Lua script, plus the strong reads.
 * Each maps the script's result code to a value or a DomainError; nothing here decides
 * anything the script has not already decided atomically.
 */
import { DomainError } from "../domain/errors.ts";
import type { KeyLayout } from "../domain/keys.ts";
import { DEFAULT_OUTBOX_MAX_LENGTH, IDEMPOTENCY_TTL_SECONDS } from "../domain/policy.ts";
import { allocationViewFromHash, pairsToObject, stockViewFromHash, type AllocationView, type StockView } from "../domain/views.ts";
import { retryLostReply, retryUnexecuted, type RedisClient } from "./client.ts";
import { FAST, type Durability } from "./durability.ts";
import { allocateCall, cancelCall, createStockCall, expireCall, purchaseCall, type AllocateArgs, type HoldChangeArgs, type StockSpec } from "./calls.ts";
import { runScript, type ScriptReply } from "./scripts.ts";

export interface CommandOptions {
  /** HOLD_RETENTION_SECONDS: how long a finished hold stays readable (then Redis deletes it). */
  holdRetentionSeconds?: number;
  /** OUTBOX_MAX_LENGTH: above this many entries in its shard's outbox, allocate and create answer outbox_full. */
  outboxMaxLength?: number;
  /** REDIS_DURABILITY: what a write waits for before it is answered (durability.ts); default fast (nothing). */
  durability?: Durability;
}

export interface CreateStockInput extends StockSpec {
  id?: string;
  /** A waiting room (docs/waiting-room.md): admission TTL seconds; absent for none. */
  waitingRoom?: { admissionTtlSeconds: number };
}

/** An allocation request: calls.ts AllocateArgs (the Admission-Token is required, and checked by allocate.lua, on a waiting-room stock). */
export type AllocateInput = AllocateArgs;

export interface AllocateResult {
  allocation: AllocationView;
  /** True when an earlier request with the same Idempotency-Key produced this answer. */
  replayed: boolean;
  /** The stock version this hold produced (a replay of an old record: the stock's current one); null if unknown. */
  version: number | null;
}

/** A purchase or cancel: the hold as it is now, and the stock version the change produced (null if unknown). */
interface HoldChangeResult {
  allocation: AllocationView;
  version: number | null;
}

type HoldChangeInput = HoldChangeArgs;

type ExpireOutcome = "expired" | "not_due" | "not_active" | "stock_missing";

export interface StockCommands {
  readonly keys: KeyLayout;
  /** The barrier its writes pass (REDIS_DURABILITY), for the other commands the api answers writes with (the waiting room's joins). */
  readonly durability: Durability;
  createStock(input: CreateStockInput): Promise<StockView>;
  allocate(input: AllocateInput): Promise<AllocateResult>;
  purchase(input: HoldChangeInput): Promise<HoldChangeResult>;
  cancel(input: HoldChangeInput): Promise<HoldChangeResult>;
  expire(allocationId: string, stockId: string, traceparent?: string): Promise<ExpireOutcome>;
  getStock(stockId: string): Promise<StockView | null>;
  getAllocation(allocationId: string): Promise<AllocationView | null>;
}

/** The stored record of an allocation made with an Idempotency-Key (written by allocate.lua). */
export interface IdempotencyRecord {
  fingerprint: string;
  response: string;
  /** The stock version the hold produced; absent in records written before it was kept. */
  version?: number;
}

/** The stock version a script answered after its view (ok, replay, unchanged); null when it had none. */
function replyVersion(reply: ScriptReply): number | null {
  const version = Number(reply[2]);
  return reply[2] !== undefined && reply[2] !== null && Number.isSafeInteger(version) && version > 0 ? version : null;
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

export function createStockCommands(redis: RedisClient, keys: KeyLayout, options: CommandOptions = {}): StockCommands {
  const retainSeconds = options.holdRetentionSeconds ?? IDEMPOTENCY_TTL_SECONDS;
  const outboxMaxLength = options.outboxMaxLength ?? DEFAULT_OUTBOX_MAX_LENGTH;
  const durability = options.durability ?? FAST;
  /** The stock an allocation belongs to, read from its hold; null when the hold does not exist. */
  async function stockOfHold(allocationId: string): Promise<string | null> {
    if (keys.shardOfAllocation(allocationId) === null) return null;
    return retryUnexecuted(() => redis.hget(keys.hold(allocationId), "stockId"));
  }

  async function changeHold(script: "fsPurchase" | "fsCancel", input: HoldChangeInput): Promise<HoldChangeResult> {
    const stockId = await stockOfHold(input.allocationId);
    if (stockId === null) throw new DomainError("not_found", "no such allocation", { allocationId: input.allocationId });
    const build = script === "fsPurchase" ? purchaseCall : cancelCall;
    const reply = await runScript(redis, build(keys, stockId, input, retainSeconds));
    if (reply[0] === "ok" || reply[0] === "unchanged") {
      await durability.afterWrite(keys.hold(input.allocationId));
      return { allocation: JSON.parse(String(reply[1])) as AllocationView, version: replyVersion(reply) };
    }
    return fail(reply, { allocationId: input.allocationId });
  }

  return {
    keys,
    durability,

    async createStock(input) {
      const stockId = input.id ?? Bun.randomUUIDv7();
      const room = input.waitingRoom ? { admissionTtlSeconds: input.waitingRoom.admissionTtlSeconds, ...newRoomSeed() } : undefined;
      const reply = await runScript(redis, createStockCall(keys, { ...input, stockId, outboxMaxLength, retainSeconds, room }));
      if (reply[0] === "invalid") {
        // The caller's own input, which only the script can judge in full: an endsAt without startsAt
        // is compared with Redis' clock (startsAt defaults to now), so it is a 400, not a bug.
        const field = String(reply[1]);
        const message = field === "endsAt" ? "endsAt must be after startsAt (which defaults to now)" : `invalid ${field}`;
        throw new DomainError("invalid_request", `body.${field}: ${message}`, { errors: [{ in: "json", path: field, message }] });
      }
      if (reply[0] !== "ok") return fail(reply, { stockId });
      await durability.afterWrite(keys.stock(stockId));
      return stockViewFromHash(stockId, pairsToObject(reply[1] as unknown[])) as StockView;
    },

    async allocate(input) {
      const call = allocateCall(keys, input, outboxMaxLength);
      // A lost reply is retried with the very same call: the request record makes the retry find its first run.
      const reply = await retryLostReply(() => runScript(redis, call));
      if (reply[0] === "ok" || reply[0] === "replay") {
        // A replay is waited for too: its first run may be the one whose reply was lost, not yet durable.
        await durability.afterWrite(keys.stock(input.stockId));
        // A replay of our own request id is our retry finding its first run: a new hold to the caller.
        return {
          allocation: JSON.parse(String(reply[1])) as AllocationView,
          replayed: reply[0] === "replay" && input.idempotencyKey !== undefined,
          version: replyVersion(reply),
        };
      }
      return fail(reply, { stockId: input.stockId });
    },

    purchase: (input) => changeHold("fsPurchase", input),
    cancel: (input) => changeHold("fsCancel", input),

    async expire(allocationId, stockId, traceparent) {
      const reply = await runScript(redis, expireCall(keys, allocationId, stockId, retainSeconds, traceparent));
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
