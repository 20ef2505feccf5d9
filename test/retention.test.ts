/**
 * Retention (issue 21 §9) against a real PostgreSQL: `pruneOnce` deletes, in batches, finished
 * webhook deliveries, dead letters and webhook events older than the webhook retention, and the
 * stock_events of sales that ended before the stock-events retention; it keeps pending deliveries
 * whatever their age, dead letters still waiting, events a delivery still needs, and the events of
 * recent or endless sales. `bun run retention` runs the same pass from the environment.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { pruneOnce } from "../shared/stores/postgres/retention.ts";
import { createTestDatabase, type TestDatabase } from "./support/read-side.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase("retention");
});
afterAll(async () => {
  await db.drop();
});

const DAY = 86_400_000;
const now = new Date();
const ago = (days: number) => new Date(now.getTime() - days * DAY);

/** n stock_events of `stock`, whose sale ended at `endsAt` (null: no end). */
async function stockWithEvents(stock: string, endsAt: Date | null, n: number): Promise<void> {
  await db.sql`INSERT INTO stocks (stock_id, ends_at, available, held, sold, version, updated_at) VALUES (${stock}, ${endsAt}, 0, 0, 0, ${n}, now())`;
  await db.sql`
    INSERT INTO stock_events (event_id, event_type, aggregate_id, version, occurred_at, payload)
    SELECT gen_random_uuid(), 'StockAllocated', ${stock}, v, now(), '{}'::jsonb FROM generate_series(1, ${n}) v`;
}

/** n webhook events recorded `days` ago, each with a delivery of `status` created then. */
async function webhookRows(endpoint: string, label: string, days: number, n: number, status: "pending" | "delivered" | "dead" | null): Promise<string[]> {
  const rows = await db.sql<{ event_id: string }[]>`
    INSERT INTO webhook_events (event_id, event_type, stock_id, version, occurred_at, body, recorded_at)
    SELECT gen_random_uuid(), 'StockAllocated', ${label}, v, now(), '{}', ${ago(days)} FROM generate_series(1, ${n}) v
    RETURNING event_id::text`;
  const ids = rows.map((r) => r.event_id);
  if (status) {
    await db.sql`
      INSERT INTO webhook_deliveries (endpoint_id, event_id, stock_id, version, status, created_at)
      SELECT ${endpoint}, e.event_id, e.stock_id, e.version, ${status}, ${ago(days)} FROM webhook_events e WHERE e.event_id = ANY (${ids}::uuid[])`;
  }
  return ids;
}

const count = async (table: string, where = "true") => Number((await db.sql.unsafe(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`))[0]!.n);

test("old finished webhook rows and ended sales' events go, in batches; what is still needed stays", async () => {
  await db.sql`INSERT INTO webhook_endpoints (endpoint_id, url, secret, source) VALUES ('ep', 'https://a.example/h', 'whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=', 'api')`;
  await stockWithEvents("ended-long-ago", ago(100), 23);
  await stockWithEvents("ended-recently", ago(10), 5);
  await stockWithEvents("no-end", null, 7);
  await webhookRows("ep", "old-delivered", 40, 25, "delivered");
  await webhookRows("ep", "old-pending", 40, 4, "pending"); // an endpoint down for 40 days: still to deliver
  const oldDead = await webhookRows("ep", "old-dead", 40, 3, "dead");
  const waitingDead = await webhookRows("ep", "waiting-dead", 40, 2, "dead");
  await webhookRows("ep", "old-unsubscribed", 40, 6, null); // no endpoint wanted them
  await webhookRows("ep", "recent", 5, 8, "delivered");
  // Dead letters: three died 35 days ago (nobody re-sent them), two died yesterday (still waiting for an operator).
  for (const [ids, died] of [[oldDead, ago(35)], [waitingDead, ago(1)]] as const) {
    await db.sql`
      INSERT INTO webhook_dead_letters (endpoint_id, event_id, stock_id, version, attempts, died_at)
      SELECT endpoint_id, event_id, stock_id, version, 12, ${died} FROM webhook_deliveries WHERE event_id = ANY (${ids as string[]}::uuid[])`;
  }

  const report = await pruneOnce(db.sql, { stockEventsDays: 90, webhookDays: 30, batch: 7, pauseMs: 0, now });
  expect(report).toMatchObject({ deadLetters: 3, deliveries: 25 + 3, webhookEvents: 25 + 3 + 6, stockEvents: 23 });
  // 7 rows per DELETE: 23 stock events take 4 statements, 28 deliveries 5 (the last finds none), …
  expect(report.batches).toBeGreaterThanOrEqual(4 + 5 + 5 + 1);

  expect(await count("stock_events", "aggregate_id = 'ended-long-ago'")).toBe(0);
  expect(await count("stock_events", "aggregate_id = 'ended-recently'")).toBe(5);
  expect(await count("stock_events", "aggregate_id = 'no-end'")).toBe(7);
  expect(await count("stocks")).toBe(3); // the read model's rows stay
  expect(await count("webhook_deliveries", "status = 'pending'")).toBe(4);
  expect(await count("webhook_deliveries", "stock_id = 'waiting-dead'")).toBe(2);
  expect(await count("webhook_dead_letters")).toBe(2);
  expect(await count("webhook_deliveries", "stock_id = 'recent'")).toBe(8);
  expect(await count("webhook_events")).toBe(4 + 2 + 8);
  // A second pass finds nothing more.
  expect(await pruneOnce(db.sql, { stockEventsDays: 90, webhookDays: 30, batch: 7, pauseMs: 0, now })).toMatchObject({ deadLetters: 0, deliveries: 0, webhookEvents: 0, stockEvents: 0 });
  // 0 days = kept for ever.
  expect(await pruneOnce(db.sql, { stockEventsDays: 0, webhookDays: 0, batch: 7, now: new Date(now.getTime() + 10_000 * DAY) })).toMatchObject({ stockEvents: 0, deliveries: 0, batches: 0 });
});

test("bun run retention: one pass from the environment, a summary line, exit 0", async () => {
  await stockWithEvents("cli-ended", ago(3), 12);
  const run = Bun.spawnSync([process.execPath, "scripts/retention.ts"], {
    cwd: join(import.meta.dir, ".."),
    env: { ...process.env, DATABASE_URL: db.url, RETENTION_STOCK_EVENTS_DAYS: "2", RETENTION_BATCH: "5" },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(run.stderr.toString()).toBe("");
  expect(run.exitCode).toBe(0);
  expect(run.stdout.toString()).toContain("retention: deleted 17 stock_events"); // cli-ended's 12 and ended-recently's 5
  expect(await count("stock_events", "aggregate_id IN ('cli-ended', 'ended-recently')")).toBe(0);
  const bad = Bun.spawnSync([process.execPath, "scripts/retention.ts"], { cwd: join(import.meta.dir, ".."), env: { ...process.env, DATABASE_URL: db.url, RETENTION_BATCH: "0" }, stderr: "pipe" });
  expect(bad.exitCode).not.toBe(0);
});
