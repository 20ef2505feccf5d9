/** Request and response schemas of the write-side endpoints: validation and OpenAPI from one source. */
import { z } from "@hono/zod-openapi";
import { DEFAULT_ADMISSION_TTL_SECONDS, MAX_ADMISSION_TTL_SECONDS, MIN_ADMISSION_TTL_SECONDS } from "../../shared/domain/room.ts";
import { DEFAULT_HOLD_SECONDS, MAX_HOLD_SECONDS, MAX_PRICE, MAX_QUANTITY_PER_REQUEST, OUTBOX_FULL_RETRY_AFTER_SECONDS } from "../../shared/domain/policy.ts";
import { ALLOCATION_STATUSES, allocationViewShape, stockViewShape } from "../../shared/domain/views.ts";
import { IDEMPOTENCY_KEY_HEADER_PATTERN, RESERVED_STOCK_IDS, STOCK_ID_PATTERN, storableText } from "../../shared/domain/validation.ts";
import { PROBLEM_CODES } from "./problem.ts";

/**
 * Instants every store can hold: Lua's ISO formatter writes four-digit years, and PostgreSQL's
 * timestamptz has no year 0 (it rejected the event of a stock that started in 0000, stalling the
 * projector). So 1970-01-01 to 9999-12-31 UTC, refused at the edge like any other bad input.
 */
const MIN_INSTANT_MS = Date.UTC(1970, 0, 1);
const MAX_INSTANT_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
export const isoInstant = z
  .string()
  .datetime({ offset: true })
  .refine((s) => {
    const ms = Date.parse(s);
    return ms >= MIN_INSTANT_MS && ms <= MAX_INSTANT_MS;
  }, "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z")
  .openapi({ description: "ISO 8601 instant with an offset (Z or ±hh:mm), from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z" });


export const stockIdParam = z.object({
  id: z.string().regex(STOCK_ID_PATTERN, "stock id: 1-64 of A-Z a-z 0-9 _ -").openapi({ param: { name: "id", in: "path" }, example: "sneaker-42" }),
});

export const allocationIdParam = z.object({
  id: z.string().min(1).max(64).openapi({ param: { name: "id", in: "path" }, example: "s2-01a2007c-efdd-7485-b66a-9911269a1a0c" }),
});

const waitingRoomBody = z
  .object({
    enabled: z.literal(true),
    admissionTtlSeconds: z
      .number()
      .int()
      .min(MIN_ADMISSION_TTL_SECONDS)
      .max(MAX_ADMISSION_TTL_SECONDS)
      .default(DEFAULT_ADMISSION_TTL_SECONDS)
      .openapi({ description: `seconds an admitted buyer has to allocate (default ${DEFAULT_ADMISSION_TTL_SECONDS})` }),
  })
  .strict()
  .openapi("WaitingRoom", { description: "buyers queue and allocate only with an admission (docs/waiting-room.md)" });

export const createStockBody = z
  .object({
    id: z
      .string()
      .regex(STOCK_ID_PATTERN)
      .refine((id) => !RESERVED_STOCK_IDS.includes(id), "reserved: GET /api/stocks/search is the search endpoint")
      .optional(),
    name: z.string().trim().min(1).max(200).refine(storableText("line"), "must not contain control characters (NUL included) or unpaired surrogates"),
    description: z.string().max(5000).refine(storableText("multiline"), "must not contain NUL, control characters other than tab and line breaks, or unpaired surrogates").optional(),
    price: z
      .number()
      .int()
      .min(0)
      .max(MAX_PRICE)
      .openapi({ description: `minor units (cents), at most ${MAX_PRICE} so that every amount (price × quantity ≤ ${MAX_QUANTITY_PER_REQUEST}) stays below 10^14 and exact`, example: 4999 }),
    currency: z.string().regex(/^[A-Z]{3}$/).optional().openapi({ example: "EUR" }),
    quantity: z.number().int().min(1).max(10_000_000),
    perUserLimit: z.number().int().min(1).max(MAX_QUANTITY_PER_REQUEST).optional(),
    holdSeconds: z.number().int().min(1).max(MAX_HOLD_SECONDS).optional().openapi({ description: `default ${DEFAULT_HOLD_SECONDS}` }),
    startsAt: isoInstant.optional(),
    endsAt: isoInstant.optional(),
    waitingRoom: waitingRoomBody.optional(),
  })
  .strict()
  .refine((b) => !b.startsAt || !b.endsAt || Date.parse(b.endsAt) > Date.parse(b.startsAt), {
    message: "endsAt must be after startsAt",
    path: ["endsAt"],
  })
  // startsAt defaults to now, so an endsAt alone must be in the future (the script re-checks it
  // against Redis' clock and answers the same 400 for the last-millisecond case).
  .refine((b) => b.startsAt !== undefined || b.endsAt === undefined || Date.parse(b.endsAt) > Date.now(), {
    message: "endsAt must be in the future when startsAt is not given (it defaults to now)",
    path: ["endsAt"],
  })
  .openapi("CreateStock");

