/**
 * One Kafka batch through a projector's store, independent of kafkajs (so it is unit-testable):
 *
 *   parse every message (shared/domain/events.ts) → unparseable ones are poison
 *   apply the valid events in one call to the sink
 *     outage      → back off (capped), retry forever, never give up on valid events
 *     data error  → retry a few times, then split the batch in halves and apply each, down to the
 *                   single event that fails: that one is poison, the others are applied — wherever
 *                   the poison sits in the batch, and however many there are
 *     every event tried alone rejected, nothing in the batch accepted yet → ask the store whether it
 *                   takes a known-good write (sink.probe(), probe.ts): yes → the rejected events are
 *                   poison; no → the store is broken (a bad migration), not the events: retry the
 *                   whole batch as an outage, dead-letter nothing
 *   report poison messages for the DLQ; the caller commits only after this returns "done".
 *
 * Sinks must be idempotent (a retried or split batch re-applies what already landed).
 */
import { parseEvent, type StockEvent } from "../domain/events.ts";

export interface RawMessage {
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
  offset: string;
  timestamp?: string;
}

export interface SinkResult {
  applied: StockEvent[];
  duplicates: number;
}

export interface ProjectionSink {
  /** Applies events atomically or idempotently; throws on failure. */
  apply(events: StockEvent[]): Promise<SinkResult>;
  /** True when `err` means the store is unavailable (retry, don't dead-letter). */
  isOutage(err: unknown): boolean;
  /**
   * Writes a known-good batch (probeEvents() in probe.ts) with no lasting effect; throws when the
   * store would refuse valid events. Asked when rejected events leave no proof that the store works.
   */
  probe(): Promise<void>;
  /**
   * Resolves once every write acknowledged so far is visible to readers (Elasticsearch: after a
   * refresh); null when the sink cannot tell. Absent: visible when apply() returns (a committed
   * PostgreSQL transaction). Only measured (the commit_to_visible stage), never waited for.
   */
  whenVisible?(): Promise<void> | null;
  /**
   * This member was (re)assigned partitions: what it applies from now on may continue where another
   * member left off, not where it did itself (the notifier's window must not treat its own hand-overs
   * as the whole of a stock: services/notifier/dispatcher.ts, invalidate()).
   */
  assigned?(): void;
}

type PoisonReason = "unparseable" | "rejected";

export interface PoisonMessage {
  message: RawMessage;
  reason: PoisonReason;
  error: string;
}

export interface BatchControl {
  /** Asked after a failed attempt: true when the batch must be abandoned uncommitted (shutdown, rebalance). */
  shouldAbort(): boolean;
  /** Called before each retry after an outage: sleep with backoff, heartbeat, update readiness. */
  waitAfterOutage(err: unknown, attempt: number): Promise<void>;
  /** Called when the store answers again after an outage. */
  recovered(): void;
  /** Attempts of the same slice before it is split (or, for one event, dead-lettered). */
  maxDataAttempts: number;
  waitAfterDataError(err: unknown, attempt: number): Promise<void>;
}

export type BatchOutcome =
  | {
      status: "done";
      applied: StockEvent[];
      duplicates: number;
      poison: PoisonMessage[];
      /** Seconds spent parsing and validating the messages. */
      parseSeconds: number;
      /** The message an event (by eventId) came in, for its Kafka timestamp (stage metrics). */
      messageOf(eventId: string): RawMessage | undefined;
    }
  | { status: "aborted" };

interface Item {
  event: StockEvent;
  message: RawMessage;
}

const describe = (err: unknown) => (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).slice(0, 1000);

export class SystemicRejection extends Error {
  constructor(readonly lastError: unknown, readonly probeError: unknown) {
    super(
      `events were rejected and the store refused a known-good probe write too (${describe(probeError)}; last rejection: ${describe(lastError)}): ` +
        "treating as a store/projector failure, not poison",
    );
    this.name = "SystemicRejection";
  }
}

export async function projectBatch(messages: readonly RawMessage[], sink: ProjectionSink, control: BatchControl): Promise<BatchOutcome> {
  const poison: PoisonMessage[] = [];
  const items: Item[] = [];
  const messageById = new Map<string, RawMessage>();
  const parseStarted = performance.now();
  for (const message of messages) {
    const parsed = parseEvent(message.value);
    if (parsed.ok) {
      items.push({ event: parsed.event, message });
      messageById.set(parsed.event.eventId, message);
    }
    else poison.push({ message, reason: "unparseable", error: parsed.error });
  }
  const parseSeconds = (performance.now() - parseStarted) / 1000;

  const applied: StockEvent[] = [];
  let duplicates = 0;
  let outageAttempt = 0;
  let succeeded = false;
  let probed = false;

  /** Throws SystemicRejection unless the batch or the probe has shown that the store takes valid writes. */
  async function confirmPoison(rejection: unknown): Promise<void> {
    if (succeeded || probed) return;
    try {
      await sink.probe();
      probed = true;
    } catch (probeError) {
      throw new SystemicRejection(rejection, probeError);
    }
  }

  /**
   * Applies a slice; false when aborted. Splits on persistent data errors. Only the whole batch and
   * single events get retries; an intermediate half that fails is split at once (the retries were
   * already spent on the batch), which keeps isolating one poison event among n to ~2·log2(n) calls.
   */
  async function applySlice(slice: Item[], attempts: number): Promise<boolean> {
    let dataAttempt = 0;
    for (;;) {
      try {
        const result = await sink.apply(slice.map((i) => i.event));
        if (outageAttempt > 0) {
          outageAttempt = 0;
          control.recovered();
        }
        applied.push(...result.applied);
        duplicates += result.duplicates;
        succeeded = true;
        return true;
      } catch (err) {
        // A batch in hand is finished on shutdown; only a failing one is abandoned (uncommitted).
        if (control.shouldAbort()) return false;
        if (sink.isOutage(err)) {
          await control.waitAfterOutage(err, outageAttempt++);
          continue;
        }
        dataAttempt += 1;
        if (dataAttempt < (slice.length === 1 ? control.maxDataAttempts : attempts)) {
          await control.waitAfterDataError(err, dataAttempt);
          continue;
        }
        if (slice.length === 1) {
          // Nothing in the batch accepted so far: poison, or a broken store (e.g. a bad migration)
          // that would empty the read model into the DLQ? The probe decides, once per batch.
          await confirmPoison(err);
          poison.push({ message: slice[0]!.message, reason: "rejected", error: describe(err) });
          return true;
        }
        const middle = Math.ceil(slice.length / 2);
        return (await applySlice(slice.slice(0, middle), 1)) && (await applySlice(slice.slice(middle), 1));
      }
    }
  }

  for (let systemicAttempt = 0; items.length > 0; systemicAttempt++) {
    const poisonBefore = poison.length;
    try {
      if (!(await applySlice(items, control.maxDataAttempts))) return { status: "aborted" };
      break;
    } catch (err) {
      if (!(err instanceof SystemicRejection)) throw err;
      poison.length = poisonBefore;
      probed = false;
      if (control.shouldAbort()) return { status: "aborted" };
      await control.waitAfterOutage(err, systemicAttempt);
    }
  }
  return { status: "done", applied, duplicates, poison, parseSeconds, messageOf: (eventId) => messageById.get(eventId) };
}
