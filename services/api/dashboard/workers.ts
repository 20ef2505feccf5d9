/**
 * The dashboard's worker source: relay lag and backlog per shard, projector freshness p99, consumer lag
 * and dead letters, and the notifier's deliveries, failures, lag and backlog per webhook endpoint, by
 * scraping the workers' /metrics (WORKER_METRICS_URLS): the dashboard shows the very numbers Prometheus
 * alerts on, computed once by the worker that knows them, and the api needs no Kafka client for it.
 */
import { histogramBuckets, parsePromText, quantileBetween, sumOf, type Sample } from "../../../shared/prom-text.ts";
import { METRIC } from "./metric-names.ts";

/** Freshness p99 is computed over the observations of this window (like rate(...[30s]) in PromQL). */
const FRESHNESS_WINDOW_MS = 30_000;

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

export interface WorkerPanels {
  targets: TargetStatus[];
  shards: ShardPanel[];
  projectors: ProjectorPanel[];
  webhooks: WebhookPanel[];
}

/** What a panel computes from one worker's latest scrape and the ones before it. */
interface ScrapeWindow {
  /** Increase of a counter per second since the previous scrape (0 on the first). */
  perSecond(name: string, where?: Record<string, string>): number;
  /** p99 of a histogram's observations over the window; null on the first scrape or without observations. */
  p99(name: string, where?: Record<string, string>): number | null;
}

/** Per worker, its recent scrapes: the oldest within FRESHNESS_WINDOW_MS and the previous one. */
class ScrapeHistory {
  private readonly byKey = new Map<string, { at: number; samples: Sample[] }[]>();

  add(key: string, samples: Sample[], now: number): ScrapeWindow {
    const history = this.byKey.get(key) ?? [];
    history.push({ at: now, samples });
    while (history.length > 2 && now - history[1]!.at >= FRESHNESS_WINDOW_MS) history.shift();
    this.byKey.set(key, history);
    const oldest = history[0]!;
    const previous = history.at(-2);
    return {
      perSecond: (name, where = {}) =>
        previous && now > previous.at ? Math.max(0, sumOf(samples, name, where) - sumOf(previous.samples, name, where)) / ((now - previous.at) / 1000) : 0,
      p99: (name, where = {}) =>
        history.length > 1 ? quantileBetween(0.99, histogramBuckets(oldest.samples, name, where), histogramBuckets(samples, name, where)) : null,
    };
  }
}

type Scrape = { url: string; samples: Sample[] } | { url: string; error: string };

export class WorkerScraper {
  /** Per projector service (the freshness window and the applied rate). */
  private readonly projectorScrapes = new ScrapeHistory();
  /** Per notifier (lag window, rates). */
  private readonly webhookScrapes = new ScrapeHistory();

  constructor(
    private readonly urls: readonly string[],
    /** Unset: the global fetch, looked up at each scrape. */
    private readonly doFetch?: typeof fetch,
  ) {}

  async collect(now: number): Promise<WorkerPanels> {
    const scrapes = await Promise.all(this.urls.map((url) => this.scrape(url)));
    const targets: TargetStatus[] = [];
    const shards = new Map<number, ShardPanel>();
    const projectors: ProjectorPanel[] = [];
    const webhooks: WebhookPanel[] = [];
    for (const scrape of scrapes) {
      if (!("samples" in scrape)) {
        targets.push({ url: scrape.url, service: null, up: false, error: scrape.error });
        continue;
      }
      const samples = scrape.samples;
      const service = samples.find((s) => s.labels.service)?.labels.service ?? null;
      targets.push({ url: scrape.url, service, up: true });
      addShardGauges(shards, samples);
      if (service && samples.some((s) => s.name === `${METRIC.projectorFreshness}_count`)) {
        projectors.push(this.projectorPanel(`${service} (${new URL(scrape.url).port})`, samples, now));
      }
      // Only the notifier holding the delivery lease sends; a standby's counters do not move.
      if (samples.some((s) => s.name === "flashsale_notifier_delivery_leader" && s.value === 1)) webhooks.push(...this.webhookPanels(`${scrape.url}`, samples, now));
    }
    return { targets, shards: [...shards.values()].sort((a, b) => a.shard - b.shard), projectors, webhooks };
  }

  private async scrape(url: string): Promise<Scrape> {
    try {
      const res = await (this.doFetch ?? fetch)(url, { signal: AbortSignal.timeout(1500) });
      if (!res.ok) return { url, error: `HTTP ${res.status}` };
      return { url, samples: parsePromText(await res.text()) };
    } catch (err) {
      return { url, error: (err as Error).message };
    }
  }

  private webhookPanels(key: string, samples: Sample[], now: number): WebhookPanel[] {
    const window = this.webhookScrapes.add(key, samples, now);
    const endpoints = new Set(samples.filter((s) => s.name === METRIC.webhookBacklog).map((s) => s.labels.endpoint!));
    return [...endpoints].sort().map((endpoint) => {
      const where = { endpoint };
      return {
        endpoint,
        deliveredPerSecond: window.perSecond(METRIC.webhookDeliveries, where),
        failedPerSecond: window.perSecond(METRIC.webhookFailures, where),
        lagP99Seconds: window.p99(METRIC.webhookLag, where),
        backlog: sumOf(samples, METRIC.webhookBacklog, where),
        deadLetters: sumOf(samples, METRIC.webhookDeadLetters, where),
      };
    });
  }

  private projectorPanel(key: string, samples: Sample[], now: number): ProjectorPanel {
    const window = this.projectorScrapes.add(key, samples, now);
    return {
      service: key,
      freshnessP99Seconds: window.p99(METRIC.projectorFreshness),
      consumerLag: sumOf(samples, METRIC.projectorConsumerLag),
      dlq: sumOf(samples, METRIC.projectorDlq),
      appliedPerSecond: window.perSecond(METRIC.projectorApplied),
    };
  }
}

/** Every relay reads every shard's gauges from Redis: with several relays, keep the largest. */
function addShardGauges(shards: Map<number, ShardPanel>, samples: Sample[]): void {
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
}
