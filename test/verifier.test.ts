/**
 * The verifier can fail: a clean state passes, and each invariant broken on purpose in Redis
 * (under a test prefix) is reported with the stock it concerns, by the library and by the command.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { verify } from "../shared/verify/verify.ts";
import { createTestApi } from "./support/api.ts";
import { stackEnv, uniqueName } from "../shared/dev/env.ts";
import { readOutbox } from "./support/invariants.ts";

import { deleteTopics } from "../shared/kafka/client.ts";
const api = createTestApi({ shards: 2 });
afterAll(() => api.close());

const STOCKS = ["vf-a", "vf-b", "vf-c"];
/** Units the "load test" was granted and gave back, as a k6 summary would say. */
const seen = { unitsAllocated: 0, unitsReleased: 0, allocations: 0, perStock: {} as Record<string, { allocated: number; released: number }> };

async function snapshot(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let cursor = "0";
  do {
    const [next, keys] = await api.redis.scan(cursor, "MATCH", `${api.keys.prefix}:*`, "COUNT", 1000);
    cursor = next;
    // Per-request allocation records (`…:req:…`, allocate.lua) expire on their own after 60 s, which a
    // slow run can cross between the two snapshots: they are not what the verifier could have changed.
    for (const k of keys) if (!/:\{\d+\}:req:/.test(k)) out.set(k, await api.redis.type(k));
  } while (cursor !== "0");
  return out;
}

beforeAll(async () => {
  for (const id of STOCKS) {
    await api.commands.createStock({ id, name: `Item ${id}`, price: 1500, quantity: 20, perUserLimit: 3 });
    seen.perStock[id] = { allocated: 0, released: 0 };
  }
  // Some traffic: holds, purchases and cancels, a multi-unit hold.
  for (let i = 0; i < 12; i++) {
    const stockId = STOCKS[i % STOCKS.length]!;
    const quantity = 1 + (i % 2);
    const { allocation } = await api.commands.allocate({ stockId, userId: `user-${i % 5}`, quantity });
    seen.unitsAllocated += quantity;
    seen.allocations++;
    seen.perStock[stockId]!.allocated += quantity;
    if (i % 3 === 0) {
      await api.commands.purchase({ allocationId: allocation.allocationId, userId: allocation.userId });
    } else if (i % 4 === 1) {
      await api.commands.cancel({ allocationId: allocation.allocationId, userId: allocation.userId });
      seen.unitsReleased += quantity;
      seen.perStock[stockId]!.released += quantity;
    }
  }
});

const run = (extra: Partial<Parameters<typeof verify>[0]> = {}) => verify({ redis: api.redis, prefix: api.keys.prefix, layers: ["redis"], ...extra });

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn([process.execPath, "scripts/verify.ts", "--prefix", api.keys.prefix, ...args], {
    cwd: `${import.meta.dir}/..`,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, LOG_LEVEL: "silent" },
  });
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  return { code: await proc.exited, out: out + err };
}

/** Runs `breakIt`, checks the verifier reports `stockId` under `invariant`, then undoes it and checks it passes again. */
async function expectCaught(stockId: string, invariant: string, breakIt: () => Promise<unknown>, undo: () => Promise<unknown>) {
  await breakIt();
  try {
    const report = await run({ expect: seen });
    expect(report.ok).toBe(false);
    const hits = report.findings.filter((f) => f.stockId === stockId && f.invariant === invariant);
    expect(hits.length).toBeGreaterThan(0);
    // Only the broken stock is named.
    expect(report.findings.every((f) => f.stockId === stockId || f.stockId === null)).toBe(true);
  } finally {
    await undo();
  }
  expect((await run({ expect: seen })).ok).toBe(true);
}

