/** Pure logic: key layout, config validation, event schema, Kafka send splitting, problem bodies, tokens. */
import { describe, expect, test } from "bun:test";
import { ConfigError, apiSchema, expirerSchema, parseConfig, relaySchema } from "../shared/config.ts";
import { parseEvent } from "../shared/domain/events.ts";
import { MAX_SEND_BYTES, messageBytes, splitForSend } from "../shared/kafka/producer.ts";
import { createKeyLayout, fnv1a32 } from "../shared/domain/keys.ts";
import { ApiProblem, problemBody } from "../services/api/problem.ts";
import { mintUserToken } from "../shared/dev/token.ts";
import { retryUnexecuted, unexecutedRetryDelayMs } from "../shared/redis/client.ts";

describe("key layout", () => {
  const keys = createKeyLayout("fs", 8);

  test("every key of a stock and its shard's outbox share one hash tag", () => {
    const shard = keys.shardOf("sneaker-42");
    const tag = `{${shard}}`;
    for (const key of [keys.stock("sneaker-42"), keys.stockBuyers("sneaker-42"), keys.holdsDue(shard), keys.outbox(shard), keys.idempotency("sneaker-42", "u", "k")]) {
      expect(key.match(/\{[^}]*\}/)?.[0]).toBe(tag);
    }
  });

  test("the shard is a stable hash of the stock id, and allocation ids carry it", () => {
    expect(fnv1a32("hello")).toBe(0x4f9f2cab); // FNV-1a reference value
    expect(keys.shardOf("sneaker-42")).toBe(fnv1a32("sneaker-42") % 8);
    const id = keys.newAllocationId("sneaker-42");
    expect(keys.shardOfAllocation(id)).toBe(keys.shardOf("sneaker-42"));
    expect(keys.hold(id)).toStartWith(`fs:{${keys.shardOf("sneaker-42")}}:hold:`);
  });

  test("stocks spread over all shards", () => {
    const used = new Set(Array.from({ length: 1000 }, (_, i) => keys.shardOf(`stock-${i}`)));
    expect(used.size).toBe(8);
  });

  test("composite keys cannot collide: user and Idempotency-Key are length-prefixed, ids are checked", () => {
    expect(keys.idempotency("s", "alice", "x:order-1")).not.toBe(keys.idempotency("s", "alice:x", "order-1"));
    expect(keys.idempotency("s", "a.b", "c")).not.toBe(keys.idempotency("s", "a", "b.c"));
    expect(keys.idempotency("s", "1.a", "b")).not.toBe(keys.idempotency("s", "1", "a.b"));
    // A stock id with the separator would let `stock:<id>` meet `stock:<id>:buyers`: refused.
    expect(() => keys.stock("a:buyers")).toThrow();
    expect(() => keys.stockBuyers("a:b")).toThrow();
    expect(() => keys.idempotency("a:b", "u", "k")).toThrow();
  });

  test("malformed or out-of-range allocation ids have no shard", () => {
    expect(keys.shardOfAllocation("garbage")).toBeNull();
    expect(keys.shardOfAllocation("s8-01a2007c-efdd-7485-b66a-9911269a1a0c")).toBeNull();
    expect(() => keys.hold("garbage")).toThrow();
  });
});

