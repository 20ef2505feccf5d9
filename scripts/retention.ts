/**
 * `bun run retention`: deletes, in batches, what would otherwise grow for ever (shared/stores/postgres/
 * retention.ts has the rules): old finished webhook deliveries, dead letters and webhook events, and
 * the stock_events of sales that ended long ago. One pass, then exit: run it from cron or a Kubernetes
 * CronJob (daily is plenty), not inside a service, so no two replicas prune at once and a slow pass
 * never delays a projection. Prints what it deleted.
 *
 *   DATABASE_URL                  postgres://flashsale:flashsale@127.0.0.1:5432/flashsale (default)
 *   RETENTION_STOCK_EVENTS_DAYS   90: stock_events kept this long after a sale's endsAt (0 = for ever)
 *   RETENTION_WEBHOOK_DAYS        30: finished deliveries, dead letters, webhook events (0 = for ever)
 *   RETENTION_BATCH               5000 rows per DELETE
 */
import postgres from "postgres";
import { loadConfigOrExit, retentionSchema } from "../shared/config.ts";
import { pruneOnce } from "../shared/stores/postgres/retention.ts";

const config = loadConfigOrExit(retentionSchema, "retention");
const sql = postgres(config.DATABASE_URL, { max: 1, connect_timeout: 10, onnotice: () => {}, connection: { application_name: "retention" } });
let code = 0;
try {
  const started = performance.now();
  const r = await pruneOnce(sql, { stockEventsDays: config.RETENTION_STOCK_EVENTS_DAYS, webhookDays: config.RETENTION_WEBHOOK_DAYS, batch: config.RETENTION_BATCH });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `retention: deleted ${r.stockEvents} stock_events, ${r.deliveries} webhook deliveries, ${r.deadLetters} dead letters, ` +
      `${r.webhookEvents} webhook events in ${r.batches} batches, ${seconds} s`,
  );
} catch (err) {
  code = 1;
  console.error(`retention: ${(err as Error).message}`);
} finally {
  await sql.end({ timeout: 5 });
}
process.exit(code);
