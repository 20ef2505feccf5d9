/**
 * The probes of the freshness phase (projectors-freshness.ts): allocations on stocks nothing else
 * touches, so their version is known, timed from their event's occurredAt to the broker's append (a
 * consumer on the topic), the order row in PostgreSQL and the document version in Elasticsearch (one
 * poller per store, each checking every pending probe each BENCH_POLL_MS).
 */
import type { Kafka } from "kafkajs";
import type postgres from "postgres";
import type { Client } from "@elastic/elasticsearch";
import type { StockDocument } from "../../shared/stores/search/mapping.ts";

export interface Probe {
  allocationId: string;
  userId: string;
  stockId: string;
  version: number;
  respondedAt: number;
  /** The event's occurredAt (Redis TIME), from the topic: the origin of every figure when known. */
  occurredAt?: number;
  kafka?: number;
  pg?: number;
  esGet?: number;
  esSearch?: number;
}

/**
 * ms from each probe's occurredAt (the definition of freshness; falls back to the allocate
 * response if the watcher missed the message) to the moment `at` saw it. Not from the response alone:
 * a niced or busy load generator stamps its responses late, which would hide the relay's share.
 */
export function since(probes: Probe[], at: (p: Probe) => number | undefined): number[] {
  return probes.flatMap((p) => {
    const seen = at(p);
    return seen === undefined ? [] : [seen - (p.occurredAt ?? p.respondedAt)];
  });
}

/** One loop per store: while running (or anything is pending), check the pending probes, then sleep. */
export class ProbePollers {
  readonly pending = { pg: new Set<Probe>(), get: new Set<Probe>(), search: new Set<Probe>() };
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(sql: postgres.Sql, es: Client, alias: string, pollMs: number) {
    const { pending } = this;
    this.loops = [
      this.loop(pending.pg, pollMs, async () => {
        const ids = [...pending.pg].map((p) => p.allocationId);
        const rows = await sql<{ allocation_id: string }[]>`SELECT allocation_id FROM orders WHERE allocation_id = ANY(${ids})`;
        const now = Date.now();
        const found = new Set(rows.map((r) => r.allocation_id));
        for (const p of pending.pg) if (found.has(p.allocationId)) (p.pg = now), pending.pg.delete(p);
      }),
      this.loop(pending.get, pollMs, async () => {
        const ids = [...new Set([...pending.get].map((p) => p.stockId))];
        const result = await es.mget<StockDocument>({ index: alias, ids, realtime: true, _source_includes: ["version"] });
        const now = Date.now();
        const version = new Map(result.docs.map((d) => [d._id, "found" in d && d.found ? d._source!.version : 0]));
        for (const p of pending.get) if ((version.get(p.stockId) ?? 0) >= p.version) (p.esGet = now), pending.get.delete(p);
      }),
      this.loop(pending.search, pollMs, async () => {
        const ids = [...new Set([...pending.search].map((p) => p.stockId))];
        const result = await es.search<StockDocument>({ index: alias, size: ids.length, query: { ids: { values: ids } }, _source: ["version"] });
        const now = Date.now();
        const version = new Map(result.hits.hits.map((h) => [h._id!, h._source!.version]));
        for (const p of pending.search) if ((version.get(p.stockId) ?? 0) >= p.version) (p.esSearch = now), pending.search.delete(p);
      }),
    ];
  }

  get size(): number {
    return this.pending.pg.size + this.pending.get.size + this.pending.search.size;
  }

  /** Waits up to `ms` for every pending check, then stops the loops; returns how many never resolved. */
  async settle(ms: number): Promise<number> {
    const deadline = Date.now() + ms;
    while (this.size > 0 && Date.now() < deadline) await Bun.sleep(50);
    this.running = false;
    const unresolved = this.size;
    for (const set of Object.values(this.pending)) set.clear();
    await Promise.all(this.loops);
    return unresolved;
  }

  private async loop(pending: Set<Probe>, pollMs: number, check: () => Promise<void>): Promise<void> {
    while (this.running || pending.size > 0) {
      if (pending.size > 0) await check();
      await Bun.sleep(pollMs);
    }
  }
}

/**
 * Reads the topic from its end and stamps each probe with the broker's append time (LogAppendTime:
 * the relay's share, apart from the projectors') and its event's occurredAt. A probe's message can
 * arrive before its allocate answer does: kept until the probe is added.
 */
export class AppendWatcher {
  private readonly byAllocation = new Map<string, Probe>();
  private readonly arrivedEarly = new Map<string, { at: number; occurredAt: number }>();
  private readonly consumer;

  constructor(kafka: Kafka, groupId: string) {
    this.consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 50 });
  }

  async start(topic: string): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topic, fromBeginning: false });
    await this.consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const now = Number(m.timestamp); // broker append time
          if (!m.key || !String(m.key).startsWith("probe")) continue;
          const event = JSON.parse(String(m.value)) as { occurredAt: string; payload: { allocationId?: string } };
          const allocationId = event.payload.allocationId;
          if (!allocationId) continue;
          const probe = this.byAllocation.get(allocationId);
          if (probe) (probe.kafka = now), (probe.occurredAt = Date.parse(event.occurredAt));
          else this.arrivedEarly.set(allocationId, { at: now, occurredAt: Date.parse(event.occurredAt) });
        }
      },
    });
  }

  add(probe: Probe): void {
    this.byAllocation.set(probe.allocationId, probe);
    const early = this.arrivedEarly.get(probe.allocationId);
    if (early !== undefined) (probe.kafka = early.at), (probe.occurredAt = early.occurredAt);
  }

  async stop(): Promise<void> {
    await this.consumer.disconnect();
  }
}
