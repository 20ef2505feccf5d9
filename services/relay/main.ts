/** relay binary: wiring only. See relay.ts for how it works (and which file does what) and docs/relay.md for operating it. */
import { startAdminServer } from "../../shared/admin-server.ts";
import { loadConfigOrExit, relaySchema } from "../../shared/config.ts";
import { createKafka } from "../../shared/kafka/client.ts";
import { createKeyLayout } from "../../shared/domain/keys.ts";
import { onShutdown } from "../../shared/lifecycle.ts";
import { createLogger } from "../../shared/logger.ts";
import { createMetricsRegistry } from "../../shared/metrics.ts";
import { exitOnFatalStart } from "../../shared/retry.ts";
import { createRedis } from "../../shared/redis/client.ts";
import { createRelay } from "./relay.ts";

const config = loadConfigOrExit(relaySchema, "relay");
const logger = createLogger("relay", config.LOG_LEVEL);
const redis = createRedis(config); // a Cluster client when REDIS_CLUSTER_NODES is set
redis.on("error", () => {}); // outages are logged once per state change by the relay itself

// kafkajs logs every internal retry (dozens of lines per outage); the relay logs each outage once,
// with the error, when it starts and when it ends. kafkajs' own lines show at LOG_LEVEL=debug.
const verbose = config.LOG_LEVEL === "debug" || config.LOG_LEVEL === "trace";
const kafkajsLogger = logger.child({ component: "kafkajs" }, { level: verbose ? config.LOG_LEVEL : "fatal" });

const registry = createMetricsRegistry("relay");
const relay = createRelay({
  redis,
  kafka: createKafka({ brokers: config.KAFKA_BROKERS, clientId: "flashsale-relay", logger: kafkajsLogger }),
  keys: createKeyLayout(config.REDIS_KEY_PREFIX, config.OUTBOX_SHARDS),
  config,
  logger,
  registry,
});

const admin = startAdminServer({ port: config.ADMIN_PORT, hostname: config.ADMIN_HOST, registry, notReadyReason: () => relay.notReadyReason() });
logger.info({ adminPort: admin.port, consumer: relay.consumerName }, "relay admin server listening");

onShutdown(logger, async () => {
  await relay.stop();
  await admin.stop();
  redis.disconnect();
});

try {
  await relay.start();
} catch (err) {
  exitOnFatalStart(logger, "relay", err);
}
