/**
 * A private three-broker Kafka for tests that kill brokers (never the shared single broker on 9092):
 * started by the operators' own route, `bash scripts/stack.sh up kafka-cluster`, in a temporary stack
 * dir on other ports, so the test covers that script too (docs/stack.md): `up` again restarts only the
 * node that is down. Port plan: kafka-broker-failure uses 19292-19297.
 *
 * What the tests observe comes from the cluster's own records: partition leaders and in-sync replicas
 * from metadata, the active controller from the KRaft quorum (`stack.sh kafka-quorum describe --status`),
 * or, while a failover is being watched, from the nodes' own "Becoming the active controller" log lines.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import { runStack } from "./private-cluster.ts";

export const KAFKA_CLUSTER_NODES = [1, 2, 3] as const;

export class PrivateKafkaCluster {
  /** FLASHSALE_* variables that point scripts/stack.sh at this cluster. */
  readonly env: Record<string, string>;
  /** KAFKA_BROKERS for clients and child processes. */
  readonly brokers: string;
  private readonly dir: string;

  constructor(readonly basePort: number) {
    this.dir = mkdtempSync(join(tmpdir(), "flashsale-kafka-cluster-"));
    this.env = { FLASHSALE_STACK_DIR: this.dir, FLASHSALE_KAFKA_CLUSTER_BASE_PORT: String(basePort) };
    this.brokers = KAFKA_CLUSTER_NODES.map((n) => `127.0.0.1:${basePort + n - 1}`).join(",");
  }

  /** `stack.sh <args>` for this cluster; throws with both streams unless it exits 0. */
  async stack(...args: string[]): Promise<string> {
    const { out, err, code } = await runStack(args, this.env);
    if (code !== 0) throw new Error(`stack.sh ${args.join(" ")} exited ${code}:\n${out}\n${err}`);
    return out;
  }

  /** `up kafka-cluster`: starts the nodes that are down and waits until all three answer. */
  up(): Promise<string> {
    return this.stack("up", "kafka-cluster");
  }

  nodeOfPort(port: number): number {
    return port - this.basePort + 1;
  }

  /** The JVM's pid from the stack's pid file ("<pid> <start time>"). */
  pidOf(node: number): number {
    return Number(readFileSync(join(this.dir, "run", `kafka-cluster-${node}.pid`), "utf8").split(" ")[0]);
  }

  /** kill -9 of one node's JVM; resolves once the process is gone. */
  async kill(node: number): Promise<void> {
    const pid = this.pidOf(node);
    process.kill(pid, "SIGKILL");
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await Bun.sleep(50);
    }
    throw new Error(`kafka-cluster-${node} (pid ${pid}) still runs after SIGKILL`);
  }

  /** The node that leads the KRaft metadata quorum (the active controller). */
  async activeController(): Promise<number> {
    const out = await this.stack("kafka-quorum", "describe", "--status");
    const id = /^LeaderId:\s+(\d+)/m.exec(out)?.[1];
    if (!id) throw new Error(`no LeaderId in:\n${out}`);
    return Number(id);
  }

  client(clientId = "private-kafka"): Kafka {
    return new Kafka({ clientId, brokers: this.brokers.split(","), logLevel: logLevel.NOTHING, retry: { retries: 10, maxRetryTime: 2_000 } });
  }

  /** Per partition of `topic`: leader, replicas and in-sync replicas, from fresh metadata. */
  async partitions(topic: string): Promise<{ partitionId: number; leader: number; replicas: number[]; isr: number[] }[]> {
    const admin = this.client("private-kafka-admin").admin();
    await admin.connect();
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      return topics[0]!.partitions.map((p) => ({ partitionId: p.partitionId, leader: p.leader, replicas: p.replicas, isr: p.isr }));
    } finally {
      await admin.disconnect();
    }
  }

  /** Topic-level configuration values (their effective values, broker defaults included). */
  async topicConfig(topic: string, names: string[]): Promise<Record<string, string>> {
    const admin = this.client("private-kafka-admin").admin();
    await admin.connect();
    try {
      const { resources } = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name: topic, configNames: names }] });
      return Object.fromEntries(resources[0]!.configEntries.map((e) => [e.configName, e.configValue]));
    } finally {
      await admin.disconnect();
    }
  }

  /**
   * Creates a topic with the brokers' defaults (RF 3, min ISR 2), waits until every partition has all
   * three replicas in sync, and then until every broker's own metadata has it. Not kafkajs'
   * waitForLeaders: right after the create, a broker that has not replayed the new topic's metadata yet
   * answers UNKNOWN_TOPIC_OR_PARTITION and kafkajs gives up. Full ISR, read from one broker, was not
   * enough: in a clone run, the test's DescribeConfigs reached another broker that did not know the
   * topic yet, and failed the test at its first line.
   */
  async createTopic(topic: string, numPartitions: number): Promise<void> {
    const admin = this.client("private-kafka-admin").admin();
    await admin.connect();
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor: -1 }], waitForLeaders: false });
    } finally {
      await admin.disconnect();
    }
    await this.waitFullIsr(topic, 30_000);
    await Promise.all(KAFKA_CLUSTER_NODES.map((n) => this.waitBrokerKnows(n, topic, 30_000)));
  }

  /** Until broker `node` itself lists `topic` with every partition led (a client whose only broker it is). */
  private async waitBrokerKnows(node: number, topic: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const one = new Kafka({ clientId: "private-kafka-check", brokers: [`127.0.0.1:${this.basePort + node - 1}`], logLevel: logLevel.NOTHING, retry: { retries: 0 } });
    for (;;) {
      const admin = one.admin();
      const known = await admin
        .connect()
        .then(() => admin.fetchTopicMetadata({ topics: [topic] }))
        .then(({ topics }) => topics[0]!.partitions.length > 0 && topics[0]!.partitions.every((p) => p.leader >= 0))
        .catch(() => false)
        .finally(() => admin.disconnect().catch(() => {}));
      if (known) return;
      if (Date.now() > deadline) throw new Error(`broker ${node} does not know topic ${topic} after ${timeoutMs} ms`);
      await Bun.sleep(200);
    }
  }

  /** Waits until every partition of `topic` has all three replicas in sync again (a restarted broker caught up). */
  async waitFullIsr(topic: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parts = await this.partitions(topic).catch(() => []);
      if (parts.length > 0 && parts.every((p) => p.isr.length === KAFKA_CLUSTER_NODES.length)) return;
      if (Date.now() > deadline) throw new Error(`partitions of ${topic} not fully in sync after ${timeoutMs} ms: ${JSON.stringify(parts)}`);
      await Bun.sleep(500);
    }
  }

  /** Per partition, the end offset a read_committed consumer may read to (the last stable offset). */
  async committedEnds(topic: string): Promise<Map<number, number>> {
    const admin = this.client("private-kafka-admin").admin();
    await admin.connect();
    try {
      return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.offset)]));
    } finally {
      await admin.disconnect();
    }
  }

  /** `kafka-transactions.sh <args>` (`list`, `find-hanging --broker-id n`, `describe-producers …`). */
  transactions(...args: string[]): Promise<string> {
    return this.stack("kafka-transactions", ...args);
  }

  /** Where each node's log ends now: controllerElectedSince reads only what comes after. */
  logEnds(): Map<number, number> {
    return new Map(KAFKA_CLUSTER_NODES.map((n) => [n, existsSync(this.logOf(n)) ? statSync(this.logOf(n)).size : 0]));
  }

  /**
   * The newest "Becoming the active controller" line any node logged after `since` (logEnds()): the node,
   * its epoch and when. The quorum's own record, read from the files, where asking the quorum
   * (activeController) starts a JVM, which on 2 cores slowed the failover it was watching.
   */
  controllerElectedSince(since: Map<number, number>): { id: number; epoch: number; at: number } | undefined {
    let newest: { id: number; epoch: number; at: number } | undefined;
    for (const n of KAFKA_CLUSTER_NODES) {
      if (!existsSync(this.logOf(n))) continue;
      const text = readFileSync(this.logOf(n)).subarray(since.get(n) ?? 0).toString("utf8");
      for (const m of text.matchAll(/^\[(\S+) (\S+),(\d+)\] INFO \[QuorumController id=(\d+)\] Becoming the active controller at epoch (\d+)/gm)) {
        const found = { id: Number(m[4]), epoch: Number(m[5]), at: new Date(`${m[1]}T${m[2]}.${m[3]}`).getTime() }; // the JVM logs local time, as Date parses it
        if (!newest || found.epoch > newest.epoch) newest = found;
      }
    }
    return newest;
  }

  private logOf(node: number): string {
    return join(this.dir, "logs", `kafka-cluster-${node}.log`);
  }

  /** Copies the brokers' logs to `dir` (kept for a failed run; stop() deletes the stack dir). */
  keepLogs(dir: string): void {
    cpSync(join(this.dir, "logs"), dir, { recursive: true });
  }

  async stop(): Promise<void> {
    await this.stack("down", "kafka-cluster").catch((err) => console.error(String(err)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startPrivateKafkaCluster(basePort: number): Promise<PrivateKafkaCluster> {
  const cluster = new PrivateKafkaCluster(basePort);
  try {
    await cluster.up();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
