/**
 * A cap on server-sent-event streams open at once (SSE_MAX_CLIENTS), one per side of the api: the
 * dashboard's on the admin port, and any stream the public port serves. A stream holds a socket and
 * costs a serialization per tick for as long as its client stays; without a cap, clients that open
 * streams and never read them grow the process without bound. One more than the cap is refused with
 * 503 problem+json `too_many_streams` and Retry-After, before the route runs.
 *
 * A slot is taken before the route runs (so concurrent opens cannot overshoot the cap) and given back
 * when the answer turns out not to be a stream, when the stream ends, or when its client goes away.
 *
 * Shutdown ends every open stream at once (closeAll). A stream lives as long as its client and Bun's
 * server.stop() waits for every response in flight: with one dashboard open, SIGTERM used to wait out
 * the 20 s deadline and exit 1 (issue 20). An ended stream is what a client sees on any restart: the
 * page (or an EventSource) reconnects, to another instance or to this one when it is back.
 */
import type { Context, Next } from "hono";
import { ApiProblem, problemResponse } from "./problem.ts";

/** Seconds a refused client is told to wait: about the time a dashboard tab takes to be closed. */
const STREAM_RETRY_AFTER_SECONDS = 5;

export class StreamSlots {
  private open = 0;
  private closing = false;
  /** How to end each open stream (closeAll). */
  private readonly enders = new Set<() => void>();
  constructor(readonly max: number) {}

  /** Registers how to end an open stream; returns the function that forgets it. Ended at once after closeAll(). */
  track(end: () => void): () => void {
    if (this.closing) {
      end();
      return () => {};
    }
    this.enders.add(end);
    return () => this.enders.delete(end);
  }

  /** Ends every open stream (their routes see the abort and return) and any opened later; returns how many were open. */
  closeAll(): number {
    this.closing = true;
    const enders = [...this.enders];
    this.enders.clear();
    for (const end of enders) end();
    return enders.length;
  }

  get inUse(): number {
    return this.open;
  }

  /** A slot and the function that gives it back (once, however often called), or null at the cap. */
  take(): (() => void) | null {
    if (this.open >= this.max) return null;
    this.open++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open--;
    };
  }
}

const isStream = (res: Response) => (res.headers.get("content-type") ?? "").startsWith("text/event-stream");

/** Whether a request asks for a stream (EventSource always sends `Accept: text/event-stream`). */
export const wantsStream = (c: Context) => (c.req.raw.headers.get("accept") ?? "").includes("text/event-stream");

/**
 * Runs `next` in a slot of `slots`: refuses at the cap, keeps the slot while the answer streams.
 * Used as a route middleware (the dashboard) and by front.ts for requests that ask for a stream.
 */
export async function inStreamSlot(c: Context, slots: StreamSlots, next: Next): Promise<Response | void> {
  const release = slots.take();
  if (release === null) {
    const refusal = new ApiProblem(503, "too_many_streams", `at most ${slots.max} event streams are open at once here; try again shortly`, {}, {
      "Retry-After": String(STREAM_RETRY_AFTER_SECONDS),
    });
    return problemResponse(c, refusal);
  }
  try {
    await next();
  } catch (err) {
    release();
    throw err;
  }
  const body = c.res.body;
  if (!isStream(c.res) || body === null) return release();
  const reader = body.getReader();
  let ended = false;
  let forget = () => {};
  const done = () => {
    release();
    forget();
  };
  // The client going away aborts its request; a stream that ends (or is cancelled) closes the body.
  c.req.raw.signal.addEventListener("abort", done, { once: true });
  const watched = new ReadableStream<Uint8Array>({
    start(controller) {
      // Shutdown: cancelling the route's body aborts its stream (hono's onAbort); the client sees the end.
      forget = slots.track(() => {
        if (ended) return;
        ended = true;
        done();
        void reader.cancel("server shutting down").catch(() => {});
        try {
          controller.close();
        } catch {
          // already closed or errored
        }
      });
    },
    async pull(controller) {
      try {
        const next = await reader.read();
        if (ended) return;
        if (next.done) {
          ended = true;
          done();
          controller.close();
        } else {
          controller.enqueue(next.value);
        }
      } catch (err) {
        if (ended) return;
        ended = true;
        done();
        controller.error(err);
      }
    },
    cancel(reason) {
      ended = true;
      done();
      return reader.cancel(reason);
    },
  });
  c.res = new Response(watched, { status: c.res.status, headers: c.res.headers });
}

/** The route middleware form of inStreamSlot. */
export const streamLimit = (slots: StreamSlots) => (c: Context, next: Next) => inStreamSlot(c, slots, next);
