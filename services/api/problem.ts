/**
 * RFC 9457 problem details. Every error the api returns goes through here, so clients always get
 * `application/problem+json` with a stable `code` and the request id, never a stack trace.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { DomainError, DomainErrorCode } from "../../shared/domain/errors.ts";
import { OUTBOX_FULL_RETRY_AFTER_SECONDS } from "../../shared/domain/policy.ts";

export type ProblemCode =
  | DomainErrorCode
  | "invalid_request"
  | "invalid_consistency_token"
  | "unauthorized"
  | "payload_too_large"
  | "headers_too_large"
  | "unsupported_media_type"
  | "method_not_allowed"
  | "rate_limited"
  | "too_many_streams"
  | "store_unavailable"
  | "webhook_configured"
  | "webhook_url_not_allowed"
  | "internal_error";

/**
 * The members every problem has (RFC 9457 plus ours). Extension members (`extra`) may never replace
 * them: domain context goes under its own name (e.g. `holdStatus`, not `status`).
 */
const PROBLEM_MEMBERS = ["type", "title", "status", "detail", "instance", "code", "requestId"] as const;

export class ApiProblem extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: ProblemCode,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    /** Response headers that belong to this answer (e.g. Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = "ApiProblem";
  }
}

const TITLES: Record<ProblemCode, string> = {
  not_found: "Not found",
  stock_exists: "Stock already exists",
  stock_id_taken: "Stock id was used before",
  sold_out: "Sold out",
  limit_exceeded: "Per-user limit exceeded",
  not_started: "Sale not started",
  ended: "Sale ended",
  hold_expired: "Hold expired",
  hold_not_active: "Hold is not active",
  forbidden: "Forbidden",
  idempotency_key_reused: "Idempotency key reused with a different request",
  outbox_full: "Event outbox full",
  not_admitted: "Not admitted",
  no_waiting_room: "No waiting room",
  draw_not_ready: "Draw not ready",
  invalid_request: "Invalid request",
  invalid_consistency_token: "Invalid consistency token",
  unauthorized: "Unauthorized",
  payload_too_large: "Payload too large",
  headers_too_large: "Request header fields too large",
  unsupported_media_type: "Unsupported media type",
  method_not_allowed: "Method not allowed",
  rate_limited: "Too many requests",
  too_many_streams: "Too many event streams",
  store_unavailable: "Store unavailable",
  webhook_configured: "Endpoint comes from configuration",
  webhook_url_not_allowed: "Webhook URL not allowed",
  internal_error: "Internal error",
};

/** Every code the api answers with, for the OpenAPI document's Problem schema. */
export const PROBLEM_CODES = Object.keys(TITLES) as [ProblemCode, ...ProblemCode[]];

export function problemBody(problem: ApiProblem, requestId: string | undefined) {
  // Extensions without the reserved names, and the problem's own members last: never overwritten.
  const extensions = Object.fromEntries(Object.entries(problem.extra).filter(([name]) => !(PROBLEM_MEMBERS as readonly string[]).includes(name)));
  return {
    ...extensions,
    type: `https://flash-sale.dev/problems/${problem.code.replaceAll("_", "-")}`,
    title: TITLES[problem.code],
    status: problem.status,
    detail: problem.detail,
    code: problem.code,
    requestId: requestId ?? null,
  };
}

/**
 * Each problem's body as JSON up to its last member, the request id (problemBody puts it last), and
 * its response headers, made once per ApiProblem: the refusals from memory answer the same problem
 * object to every doomed request, so each of those answers is a concatenation, not a serialization.
 */
const prepared = new WeakMap<ApiProblem, { head: string; headers: Record<string, string> }>();

function prepare(problem: ApiProblem): { head: string; headers: Record<string, string> } {
  let hit = prepared.get(problem);
  if (hit === undefined) {
    const json = JSON.stringify(problemBody(problem, undefined));
    const tail = ',"requestId":null}';
    if (!json.endsWith(tail)) throw new Error("problemBody must end with requestId");
    hit = { head: json.slice(0, -tail.length), headers: { ...problem.headers, "Content-Type": "application/problem+json" } };
    prepared.set(problem, hit);
  }
  return hit;
}

export function problemResponse(c: Context, problem: ApiProblem): Response {
  const { head, headers } = prepare(problem);
  const requestId = c.get("requestId") as string | undefined;
  return c.body(`${head},"requestId":${JSON.stringify(requestId ?? null)}}`, problem.status, headers);
}

const DOMAIN_STATUS: Record<DomainErrorCode, ContentfulStatusCode> = {
  not_found: 404,
  stock_exists: 409,
  stock_id_taken: 409,
  sold_out: 409,
  limit_exceeded: 409,
  not_started: 409,
  ended: 409,
  hold_expired: 409,
  hold_not_active: 409,
  forbidden: 403,
  idempotency_key_reused: 422,
  invalid_request: 400,
  outbox_full: 503,
  not_admitted: 403,
  no_waiting_room: 409,
  draw_not_ready: 409,
};

/**
 * The refusal cache (allocate/sold-out-cache.ts, through allocate/allocator.ts) throws the same DomainError for every doomed request: its
 * ApiProblem (an Error, whose construction captures a stack) is built once, not once per request.
 */
const problemOf = new WeakMap<DomainError, ApiProblem>();

export function problemFromDomain(error: DomainError): ApiProblem {
  let problem = problemOf.get(error);
  if (problem === undefined) problemOf.set(error, (problem = buildProblem(error)));
  return problem;
}

function buildProblem(error: DomainError): ApiProblem {
  const { stockId: _stockId, allocationId: _allocationId, ...extra } = error.details;
  // outbox_full is temporary by nature: tell clients when to come back (RFC 9110 Retry-After).
  const headers: Record<string, string> = error.code === "outbox_full" ? { "Retry-After": String(OUTBOX_FULL_RETRY_AFTER_SECONDS) } : {};
  return new ApiProblem(DOMAIN_STATUS[error.code], error.code, error.message, extra, headers);
}
