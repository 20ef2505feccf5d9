/**
 * What the live dashboard shows, sampled once a second while someone watches, from three sources:
 * - stocks.ts: per stock, the strong counters from Redis (the same read as GET /api/stocks/:id), so the
 *   page agrees with the api to the unit, and the outbox dead letters;
 * - outcomes.ts: allocation outcomes per second from this api process's own registry;
 * - workers.ts: relay lag and backlog per shard, projector freshness p99, consumer lag and dead letters,
 *   and the notifier's deliveries, failures, lag and backlog per webhook endpoint, scraped from the
 *   workers' /metrics (WORKER_METRICS_URLS).
 * This file ties them into one snapshot per tick and hands it to the page's listeners.
 */
import type { Registry } from "prom-client";
import type { RedisClient } from "../../../shared/redis/client.ts";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import { OutcomeCounters, type Outcome } from "./outcomes.ts";
import { StockCounters, type StockPanel } from "./stocks.ts";
import { WorkerScraper, type ProjectorPanel, type ShardPanel, type TargetStatus, type WebhookPanel } from "./workers.ts";

export { METRIC } from "./metric-names.ts";

export interface DashboardSnapshot {
  at: string;
  /** Every sampled stock, busiest first; a view shows its own pins and the top of the rest (routes.ts). */
  stocks: StockPanel[];
  /** Per second, the last HISTORY samples of each outcome, oldest first. */
  outcomes: Record<Outcome, number[]>;
  shards: ShardPanel[];
  projectors: ProjectorPanel[];
  /** Per webhook endpoint, from the notifier that delivers (the one holding the lease). */
  webhooks: WebhookPanel[];
  /** Messages dead-lettered to Kafka by the projectors (since they started), and outbox entries the relay refused (XLEN). */
  dlq: { kafka: number; outbox: number };
  targets: TargetStatus[];
}

export interface CollectorDeps {
  redis: RedisClient;
  commands: StockCommands;
  registry: Registry;
  workerMetricsUrls: readonly string[];
  intervalMs?: number;
  fetch?: typeof fetch;
}

type Listener = (snapshot: DashboardSnapshot) => void;

export class DashboardCollector {
  private readonly listeners = new Set<Listener>();
  private timer: ReturnType<typeof setInterval> | undefined;
  /** The tick in flight, if any: at most one runs at a time. */
  private ticking: Promise<void> | undefined;
  private last: DashboardSnapshot | undefined;
  private lastAt = 0;
  private readonly stocks: StockCounters;
  private readonly outcomes: OutcomeCounters;
  private readonly workers: WorkerScraper;

  constructor(private readonly deps: CollectorDeps) {
    this.stocks = new StockCounters(deps.redis, deps.commands);
    this.outcomes = new OutcomeCounters(deps.registry);
    this.workers = new WorkerScraper(deps.workerMetricsUrls, deps.fetch);
  }

  /**
   * Exports the shown stocks' counters and sold-out times to Prometheus (the Grafana dashboard's stock
   * panels), read from Redis when scraped. Bounded cardinality: the stocks the dashboard shows.
   */
  registerStockGauges(registry: Registry): void {
    this.stocks.registerGauges(registry);
  }

  /** Stocks to sample whatever the scan finds, for one view (a page's stream): call the result when it goes. */
  pin(stockIds: readonly string[]): () => void {
    return this.stocks.pin(stockIds);
  }

  /** Distinct stocks pinned by the open views. */
  get pinnedCount(): number {
    return this.stocks.pinnedCount;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    if (this.last) listener(this.last);
    this.timer ??= setInterval(() => void this.tick(), this.deps.intervalMs ?? 1000);
    void this.tick();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** A fresh snapshot (at most one interval old; `now`: sampled now, e.g. for stocks just pinned). */
  async snapshot(now = false): Promise<DashboardSnapshot> {
    if (now && this.ticking) await this.ticking; // it may have started before the caller's pins
    if (now || !this.last || Date.now() - this.lastAt > (this.deps.intervalMs ?? 1000)) await this.tick();
    return this.last!;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private tick(): Promise<void> {
    this.ticking ??= this.sampleOnce().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async sampleOnce(): Promise<void> {
    const now = Date.now();
    const dt = this.lastAt ? (now - this.lastAt) / 1000 : 0;
    const [stocks, outcomes, workers, outboxDead] = await Promise.all([
      this.stocks.panels(dt),
      this.outcomes.collect(dt),
      this.workers.collect(now),
      this.stocks.countOutboxDead(),
    ]);
    this.last = {
      at: new Date(now).toISOString(),
      stocks,
      outcomes,
      shards: workers.shards,
      projectors: workers.projectors,
      webhooks: workers.webhooks,
      dlq: { kafka: workers.projectors.reduce((n, p) => n + p.dlq, 0), outbox: outboxDead },
      targets: workers.targets,
    };
    this.lastAt = now;
    for (const listener of this.listeners) listener(this.last);
  }
}
