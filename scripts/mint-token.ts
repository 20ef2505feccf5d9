/**
 * Mints a development JWT (HS256) for a user: `bun run token <userId> [ttlSeconds]`.
 * Reads JWT_SECRET from the environment, like the api.
 */
import { createSigner } from "fast-jwt";
import { USER_ID_PATTERN } from "../shared/domain/validation.ts";

export async function mintUserToken(userId: string, secret: string, ttlSeconds = 3600): Promise<string> {
  return createSigner({ key: secret, algorithm: "HS256", expiresIn: ttlSeconds * 1000 })({ sub: userId });
}

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
  console.log(await mintUserToken(userId, secret, ttl ? Number(ttl) : undefined));
}
