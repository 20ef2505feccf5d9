/**
 * One allocation as the api makes it (docs/design.md §12): the refusal cache first, then allocate.lua
 * through the typed command, and the answer taught back to the cache. The route and its fast path
 * both call `allocate`; nothing else in the api allocates.
 *
 * Idempotency (I5) stays exact: a request with an Idempotency-Key whose record exists gets its first
 * answer again. A refusal from memory for such a request first reads the record (one GET, no Lua):
 * replayed when it matches, 422 when it does not, the cached refusal when there is none.
 */
import { DomainError } from "../../../shared/domain/errors.ts";
import type { AllocationView } from "../../../shared/domain/views.ts";
import type { RedisClient } from "../../../shared/redis/client.ts";
import { allocateFingerprint } from "../../../shared/redis/calls.ts";
import type { AllocateInput, AllocateResult, IdempotencyRecord, StockCommands } from "../../../shared/redis/commands.ts";
import type { RefusalCache } from "./sold-out-cache.ts";

export interface Allocator {
  allocate(input: AllocateInput): Promise<AllocateResult>;
  /** The fresh refusal for this stock, if the cache holds one (the fast path answers it without Redis). */
  cachedRefusal(stockId: string): DomainError | null;
  /** Counts a refusal answered from memory (flashsale_allocate_refusals_from_memory_total). */
  countFromMemory(code: string): void;
}

/** Without a cache (`refusals` undefined: in-process tests, benches) every allocation goes to Redis. */
export function createAllocator(commands: StockCommands, redis: RedisClient, refusals?: RefusalCache): Allocator {
  if (!refusals) return { allocate: (input) => commands.allocate(input), cachedRefusal: () => null, countFromMemory: () => {} };
  const cache = refusals;

  /** The first answer of an Idempotency-Key, read without running the script (as allocate.lua does first). */
  async function replay(input: AllocateInput & { idempotencyKey: string }): Promise<AllocateResult | null> {
    const stored = await redis.get(commands.keys.idempotency(input.stockId, input.userId, input.idempotencyKey));
    if (stored === null) return null;
    const record = JSON.parse(stored) as IdempotencyRecord;
    if (record.fingerprint !== allocateFingerprint(input.userId, input.stockId, input.quantity)) {
      throw new DomainError("idempotency_key_reused", "Idempotency-Key was used for a different request", { stockId: input.stockId });
    }
    // A record written before versions were kept: no token (the stock's version is not read here).
    return { allocation: JSON.parse(record.response) as AllocationView, replayed: true, version: record.version ?? null };
  }

  return {
    async allocate(input) {
      const hit = cache.lookup(input.stockId);
      if ("error" in hit) {
        if (input.idempotencyKey !== undefined) {
          const first = await replay(input as AllocateInput & { idempotencyKey: string });
          if (first) return first;
        }
        cache.count(hit.error.code);
        throw hit.error;
      }
      try {
        const result = await commands.allocate(input);
        // A replay says nothing about the stock (the script answers it before looking at the stock).
        if (result.replayed) cache.probeFailed(input.stockId);
        else cache.learn(input.stockId, null);
        return result;
      } catch (err) {
        if (err instanceof DomainError && err.code !== "idempotency_key_reused") cache.learn(input.stockId, err);
        else cache.probeFailed(input.stockId);
        throw err;
      }
    },
    cachedRefusal: (stockId) => cache.peek(stockId),
    countFromMemory: (code) => cache.count(code),
  };
}
