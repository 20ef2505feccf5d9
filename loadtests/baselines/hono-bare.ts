/**
 * The HTTP ceiling for the allocation benchmark: Hono on Bun answering the same request shape as
 * our allocate endpoint (POST /api/stocks/:id/allocate, JSON body) with a small JSON 201, doing
 * nothing else: no auth, no validation, no store. Whatever our api loses against this is ours.
 * With UNITS set it answers like a sale of that many units: the first UNITS requests get 201, the
 * rest a 409 problem+json `sold_out` (the spike's response mix, for `bun run load spike --baseline`).
 * WARMUP_STOCK names a stock that answers 409 `not_started` without counting (the runner's warm-up).
 *
 *   PORT=3100 [UNITS=1000] [WARMUP_STOCK=warmup] bun loadtests/baselines/hono-bare.ts
 */
import { Hono } from "hono";

const app = new Hono();
let n = 0;
const units = process.env.UNITS ? Number(process.env.UNITS) : Number.POSITIVE_INFINITY;
const soldOut = JSON.stringify({ type: "about:blank", title: "Conflict", status: 409, code: "sold_out", detail: "not enough units left" });
const notStarted = JSON.stringify({ type: "about:blank", title: "Conflict", status: 409, code: "not_started", detail: "the sale has not started yet" });
const warmupStock = process.env.WARMUP_STOCK;

app.get("/healthz", (c) => c.json({ status: "ok" }));
app.get("/readyz", (c) => c.json({ status: "ready" }));
app.post("/api/stocks/:id/allocate", async (c) => {
  const body = (await c.req.json().catch(() => ({}))) as { quantity?: number };
  if (c.req.param("id") === warmupStock) return c.body(notStarted, 409, { "Content-Type": "application/problem+json" });
  n++;
  if (n > units) return c.body(soldOut, 409, { "Content-Type": "application/problem+json" });
  return c.json(
    {
      allocationId: `s0-bare-${n}`,
      stockId: c.req.param("id"),
      userId: "bare",
      quantity: body.quantity ?? 1,
      status: "held",
      expiresAt: new Date(Date.now() + 600_000).toISOString(),
    },
    201,
  );
});

const server = Bun.serve({ port: Number(process.env.PORT ?? 3100), hostname: "127.0.0.1", fetch: app.fetch });
console.log(JSON.stringify({ msg: "hono-bare listening", port: server.port }));
process.on("SIGTERM", () => {
  void server.stop().then(() => process.exit(0));
});