export const allocateBody = z
  .object({ quantity: z.number().int().min(1).max(MAX_QUANTITY_PER_REQUEST).default(1) })
  .strict()
  .openapi("Allocate");

export const idempotencyHeader = z.object({
  "idempotency-key": z
    .string()
    .max(257)
    .regex(IDEMPOTENCY_KEY_HEADER_PATTERN, 'Idempotency-Key: a key of 1-255 printable ASCII characters other than ", bare or in double quotes')
    .optional()
    .openapi({
      description:
        'IETF draft Idempotency-Key: an opaque key of 1-255 printable ASCII characters (0x21-0x7E) other than `"`, ' +
        'sent as a structured-field string (`"key"`) or bare (`key`); both spell the same key. Remembered for 24 h per user and stock.',
      example: '"8e03978e-40d5-43e8"',
    }),
});

export const admissionHeader = z.object({
  "admission-token": z
    .string()
    .max(256)
    .optional()
    .openapi({ description: "required on a stock with a waiting room: the `admissionToken` of your admitted ticket (GET /api/stocks/{id}/queue/me); single use" }),
});

/** The draft sends the key as a structured-field string ("..."); bare tokens are the same key. Input already matched the header pattern. */
export function parseIdempotencyKey(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  return raw.startsWith('"') ? raw.slice(1, -1) : raw;
}

// The views' fields are defined once, in shared/domain/views.ts; here they become OpenAPI components.
export const stockView = z.object(stockViewShape).openapi("Stock");
export const allocationView = z.object(allocationViewShape).openapi("Allocation");

/**
 * RFC 9457 members, always present, and the extension members some codes add. Domain context never
 * takes a member's name (the `status` stays the HTTP status).
 */
const problem = z
  .object({
    type: z
      .string()
      .regex(new RegExp("^https://flash-sale\\.dev/problems/[a-z-]+$"))
      .openapi({ description: "https://flash-sale.dev/problems/<code with - for _>" }),
    title: z.string(),
    status: z.number().int().openapi({ description: "the HTTP status of the response" }),
    detail: z.string(),
    code: z.enum(PROBLEM_CODES).openapi({ description: "stable machine-readable code" }),
    requestId: z.string().nullable().openapi({ description: "also in the X-Request-Id header and in every log line of the request" }),
    errors: z
      .array(z.object({ in: z.string(), path: z.string(), message: z.string() }))
      .optional()
      .openapi({ description: "invalid_request from the schema: the first issues, where (param, query, header, json) and what" }),
    available: z.number().int().optional().openapi({ description: "sold_out: units still available" }),
    remaining: z.number().int().optional().openapi({ description: "limit_exceeded: units this user may still take" }),
    holdStatus: z.enum(ALLOCATION_STATUSES).optional().openapi({ description: "hold_not_active: the hold's status" }),
  })
  .openapi("Problem");

