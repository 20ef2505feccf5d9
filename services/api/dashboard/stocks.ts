/**
 * The dashboard's Redis source: per stock, the strong counters (the same read as GET /api/stocks/:id),
 * so the page agrees with the api to the unit; stocks are found by an incremental SCAN (a few hundred
 * keys per tick, never a full sweep at once) or pinned with ?stocks=. Also the outbox dead letters (XLEN).
 *
 * Pins belong to a view (a page's stream, one snapshot request) and last as long as it: each pin is
 * counted, and given back when its view goes. They were one set that only grew: every ?stocks= a
 * client ever sent stayed sampled from Redis every second, for ever.
 */
import type { Registry } from "prom-client";
import { keyHolders, type RedisClient } from "../../../shared/redis/client.ts";
import { prom } from "../../../shared/metrics.ts";
import type { StockCommands } from "../../../shared/redis/commands.ts";
import type { StockView } from "../../../shared/domain/views.ts";
import { pushSample } from "./metric-names.ts";
import { createRoomCommands, type RoomCommands } from "../../../shared/redis/room.ts";

/** Stocks a view shows besides the ones it pins: the busiest. */
export const MAX_STOCKS_SHOWN = 12;
const MAX_STOCKS_KNOWN = 200;
const SCAN_COUNT = 500;

export interface StockPanel extends Pick<StockView, "id" | "name" | "total" | "available" | "held" | "sold" | "status" | "version"> {
  /** Units taken per second (drop of `available`), the last HISTORY samples, oldest first. */
  rate: number[];
  /** When the dashboard first saw it sold out (1 s resolution); null while units are left. */
  soldOutAt: string | null;
  /** Its waiting room's figures, when it has one (docs/waiting-room.md). */
  room?: RoomPanel;
}

export interface RoomPanel {
  waiting: number;
  admitted: number;
  soldOut: boolean;
  /** Admissions per second since the last tick. */
  admittedPerSecond: number;
  /** Mean time from join to admission, over every admission so far. */
  meanWaitSeconds: number;
}

export class StockCounters {
  /** Pinned stock id → how many open views pin it. */
  private readonly pinned = new Map<string, number>();
  private readonly known = new Set<string>();
  private scanCursors = new Map<string, string>();
  private readonly stockState = new Map<string, { available: number; rate: number[]; soldOutAt: string | null }>();
  private readonly roomAdmissions = new Map<string, number>();
  private readonly rooms: RoomCommands;

  constructor(
    private readonly redis: RedisClient,
    private readonly commands: StockCommands,
  ) {
    this.rooms = createRoomCommands(redis, commands.keys);
  }

  /** A waiting-room stock's figures; admissions per second from the change since the last tick. */
  private async roomPanel(id: string, dt: number): Promise<RoomPanel | undefined> {
    const view = await this.rooms.summary(id).catch(() => null);
    if (!view) return undefined;
    const before = this.roomAdmissions.get(id);
    this.roomAdmissions.set(id, view.admissions);
    return {
      waiting: view.waiting,
      admitted: view.admitted,
      soldOut: view.soldOut,
      admittedPerSecond: dt > 0 && before !== undefined ? Math.max(0, view.admissions - before) / dt : 0,
      meanWaitSeconds: view.admissions > 0 ? view.waitedSeconds / view.admissions : 0,
    };
  }

  /**
   * Exports the shown stocks' counters and sold-out times to Prometheus (the Grafana dashboard's stock
   * panels), read from Redis when scraped. Bounded cardinality: the stocks the dashboard shows.
   */
  registerGauges(registry: Registry): void {
    const counters = this;
    new prom.Gauge({
      name: "flashsale_stock_units",
      help: "Units of a stock by state (available, held, sold), read from Redis when scraped; the dashboard's stocks",
      labelNames: ["stock", "state"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const s of await counters.sample()) {
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
        for (const [stock, state] of counters.stockState) {
          if (state.soldOutAt) this.set({ stock }, Date.parse(state.soldOutAt) / 1000);
        }
      },
    });
  }

  /** Stocks sampled whatever the scan finds, until the returned function is called (the view is gone). */
  pin(stockIds: readonly string[]): () => void {
    const ids = [...new Set(stockIds)];
    for (const id of ids) this.pinned.set(id, (this.pinned.get(id) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const id of ids) {
        const left = (this.pinned.get(id) ?? 1) - 1;
        if (left > 0) this.pinned.set(id, left);
        else this.pinned.delete(id);
      }
    };
  }

  /** How many distinct stocks open views pin (bounded by SSE_MAX_CLIENTS × the per-view cap). */
  get pinnedCount(): number {
    return this.pinned.size;
  }

  /**
   * The panels of every sampled stock (pinned by any view, or found by the scan), busiest first; each
   * view then takes its own pins and the top of the rest (routes.ts). `dt` (seconds since the last
   * tick, 0 on the first) turns the drop of `available` into a rate.
   */
  async panels(dt: number): Promise<StockPanel[]> {
    const views = await this.sample();
    const panels = await Promise.all(
      views.map(async (view): Promise<StockPanel> => {
        const state = this.stockState.get(view.id)!;
        if (dt > 0) pushSample(state.rate, Math.max(0, state.available - view.available) / dt);
        state.available = view.available;
        const { id, name, total, available, held, sold, status, version } = view;
        const room = view.waitingRoom ? await this.roomPanel(id, dt) : undefined;
        return { id, name, total, available, held, sold, status, version, rate: [...state.rate], soldOutAt: state.soldOutAt, ...(room ? { room } : {}) };
      }),
    );
    // The busiest (recent units/s), then the newest changes (version).
    const recent = (p: StockPanel) => p.rate.slice(-10).reduce((a, b) => a + b, 0);
    panels.sort((a, b) => recent(b) - recent(a) || b.version - a.version);
    return panels;
  }

  /** Outbox entries the relay refused (XLEN of every shard's dead-letter stream). */
  async countOutboxDead(): Promise<number> {
    const { redis, commands } = this;
    const lengths = await Promise.all(commands.keys.allShards().map((s) => redis.xlen(commands.keys.outboxDeadLetter(s)).catch(() => 0)));
    return lengths.reduce((a, b) => a + b, 0);
  }

  private async discover(): Promise<void> {
    const { redis, commands } = this;
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
  private async sample(): Promise<StockView[]> {
    await this.discover().catch(() => {});
    const ids = [...new Set([...this.pinned.keys(), ...this.known])];
    const views = (await Promise.all(ids.map((id) => this.commands.getStock(id).catch(() => null)))).filter(
      (v): v is StockView => v !== null,
    );
    for (const view of views) {
      const state = this.stockState.get(view.id) ?? { available: view.available, rate: [], soldOutAt: null };
      if (view.available === 0 && state.soldOutAt === null) state.soldOutAt = new Date().toISOString();
      if (view.available > 0) state.soldOutAt = null;
      this.stockState.set(view.id, state);
    }
    // A stock no longer sampled (its views are gone, or it left Redis) takes its rate history with it.
    const sampled = new Set(ids);
    for (const id of this.stockState.keys()) if (!sampled.has(id)) this.stockState.delete(id);
    return views;
  }
}
