/**
 * The waiting room through crashes (issue 24): the api and the expirer are killed (SIGKILL) and
 * restarted while buyers join, wait for the draw, poll, allocate, buy, let admissions and holds run
 * out. No ticket is lost or doubled, every unit is sold through an admission, and the room's
 * invariants (shared/verify/room.ts) hold at the end. Single node and the stack's cluster.
 * Restarts are observed from /readyz answering again, not from sleeps.
 */
import { afterAll, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { mintUserToken } from "../shared/dev/token.ts";
import { createKeyLayout } from "../shared/domain/keys.ts";
import { freePort, uniqueName } from "../shared/dev/env.ts";
import { createRedis, deleteKeysByPrefix } from "../shared/redis/client.ts";
import { describeEachRedis, TEST_JWT_SECRET } from "./support/api.ts";
import { killChild, serviceProcesses } from "./support/processes.ts";
import { roomSale, saleEnv, waitReady } from "./support/room-sale.ts";

const SHARDS = 8;
const UNITS = 15;
const BUYERS = 60;

describeEachRedis((target) => {
  const prefix = uniqueName("roomrst");
  const port = freePort();
  const base = `http://127.0.0.1:${port}`;
  const redis = createRedis(target.target);
  const keys = createKeyLayout(prefix, SHARDS);
  const env = () => saleEnv(target.target, { prefix, port, shards: SHARDS });
  const apis = serviceProcesses("api", env);
  const expirers = serviceProcesses("expirer", env);
  afterAll(async () => {
    await deleteKeysByPrefix(redis, prefix);
    await redis.quit();
  });

  const sale = roomSale(base);

  test("kill -9 of the api and of the expirer mid-sale: no ticket lost or doubled, every unit sold through an admission", async () => {
    let api: Subprocess = apis.start();
    let expirer: Subprocess = expirers.start();
    await waitReady(`${base}/readyz`);
    await waitReady(`http://127.0.0.1:${expirers.adminPort}/readyz`);
    const startsAt = Date.now() + 2_000;
    await sale.createStock({ id: "drop", name: "Drop", price: 100, quantity: UNITS, perUserLimit: 1, holdSeconds: 2, startsAt: new Date(startsAt).toISOString(), waitingRoom: { enabled: true, admissionTtlSeconds: 5 } });
    const auth = await Promise.all(Array.from({ length: BUYERS }, async (_, i) => ({ Authorization: `Bearer ${await mintUserToken(`r${i}`, TEST_JWT_SECRET)}` })));
    const tickets = await Promise.all(auth.map((headers, i) => sale.join("drop", i, headers)));
    // Buyers: poll; once admitted, a quarter let the admission expire, a quarter let the hold expire, the rest buy.
    const buyers = auth.map((headers, i) => sale.buy("drop", i, headers));

    // The crashes: the expirer dies before the start (the draw waits for its restart), the api in the middle, the expirer again.
    const restarts: string[] = [];
    const crashes = (async () => {
      await killChild(expirer);
      await Bun.sleep(Math.max(0, startsAt - Date.now()) + 1_000);
      expirer = expirers.start();
      await waitReady(`http://127.0.0.1:${expirers.adminPort}/readyz`);
      restarts.push(`expirer back ${Date.now() - startsAt} ms after the start`);
      await Bun.sleep(1_500);
      await killChild(api);
      await Bun.sleep(500);
      api = apis.start();
      await waitReady(`${base}/readyz`);
      restarts.push(`api back ${Date.now() - startsAt} ms after the start`);
      await Bun.sleep(1_500);
      await killChild(expirer);
      await Bun.sleep(1_000);
      expirer = expirers.start();
      await waitReady(`http://127.0.0.1:${expirers.adminPort}/readyz`);
      restarts.push(`expirer back again ${Date.now() - startsAt} ms after the start`);
    })();
    await Promise.all([crashes, ...buyers]);
    console.log(`[room-restarts] ${target.name}: ${restarts.join("; ")}; ${sale.told.allocations.length} allocations; finals ${JSON.stringify(sale.finalsCounted())}`);

    await sale.expectNothingLostOrDoubled(redis, keys, "drop", UNITS, BUYERS);
    const draw = (await (await sale.send("/api/stocks/drop/queue/draw")).json()) as { tickets: string[] };
    expect([...draw.tickets].sort()).toEqual([...tickets].sort());
  }, 90_000);
});
