/**
 * What one `bun run bench:projectors` run holds (projectors.ts): its settings, its Kafka and
 * Elasticsearch clients, and every topic, alias, database and child process it creates, so that
 * cleanup() removes exactly those. Also how it spawns a service binary and scrapes its /metrics.
 */
import type { Subprocess } from "bun";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { createSearchClient } from "../../shared/stores/search/mapping.ts";
import { parsePromText, type Sample } from "../../shared/prom-text.ts";
import { deleteIndices } from "../../shared/dev/read-side.ts";
import { stackEnv } from "../../shared/dev/env.ts";
import { z } from "zod";
import { benchFlag, benchInt, benchRunId, createMigratedDatabase, readBenchEnv } from "../support.ts";

/** The bench's settings (its header lists them with their defaults). */
export function readProjectorBenchSettings() {
  return readBenchEnv({
    BENCH_EVENTS: benchInt(200_000, 1),
    BENCH_STOCKS: benchInt(500, 1),
    BENCH_RATE: benchInt(2_000, 1),
    BENCH_SECONDS: benchInt(20, 1),
    BENCH_PROBES: benchInt(50, 1),
    BENCH_POLL_MS: benchInt(20, 1),
    BENCH_ES_GET: benchFlag,
    KAFKA_PARTITIONS: benchInt(12, 1),
    OUTBOX_SHARDS: benchInt(4, 1),
    PROJECTOR_CONCURRENCY: benchInt(16, 1),
    BENCH_SKIP_DRAIN: benchFlag,
    BENCH_SKIP_FRESHNESS: benchFlag,
    BENCH_DRAIN_ONLY: z.enum(["projector-postgres", "projector-search"]).optional(),
    BENCH_VARIANTS: z.string().optional(),
    BENCH_ROUNDS: benchInt(1, 1),
    BENCH_NICE: benchInt(0, -20, 19),
    BENCH_CHILD_LOG_LEVEL: z.string().default("warn"),
    BENCH_CPU_PROF: z.string().optional(),
  });
}

export type ProjectorBenchSettings = ReturnType<typeof readProjectorBenchSettings>;

export class ProjectorBench {
  readonly run = benchRunId();
  readonly kafka = new Kafka({ clientId: "bench-projectors", brokers: stackEnv.KAFKA_BROKERS.split(","), logLevel: logLevel.NOTHING });
  readonly es = createSearchClient(stackEnv.ELASTICSEARCH_URL);
  /** Index aliases to delete at the end (with their versioned indices). */
  readonly aliases: string[] = [];
  private readonly children: Subprocess[] = [];
  private readonly topics: string[] = [];
  private readonly databases: string[] = [];
  private databaseCount = 0;
  /** Admin port of each spawned service, by pid (for its /metrics). */
  private readonly adminPorts = new Map<number, number>();

  constructor(readonly settings: ProjectorBenchSettings) {}

  log(msg: string): void {
    console.log(`[bench:projectors] ${msg}`);
  }

  /** A fresh, migrated database on the stack's PostgreSQL; dropped by dropDatabases(). */
  async createDatabase(): Promise<string> {
    const name = `bench_${this.run}_${++this.databaseCount}`;
    this.databases.push(name);
    return createMigratedDatabase(stackEnv.DATABASE_URL, name);
  }

  async dropDatabases(): Promise<void> {
    const admin = postgres(stackEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
    while (this.databases.length > 0) await admin.unsafe(`DROP DATABASE IF EXISTS ${this.databases.pop()} WITH (FORCE)`).catch(() => {});
    await admin.end();
  }

  /** LogAppendTime: the broker stamps each message when it appends it (the relay's share of the latency). */
  async createTopic(name: string): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: name, numPartitions: this.settings.KAFKA_PARTITIONS, replicationFactor: 1, configEntries: [{ name: "message.timestamp.type", value: "LogAppendTime" }] },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    this.topics.push(name);
  }

  spawn(service: string, vars: Record<string, string>, variant: Record<string, string> = {}): Subprocess {
    const adminPort = 19_000 + Math.floor(Math.random() * 1_000);
    const { REDIS_URL, KAFKA_BROKERS, DATABASE_URL, ELASTICSEARCH_URL } = stackEnv;
    // BENCH_REPO in a variant runs that checkout's projectors (e.g. the code before a change), same run.
    // BENCH_CPU_PROF=<dir>: each service writes a CPU profile (markdown, Bun's --cpu-prof-md) there on exit.
    const profile = this.settings.BENCH_CPU_PROF ? ["--cpu-prof-md", `--cpu-prof-dir=${this.settings.BENCH_CPU_PROF}`] : [];
    const child = Bun.spawn([process.execPath, ...profile, `services/${service}/main.ts`], {
      cwd: (service.startsWith("projector-") ? variant.BENCH_REPO : undefined) ?? `${import.meta.dir}/../..`,
      env: {
        ...(process.env as Record<string, string>),
        REDIS_URL,
        KAFKA_BROKERS,
        DATABASE_URL,
        ELASTICSEARCH_URL,
        KAFKA_PARTITIONS: String(this.settings.KAFKA_PARTITIONS),
        OUTBOX_SHARDS: String(this.settings.OUTBOX_SHARDS),
        ADMIN_PORT: String(adminPort),
        LOG_LEVEL: this.settings.BENCH_CHILD_LOG_LEVEL,
        ...variant,
        ...vars,
      },
      stdout: "inherit",
      stderr: "inherit",
    });
    this.children.push(child);
    this.adminPorts.set(child.pid, adminPort);
    return child;
  }

  async scrape(child: Subprocess): Promise<Sample[]> {
    return parsePromText(await this.metricsText(child));
  }

  /** Cumulative counts of a projector's flashsale_projector_freshness_seconds histogram, by bucket bound ("+Inf" last). */
  async freshnessBuckets(child: Subprocess): Promise<Map<string, number>> {
    const text = await this.metricsText(child);
    const buckets = new Map<string, number>();
    for (const match of text.matchAll(/^flashsale_projector_freshness_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\d+)/gm)) {
      buckets.set(match[1]!, (buckets.get(match[1]!) ?? 0) + Number(match[2]));
    }
    return buckets;
  }

  async cleanup(): Promise<void> {
    for (const child of this.children) await stop(child).catch(() => {});
    const admin = this.kafka.admin();
    await admin.connect();
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.includes(this.run));
    await admin.deleteGroups(groups).catch(() => {});
    await admin.deleteTopics({ topics: this.topics.flatMap((t) => [t, `${t}.dlq`]) }).catch(() => {});
    await admin.disconnect();
    for (const alias of this.aliases) await deleteIndices(this.es, `${alias}-v*`).catch(() => {});
    await this.es.close();
    await this.dropDatabases();
  }

  private async metricsText(child: Subprocess): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.adminPorts.get(child.pid)}/metrics`)).text();
  }
}

export async function stop(child: Subprocess): Promise<void> {
  if (child.exitCode === null) {
    child.kill("SIGTERM");
    await child.exited;
  }
}
