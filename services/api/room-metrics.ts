/**
 * Waiting-room figures for /metrics (docs/waiting-room.md), read from Redis when scraped: per open
 * room (the shards' rooms sets, at most MAX_ROOMS), tickets waiting and admitted now, admissions so
 * far and time waited (both counters: rate() of admissions is admitted/s, and
 * rate(wait seconds) / rate(admissions) the mean wait). Sold-out answers are counted by the routes.
 */
import type { Registry } from "prom-client";
import type { KeyLayout } from "../../shared/domain/keys.ts";
import { prom } from "../../shared/metrics.ts";
import type { RoomCommands } from "../../shared/redis/room.ts";
import type { RoomView } from "../../shared/domain/room.ts";

const MAX_ROOMS = 50;

export function registerRoomMetrics(registry: Registry, rooms: RoomCommands, keys: KeyLayout): void {
  let sampled: Promise<Array<[string, RoomView]>> | null = null;
  // One read of every room per scrape, shared by the four metrics.
  const sample = () =>
    (sampled ??= (async () => {
      try {
        const ids = (await Promise.all(keys.allShards().map((s) => rooms.roomsOf(s).catch(() => [])))).flat().slice(0, MAX_ROOMS);
        const views = await Promise.all(ids.map(async (id) => [id, await rooms.summary(id).catch(() => null)] as const));
        return views.filter((v): v is [string, RoomView] => v[1] !== null);
      } finally {
        setTimeout(() => (sampled = null), 100);
      }
    })());
  // Counters too are set from Redis' totals (reset, then the total), so rate() works across api restarts.
  const metric = (kind: "gauge" | "counter", name: string, help: string, value: (v: RoomView) => number) => {
    const config = { name, help, labelNames: ["stock"] as const, registers: [registry] };
    const set = async (write: (stock: string, n: number) => void, reset: () => void) => {
      reset();
      for (const [stock, view] of await sample()) write(stock, value(view));
    };
    if (kind === "gauge") new prom.Gauge({ ...config, collect() { return set((stock, n) => this.set({ stock }, n), () => this.reset()); } });
    else new prom.Counter({ ...config, collect() { return set((stock, n) => this.inc({ stock }, n), () => this.reset()); } });
  };
  metric("gauge", "flashsale_room_waiting", "Tickets waiting in a stock's waiting room (pre-queue and line)", (v) => (v.soldOut ? 0 : v.waiting));
  metric("gauge", "flashsale_room_admitted", "Admissions not yet used nor expired (admitted and unresolved)", (v) => v.admitted);
  metric("counter", "flashsale_room_admissions_total", "Tickets admitted so far (rate() = admitted per second)", (v) => v.admissions);
  metric("counter", "flashsale_room_wait_seconds_total", "Time waited from join to admission, summed (÷ admissions = mean wait)", (v) => v.waitedSeconds);
}
