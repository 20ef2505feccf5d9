/**
 * A real local webhook receiver for the notifier tests and bench: Bun.serve on a port of the
 * notifier's range (3200-3299), verifying every request with the spec's own library
 * (`standardwebhooks` Webhook.verify) and its payload structure ({ type, timestamp, data }), and checking per-stock order the way a receiver would see it:
 * no version of a stock may arrive while an earlier one has not been acknowledged (2xx).
 */
import { Webhook } from "standardwebhooks";
import type { StockEvent } from "../domain/events.ts";

interface ReceivedRequest {
  webhookId: string;
  event: StockEvent;
  /** What the receiver answered. */
  status: number;
  at: number;
}

export interface Receiver {
  readonly url: string;
  readonly port: number;
  /** Every request, in arrival order (also those answered non-2xx). */
  readonly requests: ReceivedRequest[];
  /** webhook-id → event, for every request answered 2xx (the dedupe a receiver does). */
  readonly acknowledged: Map<string, StockEvent>;
  /** Requests whose signature the library rejected, with its message. */
  readonly invalid: string[];
  /** Requests that broke per-stock order (a version sent before an earlier one was acknowledged). */
  readonly orderViolations: string[];
  /** Requests whose webhook-id differs from the event id in the body. */
  readonly idMismatches: string[];
  /** Bodies that are not the Standard Webhooks payload { type = data.eventType, timestamp = data.occurredAt, data }. */
  readonly malformed: string[];
  /** Acknowledged count per webhook-id above 1 = duplicates. */
  duplicates(): number;
  stop(): Promise<void>;
}

export type Responder = (event: StockEvent, request: Request) => number | Response | Promise<number | Response>;

const PORT_RANGE = { from: 3200, to: 3299 };

/** A fresh WEBHOOK_SECRETS_KEY (the base64 of 32 random bytes), for tests that store endpoints. */
export function testSecretsKey(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
}

/** Stocks' versions are expected to start at 1 and to be subscribed to in full (every event type). */
export function startReceiver(options: { secret: string; respond?: Responder; path?: string }): Receiver {
  const webhook = new Webhook(options.secret);
  const requests: ReceivedRequest[] = [];
  const acknowledged = new Map<string, StockEvent>();
  const ackCount = new Map<string, number>();
  const invalid: string[] = [];
  const orderViolations: string[] = [];
  const idMismatches: string[] = [];
  const malformed: string[] = [];
  /** Per stock: highest version acknowledged with every earlier one acknowledged too. */
  const ackedUpTo = new Map<string, number>();
  const ackedVersions = new Map<string, Set<number>>();

  const fetch = async (request: Request): Promise<Response> => {
    const body = await request.text();
    const headers = Object.fromEntries(request.headers);
    let event: StockEvent;
    try {
      // The Standard Webhooks payload structure: { type, timestamp, data }, the envelope as data.
      const payload = webhook.verify(body, headers) as { type?: unknown; timestamp?: unknown; data: StockEvent };
      event = payload.data;
      if (payload.type !== event?.eventType || payload.timestamp !== event.occurredAt) malformed.push(body.slice(0, 200));
    } catch (err) {
      invalid.push((err as Error).message);
      return new Response("invalid signature", { status: 400 });
    }
    const webhookId = headers["webhook-id"]!;
    if (webhookId !== event.eventId) idMismatches.push(`${webhookId} != ${event.eventId}`);
    const stock = event.aggregateId;
    const upTo = ackedUpTo.get(stock) ?? 0;
    if (event.version > upTo + 1) orderViolations.push(`${stock} v${event.version} arrived with only v1..v${upTo} acknowledged`);
    const answer = options.respond ? await options.respond(event, request) : 200;
    const response = typeof answer === "number" ? new Response(answer < 300 ? "ok" : "nope", { status: answer }) : answer;
    requests.push({ webhookId, event, status: response.status, at: Date.now() });
    if (response.status >= 200 && response.status < 300) {
      acknowledged.set(webhookId, event);
      ackCount.set(webhookId, (ackCount.get(webhookId) ?? 0) + 1);
      const versions = ackedVersions.get(stock) ?? new Set<number>();
      versions.add(event.version);
      ackedVersions.set(stock, versions);
      let next = upTo;
      while (versions.has(next + 1)) next += 1;
      ackedUpTo.set(stock, next);
    }
    return response;
  };

  let server: ReturnType<typeof Bun.serve> | undefined;
  for (let tries = 0; !server; tries++) {
    const port = PORT_RANGE.from + Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from + 1));
    try {
      server = Bun.serve({ port, hostname: "127.0.0.1", fetch });
    } catch (err) {
      if (tries > 50) throw err;
    }
  }
  const port = server.port!;
  return {
    url: `http://127.0.0.1:${port}${options.path ?? "/hooks"}`,
    port,
    requests,
    acknowledged,
    invalid,
    orderViolations,
    idMismatches,
    malformed,
    duplicates: () => [...ackCount.values()].reduce((n, c) => n + c - 1, 0),
    stop: async () => {
      await server.stop(true);
    },
  };
}
