/**
 * Redis at its memory limit with `maxmemory-policy noeviction` (docs/design.md §3): an allocation is
 * refused whole (nothing written, no event) and the buyer gets 503 `store_unavailable`, never a 500;
 * once there is room again it goes through. On a private redis-server (its limit is changed here).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freePort } from "../shared/dev/env.ts";
import { startPrivateRedis } from "../shared/dev/processes.ts";
import { createTestApi, type TestApi } from "./support/api.ts";
import { readCounters, readOutbox } from "./support/invariants.ts";

let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
let api: TestApi;

beforeAll(async () => {
  redis = await startPrivateRedis(freePort());
  api = createTestApi({ shards: 1, redis: { REDIS_URL: redis.url } });
});
afterAll(async () => {
  await api?.close();
  await redis?.stop();
});

test("at maxmemory with noeviction an allocation writes nothing and answers 503 store_unavailable; with room it succeeds", async () => {
  const stock = await api.commands.createStock({ name: "Full", price: 100, quantity: 10, perUserLimit: 5 });
  const user = await api.user("oom-buyer");
  const before = await readCounters(api.redis, api.keys, stock.id);
  const outboxBefore = (await readOutbox(api.redis, api.keys)).length;

  // Fill the server to its limit: used memory now, plus 1 MB, then ballast until writes are refused.
  const used = Number(/^used_memory:(\d+)/m.exec(await redis.client.info("memory"))![1]);
  await redis.client.config("SET", "maxmemory-policy", "noeviction");
  await redis.client.config("SET", "maxmemory", String(used + 1024 * 1024));
  // Large pieces, then smaller ones: a refused large SET frees its own query buffer, which leaves room
  // for small writes; the server is full when even a 100-byte SET is refused.
  let refused = "";
  let n = 0;
  for (const size of [64 * 1024, 4 * 1024, 256, 100]) {
    refused = "";
    for (let i = 0; i < 2_000 && !refused; i++) {
      await redis.client.set(`ballast:${n++}`, "x".repeat(size)).catch((err: Error) => (refused = err.message));
    }
  }
  expect(refused).toStartWith("OOM");

  const res = await api.request("POST", `/api/stocks/${stock.id}/allocate`, { headers: user, body: { quantity: 1 } });
  const body = (await res.json()) as { code: string };
  console.log(`[oom] allocate at maxmemory: ${res.status} ${body.code}`);
  expect(res.status).toBe(503);
  expect(body.code).toBe("store_unavailable");
  expect(await readCounters(api.redis, api.keys, stock.id)).toEqual(before);
  expect((await readOutbox(api.redis, api.keys)).length).toBe(outboxBefore);

  await redis.client.config("SET", "maxmemory", "0");
  const ok = await api.request("POST", `/api/stocks/${stock.id}/allocate`, { headers: user, body: { quantity: 1 } });
  expect(ok.status).toBe(201);
});
