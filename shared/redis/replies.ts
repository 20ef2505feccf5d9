/** Shapes of raw Redis replies, decoded once for every caller (relay, verifier, commands). */

/** Flat [k, v, k, v …] (XINFO, HGETALL as scripts return it) to an object; anything else is empty. */
export function pairs(flat: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}
