/**
 * Domain outcomes that are not successes. The Lua scripts return short codes; the command
 * wrappers turn them into DomainError, and the api maps each code to an HTTP status once.
 */
const DOMAIN_ERROR_CODES = [
  "not_found",
  "stock_exists",
  /** The id named a stock that existed once and has since expired: ids are never reused (docs/design.md §3). */
  "stock_id_taken",
  "sold_out",
  "limit_exceeded",
  "not_started",
  "ended",
  "hold_expired",
  "hold_not_active",
  "forbidden",
  "idempotency_key_reused",
  /** An input only the script can judge (e.g. endsAt against Redis' clock when startsAt defaults to now). */
  "invalid_request",
  /** The shard's outbox is at OUTBOX_MAX_LENGTH: the relay is behind; nothing was written. */
  "outbox_full",
  /** A waiting-room stock without a valid admission: no Admission-Token, or one invalid, expired, used, or not this user's or stock's. */
  "not_admitted",
  /** The stock has no waiting room (the queue routes). */
  "no_waiting_room",
  /** GET /queue/draw before the start (the seed is still secret). */
  "draw_not_ready",
] as const;
export type DomainErrorCode = (typeof DOMAIN_ERROR_CODES)[number];

/**
 * What a script said beyond the refusal, for callers that remember refusals (the api's sold-out
 * cache, docs/design.md §12). Never part of an answer: problem bodies are built from `details`.
 */
export interface RefusalHint {
  /** sold_out: the stock version the script saw. */
  version?: number;
  /** not_started: milliseconds (Redis time) until the sale starts. */
  startsInMs?: number;
}

export class DomainError extends Error {
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly hint: RefusalHint = {},
  ) {
    super(message);
    this.name = "DomainError";
  }
}
