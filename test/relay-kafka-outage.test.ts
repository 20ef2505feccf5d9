/**
 * Kafka stopped for 10 s while the relay runs and events keep coming (real stop/start through
 * scripts/stack.sh). Disruptive for anyone sharing the stack, so it is short; SKIP_DISRUPTIVE=1 skips it.
 */
import { afterEach, expect, test } from "bun:test";
import {
  allocate,
  createHarness,
  createStocks,
  disruptiveSkipped,
  outboxStats,
  REPO_ROOT,
  stockVersions,
  TopicReader,
  verify,
  waitUntil,
} from "./support/relay-harness.ts";

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  cleanups = [];
}, 30_000);

async function stack(...args: string[]): Promise<void> {
  const child = Bun.spawn(["bash", "scripts/stack.sh", ...args], { cwd: REPO_ROOT, stdout: "ignore", stderr: "pipe" });
  const code = await child.exited;
  if (code !== 0) throw new Error(`stack.sh ${args.join(" ")} exited ${code}: ${await new Response(child.stderr).text()}`);
}

test.skipIf(disruptiveSkipped)(
  "kafka down for 10 s: entries stay pending, the relay recovers by itself, nothing is lost",
  async () => {
    const h = createHarness("relaykafka");
    const reader = new TopicReader(h.topic);
    cleanups.push(() => h.cleanup(), () => reader.stop());
    let kafkaStopped = false;
    cleanups.push(async () => {
      if (kafkaStopped) await stack("up", "kafka"); // never leave the shared stack without Kafka
    });

    const stocks = await createStocks(h, 8, 10_000);
    const relay = h.relay();
    await relay.start();
    await reader.start();

    // A steady trickle of allocations for the whole test (~200/s).
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await allocate(h, stocks, 20, { start: written, concurrency: 5 });
        written += 20;
        await Bun.sleep(100);
      }
    })();
    await reader.waitFor(() => reader.messages.length >= 200, 20_000, "events flowing before the outage");

    kafkaStopped = true;
    await stack("down", "kafka");
    await waitUntil(() => relay.notReadyReason() === "kafka unavailable", 20_000, "the relay to notice Kafka is down");
    const duringOutage = await outboxStats(h);
    expect(duringOutage.length).toBeGreaterThan(0); // nothing acknowledged/trimmed without Kafka
    await Bun.sleep(10_000);
    await stack("up", "kafka");
    kafkaStopped = false;

    // Same relay instance, no restart: it must come back on its own.
    await waitUntil(() => relay.notReadyReason() === null, 60_000, "the relay to recover");
    await Bun.sleep(1_000);
    writing = false;
    await writer;
    const versions = await stockVersions(h, stocks);
    const expected = [...versions.values()].reduce((a, b) => a + b, 0);
    await reader.waitFor(() => reader.uniqueIds().size >= expected, 60_000, "every event after the outage");

    const verdict = verify(reader.messages, versions);
    console.log(
      `[relay kafka-outage test] ${written} allocations, outbox held ${duringOutage.length} entries during the outage; ` +
        `${reader.messages.length} messages for ${expected} events: ${verdict.duplicates} duplicates`,
    );
    expect(verdict.missing).toEqual([]);
    expect(verdict.unexpected).toEqual([]);
    expect(verdict.outOfOrder).toEqual([]);
    await waitUntil(async () => (await outboxStats(h)).length === 0, 15_000, "outbox trimmed after the outage");
    expect(await outboxStats(h)).toEqual({ length: 0, pending: 0 });
  },
  150_000,
);
