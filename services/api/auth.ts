/**
 * Who is calling: the admin (bearer ADMIN_TOKEN) or a user (bearer JWT, HS256, `sub` = user id).
 * `authenticate` only identifies; routes then say what they require with the guards below.
 */
import type { Context, MiddlewareHandler } from "hono";
import { createVerifier } from "fast-jwt";
import { USER_ID_PATTERN } from "../../shared/domain/validation.ts";
import { secretMatcher } from "../../shared/secret.ts";
import type { AppEnv, Principal } from "./env.ts";
import { ApiProblem } from "./problem.ts";
import { cachedVerifier } from "./token-cache.ts";

const MAX_TOKEN_LENGTH = 4096;

export interface TokenPolicy {
  jwtSecret: string;
  /** When set, the token's `iss` must equal it. */
  issuer?: string;
  /** When set, the token's `aud` must be (or contain) it. */
  audience?: string;
  /** Longest lifetime accepted: `exp - iat`, or `exp - now` for a token without `iat`. */
  maxLifetimeSeconds: number;
}

const CLOCK_TOLERANCE_MS = 5_000;

/**
 * HS256 verification with fast-jwt: synchronous node:crypto HMAC with the key prepared once, and
 * the claim checks (alg allow-list, exp, nbf, iss, aud). WebCrypto (hono/jwt) hops to a thread per
 * call on Bun: measured 26-80 us per verify against ~6 us here, the largest single cost of an allocation.
 * `exp` and `sub` are required: a token without `exp` would be a password that never expires.
 */
function createTokenVerifier(policy: TokenPolicy): (token: string) => Record<string, unknown> {
  const verify = createVerifier({
    key: policy.jwtSecret,
    algorithms: ["HS256"],
    cache: false, // see token-cache.ts
    clockTolerance: CLOCK_TOLERANCE_MS,
    // fast-jwt skips the iss/aud checks when the claim is absent, so a configured one is also required.
    requiredClaims: ["exp", "sub", ...(policy.issuer ? ["iss"] : []), ...(policy.audience ? ["aud"] : [])],
    ...(policy.issuer ? { allowedIss: policy.issuer } : {}),
    ...(policy.audience ? { allowedAud: policy.audience } : {}),
  });
  const maxLifetimeMs = policy.maxLifetimeSeconds * 1000;
  // Buyers who retry send the same token: a verified one is remembered until its exp (token-cache.ts).
  const verifyCached = cachedVerifier((token) => verify(token) as Record<string, unknown>, { maxTokens: 10_000, clockToleranceMs: CLOCK_TOLERANCE_MS });
  return (token) => {
    const claims = verifyCached(token);
    const exp = claims.exp;
    const iat = claims.iat;
    if (typeof exp !== "number") throw new Error("exp must be a number");
    // A token minted for a year is refused even though it is signed: stolen tokens must die young.
    // Both bounds: exp - iat (the lifetime it was minted with) and exp - now (an iat set in the
    // future would otherwise stretch a short-looking token over years).
    const now = Date.now();
    if (exp * 1000 - now > maxLifetimeMs + CLOCK_TOLERANCE_MS) throw new Error("token lifetime over the maximum");
    if (typeof iat === "number") {
      if (iat * 1000 > now + CLOCK_TOLERANCE_MS) throw new Error("token issued in the future");
      if (exp * 1000 - iat * 1000 > maxLifetimeMs) throw new Error("token lifetime over the maximum");
    }
    return claims;
  };
}

function principalOf(token: string, isAdmin: (token: string) => boolean, verifyToken: (token: string) => Record<string, unknown>): Principal {
  if (isAdmin(token)) return { kind: "admin" };
  let claims: Record<string, unknown>;
  try {
    claims = verifyToken(token);
  } catch {
    throw new ApiProblem(401, "unauthorized", "invalid or expired token");
  }
  const sub = claims.sub;
  if (typeof sub !== "string" || !USER_ID_PATTERN.test(sub)) {
    throw new ApiProblem(401, "unauthorized", "token has no valid `sub` (user id)");
  }
  return { kind: "user", userId: sub };
}

export function authenticate(options: { adminToken: string } & TokenPolicy): MiddlewareHandler<AppEnv> {
  const verifyToken = createTokenVerifier(options);
  const isAdmin = secretMatcher(options.adminToken);
  return async (c, next) => {
    const header = c.req.header("Authorization");
    if (header !== undefined) {
      const match = /^Bearer ([^\s]+)$/.exec(header);
      if (!match?.[1] || match[1].length > MAX_TOKEN_LENGTH) {
        throw new ApiProblem(401, "unauthorized", "Authorization must be `Bearer <token>`");
      }
      c.set("principal", principalOf(match[1], isAdmin, verifyToken));
    }
    await next();
  };
}

/**
 * Route middleware (createRoute's `middleware`, which runs before the request validators): a
 * protected route answers 401/403 before it looks at the body, so an anonymous caller learns
 * nothing about the schema. The handler-side guards below stay for checks that need the request
 * (the owner of a hold or of an order history).
 */
export const adminOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
  requireAdmin(c);
  await next();
};

export const userOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
  requireUser(c);
  await next();
};

/** Any valid token (admin or user); ownership is checked by the handler. */
export const signedIn: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (!c.get("principal")) throw new ApiProblem(401, "unauthorized", "token required");
  await next();
};

export function requireAdmin(c: Context<AppEnv>): void {
  const principal = c.get("principal");
  if (!principal) throw new ApiProblem(401, "unauthorized", "admin token required");
  if (principal.kind !== "admin") throw new ApiProblem(403, "forbidden", "admin only");
}

/** Returns the calling user's id; 401 without a token, 403 for the admin token. */
export function requireUser(c: Context<AppEnv>): string {
  const principal = c.get("principal");
  if (!principal) throw new ApiProblem(401, "unauthorized", "user token required");
  if (principal.kind !== "user") throw new ApiProblem(403, "forbidden", "this action needs a user token");
  return principal.userId;
}

/** The user themself or the admin. */
export function requireOwnerOrAdmin(c: Context<AppEnv>, userId: string): void {
  const principal = c.get("principal");
  if (!principal) throw new ApiProblem(401, "unauthorized", "token required");
  if (principal.kind === "user" && principal.userId !== userId) {
    throw new ApiProblem(403, "forbidden", "you can only see your own data");
  }
}

/**
 * A route's authentication, declared and enforced in one spread: the OpenAPI `security` (a bearer
 * token) and the middleware that checks it (then any others of the route), so no route claims one
 * without the other.
 */
export function bearer<const M extends MiddlewareHandler<AppEnv>[]>(...middleware: M) {
  return { security: [{ bearer: [] as string[] }], middleware };
}