describe("verifier", () => {
  test("a clean state passes, with the load test's counts", async () => {
    const report = await run({ expect: seen });
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.stocks).toBe(3);
    expect(report.totals.held + report.totals.sold).toBe(seen.unitsAllocated - seen.unitsReleased);
    // The outbox was never relayed, so the full history was replayed.
    expect(report.notes.join("\n")).toContain("full history");
  });

  test("I1: available +1 on one stock is reported with that stock's id", async () => {
    const key = api.keys.stock("vf-b");
    await expectCaught(
      "vf-b",
      "I1",
      () => api.redis.hincrby(key, "available", 1),
      () => api.redis.hincrby(key, "available", -1),
    );
  });

  test("I1: a negative available (oversell) is reported even when the sum is patched to match", async () => {
    const key = api.keys.stock("vf-a");
    const before = await api.redis.hmget(key, "available", "held");
    const available = Number(before[0]);
    await expectCaught(
      "vf-a",
      "I1",
      () => api.redis.hset(key, "available", -1, "held", Number(before[1]) + available + 1),
      () => api.redis.hset(key, "available", before[0]!, "held", before[1]!),
    );
  });

  test("I4: a buyer over the per-user limit is reported", async () => {
    const buyers = api.keys.stockBuyers("vf-c");
    await expectCaught(
      "vf-c",
      "I4",
      () => api.redis.hset(buyers, "intruder", 4),
      () => api.redis.hdel(buyers, "intruder"),
    );
  });

  test("I2: a change without its event (counters moved in the hash only) is reported", async () => {
    const key = api.keys.stock("vf-a");
    await expectCaught(
      "vf-a",
      "I2",
      () => api.redis.hincrby(key, "available", -1).then(() => api.redis.hincrby(key, "held", 1)).then(() => api.redis.hincrby(api.keys.stockBuyers("vf-a"), "ghost", 1)),
      () => api.redis.hincrby(key, "available", 1).then(() => api.redis.hincrby(key, "held", -1)).then(() => api.redis.hdel(api.keys.stockBuyers("vf-a"), "ghost")),
    );
  });

  test("I2: an event lost from the outbox is reported", async () => {
    const outbox = api.keys.outbox(api.keys.shardOf("vf-c"));
    const entries = await api.redis.xrange(outbox, "-", "+");
    const victim = entries.find(([, fields]) => fields[1]!.includes('"aggregateId":"vf-c"') && fields[1]!.includes("StockAllocated"));
    expect(victim).toBeDefined();
    const [id, fields] = victim!;
    await expectCaught(
      "vf-c",
      "I2",
      () => api.redis.xdel(outbox, id),
      // Put it back with its original id (XADD accepts an explicit id only above the last one, so rebuild the stream).
      async () => {
        const rest = await api.redis.xrange(outbox, "-", "+");
        const all = [...rest, [id, fields] as [string, string[]]].sort(([a], [b]) => {
          const [am, as] = a.split("-").map(BigInt) as [bigint, bigint];
          const [bm, bs] = b.split("-").map(BigInt) as [bigint, bigint];
          return am !== bm ? (am < bm ? -1 : 1) : as < bs ? -1 : as > bs ? 1 : 0;
        });
        await api.redis.del(outbox);
        for (const [entryId, f] of all) await api.redis.xadd(outbox, entryId, ...f);
      },
    );
  });

  test("k6: a load test that saw more 201s than Redis holds is reported", async () => {
    const report = await run({ expect: { ...seen, unitsAllocated: seen.unitsAllocated + 1 } });
    expect(report.ok).toBe(false);
    expect(report.findings.some((f) => f.invariant === "k6" && f.stockId === null)).toBe(true);
    const perStock = await run({ expect: { ...seen, perStock: { ...seen.perStock, "vf-b": { allocated: 99, released: 0 } } } });
    expect(perStock.findings.map((f) => f.stockId)).toContain("vf-b");
  });

  test("the command exits 0 on a clean state and 1 naming the stock when broken", async () => {
    const before = await snapshot();
    const clean = await cli(["--expect-units", String(seen.unitsAllocated - seen.unitsReleased)]);
    expect(clean.out).toContain("verify: OK");
    expect(clean.code).toBe(0);

    const key = api.keys.stock("vf-b");
    await api.redis.hincrby(key, "available", 1);
    try {
      const broken = await cli([]);
      expect(broken.code).toBe(1);
      expect(broken.out).toContain("vf-b");
      expect(broken.out).toContain("FAILED");
    } finally {
      await api.redis.hincrby(key, "available", -1);
    }
    // The verifier only reads.
    expect(await snapshot()).toEqual(before);
  });

  test("an unknown prefix fails instead of passing vacuously", async () => {
    const report = await verify({ redis: api.redis, prefix: `${api.keys.prefix}nothing`, layers: ["redis"] });
    expect(report.ok).toBe(false);
  });
});

