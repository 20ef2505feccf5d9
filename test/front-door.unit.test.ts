/**
 * Pure logic of the front door (docs/design.md §12) with a fake clock: the token bucket, the
 * trusted-proxy matcher, and the refusal cache's ordering, probing and bounds.
 */
import { describe, expect, test } from "bun:test";
import { DomainError } from "../shared/domain/errors.ts";
import { Hono } from "hono";
import { ipv6Groups, plainAddress, rateLimitKey } from "../services/api/client-address.ts";
import { ApiProblem, problemResponse } from "../services/api/problem.ts";
import { ipRateLimit, TokenBuckets, trustedProxyMatcher } from "../services/api/rate-limit.ts";
import { RefusalCache } from "../services/api/allocate/sold-out-cache.ts";
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

  test("keys beyond the bound drop the least recently used", () => {
    const buckets = new TokenBuckets("ip", { limit: 1, windowSeconds: 60 }, 2, () => 0);
    expect(buckets.take("a").ok).toBe(true);
    buckets.take("b");
    expect(buckets.take("a").ok).toBe(false); // a is now the most recent
    buckets.take("c"); // evicts b (idle the longest), not a (the oldest arrival)
    expect(buckets.take("a").ok).toBe(false);
    expect(buckets.take("b").ok).toBe(true); // came back with a full bucket; evicts c
    expect(buckets.take("a").ok).toBe(false);
  });

  test("a client that keeps hammering is never the one evicted by a flood of new keys", () => {
    // First-in first-out evicted the oldest arrival: the abuser, who arrived first, got a full
    // bucket back every `maxKeys` new addresses. Least recently used keeps it, since it is always recent.
    const buckets = new TokenBuckets("ip", { limit: 5, windowSeconds: 3600 }, 100, () => 0);
    let allowed = 0;
    for (let i = 0; i < 1_000; i++) {
      if (buckets.take("abuser").ok) allowed++;
      buckets.take(`spoofed-${i}`);
    }
    expect(allowed).toBe(5);
  });
});

describe("client addresses for the IP rate limit", () => {
  test("IPv6 parses in every spelling; what is not an address is null", () => {
    expect(ipv6Groups("2001:db8::1")).toEqual([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    expect(ipv6Groups("::")).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(ipv6Groups("::1")).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    expect(ipv6Groups("fe80::1%eth0")).toEqual([0xfe80, 0, 0, 0, 0, 0, 0, 1]);
    expect(ipv6Groups("[2001:DB8:0:0:1:2:3:4]")).toEqual([0x2001, 0xdb8, 0, 0, 1, 2, 3, 4]);
    expect(ipv6Groups("::ffff:192.0.2.7")).toEqual([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0207]);
    for (const bad of ["1.2.3.4", "1::2::3", "12345::", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "::ffff:1.2.3", "g::1", "1:2:3:4::5:6:7:8"]) {
      expect(ipv6Groups(bad)).toBeNull();
    }
  });

  test("IPv6 is keyed on its /64, IPv4 and IPv4-mapped IPv6 on the full address", () => {
    const key = rateLimitKey;
    // One /64, four spellings and four hosts: one key.
    expect(key("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(key("2001:0db8:0001:0002:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(key("2001:DB8:1:2:abcd::9")).toBe("2001:db8:1:2::/64");
    expect(key("[2001:db8:1:2::7]")).toBe("2001:db8:1:2::/64");
    // The next /64 is another client.
    expect(key("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(key("::1")).toBe("0:0:0:0::/64");
    // IPv4, plain or mapped (dotted or hex), is one host: the full address.
    expect(key("192.0.2.7")).toBe("192.0.2.7");
    expect(key("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(key("::ffff:c000:207")).toBe("192.0.2.7");
    expect(key("192.0.2.8")).toBe("192.0.2.8");
    // Not an address (a proxy's odd header entry): itself.
    expect(key("unknown")).toBe("unknown");
    expect(plainAddress("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(plainAddress("2001:db8::1")).toBe("2001:db8::1");
  });

  test("over real HTTP: every address of one /64 shares one bucket; another /64 and IPv4 hosts do not", async () => {
    // The peer is 127.0.0.1, a trusted proxy, so the client is the X-Forwarded-For address.
    const app = new Hono().use(ipRateLimit({ limit: 3, windowSeconds: 3600 }, ["127.0.0.1"])).get("/", (c) => c.text("ok"));
    app.onError((err, c) => (err instanceof ApiProblem ? problemResponse(c, err) : c.text(String(err), 500)));
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: app.fetch });
    try {
      const from = async (ip: string) => (await fetch(`http://127.0.0.1:${server.port}/`, { headers: { "x-forwarded-for": ip } })).status;
      // Four hosts of 2001:db8:aa:bb::/64, each new address: the fourth is over the /64's limit of 3.
      const sameSlash64 = [];
      for (const ip of ["2001:db8:aa:bb::1", "2001:db8:aa:bb::2", "2001:db8:aa:bb:dead:beef:0:1", "2001:0db8:00aa:00bb:ffff:ffff:ffff:ffff"]) {
        sameSlash64.push(await from(ip));
      }
      expect(sameSlash64).toEqual([200, 200, 200, 429]);
      expect(await from("2001:db8:aa:bc::1")).toBe(200);
      // IPv4 neighbours are separate hosts; the mapped spelling of one is the same host.
      for (let i = 0; i < 3; i++) expect(await from("192.0.2.1")).toBe(200);
      expect(await from("::ffff:192.0.2.1")).toBe(429);
      expect(await from("192.0.2.2")).toBe(200);
    } finally {
      await server.stop(true);
    }
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
