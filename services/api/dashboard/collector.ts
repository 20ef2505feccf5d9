/**
 * What the live dashboard shows, sampled once a second while someone watches:
 * - per stock, the strong counters from Redis (the same read as GET /api/stocks/:id), so the page
 *   agrees with the api to the unit; stocks are found by an incremental SCAN (a few hundred keys per
 *   tick, never a full sweep at once) or pinned with ?stocks=;
 * - allocation outcomes per second from this api process's own registry;
 * - relay lag and backlog per shard, projector freshness p99, consumer lag and dead letters, and the
 *   notifier's deliveries, failures, lag and backlog per webhook endpoint, by scraping
 *   the workers' /metrics (WORKER_METRICS_URLS): the dashboard shows the very numbers Prometheus alerts
 *   on, computed once by the worker that knows them, and the api needs no Kafka client for it.
 */
import { keyHolders, type RedisClient } from "../../../shared/redis/client.ts";
import type { Registry } from "prom-client";
import { prom } from "../../../shared/metrics.ts";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import { histogramBuckets, parsePromText, quantileBetween, sumOf, type Sample } from "../../../shared/prom-text.ts";
import type { StockView } from "../../../shared/domain/views.ts";

/** Metric names the dashboard reads (the workers' and the api's own). */
export const METRIC = {
  stockUnits: "flashsale_stock_units",
  stockSoldOut: "flashsale_stock_sold_out_timestamp_seconds",
  allocations: "flashsale_allocations_total",
  httpRequests: "flashsale_http_requests_total",
  httpStatusLabel: "code",
  relayShardLag: "flashsale_relay_shard_lag_seconds",
  relayOutboxLength: "flashsale_relay_outbox_length",
  relayOutboxPending: "flashsale_relay_outbox_pending",
  projectorFreshness: "flashsale_projector_freshness_seconds",
  projectorConsumerLag: "flashsale_projector_consumer_lag",
  projectorDlq: "flashsale_projector_dlq_messages_total",
  projectorApplied: "flashsale_projector_events_applied_total",
  webhookDeliveries: "flashsale_notifier_deliveries_total",
  webhookFailures: "flashsale_notifier_delivery_failures_total",
  webhookLag: "flashsale_notifier_delivery_lag_seconds",
  webhookBacklog: "flashsale_notifier_backlog",
  webhookDeadLetters: "flashsale_notifier_dead_letter_backlog",
} as const;

const HISTORY = 60;
const MAX_STOCKS_SHOWN = 12;
const MAX_STOCKS_KNOWN = 200;
const SCAN_COUNT = 500;
/** Freshness p99 is computed over the observations of this window (like rate(...[30s]) in PromQL). */
const FRESHNESS_WINDOW_MS = 30_000;

export const OUTCOMES = ["201", "sold_out", "limit", "429", "5xx"] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface StockPanel extends Pick<StockView, "id" | "name" | "total" | "available" | "held" | "sold" | "status" | "version"> {
  /** Units taken per second (drop of `available`), the last HISTORY samples, oldest first. */
  rate: number[];
  /** When the dashboard first saw it sold out (1 s resolution); null while units are left. */
  soldOutAt: string | null;
}

export interface ShardPanel {
  shard: number;
  lagSeconds: number;
  length: number;
  pending: number;
}

export interface ProjectorPanel {
  service: string;
  /** p99 of commit − occurredAt over the last 30 s; null without events in that window. */
  freshnessP99Seconds: number | null;
  consumerLag: number;
  dlq: number;
  appliedPerSecond: number;
}

export interface WebhookPanel {
  endpoint: string;
  deliveredPerSecond: number;
  failedPerSecond: number;
  /** p99 of delivered − occurredAt over the last 30 s; null without deliveries in that window. */
  lagP99Seconds: number | null;
  backlog: number;
  deadLetters: number;
}

export interface TargetStatus {
  url: string;
  service: string | null;
  up: boolean;
  error?: string;
}