describe("config", () => {
  const valid = { ADMIN_TOKEN: "a".repeat(16), JWT_SECRET: "s".repeat(32) };

  test("defaults follow the contract", () => {
    const config = parseConfig(apiSchema, valid);
    expect(config).toMatchObject({ PORT: 3000, REDIS_URL: "redis://127.0.0.1:6379", OUTBOX_SHARDS: 16, LOG_LEVEL: "info" });
    expect(config.REDIS_CLUSTER_NODES).toBeUndefined();
    expect(parseConfig(relaySchema, {}).KAFKA_BROKERS).toEqual(["127.0.0.1:9092"]);
  });

  test("every bad variable is named in one error", () => {
    try {
      parseConfig(apiSchema, { PORT: "http", JWT_SECRET: "short", OUTBOX_SHARDS: "0" });
      throw new Error("should have failed");
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const text = (err as ConfigError).problems.join("\n");
      for (const name of ["PORT", "JWT_SECRET", "ADMIN_TOKEN", "OUTBOX_SHARDS"]) expect(text).toContain(name);
    }
  });

  test("REDIS_CLUSTER_NODES: host:port list, bad entries named", () => {
    const config = parseConfig(apiSchema, { ...valid, REDIS_CLUSTER_NODES: "127.0.0.1:7000, redis-cluster-1:7001," });
    expect(config.REDIS_CLUSTER_NODES).toEqual([{ host: "127.0.0.1", port: 7000 }, { host: "redis-cluster-1", port: 7001 }]);
    for (const bad of ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "a:b", ","]) {
      expect(() => parseConfig(apiSchema, { ...valid, REDIS_CLUSTER_NODES: bad }), bad).toThrow(/REDIS_CLUSTER_NODES/);
    }
  });

  test("an empty variable falls back to its default", () => {
    expect(parseConfig(apiSchema, { ...valid, PORT: "" }).PORT).toBe(3000);
  });

  test("the api's hardening knobs: defaults, and bad values named", () => {
    const config = parseConfig(apiSchema, valid);
    expect(config).toMatchObject({ ADMIN_PORT: 9105, JWT_MAX_LIFETIME_SECONDS: 86_400, OUTBOX_MAX_LENGTH: 1_000_000, HOLD_RETENTION_SECONDS: 86_400 });
    expect(config.JWT_ISSUER).toBeUndefined();
    expect(config.JWT_AUDIENCE).toBeUndefined();
    expect(parseConfig(expirerSchema, { HOLD_RETENTION_SECONDS: "172800" }).HOLD_RETENTION_SECONDS).toBe(172_800);
    // Below the Idempotency-Key window a replay could name a hold already deleted.
    expect(() => parseConfig(expirerSchema, { HOLD_RETENTION_SECONDS: "3600" })).toThrow(/IDEMPOTENCY_TTL_SECONDS/);
    const bad = { ...valid, ADMIN_PORT: "0", JWT_MAX_LIFETIME_SECONDS: "-1", OUTBOX_MAX_LENGTH: "lots", HOLD_RETENTION_SECONDS: "5" };
    try {
      parseConfig(apiSchema, bad);
      throw new Error("should have failed");
    } catch (err) {
      const text = (err as ConfigError).problems.join("\n");
      for (const name of ["ADMIN_PORT", "JWT_MAX_LIFETIME_SECONDS", "OUTBOX_MAX_LENGTH", "HOLD_RETENTION_SECONDS"]) expect(text).toContain(name);
    }
  });

  test("bun run token's tokens carry iat and exp, and iss/aud when asked", async () => {
    const token = await mintUserToken("alice", "s".repeat(32), 600, { issuer: "https://id.example", audience: "flash-sale" });
    const claims = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: "alice", iss: "https://id.example", aud: "flash-sale" });
    expect((claims.exp as number) - (claims.iat as number)).toBe(600);
  });
});

describe("event schema", () => {
  const event = {
    eventId: "01a2007c-efdd-7485-b66a-9911269a1a0c",
    eventType: "StockAllocated",
    schemaVersion: 1,
    aggregateType: "Stock",
    aggregateId: "s1",
    version: 2,
    occurredAt: "2026-11-21T23:41:57.597Z",
    payload: { allocationId: "a", userId: "u", quantity: 1, expiresAt: "2026-11-21T23:51:57.597Z", available: 9, held: 1, sold: 0 },
  };

  test("accepts a well-formed event", () => {
    expect(parseEvent(JSON.stringify(event))).toMatchObject({ ok: true });
  });

  test("rejects what it cannot trust, without throwing", () => {
    expect(parseEvent("{not json")).toMatchObject({ ok: false });
    expect(parseEvent(JSON.stringify({ ...event, schemaVersion: 2 }))).toMatchObject({ ok: false });
    expect(parseEvent(JSON.stringify({ ...event, eventType: "StockStolen" }))).toMatchObject({ ok: false });
    expect(parseEvent(JSON.stringify({ ...event, payload: { ...event.payload, available: -1 } }))).toMatchObject({ ok: false });
    expect(parseEvent(null)).toMatchObject({ ok: false });
  });
});