/** What each status means across the api; a route adds its own words (e.g. which 409 codes) with [status, text]. */
const PROBLEM_DESCRIPTIONS: Record<number, string> = {
  400: "`invalid_request`: a path, query, header or body value fails the schema (details in `errors[]`), or malformed JSON",
  401: "`unauthorized`: no token where one is required, or a malformed, expired or wrongly signed one (checked before the body)",
  403: "`forbidden`: the token is valid but not for this (admin route with a user token, user route with the admin token, someone else's data)",
  404: "`not_found`",
  409: "the sale says no",
  413: "`payload_too_large`: request body over MAX_BODY_BYTES (16 KiB by default)",
  415: "`unsupported_media_type`: a body (or Content-Type) that is not JSON",
  422: "`idempotency_key_reused`: the same Idempotency-Key with a different request",
  429: "`rate_limited`: over the per-client-IP rate (RATE_LIMIT_IP); wait Retry-After seconds",
  431: "`headers_too_large`: request headers (names + values) over MAX_HEADER_BYTES (8 KiB by default)",
  503: "`store_unavailable`: a backing store is down or slow; try again shortly",
};

/** The headers of a 429 (services/api/rate-limit.ts): draft-ietf-httpapi-ratelimit-headers and Retry-After. */
const RATE_LIMIT_HEADERS = {
  "Retry-After": { description: "whole seconds until one request fits", schema: { type: "integer" as const, minimum: 1 } },
  RateLimit: { description: 'what is left: `"<policy>";r=<remaining>;t=<seconds>`', schema: { type: "string" as const } },
  "RateLimit-Policy": { description: 'the policy: `"<policy>";q=<requests>;w=<window seconds>`', schema: { type: "string" as const } },
};

type ResponseHeaders = Record<string, { description: string; schema: { type: "integer" | "string"; minimum?: number } }>;
type ProblemEntry = number | readonly [number, string] | readonly [number, string, ResponseHeaders];

/** OpenAPI response entries for problem+json answers: a status, or [status, what it means on this route, headers?]. */
export function problems(...entries: ProblemEntry[]) {
  return Object.fromEntries(
    entries.map((entry) => {
      const [status, description, headers] = typeof entry === "number" ? [entry, PROBLEM_DESCRIPTIONS[entry] ?? "problem details", undefined] : entry;
      const withHeaders = headers ?? (status === 429 ? RATE_LIMIT_HEADERS : undefined);
      return [
        status,
        {
          description: `${description} (RFC 9457 problem details)`,
          ...(withHeaders ? { headers: withHeaders } : {}),
          content: { "application/problem+json": { schema: problem } },
        },
      ];
    }),
  );
}

/** 503 of the commands that append events to a shard's outbox (allocate, create stock): the outbox cap as well. */
export const outboxFull = [
  503,
  "`store_unavailable`: Redis is down or slow; `outbox_full`: this stock's shard has over OUTBOX_MAX_LENGTH events waiting for the relay, try again after Retry-After seconds",
  { "Retry-After": { description: `with outbox_full: seconds to wait (${OUTBOX_FULL_RETRY_AFTER_SECONDS})`, schema: { type: "integer", minimum: 1 } } },
] as const;

/**
 * What the /api/* middleware (app.ts) and the stores can answer on any route, whatever the route
 * itself does: a malformed Authorization header, a body too large, a body that is not JSON (not
 * on GET), the per-IP rate, headers too large, a store down.
 */
export function edgeProblems(method: "get" | "post" | "delete") {
  return method === "get" ? problems(401, 413, 429, 431, 503) : problems(401, 413, 415, 429, 431, 503);
}

/** 429 of the routes with a per-user rate as well (RATE_LIMIT_ALLOCATE, _PURCHASE, _CANCEL). */
export const userRateLimited = (action: string) =>
  [429, `\`rate_limited\`: over this user's ${action} rate (RATE_LIMIT_${action.toUpperCase()}) or the per-client-IP rate; wait Retry-After seconds`] as const;

/** A JSON response entry. */
export function jsonContent<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}
