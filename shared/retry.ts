/**
 * A start is a true start (docs/design.md §13): what a worker needs at start (Kafka topics with
 * leaders, a consumer group, PostgreSQL, Elasticsearch, Redis) may not be there yet on a fresh
 * machine, where every server and service starts at once. So each step is retried with capped
 * exponential backoff and jitter, one log line per failed attempt naming what is awaited, while
 * /readyz says 503 and why. Only what retrying cannot fix (bad config, auth, a missing migration,
 * a bug) ends the process, with one clear line.
 *
 * classifyStartError is the one place that decides "retriable or not" for a start error, for every
 * client we use (kafkajs, postgres.js, @elastic/elasticsearch, ioredis). Unknown errors count as
 * retriable: waiting on something we did not foresee is visible (a line per attempt and /readyz),
 * while dying on it is the failure this file exists to prevent. Programmer errors are not retried.
 */
import { errors as esErrors } from "@elastic/elasticsearch";
import { ConfigError } from "./config/parse.ts";
import { backoffMs, sleep } from "./lifecycle.ts";
import type { Logger } from "./logger.ts";
import { TopicsNotReadyError } from "./kafka/topics.ts";
import { isNetworkError } from "./projection/errors.ts";

/** Retrying cannot fix it: the process should exit non-zero with this message. */
export class FatalStartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FatalStartError";
  }
}

/** The worker was stopped while it was still waiting: not a failure. */
export class StartCancelledError extends Error {
  constructor(what: string) {
    super(`stopped while waiting for ${what}`);
    this.name = "StartCancelledError";
  }
}

export type StartErrorVerdict = { retriable: boolean; reason: string };

/** kafkajs protocol error types that say "not yet" on a broker that is starting or electing. */
const KAFKA_NOT_YET = new Set([
  "UNKNOWN_TOPIC_OR_PARTITION",
  "LEADER_NOT_AVAILABLE",
  "NOT_LEADER_FOR_PARTITION",
  "NOT_LEADER_OR_FOLLOWER",
  "GROUP_COORDINATOR_NOT_AVAILABLE",
  "COORDINATOR_NOT_AVAILABLE",
  "NOT_COORDINATOR_FOR_GROUP",
  "NOT_COORDINATOR",
  "GROUP_LOAD_IN_PROGRESS",
  "COORDINATOR_LOAD_IN_PROGRESS",
  "REBALANCE_IN_PROGRESS",
  "NOT_CONTROLLER",
  "REQUEST_TIMED_OUT",
  "NOT_ENOUGH_REPLICAS",
  "CONCURRENT_TRANSACTIONS",
]);
const KAFKA_RETRIABLE_NAMES = new Set([
  "KafkaJSConnectionError",
  "KafkaJSConnectionClosedError",
  "KafkaJSNumberOfRetriesExceeded",
  "KafkaJSGroupCoordinatorNotFound",
  "KafkaJSBrokerNotFound",
  "KafkaJSMetadataNotLoaded",
  "KafkaJSTopicMetadataNotLoaded",
  "KafkaJSStaleTopicMetadataAssignment",
  "KafkaJSLockTimeout",
  "KafkaJSTimeout",
  "KafkaJSRequestTimeoutError",
  "KafkaJSNoBrokerAvailableError",
]);
/** Authorisation and settings the broker refuses: the same request will be refused again. */
const KAFKA_FATAL_TYPES = new Set([
  "SASL_AUTHENTICATION_FAILED",
  "ILLEGAL_SASL_STATE",
  "UNSUPPORTED_SASL_MECHANISM",
  "TOPIC_AUTHORIZATION_FAILED",
  "GROUP_AUTHORIZATION_FAILED",
  "CLUSTER_AUTHORIZATION_FAILED",
  "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
  "INVALID_REPLICATION_FACTOR",
  "INVALID_PARTITIONS",
  "INVALID_CONFIG",
  "INVALID_TOPIC_EXCEPTION",
  "POLICY_VIOLATION",
  "UNSUPPORTED_VERSION",
]);
const KAFKA_FATAL_NAMES = new Set(["KafkaJSSASLAuthenticationError", "KafkaJSServerDoesNotSupportApiKey"]);

/**
 * PostgreSQL SQLSTATEs retrying cannot fix: authentication (28000, 28P01), no such database
 * (3D000) or schema (3F000), no privilege (42501), and a table or column the code expects that
 * is not there (42P01, 42703: a migration was not applied).
 */
const POSTGRES_FATAL = new Set(["28000", "28P01", "3D000", "3F000", "42501", "42P01", "42703"]);
/** Starting up or shutting down (57P03, 57P01/02), connection (08), resources (53), rollback (40). */
const POSTGRES_RETRIABLE_CLASSES = new Set(["57", "08", "53", "40"]);

const REDIS_FATAL = /NOAUTH|WRONGPASS|invalid (username-)?password|NOPERM/i;
const REDIS_NOT_YET = /^(LOADING|MASTERDOWN|CLUSTERDOWN|TRYAGAIN)|Connection is closed|connect ETIMEDOUT|Stream isn't writeable/i;

const PROGRAMMER_ERRORS = new Set(["TypeError", "ReferenceError", "SyntaxError", "RangeError"]);

