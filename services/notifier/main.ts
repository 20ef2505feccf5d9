/** notifier binary: wiring only (see notifier.ts and README "Webhooks"). */
import { notifierSchema } from "../../shared/config.ts";
import { runProjector } from "../../shared/projection/run-projector.ts";
import { createProjectorSql } from "../../shared/stores/postgres/client.ts";
import { secretBoxFromConfig } from "../../shared/webhooks/secret-box.ts";
import { createNotifier } from "./notifier.ts";

// The same life as a projector (config, logs, admin server, graceful SIGTERM); it writes deliveries.
await runProjector("notifier", notifierSchema, async ({ config, logger, registry, kafka }) => {
  // Consumer transactions, the delivery loops' reads and result batches, and one held by the delivery lease.
  const sql = createProjectorSql(config.DATABASE_URL, { max: 8, applicationName: "notifier" });
  const notifier = createNotifier({
    ...kafka,
    groupId: config.NOTIFIER_GROUP_ID,
    sql,
    box: await secretBoxFromConfig(config),
    logger,
    registry,
    configured: { url: config.WEBHOOK_URL, secret: config.WEBHOOK_SECRET, eventTypes: config.WEBHOOK_EVENTS },
    schedule: { baseMs: config.WEBHOOK_RETRY_BASE, maxMs: config.WEBHOOK_RETRY_MAX, maxAttempts: config.WEBHOOK_MAX_ATTEMPTS },
    send: { connectTimeoutMs: config.WEBHOOK_CONNECT_TIMEOUT, timeoutMs: config.WEBHOOK_TIMEOUT, allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_NETWORKS },
    concurrency: config.WEBHOOK_CONCURRENCY,
    pollIntervalMs: config.WEBHOOK_POLL_INTERVAL,
    leaseWindow: { minMs: config.NOTIFIER_LEASE_MIN, maxMs: config.NOTIFIER_LEASE_MAX },
  });
  return { projector: notifier, close: () => sql.end({ timeout: 5 }) };
});
