/** Identifier formats accepted at the edges (HTTP, events); the key layout relies on them. */
export { STOCK_ID_PATTERN } from "./keys.ts";

/** User ids come from the JWT `sub`; they end up inside Redis key names, so keep them tame. */
export const USER_ID_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;
/** Idempotency keys per the IETF draft are opaque strings; we bound their length and charset. */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;
