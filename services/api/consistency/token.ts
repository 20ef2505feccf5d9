/** The Consistency-Token on the write routes' answers (the format: shared/domain/consistency-token.ts). */
import { encodeConsistencyToken } from "../../../shared/domain/consistency-token.ts";

const CONSISTENCY_TOKEN_HEADER = "Consistency-Token";

/** The write answers' response header, for their OpenAPI contract. */
export const consistencyTokenResponseHeader = {
  [CONSISTENCY_TOKEN_HEADER]: {
    description:
      "Opaque: what this write produced. Send it back as the `Consistency-Token` request header of a read (order history, search, analytics) " +
      "to have that read wait until it shows this write (docs/api.md, read-your-writes).",
    schema: { type: "string" as const, pattern: "^[A-Za-z0-9_-]+$" },
  },
};

/** Sets a write's Consistency-Token (nothing when the version is unknown: an old idempotency record). */
export function setConsistencyToken(c: { header(name: string, value: string): void }, stockId: string, version: number | null): void {
  if (version !== null) c.header(CONSISTENCY_TOKEN_HEADER, encodeConsistencyToken({ stockId, version }));
}
