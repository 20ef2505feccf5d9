/**
 * A notifier paused past its delivery lease (SIGSTOP: what a long GC pause or a frozen VM looks like
 * from outside) is replaced, and once it runs again (SIGCONT) it sends nothing it no longer owns
 * (issue 21 §12; services/notifier/lease.ts). Real processes: notifiers A and B share a consumer group
 * and a database; events keep coming; the receiver answers after 20 ms, so requests are in flight
 * whenever a pause lands. Lease window at least 2 s (NOTIFIER_LEASE_MIN) in this test.
 *
 * Two cycles, each pausing the process that delivers at that moment:
 *  - the other one logs "delivery lease taken" while the paused one is still stopped (the record of
 *    the takeover: PostgreSQL ended the paused holder's idle session, which freed the lock);
 *  - after SIGCONT, the paused one logs no "sending" (debug line before every request) until it
 *    takes the lease again, and logs that it lost the lease;
 *  - at the end every event was delivered, per stock in version order, and a webhook-id arrived twice
 *    only if the paused process had sent it before its SIGSTOP (a request in flight at the pause).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { generateSecret } from "../shared/webhooks/endpoints.ts";
import { freePort, uniqueName } from "../shared/dev/env.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";
import { startReceiver } from "../shared/dev/webhook-receiver.ts";
import { brokers, eventually, readSideFixtures } from "./support/read-side.ts";
import { killChild } from "./support/processes.ts";

const REPO_ROOT = `${import.meta.dir}/..`;
const fx = readSideFixtures({ database: "ntfpause" });
const topic = fx.topic("ntfpause");
const groupId = uniqueName("ntfpauseg");
const secret = generateSecret();
const receiver = startReceiver({ secret, respond: async () => (await Bun.sleep(20), 204) });
const children: Subprocess[] = [];
const logDir = mkdtempSync(join(tmpdir(), "notifier-pause-"));
afterAll(async () => {
  for (const c of children) await killChild(c);
  await receiver.stop();
  if (!process.env.KEEP_PAUSE_LOGS) rmSync(logDir, { recursive: true, force: true });
});

type LogLine = { time: number; msg: string; eventId?: string };

/**
 * A notifier child whose log goes to a file (a pipe could fill while the test is busy, and pino's
 * synchronous writes would then stall the child: a pause of our own making). `lines` reads what was
 * added since the last call and keeps the lease and "sending" lines.
 */
function spawnNotifier(): { child: Subprocess; lines: LogLine[]; read(): LogLine[] } {
  const path = join(logDir, `${uniqueName("notifier")}.log`);
  const child = Bun.spawn([process.execPath, "services/notifier/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: fx.db.url,
      KAFKA_BROKERS: brokers.join(","),
      KAFKA_TOPIC: topic,
      NOTIFIER_GROUP_ID: groupId,
      ADMIN_PORT: String(freePort()),
      WEBHOOK_URL: receiver.url,
      WEBHOOK_SECRET: secret,
      WEBHOOK_ALLOW_PRIVATE_NETWORKS: "true", // the receiver is on loopback
      WEBHOOK_CONCURRENCY: "16",
      WEBHOOK_POLL_INTERVAL: "50ms",
      NOTIFIER_LEASE_MIN: "2s",
      NOTIFIER_LEASE_MAX: "10s",
      LOG_LEVEL: "debug",
    },
    stdout: Bun.file(path),
    stderr: "inherit",
  });
  children.push(child);
  const lines: LogLine[] = [];
  let offset = 0;
  let partial = "";
  return {
    child,
    lines,
    read() {
      const text = readFileSync(path, "utf8");
      const fresh = partial + text.slice(offset);
      offset = text.length;
      const parts = fresh.split("\n");
      partial = parts.pop()!;
      for (const line of parts) {
        if (!line.includes('"msg":"sending"') && !line.includes('"msg":"delivery lease')) continue;
        const l = JSON.parse(line) as { time: string; msg: string; eventId?: string };
        lines.push({ time: Date.parse(l.time), msg: l.msg, eventId: l.eventId });
      }
      return lines;
    },
  };
}