/** The error and what it wraps (kafkajs `cause`/`originalError`, AggregateError `errors`), outermost first. */
function chainOf(err: unknown): unknown[] {
  const chain: unknown[] = [];
  const visit = (e: unknown, depth: number) => {
    if (e == null || depth > 6 || chain.includes(e)) return;
    chain.push(e);
    const o = e as { cause?: unknown; originalError?: unknown; errors?: unknown };
    visit(o.cause, depth + 1);
    visit(o.originalError, depth + 1);
    if (Array.isArray(o.errors)) for (const inner of o.errors.slice(0, 3)) visit(inner, depth + 1);
  };
  visit(err, 0);
  return chain;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // kafkajs: the type (UNKNOWN_TOPIC_OR_PARTITION) says more than its numeric code; others: the code.
  const tag = (err as { type?: unknown }).type ?? (err as { code?: unknown }).code;
  return `${err.name}${tag !== undefined && tag !== err.name ? ` ${String(tag)}` : ""}: ${err.message}`;
}

function fatalReason(e: unknown): string | null {
  if (e instanceof FatalStartError) return e.message;
  if (e instanceof ConfigError) return e.message;
  const { name, type, code, message } = e as { name?: string; type?: string; code?: unknown; message?: string };
  if ((name && KAFKA_FATAL_NAMES.has(name)) || (type && KAFKA_FATAL_TYPES.has(type))) return `kafka refused: ${describe(e)}`;
  if (name === "PostgresError" && typeof code === "string" && POSTGRES_FATAL.has(code)) {
    return code.startsWith("42") ? `postgresql: ${message} (are the migrations applied? bun run migrate)` : `postgresql refused: ${message}`;
  }
  if (e instanceof esErrors.ResponseError && [400, 401, 403].includes(e.statusCode ?? 0)) return `elasticsearch refused (${e.statusCode}): ${e.message}`;
  if (e instanceof esErrors.ProductNotSupportedError) return `not an elasticsearch server: ${e.message}`;
  if (typeof message === "string" && REDIS_FATAL.test(message)) return `redis refused: ${message}`;
  return null;
}

function isRetriable(e: unknown): boolean {
  if (isNetworkError(e)) return true;
  const { name, type, code, retriable, message } = e as { name?: string; type?: string; code?: unknown; retriable?: unknown; message?: unknown };
  if (e instanceof TopicsNotReadyError) return true;
  if (name?.startsWith("KafkaJS") && (retriable === true || KAFKA_RETRIABLE_NAMES.has(name) || (type !== undefined && KAFKA_NOT_YET.has(type)))) return true;
  if (name === "PostgresError" && typeof code === "string" && POSTGRES_RETRIABLE_CLASSES.has(code.slice(0, 2))) return true;
  if (
    e instanceof esErrors.ConnectionError ||
    e instanceof esErrors.TimeoutError ||
    e instanceof esErrors.NoLivingConnectionsError ||
    e instanceof esErrors.RequestAbortedError
  ) {
    return true;
  }
  if (e instanceof esErrors.ResponseError) {
    const status = e.statusCode ?? 500;
    return status === 404 || status === 408 || status === 429 || status >= 500;
  }
  return typeof message === "string" && REDIS_NOT_YET.test(message);
}

/** Retriable (wait it out) or not (exit with the reason)? See the header for the rules. */
export function classifyStartError(err: unknown): StartErrorVerdict {
  const chain = chainOf(err);
  for (const e of chain) {
    const reason = fatalReason(e);
    if (reason !== null) return { retriable: false, reason };
  }
  const innermost = chain.at(-1);
  if (chain.some(isRetriable)) return { retriable: true, reason: describe(innermost ?? err) };
  if (err instanceof Error && PROGRAMMER_ERRORS.has(err.name)) return { retriable: false, reason: `bug: ${describe(err)}` };
  return { retriable: true, reason: describe(innermost ?? err) };
}

export interface RetryStartOptions {
  logger: Logger;
  /** What is awaited, in words: the log line and /readyz name it ("kafka topics stock-events, stock-events.dlq"). */
  what: string;
  /** Told the reason after each failed attempt, and null once the step succeeded (feeds /readyz). */
  onWaiting?: (reason: string | null) => void;
  /** Stop waiting (the worker is shutting down): the step throws StartCancelledError. */
  stopped?: () => boolean;
  baseMs?: number;
  capMs?: number;
}

/**
 * Runs one start step until it succeeds. A retriable error is logged (one line per attempt) and
 * retried after capped exponential backoff with jitter; anything else throws FatalStartError.
 */
export async function retryStart<T>(step: () => Promise<T>, options: RetryStartOptions): Promise<T> {
  const { logger, what } = options;
  const started = Date.now();
  options.onWaiting?.(`waiting for ${what}`);
  for (let attempt = 0; ; attempt++) {
    if (options.stopped?.()) throw new StartCancelledError(what);
    try {
      const result = await step();
      options.onWaiting?.(null);
      if (attempt > 0) logger.info({ awaiting: what, attempts: attempt + 1, waitedMs: Date.now() - started }, `${what}: ready`);
      return result;
    } catch (err) {
      if (err instanceof FatalStartError || err instanceof StartCancelledError) throw err;
      const verdict = classifyStartError(err);
      if (!verdict.retriable) throw new FatalStartError(`${what}: ${verdict.reason}`, { cause: err });
      const retryInMs = backoffMs(attempt, options.baseMs ?? 200, options.capMs ?? 5_000);
      options.onWaiting?.(`waiting for ${what}: ${verdict.reason}`);
      logger.warn({ awaiting: what, attempt: attempt + 1, retryInMs, reason: verdict.reason }, `waiting for ${what}`);
      await sleep(retryInMs);
    }
  }
}

/** The one line a worker prints before it exits on a start error retrying cannot fix. */
export function exitOnFatalStart(logger: Logger, service: string, err: unknown): never {
  const reason = err instanceof FatalStartError ? err.message : classifyStartError(err).reason;
  logger.fatal({ reason }, `${service} cannot start: ${reason}`);
  process.exit(1);
}
