/**
 * Domain outcomes that are not successes. The Lua scripts return short codes; the command
 * wrappers turn them into DomainError, and the api maps each code to an HTTP status once.
 */
export const DOMAIN_ERROR_CODES = [
  "not_found",
  "stock_exists",
  "sold_out",
  "limit_exceeded",
  "not_started",
  "ended",
  "hold_expired",
  "hold_not_active",
  "forbidden",
  "idempotency_key_reused",
] as const;
export type DomainErrorCode = (typeof DOMAIN_ERROR_CODES)[number];

export class DomainError extends Error {
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "DomainError";
  }
}
