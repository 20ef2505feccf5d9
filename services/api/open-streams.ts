/**
 * The api's open server-sent-event streams, so that shutdown can end them at once. A stream lives
 * as long as its client, and Bun's server.stop() waits for every response in flight: with one
 * dashboard open, SIGTERM used to wait out the 20 s deadline and exit 1. Ending a stream is what
 * the client would see on any restart: EventSource reconnects (to another instance, or to this one
 * when it is back).
 */
interface Abortable {
  abort(): void;
  onAbort(listener: () => void): void;
}

export class OpenStreams {
  private readonly open = new Set<Abortable>();
  private closing = false;

  /** Registers a stream until it ends; one opened after closeAll() is ended at once. */
  track(stream: Abortable): void {
    if (this.closing) {
      stream.abort();
      return;
    }
    this.open.add(stream);
    stream.onAbort(() => this.open.delete(stream));
  }

  /** Ends every open stream (their loops see `aborted` and return) and every one opened later. */
  closeAll(): number {
    this.closing = true;
    const count = this.open.size;
    for (const stream of [...this.open]) stream.abort();
    return count;
  }

  get size(): number {
    return this.open.size;
  }
}