describe("splitForSend", () => {
  const message = (i: number, size: number) => ({ key: `k${i % 3}`, value: "v".repeat(size), headers: { eventId: `e-${i}` } });

  test("keeps order, caps each send by count and by bytes", () => {
    const messages = Array.from({ length: 5_000 }, (_, i) => message(i, 300 + (i % 7) * 50));
    const sends = splitForSend(messages, 1_000);
    expect(sends.flat()).toEqual(messages); // nothing lost, nothing reordered
    for (const part of sends) {
      expect(part.length).toBeLessThanOrEqual(1_000);
      expect(part.reduce((n, m) => n + messageBytes(m), 0)).toBeLessThanOrEqual(MAX_SEND_BYTES);
    }
    const total = messages.reduce((n, m) => n + messageBytes(m), 0);
    expect(sends.length).toBeGreaterThanOrEqual(Math.ceil(total / MAX_SEND_BYTES));
  });

  test("the size bound counts key, value and headers, in bytes not characters", () => {
    const ascii = messageBytes({ key: "k", value: "aaaa", headers: { h: "v" } });
    const wide = messageBytes({ key: "k", value: "éééé", headers: { h: "v" } });
    expect(wide - ascii).toBe(4);
    expect(messageBytes({ key: "kk", value: "aaaa", headers: { h: "v" } })).toBe(ascii + 1);
  });

  test("a message on its own is never split away or dropped, and nothing gives no sends", () => {
    expect(splitForSend([message(0, MAX_SEND_BYTES + 10)])).toHaveLength(1);
    expect(splitForSend([])).toEqual([]);
  });
});

describe("problem details (RFC 9457)", () => {
  test("extension members never overwrite the problem's own members", () => {
    const extra = { status: "purchased", type: "x", title: "x", detail: "x", instance: "x", code: "x", requestId: "x", holdStatus: "purchased" };
    const body: Record<string, unknown> = problemBody(new ApiProblem(409, "hold_not_active", "the hold is purchased", extra), "req-1");
    expect(body).toEqual({
      type: "https://flash-sale.dev/problems/hold-not-active",
      title: "Hold is not active",
      status: 409,
      detail: "the hold is purchased",
      code: "hold_not_active",
      requestId: "req-1",
      holdStatus: "purchased",
    });
  });
});

describe("sending again what Redis did not execute (shared/redis/client.ts)", () => {
  const replyError = (message: string) => Object.assign(new Error(message), { name: "ReplyError" });

  test("TRYAGAIN, MOVED, ASK, READONLY and ioredis' regroup refusal are sent again; anything else is not", () => {
    expect(unexecutedRetryDelayMs(replyError("TRYAGAIN Multiple keys request during rehashing of slot"))).toBe(100);
    expect(unexecutedRetryDelayMs(replyError("MOVED 1584 127.0.0.1:7007"))).toBe(10);
    expect(unexecutedRetryDelayMs(replyError("ASK 1584 127.0.0.1:7007"))).toBe(10);
    expect(unexecutedRetryDelayMs(new Error("All keys in the pipeline should belong to the same slots allocation group"))).toBe(0);
    // A replica refused the script's first write (ioredis sent it to a random node after a connection closed).
    expect(unexecutedRetryDelayMs(replyError("READONLY You can't write against a read only replica. script: 23e8, on @user_script:61."))).toBe(50);
    // A command that may have run (or a store that is down) is never repeated here.
    for (const m of ["Command timed out", "Connection is closed.", "CLUSTERDOWN The cluster is down", "ERR Error running script", "MOVEDX"]) {
      expect(unexecutedRetryDelayMs(replyError(m))).toBeNull();
    }
    expect(unexecutedRetryDelayMs(undefined)).toBeNull();
  });

  test("a TRYAGAIN answered twice, then a reply: the caller gets the reply; other errors reach it at once", async () => {
    let calls = 0;
    const reply = await retryUnexecuted(async () => {
      calls++;
      if (calls <= 2) throw replyError("TRYAGAIN Multiple keys request during rehashing of slot");
      return "ok";
    });
    expect(reply).toBe("ok");
    expect(calls).toBe(3);

    let failing = 0;
    await expect(retryUnexecuted(async () => { failing++; throw replyError("ERR Error running script"); })).rejects.toThrow("ERR Error running script");
    expect(failing).toBe(1);

    let moved = 0;
    await expect(retryUnexecuted(async () => { moved++; throw replyError("MOVED 1 127.0.0.1:7000"); }, 3)).rejects.toThrow("MOVED");
    expect(moved).toBe(3); // bounded in tries

    let slow = 0;
    const started = Date.now();
    await expect(retryUnexecuted(async () => { slow++; await Bun.sleep(40); throw replyError("TRYAGAIN Multiple keys request during rehashing of slot"); }, 30, 250)).rejects.toThrow("TRYAGAIN");
    expect(slow).toBeLessThanOrEqual(3); // and in time: tries that each waited stop at the budget
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
