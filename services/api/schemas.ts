/** Request and response schemas of the write-side endpoints: validation and OpenAPI from one source. */
import { z } from "@hono/zod-openapi";
import { MAX_PRICE, MAX_QUANTITY_PER_REQUEST } from "../../shared/domain/policy.ts";
import { IDEMPOTENCY_KEY_PATTERN, STOCK_ID_PATTERN } from "../../shared/domain/validation.ts";

const isoInstant = z.string().datetime({ offset: true });

export const stockIdParam = z.object({
  id: z.string().regex(STOCK_ID_PATTERN, "stock id: 1-64 of A-Z a-z 0-9 _ -").openapi({ param: { name: "id", in: "path" }, example: "sneaker-42" }),
});

export const allocationIdParam = z.object({
  id: z.string().min(1).max(64).openapi({ param: { name: "id", in: "path" }, example: "s2-01a2007c-efdd-7485-b66a-9911269a1a0c" }),
});

export const createStockBody = z
  .object({
    id: z.string().regex(STOCK_ID_PATTERN).optional(),
    name: z.string().trim().min(1).max(200),
    description: z.string().max(5000).optional(),
    price: z.number().int().min(0).max(MAX_PRICE).openapi({ description: "minor units (cents)", example: 4999 }),
    currency: z.string().regex(/^[A-Z]{3}$/).optional().openapi({ example: "EUR" }),
    quantity: z.number().int().min(1).max(10_000_000),
    perUserLimit: z.number().int().min(1).max(MAX_QUANTITY_PER_REQUEST).optional(),
    holdSeconds: z.number().int().min(1).max(86_400).optional().openapi({ description: "default 600" }),
    startsAt: isoInstant.optional(),
    endsAt: isoInstant.optional(),
  })
  .strict()
  .refine((b) => !b.startsAt || !b.endsAt || Date.parse(b.endsAt) > Date.parse(b.startsAt), {
    message: "endsAt must be after startsAt",
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
    .optional()
    .openapi({ description: "IETF draft Idempotency-Key: a quoted or bare opaque string", example: '"8e03978e-40d5-43e8"' }),
});

/** The draft sends the key as a structured-field string ("..."); bare tokens are accepted too. */
export function parseIdempotencyKey(raw: string | undefined): string | undefined | null {
  if (raw === undefined) return undefined;
  const key = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  return IDEMPOTENCY_KEY_PATTERN.test(key) ? key : null;
}

export const stockView = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string(),
    price: z.number().int(),
    currency: z.string(),
    total: z.number().int(),
    available: z.number().int(),
    held: z.number().int(),
    sold: z.number().int(),
    perUserLimit: z.number().int(),
    holdSeconds: z.number().int(),
    startsAt: z.string(),
    endsAt: z.string().nullable(),
    status: z.enum(["upcoming", "live", "sold_out", "ended"]),
    version: z.number().int(),
  })
  .openapi("Stock");

export const allocationView = z
  .object({
    allocationId: z.string(),
    stockId: z.string(),
    userId: z.string(),
    quantity: z.number().int(),
    status: z.enum(["held", "purchased", "cancelled", "expired"]),
    expiresAt: z.string(),
    amount: z.number().int().optional(),
    currency: z.string().optional(),
  })
  .openapi("Allocation");

export const problem = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string(),
    requestId: z.string().nullable(),
  })
  .openapi("Problem");

/** OpenAPI response entries for problem+json answers. */
export function problems(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [status, { description: "problem details (RFC 9457)", content: { "application/problem+json": { schema: problem } } }]),
  );
}
