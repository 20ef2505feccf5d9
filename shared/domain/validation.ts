/** Identifier formats accepted at the edges (HTTP, events); the key layout relies on them. */
export { STOCK_ID_PATTERN } from "./keys.ts";

/** User ids come from the JWT `sub`; they end up inside Redis key names, so keep them tame. */
export const USER_ID_PATTERN = /^[A-Za-z0-9_.@:-]{1,128}$/;
/**
 * The Idempotency-Key header (IETF draft): an opaque key of 1-255 printable ASCII characters other
 * than `"`, in double quotes (a structured-field string) or bare. Without `"` inside, the two forms
 * never overlap: `"k"` and `k` are the same key.
 */
export const IDEMPOTENCY_KEY_HEADER_PATTERN = /^(?:"[\x21\x23-\x7e]{1,255}"|[\x21\x23-\x7e]{1,255})$/;
