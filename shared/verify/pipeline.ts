/**
 * The downstream layers, checked against Redis once the pipeline has drained:
 *   drain   every outbox's relay group has nothing undelivered (lag 0) and nothing unacknowledged
 *   kafka   (I2) the topic holds every event of every stock: versions 1..V, V = the stock's version;
 *           duplicates are allowed (at-least-once, I3) and only counted
 *   postgres (I2, I6) counters and version equal Redis (shared/verify/convergence.ts), one
 *           stock_events row per version, and the orders' units by status equal held and sold
 *           ('voided' orders, ended by a repair, count as neither)
 *   search  (I6) counters and version of each stock document equal Redis (same helper)
 * Each waits, polling, until it agrees or the shared deadline passes; then it reports what differs.
 */
import type { Client } from "@elastic/elasticsearch";
import type { RedisClient } from "../redis/client.ts";
import { Kafka, logLevel } from "kafkajs";
import type postgres from "postgres";
import { parseEvent } from "../domain/events.ts";
import { sleep } from "../lifecycle.ts";
import { pairs } from "../redis/replies.ts";
import { compareReadModels } from "./convergence.ts";
import type { StockCounters } from "../domain/views.ts";
import type { ReadModelReader } from "../read-models.ts";
import { finding, type Finding, type StockState } from "./report.ts";

const RELAY_GROUP = "relay";
const POLL_MS = 250;


/** Entries not yet relayed (lag) plus entries delivered but not acknowledged (pending), per outbox. */
async function relayBacklog(redis: RedisClient, outboxKeys: string[]): Promise<{ backlog: number; missingGroup: string[] }> {
  let backlog = 0;
  const missingGroup: string[] = [];
  for (const key of outboxKeys) {
    const groups = ((await redis.call("XINFO", "GROUPS", key)) as unknown[][]).map(pairs);
    const group = groups.find((g) => g.name === RELAY_GROUP);
    if (!group) {
      // No relay has ever read this stream: everything in it is backlog.
      missingGroup.push(key);
      backlog += Number(await redis.xlen(key));
      continue;
    }
    const lag = group.lag;
    // lag is null when Redis cannot tell (entries deleted in the middle); count the stream then.
    backlog += Number(group.pending ?? 0) + (lag === null || lag === undefined ? Number(await redis.xlen(key)) : Number(lag));
  }
  return { backlog, missingGroup };
}

/** Waits until the relay has taken and acknowledged everything, or the deadline. */
export async function waitForRelayDrain(redis: RedisClient, outboxKeys: string[], deadline: number): Promise<Finding[]> {
  for (;;) {
    const { backlog, missingGroup } = await relayBacklog(redis, outboxKeys);
    if (backlog === 0) return [];
    if (Date.now() > deadline) {
      const why = missingGroup.length > 0 ? `; no relay group on ${missingGroup.join(", ")} (is the relay running?)` : "";
      return [finding("kafka", "I2", null, `outbox not drained before the deadline: ${backlog} entries not relayed or not acknowledged${why}`)];
    }
    await sleep(POLL_MS);
  }
}

export interface KafkaCheckOptions {
  brokers: string[];
  topic: string;
  stocks: readonly StockState[];
  deadline: number;
}

/**
 * Reads the topic from the beginning up to its end offsets (taken once the outbox drained) and
 * checks that every version of every stock is there. Re-reads while something is missing and the
 * deadline allows (a produce acknowledged by Kafka is readable at once, so this rarely loops).
 */
