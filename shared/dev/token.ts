/**
 * Development JWTs (HS256) as the api accepts them (sub = user id, iat, exp), for the token command
 * (scripts/mint-token.ts), the tests and the load tests. Never imported by a service.
 */
import { createSigner } from "fast-jwt";

export interface MintOptions {
  issuer?: string;
  audience?: string;
}

export async function mintUserToken(userId: string, secret: string, ttlSeconds = 3600, options: MintOptions = {}): Promise<string> {
  return createSigner({
    key: secret,
    algorithm: "HS256",
    expiresIn: ttlSeconds * 1000,
    ...(options.issuer ? { iss: options.issuer } : {}),
    ...(options.audience ? { aud: options.audience } : {}),
  })({ sub: userId });
}