describe("verifier, downstream layers", () => {
  // The outbox's events, applied to a throwaway read-model database and produced to fresh topics,
  // stand in for relay + projectors; then each layer is broken on purpose.
  let db: Awaited<ReturnType<typeof import("./support/read-side.ts").createTestDatabase>>;
  const topics = { full: uniqueName("vftopic"), gap: uniqueName("vfgap") };
  let kafka: import("kafkajs").Kafka;

  beforeAll(async () => {
    const { createTestDatabase, createTestKafka, createTopic, connectedProducer } = await import("./support/read-side.ts");
    const { produceEvents } = await import("../shared/dev/read-side.ts");
    const { applyEventsToPostgres } = await import("../shared/stores/postgres/writer.ts");
    const events = await readOutbox(api.redis, api.keys);
    db = await createTestDatabase("vfdb");
    await applyEventsToPostgres(db.sql, events);
    kafka = createTestKafka();
    await createTopic(kafka, topics.full, 2);
    await createTopic(kafka, topics.gap, 2);
    const producer = await connectedProducer(kafka);
    await produceEvents(producer, topics.full, events);
    // The gap topic lost vf-c's version 3.
    await produceEvents(producer, topics.gap, events.filter((e) => !(e.aggregateId === "vf-c" && e.version === 3)));
    await producer.disconnect();
    // A relay that has taken and acknowledged everything: its group sits at the end of each outbox.
    for (const shard of api.keys.allShards()) await api.redis.call("XGROUP", "CREATE", api.keys.outbox(shard), "relay", "$", "MKSTREAM");
  });

  afterAll(async () => {
    for (const shard of api.keys.allShards()) await api.redis.call("XGROUP", "DESTROY", api.keys.outbox(shard), "relay").catch(() => {});
    await db?.drop();
    await deleteTopics(kafka, [topics.full, topics.gap]);
  });

  const runLayers = (topic: string) =>
    verify({
      redis: api.redis,
      prefix: api.keys.prefix,
      layers: ["redis", "kafka", "postgres"],
      kafka: { brokers: stackEnv.KAFKA_BROKERS.split(","), topic },
      sql: db.sql,
      deadlineMs: 3_000,
    });

  test("a pipeline that agrees with Redis passes", async () => {
    const report = await runLayers(topics.full);
    expect(report.findings).toEqual([]);
    expect(report.notes.join("\n")).toContain("drained");
  });

  test("an event missing from Kafka is reported with its stock (I2)", async () => {
    const report = await runLayers(topics.gap);
    expect(report.ok).toBe(false);
    expect(report.findings.filter((f) => f.layer === "kafka").map((f) => f.stockId)).toEqual(["vf-c"]);
  });

  test("PostgreSQL counters that differ from Redis are reported with the stock (I6)", async () => {
    await db.sql`UPDATE stocks SET available = available + 1 WHERE stock_id = 'vf-a'`;
    try {
      const report = await runLayers(topics.full);
      expect(report.ok).toBe(false);
      expect(report.findings.filter((f) => f.layer === "postgres").map((f) => `${f.invariant} ${f.stockId}`)).toEqual(["I6 vf-a"]);
    } finally {
      await db.sql`UPDATE stocks SET available = available - 1 WHERE stock_id = 'vf-a'`;
    }
  });

  test("a purchase Redis never had is named as a business reconciliation, not a repair", async () => {
    // A phantom purchase as a failover leaves it: an order row bought downstream that Redis never sold.
    await db.sql`
      INSERT INTO orders (allocation_id, stock_id, user_id, quantity, status, amount, currency, placed_at, purchased_at, updated_at)
      VALUES ('s0-phantom', 'vf-a', 'phantom', 2, 'purchased', 1000, 'EUR', now(), now(), now())`;
    try {
      const report = await runLayers(topics.full);
      const messages = report.findings.filter((f) => f.layer === "postgres" && f.stockId === "vf-a").map((f) => f.message);
      expect(messages).toHaveLength(1);
      expect(messages[0]).toStartWith("purchased orders exceed Redis's sold by 2:");
      expect(messages[0]).toContain("reconcile");
    } finally {
      await db.sql`DELETE FROM orders WHERE allocation_id = 's0-phantom'`;
    }
  });

  test("an outbox the relay has not drained fails after the deadline", async () => {
    await api.commands.allocate({ stockId: "vf-b", userId: "late", quantity: 1 });
    const report = await runLayers(topics.full);
    expect(report.ok).toBe(false);
    expect(report.findings.some((f) => f.layer === "kafka" && /not drained/.test(f.message))).toBe(true);
  });
});
