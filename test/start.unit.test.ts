/**
 * classifyStartError (shared/retry.ts): which start errors are waited out and which end the process,
 * with the errors as each client really builds them (kafkajs, postgres.js, @elastic/elasticsearch,
 * ioredis messages). Pure: no servers.
 */
import { describe, expect, test } from "bun:test";
import { errors as esErrors } from "@elastic/elasticsearch";
import {
  KafkaJSConnectionError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
} from "kafkajs";
import postgres from "postgres";
import { ConfigError } from "../shared/config.ts";
import { TopicsNotReadyError } from "../shared/kafka/topics.ts";
import { classifyStartError, FatalStartError, retryStart, StartCancelledError } from "../shared/retry.ts";
import { createLogger } from "../shared/logger.ts";

// kafkajs builds a protocol error from the broker's code table entry (src/protocol/error.js).
const kafkaProtocol = (type: string, code: number, retriable: boolean, message: string) =>
  new KafkaJSProtocolError({ type, code, retriable, message } as unknown as string);
const pg = (code: string, message: string) => new postgres.PostgresError({ code, message } as unknown as string);
const esResponse = (statusCode: number) =>
  new esErrors.ResponseError({ statusCode, body: { error: { type: "x" } }, headers: {}, warnings: null, meta: {} } as never);
const refused = () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });

describe("classifyStartError: waited out", () => {
  const cases: [string, unknown][] = [
    ["kafka: topic-partition not hosted yet (issue 20)", kafkaProtocol("UNKNOWN_TOPIC_OR_PARTITION", 3, true, "This server does not host this topic-partition")],
    ["kafka: no leader yet", kafkaProtocol("LEADER_NOT_AVAILABLE", 5, true, "There is no leader for this topic-partition")],
    ["kafka: not the leader", kafkaProtocol("NOT_LEADER_FOR_PARTITION", 6, true, "This server is not the leader for that topic-partition")],
    ["kafka: coordinator not available", kafkaProtocol("GROUP_COORDINATOR_NOT_AVAILABLE", 15, true, "The group coordinator is not available")],
    // kafkajs calls this one non-retriable, but a coordinator not elected yet is exactly what a new broker says.
    ["kafka: coordinator not found", new (KafkaJSGroupCoordinatorNotFound as unknown as new (m: string) => Error)("Failed to find group coordinator")],
    ["kafka: connection refused", new KafkaJSConnectionError("Connection error: connect ECONNREFUSED 127.0.0.1:9092")],
    [
      "kafka: retries exhausted on a retriable cause",
      new KafkaJSNumberOfRetriesExceeded(kafkaProtocol("UNKNOWN_TOPIC_OR_PARTITION", 3, true, "This server does not host this topic-partition"), { retryCount: 5, retryTime: 100 }),
    ],
    ["kafka: partitions without leaders after the wait", new TopicsNotReadyError("topics x not ready after 10000 ms")],
    ["postgresql: starting up (57P03)", pg("57P03", "the database system is starting up")],
    ["postgresql: too many connections (53300)", pg("53300", "sorry, too many clients already")],
    ["postgresql: connection refused", refused()],
    ["elasticsearch: 503", esResponse(503)],
    ["elasticsearch: 429", esResponse(429)],
    ["elasticsearch: connection refused", new esErrors.ConnectionError("connect ECONNREFUSED 127.0.0.1:9200")],
    ["redis: connection refused", refused()],
    ["redis: loading the dataset", new Error("LOADING Redis is loading the dataset in memory")],
    ["redis: cluster down", new Error("CLUSTERDOWN The cluster is down")],
    ["something unforeseen (waited for, visibly)", new Error("weird")],
  ];
  for (const [name, err] of cases) {
    test(name, () => {
      const verdict = classifyStartError(err);
      expect(verdict.retriable).toBe(true);
      expect(verdict.reason.length).toBeGreaterThan(0);
    });
  }

  test("the reason names the kafkajs error type, not its numeric code", () => {
    expect(classifyStartError(kafkaProtocol("UNKNOWN_TOPIC_OR_PARTITION", 3, true, "This server does not host this topic-partition")).reason).toBe(
      "KafkaJSProtocolError UNKNOWN_TOPIC_OR_PARTITION: This server does not host this topic-partition",
    );
  });
});