export interface DashboardSnapshot {
  at: string;
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
  private readonly pinned = new Set<string>();
  private readonly known = new Set<string>();
  private scanCursors = new Map<string, string>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private ticking = false;
  private last: DashboardSnapshot | undefined;
  private lastAt = 0;
  private readonly stockState = new Map<string, { available: number; rate: number[]; soldOutAt: string | null }>();
  private previousOwn: Sample[] | undefined;
  private readonly outcomeHistory = Object.fromEntries(OUTCOMES.map((o) => [o, [] as number[]])) as Record<Outcome, number[]>;
  /** Per projector service: its recent scrapes (for the freshness window and the applied rate). */
  private readonly projectorScrapes = new Map<string, { at: number; samples: Sample[] }[]>();
  /** Per notifier: its recent scrapes (lag window, rates). */
  private readonly webhookScrapes = new Map<string, { at: number; samples: Sample[] }[]>();

  constructor(private readonly deps: CollectorDeps) {}

  /**
   * Exports the shown stocks' counters and sold-out times to Prometheus (the Grafana dashboard's stock
   * panels), read from Redis when scraped. Bounded cardinality: the stocks the dashboard shows.
   */
  registerStockGauges(registry: Registry): void {
    const collector = this;
    new prom.Gauge({
      name: "flashsale_stock_units",
      help: "Units of a stock by state (available, held, sold), read from Redis when scraped; the dashboard's stocks",
      labelNames: ["stock", "state"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of await collector.sampleStocks()) {
          for (const state of ["available", "held", "sold"] as const) this.set({ stock: s.id, state }, s[state]);
        }
      },
    });
    new prom.Gauge({
      name: "flashsale_stock_sold_out_timestamp_seconds",
      help: "When the dashboard first saw the stock sold out (Unix seconds)",
      labelNames: ["stock"] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [stock, state] of collector.stockState) {
          if (state.soldOutAt) this.set({ stock }, Date.parse(state.soldOutAt) / 1000);
        }
      },
    });
  }

  /** Stocks to show whatever the scan finds (a page opened with ?stocks=a,b). */
  pin(stockIds: readonly string[]): void {
    for (const id of stockIds) this.pinned.add(id);
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

  /** A fresh snapshot (at most one interval old). */
  async snapshot(): Promise<DashboardSnapshot> {
    if (!this.last || Date.now() - this.lastAt > (this.deps.intervalMs ?? 1000)) await this.tick();
    return this.last!;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const now = Date.now();
      const dt = this.lastAt ? (now - this.lastAt) / 1000 : 0;
      const [stocks, outcomes, workers, outboxDead] = await Promise.all([
        this.collectStocks(dt),
        this.collectOutcomes(dt),
        this.collectWorkers(now),
        this.countOutboxDead(),
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
    } finally {
      this.ticking = false;
    }
  }

  private async discoverStocks(): Promise<void> {
    const { redis, commands } = this.deps;
    const prefix = commands.keys.prefix;
    const stockKey = new RegExp(`^${prefix}:\\{\\d+\\}:stock:([^:]+)$`);
    // SCAN is per node: on a cluster, one cursor per master (a single node is its own only master).
    for (const node of await keyHolders(redis)) {
      const at = `${node.options.host}:${node.options.port}`;
      const [cursor, keys] = await node.scan(this.scanCursors.get(at) ?? "0", "MATCH", `${prefix}:{*}:stock:*`, "COUNT", SCAN_COUNT);
      this.scanCursors.set(at, cursor);
      for (const key of keys) {
        const id = stockKey.exec(key)?.[1];
        if (id && this.known.size < MAX_STOCKS_KNOWN) this.known.add(id);
      }
    }
  }

  /** The known stocks' views from Redis (one more SCAN step first); keeps their sold-out times. */
  private async sampleStocks(): Promise<StockView[]> {
    await this.discoverStocks().catch(() => {});
    const ids = [...new Set([...this.pinned, ...this.known])];
    const views = (await Promise.all(ids.map((id) => this.deps.commands.getStock(id).catch(() => null)))).filter(
      (v): v is StockView => v !== null,
    );
    for (const view of views) {
      const state = this.stockState.get(view.id) ?? { available: view.available, rate: [], soldOutAt: null };
      if (view.available === 0 && state.soldOutAt === null) state.soldOutAt = new Date().toISOString();
      if (view.available > 0) state.soldOutAt = null;
      this.stockState.set(view.id, state);
    }
    return views;
  }

  private async collectStocks(dt: number): Promise<StockPanel[]> {
    const views = await this.sampleStocks();
    const panels = views.map((view) => {
      const state = this.stockState.get(view.id)!;
      if (dt > 0) push(state.rate, Math.max(0, state.available - view.available) / dt);
      state.available = view.available;
      const { id, name, total, available, held, sold, status, version } = view;
      return { id, name, total, available, held, sold, status, version, rate: [...state.rate], soldOutAt: state.soldOutAt };
    });
    // Pinned first, then the busiest (recent units/s), then the newest changes (version).
    const recent = (p: StockPanel) => p.rate.slice(-10).reduce((a, b) => a + b, 0);
    panels.sort(
      (a, b) => Number(this.pinned.has(b.id)) - Number(this.pinned.has(a.id)) || recent(b) - recent(a) || b.version - a.version,
    );
    return panels.slice(0, Math.max(MAX_STOCKS_SHOWN, this.pinned.size));
  }

  private async collectOutcomes(dt: number): Promise<Record<Outcome, number[]>> {
    // The two counters only: the whole registry would also run the stock gauges' Redis reads.
    const own: Sample[] = [];
    for (const name of [METRIC.allocations, METRIC.httpRequests]) {
      const metric = this.deps.registry.getSingleMetric(name);
      for (const v of metric ? (await metric.get()).values : []) own.push({ name, labels: v.labels as Record<string, string>, value: v.value });
    }
    const counts = (samples: Sample[]): Record<Outcome, number> => {
      const status = (pred: (code: number) => boolean) =>
        samples
          .filter((s) => s.name === METRIC.httpRequests && pred(Number(s.labels[METRIC.httpStatusLabel])))
          .reduce((n, s) => n + s.value, 0);
      return {
        "201": sumOf(samples, METRIC.allocations, { outcome: "held" }) + sumOf(samples, METRIC.allocations, { outcome: "replayed" }),
        sold_out: sumOf(samples, METRIC.allocations, { outcome: "sold_out" }),
        limit: sumOf(samples, METRIC.allocations, { outcome: "limit_exceeded" }),
        "429": status((code) => code === 429),
        "5xx": status((code) => code >= 500),
      };
    };
    const now = counts(own);
    if (this.previousOwn && dt > 0) {
      const before = counts(this.previousOwn);
      for (const o of OUTCOMES) push(this.outcomeHistory[o], Math.max(0, now[o] - before[o]) / dt);
    }
    this.previousOwn = own;
    return Object.fromEntries(OUTCOMES.map((o) => [o, [...this.outcomeHistory[o]]])) as Record<Outcome, number[]>;
  }

  private async collectWorkers(now: number) {
    const doFetch = this.deps.fetch ?? fetch;
    const scrapes = await Promise.all(
      this.deps.workerMetricsUrls.map(async (url) => {
        try {
          const res = await doFetch(url, { signal: AbortSignal.timeout(1500) });
          if (!res.ok) return { url, error: `HTTP ${res.status}` };
          return { url, samples: parsePromText(await res.text()) };
        } catch (err) {
          return { url, error: (err as Error).message };
        }
      }),
    );
    const targets: TargetStatus[] = [];
    const shards = new Map<number, ShardPanel>();
    const projectors: ProjectorPanel[] = [];
    const webhooks: WebhookPanel[] = [];
    for (const scrape of scrapes) {
      if (!("samples" in scrape) || !scrape.samples) {
        targets.push({ url: scrape.url, service: null, up: false, error: scrape.error });
        continue;
      }
      const samples = scrape.samples;
      const service = samples.find((s) => s.labels.service)?.labels.service ?? null;
      targets.push({ url: scrape.url, service, up: true });
      // Every relay reads every shard's gauges from Redis: with several relays, keep the largest.
      for (const s of samples) {
        if (s.labels.shard === undefined) continue;
        const shard = Number(s.labels.shard);
        const panel = shards.get(shard) ?? { shard, lagSeconds: 0, length: 0, pending: 0 };
        if (s.name === METRIC.relayShardLag) panel.lagSeconds = Math.max(panel.lagSeconds, s.value);
        else if (s.name === METRIC.relayOutboxLength) panel.length = Math.max(panel.length, s.value);
        else if (s.name === METRIC.relayOutboxPending) panel.pending = Math.max(panel.pending, s.value);
        else continue;
        shards.set(shard, panel);
      }
      if (service && samples.some((s) => s.name === `${METRIC.projectorFreshness}_count`)) {
        projectors.push(this.projectorPanel(`${service} (${new URL(scrape.url).port})`, samples, now));
      }
      // Only the notifier holding the delivery lease sends; a standby's counters do not move.
      if (samples.some((s) => s.name === "flashsale_notifier_delivery_leader" && s.value === 1)) webhooks.push(...this.webhookPanels(`${scrape.url}`, samples, now));
    }
    return { targets, shards: [...shards.values()].sort((a, b) => a.shard - b.shard), projectors, webhooks };
  }

  private webhookPanels(key: string, samples: Sample[], now: number): WebhookPanel[] {
    const history = this.webhookScrapes.get(key) ?? [];
    history.push({ at: now, samples });
    while (history.length > 2 && now - history[1]!.at >= FRESHNESS_WINDOW_MS) history.shift();
    this.webhookScrapes.set(key, history);
    const oldest = history[0]!;
    const previous = history.at(-2);
    const endpoints = new Set(samples.filter((s) => s.name === METRIC.webhookBacklog).map((s) => s.labels.endpoint!));
    const perSecond = (name: string, where: Record<string, string>) =>
      previous && now > previous.at ? Math.max(0, sumOf(samples, name, where) - sumOf(previous.samples, name, where)) / ((now - previous.at) / 1000) : 0;
    return [...endpoints].sort().map((endpoint) => {
      const where = { endpoint };
      return {
        endpoint,
        deliveredPerSecond: perSecond(METRIC.webhookDeliveries, where),
        failedPerSecond: perSecond(METRIC.webhookFailures, where),
        lagP99Seconds:
          history.length > 1
            ? quantileBetween(0.99, histogramBuckets(oldest.samples, METRIC.webhookLag, where), histogramBuckets(samples, METRIC.webhookLag, where))
            : null,
        backlog: sumOf(samples, METRIC.webhookBacklog, where),
        deadLetters: sumOf(samples, METRIC.webhookDeadLetters, where),
      };
    });
  }

  private projectorPanel(key: string, samples: Sample[], now: number): ProjectorPanel {
    const history = this.projectorScrapes.get(key) ?? [];
    history.push({ at: now, samples });
    while (history.length > 2 && now - history[1]!.at >= FRESHNESS_WINDOW_MS) history.shift();
    this.projectorScrapes.set(key, history);
    const oldest = history[0]!;
    const previous = history.at(-2);
    const appliedPerSecond =
      previous && now > previous.at
        ? Math.max(0, sumOf(samples, METRIC.projectorApplied) - sumOf(previous.samples, METRIC.projectorApplied)) / ((now - previous.at) / 1000)
        : 0;
    return {
      service: key,
      freshnessP99Seconds:
        history.length > 1
          ? quantileBetween(0.99, histogramBuckets(oldest.samples, METRIC.projectorFreshness), histogramBuckets(samples, METRIC.projectorFreshness))
          : null,
      consumerLag: sumOf(samples, METRIC.projectorConsumerLag),
      dlq: sumOf(samples, METRIC.projectorDlq),
      appliedPerSecond,
    };
  }

  private async countOutboxDead(): Promise<number> {
    const { redis, commands } = this.deps;
    const lengths = await Promise.all(commands.keys.allShards().map((s) => redis.xlen(commands.keys.outboxDeadLetter(s)).catch(() => 0)));
    return lengths.reduce((a, b) => a + b, 0);
  }
}

function push(series: number[], value: number): void {
  series.push(Math.round(value * 100) / 100);
  if (series.length > HISTORY) series.shift();
}
