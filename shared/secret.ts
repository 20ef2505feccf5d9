/** Comparing a presented bearer secret with the configured one, for the api and every admin port. */
import { timingSafeEqual } from "node:crypto";

/**
 * Constant-time comparison with `secret`, whose bytes are prepared once. A candidate of another
 * length is told apart at once, as timingSafeEqual needs equal lengths anyway (the length was
 * never secret here); a user's JWT, far longer than any admin token, then costs no Buffer at all.
 */
export function secretMatcher(secret: string): (candidate: string) => boolean {
  const expected = Buffer.from(secret);
  return (candidate) => {
    if (Buffer.byteLength(candidate) !== expected.length) return false;
    return timingSafeEqual(Buffer.from(candidate), expected);
  };
}