describe("classifyStartError: retrying cannot fix it", () => {
  const cases: [string, unknown, RegExp][] = [
    ["kafka: SASL authentication", new (KafkaJSSASLAuthenticationError as unknown as new (m: string) => Error)("SASL PLAIN authentication failed"), /kafka refused/],
    ["kafka: topic authorization", kafkaProtocol("TOPIC_AUTHORIZATION_FAILED", 29, false, "Not authorized to access topics"), /kafka refused/],
    ["kafka: invalid config", kafkaProtocol("INVALID_CONFIG", 40, false, "Configuration is invalid"), /kafka refused/],
    ["kafka: auth failure wrapped by kafkajs", new (KafkaJSNonRetriableError as unknown as new (m: string, o: { cause: unknown }) => Error)("SASL Authentication failed", { cause: kafkaProtocol("SASL_AUTHENTICATION_FAILED", 58, false, "SASL Authentication failed") }), /kafka refused/],
    ["postgresql: wrong password (28P01)", pg("28P01", 'password authentication failed for user "flashsale"'), /postgresql refused/],
    ["postgresql: no such database (3D000)", pg("3D000", 'database "nope" does not exist'), /postgresql refused/],
    ["postgresql: a missing migration (42P01)", pg("42P01", 'relation "orders" does not exist'), /migrations applied/],
    ["elasticsearch: 401", esResponse(401), /elasticsearch refused \(401\)/],
    ["elasticsearch: 403", esResponse(403), /elasticsearch refused \(403\)/],
    ["redis: wrong password", new Error("WRONGPASS invalid username-password pair or user is disabled."), /redis refused/],
    ["redis: no auth", new Error("NOAUTH Authentication required."), /redis refused/],
    ["bad configuration", new ConfigError(["KAFKA_BROKERS: Required"]), /invalid configuration/],
    ["a bug", new TypeError("undefined is not a function"), /^bug: TypeError/],
    ["a step that already said so", new FatalStartError("migration 004 missing"), /migration 004 missing/],
  ];
  for (const [name, err, reason] of cases) {
    test(name, () => {
      const verdict = classifyStartError(err);
      expect(verdict.retriable).toBe(false);
      expect(verdict.reason).toMatch(reason);
    });
  }
});

describe("retryStart", () => {
  const logger = createLogger("test", "silent");

  test("waits out retriable failures, reporting each reason, then clears it", async () => {
    const reasons: (string | null)[] = [];
    let calls = 0;
    const result = await retryStart(
      async () => {
        if (++calls < 3) throw kafkaProtocol("UNKNOWN_TOPIC_OR_PARTITION", 3, true, "This server does not host this topic-partition");
        return "up";
      },
      { logger, what: "kafka topics", baseMs: 1, capMs: 2, onWaiting: (r) => reasons.push(r) },
    );
    expect(result).toBe("up");
    expect(calls).toBe(3);
    expect(reasons).toHaveLength(4);
    expect(reasons[0]).toBe("waiting for kafka topics");
    expect(reasons[1]).toStartWith("waiting for kafka topics: KafkaJSProtocolError UNKNOWN_TOPIC_OR_PARTITION");
    expect(reasons[3]).toBeNull();
  });

  test("throws FatalStartError at once on what retrying cannot fix", async () => {
    let calls = 0;
    const failing = retryStart(
      async () => {
        calls++;
        throw pg("28P01", "password authentication failed");
      },
      { logger, what: "postgresql", baseMs: 1 },
    );
    expect(failing).rejects.toThrow(FatalStartError);
    await failing.catch(() => {});
    expect(calls).toBe(1);
  });

  test("stops waiting when the worker stops", async () => {
    let stopped = false;
    const waiting = retryStart(
      async () => {
        stopped = true;
        throw refused();
      },
      { logger, what: "redis", baseMs: 1, capMs: 2, stopped: () => stopped },
    );
    expect(waiting).rejects.toThrow(StartCancelledError);
  });
});
