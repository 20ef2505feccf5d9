/** Pure logic of the notifier: the retry schedule, Retry-After, config of the configured endpoint. */
import { describe, expect, test } from "bun:test";
import { backoffDelayMs, decide, parseRetryAfter } from "../services/notifier/schedule.ts";
import { excerpt } from "../services/notifier/sender.ts";
import { ConfigError, notifierSchema, parseConfig } from "../shared/config.ts";
import { generateSecret, webhookUrl } from "../shared/webhooks/endpoints.ts";

const schedule = { baseMs: 5_000, maxMs: 3_600_000, maxAttempts: 12 };

describe("retry schedule", () => {
  test("exponential from the base, capped, with ±20 % jitter", () => {
    expect(backoffDelayMs(schedule, 1, () => 0.5)).toBe(5_000);
    expect(backoffDelayMs(schedule, 2, () => 0.5)).toBe(10_000);
    expect(backoffDelayMs(schedule, 5, () => 0.5)).toBe(80_000);
    expect(backoffDelayMs(schedule, 11, () => 0.5)).toBe(3_600_000);
    expect(backoffDelayMs(schedule, 1, () => 0)).toBe(4_000);
    expect(backoffDelayMs(schedule, 1, () => 1)).toBe(6_000);
    for (let i = 0; i < 100; i++) {
      const d = backoffDelayMs(schedule, 3);
      expect(d).toBeGreaterThanOrEqual(16_000);
      expect(d).toBeLessThanOrEqual(24_000);
    }
  });

  test("2xx delivered; anything else retried until the last attempt, then dead", () => {
    for (const status of [200, 201, 204, 299]) expect(decide(schedule, 1, { status, retryAfterMs: null })).toEqual({ status: "delivered" });
    for (const status of [null, 301, 400, 408, 410, 429, 500, 503]) {
      expect(decide(schedule, 1, { status, retryAfterMs: null }, () => 0.5)).toEqual({ status: "pending", delayMs: 5_000 });
      expect(decide(schedule, 11, { status, retryAfterMs: null }).status).toBe("pending");
      expect(decide(schedule, 12, { status, retryAfterMs: null })).toEqual({ status: "dead" });
    }
    expect(decide(schedule, 12, { status: 200, retryAfterMs: null })).toEqual({ status: "delivered" });
  });

  test("Retry-After is honoured when longer than the backoff, and bounded by the cap", () => {
    expect(decide(schedule, 1, { status: 429, retryAfterMs: 120_000 }, () => 0.5)).toEqual({ status: "pending", delayMs: 120_000 });
    expect(decide(schedule, 1, { status: 503, retryAfterMs: 1_000 }, () => 0.5)).toEqual({ status: "pending", delayMs: 5_000 });
    expect(decide(schedule, 1, { status: 503, retryAfterMs: 86_400_000 }, () => 0.5)).toEqual({ status: "pending", delayMs: 3_600_000 });
  });

  test("parseRetryAfter: delay-seconds or an HTTP-date", () => {
    const now = Date.parse("2026-12-01T08:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Tue, 01 Dec 2026 08:01:00 GMT", now)).toBe(60_000);
    expect(parseRetryAfter("Tue, 01 Dec 2026 07:00:00 GMT", now)).toBe(0);
    for (const bad of [null, undefined, "", "-5", "1.5", "soon", "12abc"]) expect(parseRetryAfter(bad, now)).toBeNull();
  });
});

