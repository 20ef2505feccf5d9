/**
 * The Consistency-Token (docs/api.md, read-your-writes): what a write produced, handed to the client
 * in a response header and given back on a later read, which then waits until its store has it.
 * Here the format alone (the api's header handling: services/api/consistency/); shared so the benches
 * and tests that write through the commands, not HTTP, can make the token a client would get.
 *
 * Opaque to clients, versioned for us: base64url (no padding) of `1:<stock id>:<stock version>`. The
 * leading `1` is the format's version: a later format gets another number, and this parser refuses
 * what it does not know rather than guess. Not signed, on purpose: a token only makes its bearer's
 * own read wait, at most the wait they asked for, so a forged one (a version far ahead) buys nothing
 * a client could not get by sleeping, and reveals nothing (stock ids are public, as are versions on
 * GET /api/stocks/{id}).
 *
 * Parsing is strict: the canonical encoding only (re-encoding must give the same text back), a stock
 * id of the write side's pattern, a version 1..2^53-1 without leading zeros. Anything else is a 400
 * `invalid_consistency_token`, never a read that silently waits for nothing.
 */
import { STOCK_ID_PATTERN } from "./keys.ts";

/** A token's meaning: this stock, at this version or later. */
export interface ConsistencyPoint {
  stockId: string;
  version: number;
}

const FORMAT = "1";
/** The longest a valid token can be: a 64-character stock id and a 16-digit version, base64url. */
const MAX_TOKEN_LENGTH = Math.ceil(((FORMAT.length + 1 + 64 + 1 + 16) * 4) / 3);
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const DECODED = /^1:([A-Za-z0-9_-]{1,64}):([1-9][0-9]{0,15})$/;

export function encodeConsistencyToken(point: ConsistencyPoint): string {
  return Buffer.from(`${FORMAT}:${point.stockId}:${point.version}`, "utf8").toString("base64url");
}

/** The point a token names, or null when it is not a token this api made (in any format it knows). */
export function decodeConsistencyToken(token: string): ConsistencyPoint | null {
  if (token.length === 0 || token.length > MAX_TOKEN_LENGTH || !BASE64URL.test(token)) return null;
  const text = Buffer.from(token, "base64url").toString("latin1");
  const match = DECODED.exec(text);
  if (!match) return null;
  const [, stockId, digits] = match as unknown as [string, string, string];
  const version = Number(digits);
  if (!Number.isSafeInteger(version) || !STOCK_ID_PATTERN.test(stockId)) return null;
  const point = { stockId, version };
  // Canonical only: base64url has several spellings of the last bits; only ours is accepted.
  return encodeConsistencyToken(point) === token ? point : null;
}

