/**
 * Pure logic of the front door (docs/design.md §12) with a fake clock: the token bucket, the
 * trusted-proxy matcher, and the refusal cache's ordering, probing and bounds.
 */
import { describe, expect, test } from "bun:test";
import { DomainError } from "../shared/domain/errors.ts";
import { TokenBuckets, trustedProxyMatcher } from "../services/api/rate-limit.ts";
import { RefusalCache } from "../services/api/sold-out-cache.ts";
import { cachedVerifier } from "../services/api/token-cache.ts";

describe("TokenBuckets", () => {
  test("a burst of `limit`, then one request per window/limit, with the seconds to wait", () => {
    let now = 0;
    const buckets = new TokenBuckets("allocate", { limit: 5, windowSeconds: 10 }, 100, () => now);
    expect(buckets.policy).toBe('"allocate";q=5;w=10');
    const taken = Array.from({ length: 5 }, () => buckets.take("u"));
    expect(taken.map((t) => t.ok)).toEqual([true, true, true, true, true]);
    expect(taken.map((t) => t.remaining)).toEqual([4, 3, 2, 1, 0]);
    const refused = buckets.take("u");
    expect(refused).toEqual({ ok: false, remaining: 0, seconds: 2 }); // one token per 2 s
    expect(buckets.take("someone else").ok).toBe(true);
    now += 1_999;
    expect(buckets.take("u").ok).toBe(false);
    now += 1;
    expect(buckets.take("u").ok).toBe(true);
    now += 60_000; // refills to the limit, never above
    expect(Array.from({ length: 6 }, () => buckets.take("u").ok)).toEqual([true, true, true, true, true, false]);
  });

  test("keys beyond the bound drop the oldest", () => {
    const buckets = new TokenBuckets("ip", { limit: 1, windowSeconds: 60 }, 2, () => 0);
    expect(buckets.take("a").ok).toBe(true);
    expect(buckets.take("a").ok).toBe(false);
    buckets.take("b");
    buckets.take("c"); // evicts a
    expect(buckets.take("a").ok).toBe(true);
  });
});

describe("trustedProxyMatcher", () => {
  test("exact addresses, IPv4 CIDRs and IPv4-mapped IPv6", () => {
    const trusted = trustedProxyMatcher(["127.0.0.1", "10.0.0.0/8", "::1"]);
    expect(trusted("127.0.0.1")).toBe(true);
    expect(trusted("::ffff:127.0.0.1")).toBe(true);
    expect(trusted("10.20.30.40")).toBe(true);
    expect(trusted("11.0.0.1")).toBe(false);
    expect(trusted("::1")).toBe(true);
    expect(trusted("192.168.0.1")).toBe(false);
    expect(trustedProxyMatcher([])("127.0.0.1")).toBe(false);
    expect(() => trustedProxyMatcher(["10.0.0.0/33"])).toThrow();
  });
});

const soldOut = (stockId: string, version: number, available = 0) =>
  new DomainError("sold_out", "not enough units left", { stockId, available }, { version });