describe("webhook config and inputs", () => {
  test("the configured endpoint: http(s) only, whsec_ secret, both or neither, known event types, durations", () => {
    const secret = generateSecret();
    const c = parseConfig(notifierSchema, { WEBHOOK_URL: "https://shop.example/hooks", WEBHOOK_SECRET: secret, WEBHOOK_EVENTS: "PurchaseCompleted,StockReleased", WEBHOOK_RETRY_BASE: "250ms", WEBHOOK_RETRY_MAX: "2m" });
    expect(c.WEBHOOK_EVENTS).toEqual(["PurchaseCompleted", "StockReleased"]);
    expect(c.WEBHOOK_RETRY_BASE).toBe(250);
    expect(c.WEBHOOK_RETRY_MAX).toBe(120_000);
    expect(c.ADMIN_PORT).toBe(9106);
    expect(parseConfig(notifierSchema, {}).WEBHOOK_URL).toBeUndefined();
    const bad = (env: Record<string, string>) => {
      try {
        parseConfig(notifierSchema, env);
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    expect(bad({ WEBHOOK_URL: "file:///etc/passwd", WEBHOOK_SECRET: secret }).join()).toContain("WEBHOOK_URL");
    expect(bad({ WEBHOOK_URL: "https://x.example/h" }).join()).toContain("WEBHOOK_SECRET");
    expect(bad({ WEBHOOK_URL: "https://x.example/h", WEBHOOK_SECRET: "plain-secret" }).join()).toContain("WEBHOOK_SECRET");
    expect(bad({ WEBHOOK_EVENTS: "StockCreated,Nope" }).join()).toContain("WEBHOOK_EVENTS");
    expect(bad({ WEBHOOK_RETRY_BASE: "fast" }).join()).toContain("WEBHOOK_RETRY_BASE");
    expect(bad({ WEBHOOK_RETRY_BASE: "10m", WEBHOOK_RETRY_MAX: "1m" }).join()).toContain("WEBHOOK_RETRY_MAX");
  });

  test("endpoint URLs: http(s) without credentials", () => {
    expect(webhookUrl.safeParse("https://a.example/x").success).toBe(true);
    expect(webhookUrl.safeParse("http://127.0.0.1:3200/h").success).toBe(true);
    for (const u of ["ftp://a.example/x", "file:///etc/passwd", "javascript:alert(1)", "https://user:pw@a.example/x", "not a url"]) {
      expect(webhookUrl.safeParse(u).success).toBe(false);
    }
  });

  test("generated secrets are whsec_ + base64 of 32 bytes; excerpts are short and single-line", () => {
    const s = generateSecret();
    expect(s).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(s.slice(6), "base64").length).toBe(32);
    const e = excerpt(`line1\nline2\r\n${"x".repeat(1000)}`);
    expect(e.length).toBe(200);
    expect(e).not.toMatch(/[\n\r]/);
  });
});

describe("rebuild", () => {
  test("the notifier's migrations are skipped by the read-model rebuild, the read models' is not", async () => {
    const { readMigrations } = await import("../shared/stores/postgres/migrate.ts");
    const { isSkippedByRebuild, MIGRATIONS_DIR } = await import("../shared/stores/postgres/migration-files.ts");
    const files = await readMigrations(MIGRATIONS_DIR);
    const skipped = files.filter((f) => isSkippedByRebuild(f.sql)).map((f) => f.file);
    expect(skipped).toEqual(["002_webhooks.sql", "004_webhook_hardening.sql"]);
    expect(isSkippedByRebuild("CREATE TABLE t (id int);\n-- rebuild: skip\n")).toBe(false); // only as the first line
  });
});

describe("delivery lease window", () => {
  test("4 × p99 of the measured renewal times, within the bounds", async () => {
    const { leaseWindowMs, LEASE_K } = await import("../services/notifier/lease.ts");
    const bounds = { minMs: 5_000, maxMs: 60_000 };
    expect(LEASE_K).toBe(4);
    expect(leaseWindowMs([], bounds)).toBe(5_000); // nothing measured yet: the floor
    expect(leaseWindowMs(Array(200).fill(8), bounds)).toBe(5_000); // a healthy database: the floor
    // A slow PostgreSQL answer or a GC pause in 2 % of renewals: the window follows the p99.
    const slow = [...Array(196).fill(10), 2_000, 2_100, 2_200, 2_300];
    expect(leaseWindowMs(slow, bounds)).toBe(4 * 2_100); // the 198th of 200
    expect(leaseWindowMs([...Array(99).fill(10), 3_000], bounds)).toBe(5_000); // one outlier in 100 is not the p99
    expect(leaseWindowMs(Array(50).fill(30_000), bounds)).toBe(60_000); // capped
  });
});
