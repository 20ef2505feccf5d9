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
  const gauge = (name: string, help: string, value: (v: RoomView) => number) =>
    new prom.Gauge({
      name,
      help,
      labelNames: ["stock"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const [stock, view] of await sample()) this.set({ stock }, value(view));
      },
    });
  const counter = (name: string, help: string, value: (v: RoomView) => number) =>
    new prom.Counter({
      name,
      help,
      labelNames: ["stock"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const [stock, view] of await sample()) this.inc({ stock }, value(view));
      },
    });
  gauge("flashsale_room_waiting", "Tickets waiting in a stock's waiting room (pre-queue and line)", (v) => (v.soldOut ? 0 : v.waiting));
  gauge("flashsale_room_admitted", "Admissions not yet used nor expired (admitted and unresolved)", (v) => v.admitted);
  counter("flashsale_room_admissions_total", "Tickets admitted so far (rate() = admitted per second)", (v) => v.admissions);
  counter("flashsale_room_wait_seconds_total", "Time waited from join to admission, summed (÷ admissions = mean wait)", (v) => v.waitedSeconds);
}
