/**
 * A dead consumer is a dead process (docs/design.md §13): when kafkajs gives up on a consumer (a
 * `crash` event with restart: false, here from an error it will not retry), the projection consumer
 * replaces it in-process after a backoff; meanwhile the projector is not ready, and the new consumer
 * picks the uncommitted batch up again. Before, the crashed consumer stayed dead while the process
 * lived on, consuming nothing. Real Kafka (the stack's), a throwaway topic and group; the sink is the
 * test's own, so the crash can be made on cue.
 */
import { expect, test } from "bun:test";
import type { StockEvent } from "../shared/domain/events.ts";
import { createProjector } from "../shared/projection/projector.ts";
import { brokers, eventually, readSideFixtures, testLogger } from "./support/read-side.ts";
import { produceEvents } from "../shared/dev/read-side.ts";
import { uniqueName } from "../shared/dev/env.ts";
import { generateWorkload, StockSim } from "../shared/dev/stock-sim.ts";

const fx = readSideFixtures();
const topic = fx.topic("crashtopic", 2);

test("kafkajs gives up on the consumer (crash, restart: false): restarted in-process, not ready meanwhile, every event applied once the new one runs", async () => {
  const applied = new Map<string, StockEvent>();
  let failures = 1; // the first batch fails in a way kafkajs does not retry
  const projector = fx.track(
    createProjector({
      brokers,
      topic,
      groupId: uniqueName("crashgroup"),
      logger: testLogger,
      sink: {
        apply: async (events) => {
          if (failures > 0) throw new Error("store write failed");
          for (const e of events) applied.set(e.eventId, e);
          return { applied: events, duplicates: 0 };
        },
        // Deciding about the failure fails too, with an error kafkajs marks as not retriable: the
        // batch handler throws it, kafkajs crashes the consumer and does not restart it.
        isOutage: () => {
          failures--;
          throw Object.assign(new Error("unrecoverable: the sink could not classify its error"), { retriable: false });
        },
        probe: async () => {},
        ping: async () => {},
      },
    }),
  );
  await projector.start();
  await eventually(async () => (await projector.notReadyReason()) === null, { timeoutMs: 30_000, what: "projector ready (joined)" });

  // Readiness is watched the whole time: it must say "crashed" while no consumer runs.
  const reasons = new Set<string>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const reason = await projector.notReadyReason();
      if (reason) reasons.add(reason);
      await Bun.sleep(20);
    }
  })();

  const sim = new StockSim();
  const events = generateWorkload(sim, { count: 200, stockCount: 5, prefix: uniqueName("c") });
  await produceEvents(fx.producer, topic, events);

  await eventually(async () => applied.size === events.length, { timeoutMs: 30_000, what: "every event applied by the restarted consumer" });
  watching = false;
  await watcher;
  const restarts = (await projector.metrics.consumerRestarts.get()).values[0]?.value ?? 0;
  console.log(`[consumer crash] restarts ${restarts}; not-ready reasons seen: ${[...reasons].join(" | ")}`);
  expect(restarts).toBe(1);
  expect([...reasons].some((r) => r.includes("crashed"))).toBe(true);
  expect(await projector.notReadyReason()).toBeNull();
  expect(new Set(events.map((e) => e.eventId))).toEqual(new Set(applied.keys()));
}, 60_000);
