/**
 * Outage or poison? The one decision every projector and read route makes about an error.
 *
 * An outage (store down, overloaded, misconfigured, a lost connection, a deadlock) is retried with
 * backoff forever and nothing is committed: the events are fine, the store is not. Anything else is a
 * data error: retried a few times, then the event goes to the DLQ. When in doubt about a store's own
 * error we say "outage", because dead-lettering a valid event loses it from the read model, while
 * waiting only delays it.
 */
import { errors as esErrors } from "@elastic/elasticsearch";

/** Thrown by store adapters for conditions they know to be transient (e.g. bulk items rejected with 429). */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/** Thrown by store adapters for a write the store refused because of its content (e.g. a mapping error). */
export class RejectedEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RejectedEventError";
  }
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ConnectionRefused",
  "ConnectionClosed",
  // postgres.js
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
]);

/**
 * PostgreSQL SQLSTATE classes that say something about the content of the write: data exceptions
 * (22) and integrity constraint violations (23). Everything else the server says (connection 08,
 * resources 53, operator intervention 57 incl. statement timeout, rollback 40 incl. deadlock,
 * undefined table 42 when migrations are missing, ...) is treated as an outage.
 */
const POSTGRES_DATA_CLASSES = new Set(["22", "23"]);

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" ? code : undefined;
}

export function isNetworkError(err: unknown): boolean {
  const code = codeOf(err);
  if (code !== undefined && NETWORK_CODES.has(code)) return true;
  const message = (err as { message?: unknown })?.message;
  return typeof message === "string" && /ECONNREFUSED|ECONNRESET|socket hang up|Connection refused|connection (is )?closed/i.test(message);
}

export function isPostgresOutage(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  if (err instanceof RejectedEventError) return false;
  if (isNetworkError(err)) return true;
  const e = err as { name?: string; code?: string };
  if (e?.name === "PostgresError" && typeof e.code === "string") return !POSTGRES_DATA_CLASSES.has(e.code.slice(0, 2));
  // postgres.js generic errors (e.g. 57014 from a cancelled query) carry a SQLSTATE-like code too.
  if (typeof e?.code === "string" && /^[0-9A-Z]{5}$/.test(e.code)) return !POSTGRES_DATA_CLASSES.has(e.code.slice(0, 2));
  return false;
}

/** HTTP statuses from Elasticsearch that mean "try again later" (or "not set up yet"), not "bad document". */
export function isTransientElasticStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500 || status === 404 || status === 401 || status === 403;
}

export function isElasticOutage(err: unknown): boolean {
  if (err instanceof StoreUnavailableError) return true;
  if (err instanceof RejectedEventError) return false;
  if (
    err instanceof esErrors.ConnectionError ||
    err instanceof esErrors.TimeoutError ||
    err instanceof esErrors.NoLivingConnectionsError ||
    err instanceof esErrors.RequestAbortedError ||
    err instanceof esErrors.ProductNotSupportedError
  ) {
    return true;
  }
  if (err instanceof esErrors.ResponseError) return isTransientElasticStatus(err.statusCode ?? 500);
  return isNetworkError(err);
}
