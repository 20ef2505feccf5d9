/**
 * Read-your-writes in the freshness phase (projectors-freshness.ts): the api binary, at its defaults
 * (1 s wait), serves the pipeline's stores; each probe allocation, as soon as it answers, is read
 * back by its user with the Consistency-Token a client would have got (order history), and its stock
 * searched with it. Timed from sending the read to its answer: the wait plus the query.
 * Reported per read kind: the wait as the api measured it (its Server-Timing `consistency-wait`), the
 * whole read as the client saw it, and how many came back `fresh` and showing the write.
 */
import type { Subprocess } from "bun";
import { encodeConsistencyToken } from "../../shared/domain/consistency-token.ts";
import { mintUserToken } from "../../shared/dev/token.ts";
import { freePort } from "../../shared/dev/env.ts";
import { percentile } from "../support.ts";
import type { ProjectorBench } from "./projectors-stack.ts";
import type { Probe } from "./projectors-probes.ts";

const JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789abcdef";
const ADMIN_TOKEN = "bench-admin-token-0123456789";

interface Outcome {
  ms: number;
  /** The api's own measure of the wait (Server-Timing consistency-wait), without the query, queueing or network. */
  waitMs: number | null;
  fresh: boolean;
  shows: boolean;
  failed: boolean;
}

export class ReadYourWritesProbes {
  private readonly outcomes = { history: [] as Outcome[], search: [] as Outcome[] };
  private readonly inflight = new Set<Promise<void>>();
  private readonly userTokens = new Map<string, Promise<string>>();

  private constructor(
    readonly api: Subprocess,
    private readonly base: string,
  ) {}

  /** Starts the api on the pipeline's stores (key prefix, database, alias) and waits until it is ready. */
  static async start(bench: ProjectorBench, stores: { prefix: string; databaseUrl: string; alias: string; topic: string }, variant: Record<string, string>): Promise<ReadYourWritesProbes> {
    const port = freePort();
    const api = bench.spawn(
      "api",
      {
        PORT: String(port),
        REDIS_KEY_PREFIX: stores.prefix,
        DATABASE_URL: stores.databaseUrl,
        ELASTICSEARCH_INDEX_ALIAS: stores.alias,
        KAFKA_TOPIC: stores.topic,
        JWT_SECRET,
        ADMIN_TOKEN,
        API_WORKERS: "1",
      },
      variant,
    );
    const base = `http://127.0.0.1:${port}`;
    const deadline = performance.now() + 60_000;
    while (!(await fetch(`${base}/readyz`).then((r) => r.ok, () => false))) {
      if (performance.now() > deadline || api.exitCode !== null) throw new Error("the api did not become ready in 60 s");
      await Bun.sleep(100);
    }
    return new ReadYourWritesProbes(api, base);
  }

  /** Reads the probe back at once with its token: history as its user, and a search for its stock. */
  read(probe: Probe, userId: string): void {
    const token = encodeConsistencyToken({ stockId: probe.stockId, version: probe.version });
    const run = async () => {
      const bearer = await this.userToken(userId);
      await Promise.all([
        this.timed("history", `/api/orders/user/${userId}?limit=20`, { Authorization: `Bearer ${bearer}`, "Consistency-Token": token }, (body) =>
          (body as { items: { allocationId: string }[] }).items.some((o) => o.allocationId === probe.allocationId),
        ),
        this.timed("search", `/api/stocks/search?q=${probe.stockId}`, { "Consistency-Token": token }, (body) =>
          (body as { items: { id: string; version: number }[] }).items.some((s) => s.id === probe.stockId && s.version >= probe.version),
        ),
      ]);
    };
    const op = run();
    this.inflight.add(op);
    void op.finally(() => this.inflight.delete(op));
  }

  async settle(): Promise<void> {
    await Promise.all(this.inflight);
  }

  /** One line per read kind: the wait's percentiles and the fresh / showing-the-write counts. */
  lines(label: string): string[] {
    return (["history", "search"] as const).map((kind) => {
      const all = this.outcomes[kind];
      const ms = all.map((o) => o.ms).sort((a, b) => a - b);
      const waits = all.flatMap((o) => (o.waitMs === null ? [] : [o.waitMs])).sort((a, b) => a - b);
      const count = (f: (o: Outcome) => boolean) => all.filter(f).length;
      return (
        `[${label}] read-your-writes, ${kind} with the token at once (api default wait 1 s): wait (api's Server-Timing) p50 ${percentile(waits, 50)} ms, ` +
        `p90 ${percentile(waits, 90)} ms, p99 ${percentile(waits, 99)} ms, max ${waits[waits.length - 1]} ms; whole read p50 ${percentile(ms, 50)} ms, ` +
        `p99 ${percentile(ms, 99)} ms (n=${all.length}); fresh ${count((o) => o.fresh)}, ` +
        `showing the write ${count((o) => o.shows)}, stale ${count((o) => !o.fresh && !o.failed)}, failed ${count((o) => o.failed)}`
      );
    });
  }

  private userToken(userId: string): Promise<string> {
    let token = this.userTokens.get(userId);
    if (!token) this.userTokens.set(userId, (token = mintUserToken(userId, JWT_SECRET)));
    return token;
  }

  private async timed(kind: "history" | "search", path: string, headers: Record<string, string>, shows: (body: unknown) => boolean): Promise<void> {
    const started = performance.now();
    try {
      const res = await fetch(`${this.base}${path}`, { headers });
      const body = res.ok ? await res.json() : null;
      const ms = Math.round(performance.now() - started);
      const timing = /consistency-wait;dur=([\d.]+)/.exec(res.headers.get("server-timing") ?? "");
      const waitMs = timing ? Math.round(Number(timing[1])) : null;
      this.outcomes[kind].push({ ms, waitMs, fresh: res.headers.get("consistency-status") === "fresh", shows: body !== null && shows(body), failed: !res.ok });
    } catch {
      this.outcomes[kind].push({ ms: Math.round(performance.now() - started), waitMs: null, fresh: false, shows: false, failed: true });
    }
  }
}
