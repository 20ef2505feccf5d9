/**
 * Read-your-writes on one read route (docs/api.md): given a Consistency-Token, wait (bounded) until
 * the route's store has the write it names, then say whether it did.
 *
 *   Consistency-Token: <token from a write's answer>   → waits up to 1 s (DEFAULT_CONSISTENCY_WAIT_SECONDS)
 *   Prefer: wait=N  (RFC 7240)                          → waits up to N s, at most 5 (MAX_CONSISTENCY_WAIT_SECONDS);
 *                                                         answered with Preference-Applied: wait=<seconds used>
 *   answer: Consistency-Status: fresh | stale           → stale: the wait ran out, the data is the current one
 *           Server-Timing: consistency-wait;dur=<ms>   → how long it waited
 *
 * Without the header nothing happens here (the read is what it always was). A header that is not a
 * token this api made is a 400 `invalid_consistency_token` (the route's authentication ran first).
 */
import type { Context } from "hono";
import { z } from "@hono/zod-openapi";
import type { AppEnv } from "../env.ts";
import { ApiProblem } from "../problem.ts";
import type { ProgressWaiter } from "./stores.ts";
import { decodeConsistencyToken } from "../../../shared/domain/consistency-token.ts";

const DEFAULT_CONSISTENCY_WAIT_SECONDS = 1;
const MAX_CONSISTENCY_WAIT_SECONDS = 5;

/** The request headers of a read that can wait, for the routes' OpenAPI contract (checked here, not by zod: the code is ours). */
export const consistencyRequestHeaders = z.object({
  "consistency-token": z
    .string()
    .optional()
    .openapi({
      description:
        "The `Consistency-Token` of an earlier write's answer (opaque). The read waits until this store has that write " +
        `(default ${DEFAULT_CONSISTENCY_WAIT_SECONDS} s, see \`Prefer\`) and says so in \`Consistency-Status\`. ` +
        "Not a token this api made: 400 `invalid_consistency_token`.",
      example: "MTpzbmVha2VyLTQyOjE", // sneaker-42 at version 1: the examples' stock, created
    }),
  prefer: z
    .string()
    .optional()
    .openapi({
      description: `RFC 7240. \`wait=N\`: with a Consistency-Token, wait up to N seconds (at most ${MAX_CONSISTENCY_WAIT_SECONDS}) instead of ${DEFAULT_CONSISTENCY_WAIT_SECONDS}. Other preferences are ignored.`,
      example: "wait=3",
    }),
});

/** The response headers of such a read (on 200). */
export const consistencyResponseHeaders = {
  "Consistency-Status": {
    description: "Only with a Consistency-Token: `fresh` when this answer includes the token's write; `stale` when the wait ran out (the data is the current one)",
    schema: { type: "string" as const, enum: ["fresh", "stale"] },
  },
  "Server-Timing": {
    description: "Only with a Consistency-Token: `consistency-wait;dur=<ms>`, how long this read waited for its store (W3C Server Timing)",
    schema: { type: "string" as const },
  },
  "Preference-Applied": {
    description: "RFC 7240: `wait=N`, the seconds this read was allowed to wait (the asked wait, at most 5), when a Consistency-Token came with `Prefer: wait`",
    schema: { type: "string" as const, pattern: "^wait=[0-9]+$" },
  },
};

/** The seconds a `Prefer` header asks to wait, or null when it asks nothing (absent, or no valid `wait`). */
export function preferredWaitSeconds(prefer: string | undefined): number | null {
  if (!prefer) return null;
  for (const part of prefer.split(",")) {
    // preference = token [ "=" word ] *( ";" parameter ): only the first token=value counts.
    const match = /^\s*wait\s*=\s*(?:"(\d{1,10})"|(\d{1,10}))\s*$/i.exec(part.split(";")[0] ?? "");
    if (match) return Number(match[1] ?? match[2]);
  }
  return null;
}

/**
 * Before a read's query: with a token, wait for `store` and set the answer's consistency headers.
 * Returns at once without one. Never throws but for the malformed token's 400.
 */
export async function awaitReadConsistency(c: Context<AppEnv>, store: ProgressWaiter): Promise<void> {
  const raw = c.req.header("consistency-token");
  if (raw === undefined) return;
  const point = decodeConsistencyToken(raw.trim());
  if (!point) {
    const message = "not a Consistency-Token this api issued; send the header of a write's answer unchanged";
    throw new ApiProblem(400, "invalid_consistency_token", `header.consistency-token: ${message}`, {
      errors: [{ in: "header", path: "consistency-token", message }],
    });
  }
  const asked = preferredWaitSeconds(c.req.header("prefer"));
  const seconds = asked === null ? DEFAULT_CONSISTENCY_WAIT_SECONDS : Math.min(asked, MAX_CONSISTENCY_WAIT_SECONDS);
  if (asked !== null) c.header("Preference-Applied", `wait=${seconds}`);
  const started = performance.now();
  const fresh = await store.waitFor(point, seconds * 1000);
  c.header("Consistency-Status", fresh ? "fresh" : "stale");
  // How long this read waited for its store (W3C Server-Timing), apart from the query and the network.
  c.header("Server-Timing", `consistency-wait;dur=${(performance.now() - started).toFixed(1)}`);
}
