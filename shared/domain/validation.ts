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

/** An unpaired UTF-16 surrogate cannot be encoded as UTF-8: Redis would store U+FFFD, PostgreSQL refuse it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** No control character at all (names, URLs): PostgreSQL's text and jsonb refuse NUL, and none of them prints. */
const ANY_CONTROL = /[\u0000-\u001f\u007f]/;
/** Free text may have tabs and line breaks, but no NUL or other C0 control. */
const CONTROL_BUT_WHITESPACE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

/**
 * Text every store can hold, checked at the api (the read side rejected a NUL in a stock name, and the
 * event then stalled its projector): `line` for single-line values, `multiline` for descriptions.
 */
export function storableText(kind: "line" | "multiline"): (text: string) => boolean {
  const forbidden = kind === "line" ? ANY_CONTROL : CONTROL_BUT_WHITESPACE;
  return (text) => !forbidden.test(text) && !LONE_SURROGATE.test(text);
}

/** Stock ids a route already takes: GET /api/stocks/search is the search, so no stock may be called that. */
export const RESERVED_STOCK_IDS: readonly string[] = ["search"];
