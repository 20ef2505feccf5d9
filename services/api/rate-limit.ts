/**
 * Request-rate limits (docs/design.md §12): token buckets kept in the api process's memory.
 *
 * Each bucket holds `limit` requests and refills evenly over `windowSeconds`, so a client may burst
 * `limit` requests and then sustain limit/windowSeconds per second. A local bucket costs no round
 * trip (scripts/bench-allocate.ts measures it against a Redis-backed one); the price is that it is
 * per process: with N api processes a client whose requests spread over them gets up to N times the
 * limit, a client on one keep-alive connection exactly the limit. Set the limits per process.
 *
 * Refusals are 429 problem+json `rate_limited` with Retry-After (whole seconds until one request
 * fits) and the IETF fields of draft-ietf-httpapi-ratelimit-headers (-08 to -11 syntax):
 *   RateLimit-Policy: "allocate";q=20;w=10;pk=:...:      the policy (quota q per window w seconds)
 *   RateLimit: "allocate";r=0;t=3                         what is left (r) and when it is back (t)
 * Successful answers of limited routes carry the same two fields, so clients can slow down early.
 */
import { getConnInfo } from "hono/bun";
import type { Context, MiddlewareHandler } from "hono";
import type { RateLimitSpec } from "../../shared/config.ts";
import type { AppEnv } from "./env.ts";
import { ipv4, plainAddress as plain, rateLimitKey } from "./client-address.ts";
import { ApiProblem } from "./problem.ts";

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
}

export interface TakeResult {
  ok: boolean;
  /** Requests left in the bucket (after this one). */
  remaining: number;
  /** Seconds until the bucket is full again (ok) or until one request fits (refused). */
  seconds: number;
}

const DEFAULT_MAX_KEYS = 100_000;

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  /** The RateLimit-Policy value, built once. */
  readonly policy: string;

  constructor(
    readonly name: string,
    readonly spec: NonNullable<RateLimitSpec>,
    private readonly maxKeys = DEFAULT_MAX_KEYS,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.perMs = spec.limit / (spec.windowSeconds * 1000);
    this.policy = `"${name}";q=${spec.limit};w=${spec.windowSeconds}`;
  }

  take(key: string): TakeResult {
    const now = this.now();
    const { limit } = this.spec;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: limit, at: now };
      this.buckets.set(key, bucket);
      // Least recently used out: a Map iterates in insertion order and every hit re-inserts its key
      // (below), so the first key is the one idle the longest. A key evicted comes back with a full
      // bucket, so a busy client must never be the one to go: first-in first-out evicted the oldest
      // *arrival*, which under a flood of new keys was the client hammering the api the whole time.
      if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    } else {
      this.buckets.delete(key);
      this.buckets.set(key, bucket);
      bucket.tokens = Math.min(limit, bucket.tokens + (now - bucket.at) * this.perMs);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { ok: true, remaining: Math.floor(bucket.tokens), seconds: Math.ceil((limit - bucket.tokens) / this.perMs / 1000) };
    }
    return { ok: false, remaining: 0, seconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000)) };
  }
}

function setHeaders(c: Context, buckets: TokenBuckets, result: TakeResult): void {
  c.header("RateLimit-Policy", buckets.policy);
  c.header("RateLimit", `"${buckets.name}";r=${result.remaining};t=${result.seconds}`);
}

function refuse(c: Context, buckets: TokenBuckets, result: TakeResult, who: string): never {
  // Headers set on the context survive into the problem response the error handler builds.
  c.header("Retry-After", String(result.seconds));
  setHeaders(c, buckets, result);
  throw new ApiProblem(429, "rate_limited", `too many requests ${who}: at most ${buckets.spec.limit} per ${buckets.spec.windowSeconds} s`);
}

/** A matcher for TRUSTED_PROXIES entries: exact addresses, or IPv4 CIDRs. */
export function trustedProxyMatcher(entries: string[]): (ip: string) => boolean {
  const exact = new Set<string>();
  const ranges: Array<[number, number]> = [];
  for (const entry of entries) {
    const [addr, bits] = entry.split("/");
    const base = bits === undefined ? null : ipv4(addr!);
    if (base === null || bits === undefined) {
      exact.add(plain(entry));
      continue;
    }
    const size = Number(bits);
    if (!Number.isInteger(size) || size < 0 || size > 32) throw new Error(`TRUSTED_PROXIES: bad CIDR ${entry}`);
    const mask = size === 0 ? 0 : (~0 << (32 - size)) >>> 0;
    ranges.push([(base & mask) >>> 0, mask]);
  }
  return (raw) => {
    const ip = plain(raw);
    if (exact.has(ip)) return true;
    if (ranges.length === 0) return false;
    const n = ipv4(ip);
    return n !== null && ranges.some(([base, mask]) => ((n & mask) >>> 0) === base);
  };
}

/**
 * The client's address: the socket peer, or, when the peer is a trusted proxy, the right-most
 * X-Forwarded-For entry that is not a trusted proxy (entries to its left are the client's own claims).
 * Undefined when the app runs without a socket (in-process tests).
 */
function clientIp(c: Context, trusted: (ip: string) => boolean): string | undefined {
  let peer: string | undefined;
  try {
    peer = getConnInfo(c).remote.address;
  } catch {
    return undefined; // no Bun server behind this request (app.request in tests)
  }
  if (peer === undefined || !trusted(peer)) return peer;
  const forwarded = c.req.header("x-forwarded-for");
  if (!forwarded) return plain(peer);
  const hops = forwarded.split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!.trim();
    if (hop && !trusted(hop)) return plain(hop);
  }
  return plain(peer);
}

export interface RateLimits {
  ip: RateLimitSpec;
  allocate: RateLimitSpec;
  purchase: RateLimitSpec;
  cancel: RateLimitSpec;
  /** Waiting-room polls (GET /api/stocks/:id/queue/me), per user; off when absent. */
  queuePoll?: RateLimitSpec;
  trustedProxies: string[];
}

/** Per client IP (an IPv6 client per /64: client-address.ts), on every request it is mounted on, before authentication. */
export function ipRateLimit(spec: RateLimitSpec, trustedProxies: string[]): MiddlewareHandler<AppEnv> {
  if (spec === null) return async (_c, next) => next();
  const buckets = new TokenBuckets("ip", spec);
  const trusted = trustedProxyMatcher(trustedProxies);
  return async (c, next) => {
    const ip = clientIp(c, trusted);
    if (ip !== undefined) {
      const result = buckets.take(rateLimitKey(ip));
      if (!result.ok) refuse(c, buckets, result, "from this address");
    }
    await next();
  };
}

/**
 * Per user on one route, after authentication: charged only for a user principal (the route itself
 * answers 401/403 to anyone else, and the IP bucket covers them).
 */
export function userRateLimit(name: string, spec: RateLimitSpec): MiddlewareHandler<AppEnv> {
  if (spec === null) return async (_c, next) => next();
  const buckets = new TokenBuckets(name, spec);
  return async (c, next) => {
    const principal = c.get("principal");
    if (principal?.kind === "user") {
      const result = buckets.take(principal.userId);
      if (!result.ok) refuse(c, buckets, result, `by this user on ${name}`);
      setHeaders(c, buckets, result);
    }
    await next();
  };
}
