/**
 * The relay's run state, shared by its parts: the stop signal (every wait wakes up on stop) and
 * the availability of each dependency (an outage is logged once when it starts, once when it ends).
 */
import { prom } from "../../shared/metrics.ts";
import { sleep } from "../../shared/lifecycle.ts";
import type { Logger } from "../../shared/logger.ts";

export const errorMessage = (err: unknown) => (err instanceof Error ? `${err.name}: ${err.message}` : String(err));

/** Set once by stop(); parts check `stopping` between steps and sleep with pause(). */
export class StopSignal {
  stopping = false;
  private resolve!: () => void;
  /** Resolves when stop() is called. */
  readonly stopped = new Promise<void>((resolve) => (this.resolve = resolve));

  trigger(): void {
    this.stopping = true;
    this.resolve();
  }

  /** Sleeps, but wakes up at once when stop() is called. */
  pause(ms: number): Promise<void> {
    return Promise.race([sleep(ms), this.stopped]);
  }
}

/**
 * Logs a dependency going down once, and coming back once. Sends to Kafka run per shard in
 * parallel, so when it comes back one shard's success can land before another shard's attempt
 * that began during the outage fails: a failure of an attempt started before the last recovery
 * says nothing new and does not mark the dependency down again (pass `startedAt`).
 */
export class Availability {
  private up = true;
  private since = 0;
  private upAt = 0;
  constructor(
    private readonly name: string,
    private readonly logger: Logger,
    private readonly gauge: prom.Gauge,
  ) {
    gauge.set(1);
  }
  get isUp(): boolean {
    return this.up;
  }
  markDown(err: unknown, startedAt?: number): void {
    if (!this.up) return;
    if (startedAt !== undefined && startedAt < this.upAt) return;
    this.up = false;
    this.since = Date.now();
    this.gauge.set(0);
    this.logger.warn({ dependency: this.name, err: errorMessage(err) }, `${this.name} unavailable; retrying with backoff, entries stay pending`);
  }
  markUp(): void {
    if (this.up) return;
    this.up = true;
    this.upAt = Date.now();
    this.gauge.set(1);
    this.logger.info({ dependency: this.name, downMs: Date.now() - this.since }, `${this.name} available again`);
  }
}
