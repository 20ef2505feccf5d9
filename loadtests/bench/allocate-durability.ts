/**
 * bench:allocate's `durability` target: what each REDIS_DURABILITY profile costs an allocation
 * (shared/redis/durability.ts, docs/design.md §3 "Durability"), measured in one run on one private
 * Redis master with one replica (shared/dev/private-redis.ts: its own ports, so appendfsync can be
 * changed and nothing else's traffic lands on it), the profiles one after the other:
 *   fast     commands.allocate() as today (appendfsync everysec, no wait)
 *   fsync    WAITAOF 1 0 on Redis 7.2+; on an older Redis the master is switched to appendfsync always for the run
 *   replica  WAIT 1 after the writes (group commit: one barrier for the writes of a round trip)
 * INFLIGHT calls in flight from this process (no HTTP), one stock, as the `ioredis` target. Throughput,
 * p50/p99, and each profile's throughput and p99 as a ratio of fast's from the same run.
 */
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { createRedis } from "../../shared/redis/client.ts";
import { createStockCommands } from "../../shared/redis/commands.ts";
import { createDurability, DURABILITY_PROFILES, type DurabilityProfile } from "../../shared/redis/durability.ts";
import { startPrivateRedis } from "../../shared/dev/private-redis.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { allocationLoop } from "./allocate-redis.ts";
import type { Row } from "./allocate-report.ts";

interface DurabilityBenchContext {
  profiles: DurabilityProfile[];
  inflight: number;
  warmupSeconds: number;
  durationSeconds: number;
  units: number;
  perUserLimit: number;
  record(row: Row): void;
  fail(): void;
}

/** Parses --durability (comma-separated profiles; fast is always measured, as the base of the ratios). */
export function parseProfiles(list: string): DurabilityProfile[] {
  const asked = list.split(",").map((p) => p.trim());
  for (const p of asked) if (!(DURABILITY_PROFILES as readonly string[]).includes(p)) throw new Error(`--durability: unknown profile ${p} (known: ${DURABILITY_PROFILES.join(", ")})`);
  return DURABILITY_PROFILES.filter((p) => p === "fast" || asked.includes(p));
}

let rounds = 0;

export async function benchDurability(ctx: DurabilityBenchContext): Promise<void> {
  // Each --repeat round starts with another profile: a noisy minute on a shared machine is spread over all of them.
  const round = rounds++;
  const order = ctx.profiles.map((_, i) => ctx.profiles[(i + round) % ctx.profiles.length]!);
  const server = await startPrivateRedis({ replica: true });
  const redis = createRedis(server.url);
  try {
    const waitAof = /redis_version:(?:[89]|7\.[2-9])/.test(await redis.info("server"));
    for (const profile of order) {
      const alwaysFsync = profile === "fsync" && !waitAof;
      if (alwaysFsync) await redis.config("SET", "appendfsync", "always");
      try {
        const registry = createMetricsRegistry("bench");
        const durability = await createDurability(redis, { profile, timeoutMs: 1_000, registry });
        const commands = createStockCommands(redis, createKeyLayout(`bdur${profile}`, 1), { durability });
        await commands.createStock({ id: "hot", name: "Hot", price: 1999, quantity: ctx.units, perUserLimit: ctx.perUserLimit });
        await allocationLoop(commands, ["hot"], ctx.inflight, ctx.warmupSeconds * 1000);
        const { n, latencies } = await allocationLoop(commands, ["hot"], ctx.inflight, ctx.durationSeconds * 1000);
        const unconfirmed = (await registry.getSingleMetric("flashsale_redis_durability_unconfirmed_total")?.get())?.values.reduce((a, v) => a + v.value, 0) ?? 0;
        const r = { rps: n / ctx.durationSeconds, p50: latencies[Math.floor(n * 0.5)]!, p99: latencies[Math.floor(n * 0.99)]!, unconfirmed };
        if (unconfirmed > 0) ctx.fail();
        const barrier = profile === "fast" ? "none" : profile === "replica" ? "WAIT 1" : waitAof ? "WAITAOF 1 0" : "appendfsync always";
        ctx.record({
          target: `durability ${profile}`,
          stocks: 1,
          closed: { rps: r.rps, p50: r.p50, p99: r.p99, requests: n, ok: unconfirmed === 0 },
          check: `${unconfirmed} unconfirmed`,
          note: `REDIS_DURABILITY=${profile} (${barrier}), private master + 1 replica, ${ctx.inflight} in flight, no HTTP`,
        });
      } finally {
        if (alwaysFsync) await redis.config("SET", "appendfsync", "everysec");
      }
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
}

/** The ratios table from the recorded rows (after mergeRows: the median over --repeat rounds). */
export function durabilityRatios(rows: Row[]): string {
  const byProfile = rows.filter((r) => r.target.startsWith("durability ") && r.closed);
  const fast = byProfile.find((r) => r.target === "durability fast")?.closed;
  if (!fast) return "";
  const lines = ["| profile | allocations/s | p50 ms | p99 ms | throughput vs fast | p99 vs fast |", "|---|---:|---:|---:|---:|---:|"];
  for (const r of byProfile) {
    const c = r.closed!;
    lines.push(`| ${r.target.slice("durability ".length)} | ${Math.round(c.rps).toLocaleString("en-US")} | ${c.p50.toFixed(2)} | ${c.p99.toFixed(2)} | ${(c.rps / fast.rps).toFixed(2)}x | ${(c.p99 / fast.p99).toFixed(2)}x |`);
  }
  return lines.join("\n");
}
