/**
 * The notifier's section of the typed config (re-exported by shared/config.ts, the entry): where
 * webhooks go, how they are retried and timed out, and the delivery lease (docs/webhooks.md).
 */
import { z } from "zod";
import { EVENT_TYPES } from "../domain/events.ts";
import { SERVICES } from "../services.ts";
import { adminPort, common, duration, kafka, positiveInt, postgres, webhookSecurity } from "./fields.ts";

/** Standard Webhooks secret: "whsec_" + base64 of 24-64 random bytes. */
export const WEBHOOK_SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]{32,88}={0,2}$/;

export const notifierSchema = z
  .object({
    ...common,
    ...kafka,
    ...postgres,
    ...adminPort(SERVICES.notifier.adminPort),
    ...webhookSecurity,
    /** Consumer group on the stock-events topic (its own: it sees every event, whatever the projectors do). */
    NOTIFIER_GROUP_ID: z.string().min(1).default("notifier"),
    /** The endpoint from config (optional; more are added with POST /api/webhooks). http(s) only. */
    WEBHOOK_URL: z
      .string()
      .url()
      .refine((u) => /^https?:$/.test(URL.parse(u)?.protocol ?? ""), "WEBHOOK_URL must be http:// or https://")
      .optional(),
    WEBHOOK_SECRET: z.string().regex(WEBHOOK_SECRET_PATTERN, "WEBHOOK_SECRET must be whsec_ + base64 of 24-64 bytes").optional(),
    /** Comma-separated event types for the configured endpoint; unset = all. */
    WEBHOOK_EVENTS: z
      .string()
      .transform((s) => s.split(",").map((t) => t.trim()).filter(Boolean))
      .pipe(z.array(z.enum(EVENT_TYPES)).min(1))
      .optional(),
    /** Retry schedule: attempt n waits base·2^(n-1), capped, ±20 % jitter; dead after the last attempt. */
    WEBHOOK_RETRY_BASE: duration.default(5_000),
    WEBHOOK_RETRY_MAX: duration.default(3_600_000),
    /** Attempts in all (the first one included). 12 with 5 s → 1 h spans about 2.4 hours. */
    WEBHOOK_MAX_ATTEMPTS: positiveInt.max(100).default(12),
    /** Until the response headers (covers the connect; Bun's fetch has no separate connect phase). */
    WEBHOOK_CONNECT_TIMEOUT: duration.default(5_000),
    /** Whole attempt: connect, send, headers, the response excerpt. */
    WEBHOOK_TIMEOUT: duration.default(10_000),
    /** Requests in flight per endpoint (never two of the same stock at once). */
    WEBHOOK_CONCURRENCY: positiveInt.max(256).default(64),
    /** How often a delivery loop checks whether waiting retries are due. */
    WEBHOOK_POLL_INTERVAL: duration.default(250),
    /**
     * The delivery lease's window (services/notifier/lease.ts): 4 × p99 of the measured renewal time,
     * never below MIN nor above MAX. A paused holder is replaced after about the window.
     */
    NOTIFIER_LEASE_MIN: duration.default(5_000),
    NOTIFIER_LEASE_MAX: duration.default(60_000),
  })
  .refine((c) => (c.WEBHOOK_URL === undefined) === (c.WEBHOOK_SECRET === undefined), {
    message: "set WEBHOOK_URL and WEBHOOK_SECRET together",
    path: ["WEBHOOK_SECRET"],
  })
  .refine((c) => c.WEBHOOK_RETRY_MAX >= c.WEBHOOK_RETRY_BASE, { message: "WEBHOOK_RETRY_MAX must be >= WEBHOOK_RETRY_BASE", path: ["WEBHOOK_RETRY_MAX"] })
  .refine((c) => c.WEBHOOK_TIMEOUT >= c.WEBHOOK_CONNECT_TIMEOUT, { message: "WEBHOOK_TIMEOUT must be >= WEBHOOK_CONNECT_TIMEOUT", path: ["WEBHOOK_TIMEOUT"] })
  .refine((c) => c.NOTIFIER_LEASE_MIN >= 300 && c.NOTIFIER_LEASE_MAX >= c.NOTIFIER_LEASE_MIN, {
    message: "NOTIFIER_LEASE_MIN must be >= 300ms and NOTIFIER_LEASE_MAX >= NOTIFIER_LEASE_MIN",
    path: ["NOTIFIER_LEASE_MAX"],
  });