describe("RefusalCache", () => {
  function cache(ttlMs = 100) {
    const clock = { now: 0 };
    const c = new RefusalCache({ ttlMs, now: () => clock.now });
    c.setLive(true);
    return { c, clock };
  }

  test("remembers sold_out with 0 available until a release with a higher version", () => {
    const { c } = cache();
    c.learn("s", soldOut("s", 7));
    expect("error" in c.lookup("s")).toBe(true);
    c.onReleased("s", 7); // not newer than the refusal
    expect("error" in c.lookup("s")).toBe(true);
    c.onReleased("s", 8);
    expect(c.lookup("s")).toEqual({ probe: false });
  });

  test("a sold_out reply older than a release already heard is not cached", () => {
    const { c } = cache();
    c.onReleased("s", 10);
    c.learn("s", soldOut("s", 9));
    expect(c.lookup("s")).toEqual({ probe: false });
    c.learn("s", soldOut("s", 11));
    expect("error" in c.lookup("s")).toBe(true);
  });

  test("sold_out with units left (a larger quantity) is not cached", () => {
    const { c } = cache();
    c.learn("s", soldOut("s", 3, 1));
    expect(c.lookup("s")).toEqual({ probe: false });
  });

  test("after the time bound one request probes while the others keep the answer", () => {
    const { c, clock } = cache(100);
    c.learn("s", soldOut("s", 1));
    clock.now = 100;
    expect(c.lookup("s")).toEqual({ probe: true });
    expect("error" in c.lookup("s")).toBe(true);
    expect("error" in c.lookup("s")).toBe(true);
    c.learn("s", soldOut("s", 1)); // the probe's answer renews the entry
    clock.now = 150;
    expect("error" in c.lookup("s")).toBe(true);
    clock.now = 1_000;
    expect(c.lookup("s")).toEqual({ probe: true });
    c.learn("s", null); // the probe got a unit: the entry is gone
    expect(c.lookup("s")).toEqual({ probe: false });
  });

  test("a probe that never answers lets another request probe after a second", () => {
    const { c, clock } = cache(100);
    c.learn("s", soldOut("s", 1));
    clock.now = 200;
    expect(c.lookup("s")).toEqual({ probe: true });
    clock.now = 1_100;
    expect("error" in c.lookup("s")).toBe(true);
    clock.now = 1_300;
    expect(c.lookup("s")).toEqual({ probe: true });
  });

  test("not_started until the start, ended for good; off while not live", () => {
    const { c, clock } = cache(100);
    c.learn("a", new DomainError("not_started", "the sale has not started yet", { stockId: "a" }, { startsInMs: 5_000 }));
    c.learn("b", new DomainError("ended", "the sale has ended", { stockId: "b" }));
    clock.now = 4_999;
    expect("error" in c.lookup("a")).toBe(true);
    clock.now = 5_000;
    expect(c.lookup("a")).toEqual({ probe: true });
    clock.now = 1e12;
    expect("error" in c.lookup("b")).toBe(true);
    c.setLive(false);
    expect(c.lookup("b")).toEqual({ probe: false });
    c.learn("b", new DomainError("ended", "the sale has ended", { stockId: "b" }));
    c.setLive(true);
    expect(c.lookup("b")).toEqual({ probe: false });
  });

  test("other refusals are not cached; SOLD_OUT_CACHE_MS=0 caches nothing", () => {
    const { c } = cache();
    c.learn("s", new DomainError("limit_exceeded", "per-user limit reached for this stock", { stockId: "s", remaining: 0 }));
    expect(c.lookup("s")).toEqual({ probe: false });
    const off = new RefusalCache({ ttlMs: 0, now: () => 0 });
    off.setLive(true);
    off.learn("s", soldOut("s", 1));
    expect(off.lookup("s")).toEqual({ probe: false });
  });
});

describe("cachedVerifier", () => {
  test("a verified token is served from memory until its exp; then it is verified again", () => {
    let now = 1_000_000;
    let verifies = 0;
    const verify = (token: string) => {
      verifies++;
      if (token === "bad") throw new Error("bad signature");
      if (now >= 1_060_000 + 5_000) throw new Error("expired");
      return { sub: "u", exp: 1_060, nbf: 999 };
    };
    const cached = cachedVerifier(verify, { maxTokens: 2, clockToleranceMs: 5_000, now: () => now });
    expect(cached("t")).toEqual({ sub: "u", exp: 1_060, nbf: 999 });
    expect(cached("t").sub).toBe("u");
    expect(verifies).toBe(1);
    expect(() => cached("bad")).toThrow("bad signature");
    expect(() => cached("bad")).toThrow("bad signature"); // failures are not remembered
    expect(verifies).toBe(3);
    now = 1_064_999; // inside the tolerance
    cached("t");
    expect(verifies).toBe(3);
    now = 1_065_000;
    expect(() => cached("t")).toThrow("expired");
    expect(verifies).toBe(4);
  });
});
