/**
 * Mints a development JWT (HS256) for a user: `bun run token <userId> [ttlSeconds]` (default 1 h).
 * Reads JWT_SECRET, and JWT_ISSUER / JWT_AUDIENCE when set, from the environment, like the api.
 * Every token has `iat` and `exp` (the api refuses tokens without `exp` or living longer than
 * JWT_MAX_LIFETIME_SECONDS).
 */
import { DEFAULT_JWT_MAX_LIFETIME_SECONDS } from "../shared/domain/policy.ts";
import { USER_ID_PATTERN } from "../shared/domain/validation.ts";
import { mintUserToken } from "../shared/dev/token.ts";

if (import.meta.main) {
  const [userId, ttl] = process.argv.slice(2);
  const secret = process.env.JWT_SECRET;
  if (!userId || !USER_ID_PATTERN.test(userId)) {
    console.error("usage: JWT_SECRET=… bun run token <userId> [ttlSeconds]   (userId: 1-128 of A-Z a-z 0-9 _ . @ : -)");
    process.exit(2);
  }
  if (!secret || secret.length < 32) {
    console.error("JWT_SECRET must be set (at least 32 characters), the same value the api uses");
    process.exit(2);
  }
  const ttlSeconds = ttl === undefined ? undefined : Number(ttl);
  const maxLifetime = Number(process.env.JWT_MAX_LIFETIME_SECONDS || DEFAULT_JWT_MAX_LIFETIME_SECONDS);
  if (ttlSeconds !== undefined && !(Number.isInteger(ttlSeconds) && ttlSeconds > 0 && ttlSeconds <= maxLifetime)) {
    console.error(`ttlSeconds must be an integer from 1 to ${maxLifetime} (JWT_MAX_LIFETIME_SECONDS): the api refuses longer-lived tokens`);
    process.exit(2);
  }
  console.log(await mintUserToken(userId, secret, ttlSeconds, { issuer: process.env.JWT_ISSUER, audience: process.env.JWT_AUDIENCE }));
}