const taken = (lines: LogLine[], after: number): LogLine | undefined => lines.find((l) => l.msg.startsWith("delivery lease taken") && l.time >= after);
/** Holds the lease by its own record: its last lease line is "taken" (not "lost"). */
const holds = (lines: LogLine[]) => lines.findLast((l) => /^delivery lease (taken|lost)/.test(l.msg))?.msg.startsWith("delivery lease taken") === true;

test("a notifier frozen past its lease is replaced, and sends nothing after SIGCONT", async () => {
  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 6_000, stockCount: 60, prefix: uniqueName("pause") });
  let produced = 0;
  const producing = (async () => {
    for (; produced < events.length; produced += 300) {
      await produceEvents(fx.producer, topic, events.slice(produced, produced + 300));
      await Bun.sleep(400);
    }
  })();

  const a = spawnNotifier();
  await eventually(async () => taken(a.read(), 0) && receiver.acknowledged.size > 200, { timeoutMs: 60_000, what: "A delivering" });
  const b = spawnNotifier();
  await Bun.sleep(3_000); // B consumes its share of the partitions and polls for the lease as a standby

  const cycles: { paused: string; takeoverMs: number; sentAfterCont: number; lostLogged: boolean }[] = [];
  const inFlightAtPause = new Set<string>();
  const paused = new Set<string>();
  for (let cycle = 0; cycle < 2; cycle++) {
    // Pause whichever delivers now (on a loaded machine the lease may have moved on its own), the other one the second time if it can.
    const holder = await eventually(async () => [a, b].filter((p) => holds(p.read())).sort((x) => (paused.has(String(x.child.pid)) ? 1 : -1))[0], {
      timeoutMs: 20_000,
      what: "a lease holder",
    });
    const standby = holder === a ? b : a;
    paused.add(String(holder.child.pid));
    const stoppedAt = Date.now();
    holder.child.kill("SIGSTOP");
    // The takeover, from the standby's own record, while the holder is still stopped.
    const takeover = await eventually(async () => taken(standby.read(), stoppedAt), { timeoutMs: 20_000, intervalMs: 20, what: "the standby takes the lease while the holder is paused" });
    await Bun.sleep(1_000); // the new holder delivers for a while, the paused one's work included
    for (const l of holder.read()) if (l.msg === "sending" && l.time < stoppedAt && l.eventId) inFlightAtPause.add(l.eventId);
    const continuedAt = Date.now();
    holder.child.kill("SIGCONT");
    await Bun.sleep(3_000);
    holder.read();
    const retaken = taken(holder.lines, continuedAt)?.time ?? Infinity;
    const zombie = holder.lines.filter((l) => l.msg === "sending" && l.time >= continuedAt && l.time < retaken);
    const lostLogged = holder.lines.some((l) => l.msg.startsWith("delivery lease lost") && l.time >= continuedAt);
    cycles.push({ paused: holder === a ? "A" : "B", takeoverMs: takeover.time - stoppedAt, sentAfterCont: zombie.length, lostLogged });
  }
  await producing;
  await eventually(async () => receiver.acknowledged.size === events.length, { timeoutMs: 90_000, intervalMs: 100, what: "every event delivered" });

  const counts = new Map<string, number>();
  for (const q of receiver.requests) if (q.status < 300) counts.set(q.webhookId, (counts.get(q.webhookId) ?? 0) + 1);
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  console.log(
    `[notifier-pause] ${JSON.stringify(cycles)}; ${events.length} events, ${receiver.requests.length} requests, ` +
      `${duplicated.length} webhook-ids twice (in flight at a pause: ${inFlightAtPause.size} sent before the SIGSTOPs)`,
  );
  for (const c of cycles) {
    expect(c.takeoverMs).toBeLessThan(10_000);
    expect(c.sentAfterCont).toBe(0);
    expect(c.lostLogged).toBe(true);
  }
  expect(receiver.invalid).toEqual([]);
  expect(receiver.orderViolations).toEqual([]);
  expect(new Set(receiver.acknowledged.keys())).toEqual(new Set(events.map((e) => e.eventId)));
  for (const id of duplicated) expect(inFlightAtPause.has(id)).toBe(true);
}, 240_000);
