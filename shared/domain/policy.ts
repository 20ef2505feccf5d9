/**
 * Domain policy values that more than one module relies on (the api's validation, the commands,
 * the expirer, the Lua scripts' callers). Deployment-specific ones are overridable in shared/config.ts,
 * which takes its defaults from here; nothing else spells these numbers.
 */

/** How long a hold lasts when the sale does not say (the brief's 10 minutes), and the longest a sale may ask for. */
export const DEFAULT_HOLD_SECONDS = 600;
export const MAX_HOLD_SECONDS = 24 * 3600;
/** A sale's currency when it does not say (ISO 4217). */
export const DEFAULT_CURRENCY = "EUR";

/** Largest quantity one request may take; the per-user limit usually bites first. */
export const MAX_QUANTITY_PER_REQUEST = 1000;

/**
 * Largest price in minor units. Redis' cjson encodes numbers with 14 significant digits (%.14g), so
 * an amount (price × quantity of one hold) must stay below 10^14 to reach events and answers exactly:
 * 99,999,999,999 × 1,000 = 99,999,999,999,000 < 10^14. Amounts stay JSON integers (the contract),
 * which is why the bound is here rather than amounts as strings.
 */
export const MAX_PRICE = 99_999_999_999;

/**
 * How long an Idempotency-Key is remembered; also how long a finished (purchased, cancelled, expired)
 * hold stays in Redis by default (HOLD_RETENTION_SECONDS), and the least that may be set to: as long
 * as idempotency needs it, no longer. An Idempotency-Key's record
 * (written at allocation, kept IDEMPOTENCY_TTL_SECONDS) replays the allocation's id, and the client
 * then reads, buys or cancels that hold: kept this long from its end, the hold outlives every record
 * that can name it, and a retried purchase or cancel answers the hold again instead of 404. The
 * history stays in PostgreSQL (order history). It was 7 days: a buyer who allocates and cancels in a
 * loop (20 per 10 s per user) left ~173,000 holds a day in Redis, each kept a week (docs/design.md §3).
 */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;
/**
 * How long the record of an allocation request without Idempotency-Key is kept (allocate.lua, key
 * `req:`): a resend or retry of the same request within this window gets the same hold. It must
 * outlast the commands' retry budget (ALLOCATE_RETRY_BUDGET_MS, 3 s) by a wide margin: a resend can
 * also come from the client library after a reconnect. ~200 bytes per successful allocation for a
 * minute (3,500 allocations/s: ~40 MB at most).
 */
export const REQUEST_RECORD_TTL_SECONDS = 60;

/** Event streams open at once per side of an api process (SSE_MAX_CLIENTS). */
export const DEFAULT_SSE_MAX_CLIENTS = 100;

/** Longest JWT lifetime the api accepts (JWT_MAX_LIFETIME_SECONDS). */
export const DEFAULT_JWT_MAX_LIFETIME_SECONDS = 24 * 3600;

/**
 * Outbox entries per shard above which commands that create state answer 503 outbox_full
 * (OUTBOX_MAX_LENGTH). An event is ~0.4-0.5 KB in Redis, so the default bounds one shard's
 * outbox near 500 MB; at 3,500 allocations/s it is ~5 minutes of a stopped relay.
 */
export const DEFAULT_OUTBOX_MAX_LENGTH = 1_000_000;
/** Retry-After of an outbox_full answer: the relay drains ~30,000 events/s once it is back. */
export const OUTBOX_FULL_RETRY_AFTER_SECONDS = 5;

/**
 * Entries kept in a shard's outbox dead-letter stream (`outbox:dead`, written by the relay): it is
 * there to be inspected, and without a cap a stream of bad entries would grow it for ever.
 */
export const DEAD_LETTER_MAX_LENGTH = 10_000;