export async function checkKafka(
  options: KafkaCheckOptions,
): Promise<{ findings: Finding[]; messages: number; duplicates: number; maxVersions: Map<string, number> }> {
  const kafka = new Kafka({ clientId: "flashsale-verify", brokers: options.brokers, logLevel: logLevel.NOTHING });
  const wanted = new Map(options.stocks.map((s) => [s.stockId, s]));
  for (;;) {
    const seen = new Map<string, Set<number>>();
    /** Per stock: versions carried by two different events (one of them has content Redis never had). */
    const conflicts = new Map<string, Set<number>>();
    /** Per stock: the version of its latest repair snapshot, the new baseline (bun run repair). */
    const snapshots = new Map<string, number>();
    const ids = new Set<string>();
    let messages = 0;
    let duplicates = 0;
    const bad: Finding[] = [];
    const admin = kafka.admin();
    await admin.connect();
    let ends: { partition: number; high: string; low: string }[];
    try {
      ends = (await admin.listTopics()).includes(options.topic) ? await admin.fetchTopicOffsets(options.topic) : [];
    } finally {
      await admin.disconnect();
    }
    const remaining = new Map(ends.filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)]));
    if (remaining.size > 0) {
      const groupId = `flashsale-verify-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
      const consumer = kafka.consumer({ groupId, maxBytes: 16 * 1024 * 1024 });
      await consumer.connect();
      await consumer.subscribe({ topic: options.topic, fromBeginning: true });
      let done: () => void = () => {};
      const finished = new Promise<void>((resolve) => (done = resolve));
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) {
            messages++;
            const parsed = parseEvent(m.value);
            if (!parsed.ok) {
              if (bad.length < 5) bad.push(finding("kafka", "I2", m.key?.toString() ?? null, `partition ${batch.partition} offset ${m.offset}: ${parsed.error}`));
              continue;
            }
            const e = parsed.event;
            if (!wanted.has(e.aggregateId)) continue;
            if (m.key?.toString() !== e.aggregateId && bad.length < 5) {
              bad.push(finding("kafka", "I2", e.aggregateId, `message key ${String(m.key)} is not the stock id (per-stock order is lost)`));
            }
            if (ids.has(e.eventId)) {
              duplicates++;
              continue;
            }
            ids.add(e.eventId);
            let versions = seen.get(e.aggregateId);
            if (!versions) seen.set(e.aggregateId, (versions = new Set()));
            if (versions.has(e.version)) conflicts.set(e.aggregateId, (conflicts.get(e.aggregateId) ?? new Set()).add(e.version));
            versions.add(e.version);
            if (e.eventType === "StockSnapshot") snapshots.set(e.aggregateId, Math.max(snapshots.get(e.aggregateId) ?? 0, e.version));
          }
          const high = remaining.get(batch.partition);
          if (high !== undefined && BigInt(batch.lastOffset()) + 1n >= high) {
            remaining.delete(batch.partition);
            if (remaining.size === 0) done();
          }
        },
      });
      const timedOut = await Promise.race([finished.then(() => false), sleep(Math.max(5_000, options.deadline - Date.now())).then(() => true)]);
      await consumer.disconnect();
      const admin2 = kafka.admin();
      await admin2.connect();
      await admin2.deleteGroups([groupId]).catch(() => {});
      await admin2.disconnect();
      if (timedOut) bad.push(finding("kafka", "I2", null, `could not read topic ${options.topic} to its end before the deadline`));
    }
    const findings: Finding[] = [...bad];
    const maxVersions = new Map<string, number>();
    for (const s of options.stocks) {
      const versions = seen.get(s.stockId) ?? new Set<number>();
      maxVersions.set(s.stockId, Math.max(0, ...versions));
      // Before a repair snapshot, history may hold what Redis forgot: only what follows it is checked.
      const baseline = snapshots.get(s.stockId) ?? 1;
      const missing: number[] = [];
      for (let v = baseline; v <= s.version && missing.length < 5; v++) if (!versions.has(v)) missing.push(v);
      const extra = [...versions].filter((v) => v > s.version);
      const conflicting = [...(conflicts.get(s.stockId) ?? [])].filter((v) => v >= baseline);
      if (missing.length > 0) {
        const present = [...versions].filter((v) => v >= baseline && v <= s.version).length;
        findings.push(finding("kafka", "I2", s.stockId, `${s.version - baseline + 1 - present} of ${s.version} events missing from ${options.topic}, e.g. versions ${missing.join(", ")}`));
      }
      if (conflicting.length > 0 || extra.length > 0) {
        const what = [
          conflicting.length > 0 ? `two different events with version ${conflicting.slice(0, 5).join(", ")}` : "",
          extra.length > 0 ? `events with versions beyond the stock's ${s.version}: ${extra.slice(0, 5).join(", ")}` : "",
        ].filter(Boolean);
        findings.push(finding("kafka", "I2", s.stockId, `drift: Kafka carries content Redis never had (${what.join("; ")}); repair: bun run repair ${s.stockId}`));
      }
    }
    if (findings.length === 0 || Date.now() > options.deadline) return { findings, messages, duplicates, maxVersions };
    await sleep(POLL_MS * 4);
  }
}

const countersOf = (s: StockState): StockCounters => ({ stockId: s.stockId, available: s.available, held: s.held, sold: s.sold, version: s.version });

const describe = (c: StockCounters | null) => (c ? `${c.available}/${c.held}/${c.sold} v${c.version}` : "missing");

export interface ReadModelCheckOptions {
  stocks: readonly StockState[];
  sql?: postgres.Sql;
  es?: Client;
  index?: string;
  /** Read models beyond the two built in (shared/read-models.ts); each finding names its layer. */
  readers?: readonly Pick<ReadModelReader, "name" | "counters">[];
  deadline: number;
}

/** I6 via the projector engineer's convergence helper, polled until it agrees or the deadline. */
export async function checkReadModels(options: ReadModelCheckOptions): Promise<Finding[]> {
  const expected = options.stocks.map(countersOf);
  for (;;) {
    const mismatches = await compareReadModels({ expected, sql: options.sql, es: options.es, index: options.index, readers: options.readers });
    if (mismatches.length === 0 || Date.now() > options.deadline) {
      return mismatches.map((m) =>
        finding(
          m.store === "elasticsearch" ? "search" : m.store,
          "I6",
          m.stockId,
          `${m.store} has ${describe(m.actual)}, Redis has ${describe(m.expected)} (available/held/sold version)` +
            // At Redis's version or beyond with other counters: content Redis never had, which no later event at those versions fixes.
            (m.actual && m.actual.version >= m.expected.version ? `; drift: bun run repair ${m.stockId}` : ""),
        ),
      );
    }
    await sleep(POLL_MS);
  }
}

/**
 * PostgreSQL beyond the counters: one stock_events row per version (I2: nothing lost, nothing
 * invented), and orders that add up: units in 'held' orders == held, in 'purchased' == sold.
 * Run after checkReadModels agreed (so the projector has applied everything).
 */
export async function checkPostgresDetail(sql: postgres.Sql, stocks: readonly StockState[]): Promise<Finding[]> {
  const ids = stocks.map((s) => s.stockId);
  const findings: Finding[] = [];
  const events = new Map<string, { n: number; max: number; min: number; snapshot: number | null }>();
  const orders = new Map<string, { held: number; purchased: number }>();
  for (let i = 0; i < ids.length; i += 1000) {
    const part = ids.slice(i, i + 1000);
    // Counted from the latest repair snapshot on (its version is the new baseline; see snapshot.lua).
    const rows = await sql<{ id: string; n: number; max: number; min: number; snapshot: number | null }[]>`
      WITH base AS (
        SELECT aggregate_id, max(version) FILTER (WHERE event_type = 'StockSnapshot') AS snapshot
        FROM stock_events WHERE aggregate_id = ANY(${part}) GROUP BY aggregate_id)
      SELECT e.aggregate_id AS id, count(*)::int AS n, max(e.version) AS max, min(e.version) AS min, b.snapshot
      FROM stock_events e JOIN base b USING (aggregate_id)
      WHERE e.version >= coalesce(b.snapshot, 1) GROUP BY e.aggregate_id, b.snapshot`;
    for (const r of rows) events.set(r.id, r);
    const units = await sql<{ id: string; held: number; purchased: number }[]>`
      SELECT stock_id AS id,
             coalesce(sum(quantity) FILTER (WHERE status = 'held'), 0)::int AS held,
             coalesce(sum(quantity) FILTER (WHERE status = 'purchased'), 0)::int AS purchased
      FROM orders WHERE stock_id = ANY(${part}) GROUP BY stock_id`;
    for (const r of units) orders.set(r.id, r);
  }
  for (const s of stocks) {
    const e = events.get(s.stockId) ?? { n: 0, max: 0, min: 0, snapshot: null };
    const base = e.snapshot ?? 1;
    if (e.n !== s.version - base + 1 || e.max !== s.version || (e.n > 0 && e.min !== base)) {
      const drift = e.max > s.version || e.n > s.version - base + 1 ? `; drift (versions Redis never had): bun run repair ${s.stockId}` : "";
      findings.push(finding("postgres", "I2", s.stockId, `stock_events has ${e.n} rows (versions ${e.min}..${e.max}${e.snapshot ? `, from the snapshot at v${e.snapshot}` : ""}), Redis is at version ${s.version}${drift}`));
    }
    const o = orders.get(s.stockId) ?? { held: 0, purchased: 0 };
    if (o.held !== s.held || o.purchased < s.sold) {
      // Held orders Redis never had are ended by a repair (voided); a shortfall is missing events.
      const drift = o.held > s.held ? `; drift (holds Redis never had): bun run repair ${s.stockId}` : "";
      findings.push(finding("postgres", "I6", s.stockId, `orders add up to held ${o.held} / purchased ${o.purchased}, Redis has held ${s.held} / sold ${s.sold}${drift}`));
    }
    if (o.purchased > s.sold) {
      // A purchase Redis forgot (a failover after the buyer was told "bought") looks like any other
      // downstream: the read side keeps it, and no repair undoes it (README "Drift repair").
      findings.push(
        finding(
          "postgres",
          "I6",
          s.stockId,
          `purchased orders exceed Redis's sold by ${o.purchased - s.sold}: ${o.purchased} units in 'purchased' orders, Redis sold ${s.sold}; ` +
            `purchases Redis never had (e.g. bought just before a failover that lost the write): buyers were told they bought, ` +
            `so reconcile them with the business (honour or refund); bun run repair does not undo a purchase`,
        ),
      );
    }
  }
  return findings;
}
