/**
 * The waiting room (docs/waiting-room.md): join, poll (JSON or SSE), the public figures and the draw.
 * Joining writes (room_join.lua); polling only reads (room_status.lua), so a client may poll several
 * times a second: the poll has its own per-user budget (RATE_LIMIT_QUEUE_POLL), no allocate budget.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { drawViewShape, roomViewShape, ticketViewShape, type TicketView } from "../../../shared/domain/room.ts";
import type { RoomCommands } from "../../../shared/redis/room.ts";
import { bearer, requireUser, userOnly } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import type { ApiMetrics } from "../metrics.ts";
import { ApiProblem } from "../problem.ts";
import { createRouter } from "../router.ts";
import { edgeProblems, jsonContent, problems, stockIdParam } from "../schemas.ts";

const ticketView = z.object(ticketViewShape).openapi("Ticket");
const roomView = z.object(roomViewShape).openapi("WaitingRoomFigures");
const drawView = z.object(drawViewShape).openapi("Draw");

/** How often an SSE stream re-reads the ticket, and how long one stream lasts (the client reconnects). */
const SSE_INTERVAL_MS = 250;
const SSE_MAX_MS = 10 * 60_000;
const FINAL_STATES = new Set(["sold_out", "expired", "done"]);

const noStock = [404, "`not_found`: no such stock"] as const;
/**
 * A stock that sells without a waiting room is a 409, not a 404: the stock is there, its state (no room)
 * is what refuses the request, like `not_started` or `ended` on allocate. (A 404 also read, to a client
 * and to schemathesis' stateful checks, as "the stock you just created is gone".)
 */
const NO_ROOM = "`no_waiting_room`: the stock sells without a waiting room";
const noRoom = [409, NO_ROOM] as const;

const join = createRoute({
  method: "post",
  path: "/stocks/{id}/queue",
  operationId: "joinQueue",
  tags: ["waiting room"],
  summary: "Take a ticket in the stock's waiting room (one per user; joining again answers the same ticket with 200)",
  description: "Before startsAt the ticket joins the pre-queue, drawn at the start; after it, the back of the line.",
  ...bearer(userOnly),
  request: { params: stockIdParam },
  responses: {
    201: jsonContent(ticketView, "joined"),
    200: jsonContent(ticketView, "the user's existing ticket"),
    ...edgeProblems("post"),
    ...problems(400, [401, "`unauthorized`: no user token"], [403, "`forbidden`: the admin token"], noStock, [409, `\`sold_out\`: nothing left and nothing can come back; \`ended\`; ${NO_ROOM}`]),
  },
});

const me = createRoute({
  method: "get",
  path: "/stocks/{id}/queue/me",
  operationId: "getMyTicket",
  tags: ["waiting room"],
  summary: "The caller's ticket: state, position, wait estimate, and the admission token while admitted (read only)",
  description:
    "With `Accept: text/event-stream`, the same object is sent as an SSE event (`ticket`) whenever it changes; the stream ends after a final state (sold_out, expired, done).",
  ...bearer(userOnly),
  request: { params: stockIdParam },
  responses: {
    200: {
      description: "the ticket",
      content: { "application/json": { schema: ticketView }, "text/event-stream": { schema: z.string().openapi({ description: "`event: ticket` / `data: <Ticket JSON>`" }) } },
    },
    ...edgeProblems("get"),
    ...problems(400, [401, "`unauthorized`: no user token"], [403, "`forbidden`: the admin token"], [404, "`not_found`: no ticket (join first) or no such stock"], noRoom, [429, "`rate_limited`: over RATE_LIMIT_QUEUE_POLL"]),
  },
});

const figures = createRoute({
  method: "get",
  path: "/stocks/{id}/queue",
  operationId: "getWaitingRoom",
  // Public: anyone may read it, no token.
  security: [],
  tags: ["waiting room"],
  summary: "The room's public figures and the draw's commitment (and the seed once revealed)",
  request: { params: stockIdParam },
  responses: { 200: jsonContent(roomView, "the room"), ...edgeProblems("get"), ...problems(400, noStock, noRoom) },
});

const draw = createRoute({
  method: "get",
  path: "/stocks/{id}/queue/draw",
  operationId: "getQueueDraw",
  // Public: anyone may read it, no token.
  security: [],
  tags: ["waiting room"],
  summary: "The pre-queue in drawn order with the revealed seed, so anyone can check it (after the start)",
  request: { params: stockIdParam },
  responses: { 200: jsonContent(drawView, "the draw"), ...edgeProblems("get"), ...problems(400, noStock, [409, `\`draw_not_ready\`: before startsAt; ${NO_ROOM}`]) },
});

export function queueRoutes(rooms: RoomCommands, metrics: ApiMetrics): OpenAPIHono<AppEnv> {
  const app = createRouter();
  const counted = (ticket: TicketView) => {
    if (ticket.state === "sold_out") metrics.roomSoldOutAnswers.inc();
    return ticket;
  };

  app.openapi(join, async (c) => {
    const userId = requireUser(c);
    try {
      const { ticket, created } = await rooms.join(c.req.valid("param").id, userId);
      return created ? c.json(counted(ticket), 201) : c.json(counted(ticket), 200);
    } catch (err) {
      if ((err as { code?: string }).code === "sold_out") metrics.roomSoldOutAnswers.inc();
      throw err;
    }
  });

  app.openapi(me, async (c) => {
    const userId = requireUser(c);
    const stockId = c.req.valid("param").id;
    const read = async () => {
      const ticket = await rooms.status(stockId, userId);
      if (!ticket) throw new ApiProblem(404, "not_found", "no ticket for this user: join with POST /api/stocks/{id}/queue");
      return ticket;
    };
    const first = await read();
    if (!(c.req.header("accept") ?? "").includes("text/event-stream")) return c.json(counted(first), 200);
    return streamTicket(c, first, read) as unknown as ReturnType<typeof c.json<TicketView, 200>>;
  });

  app.openapi(figures, async (c) => c.json(await rooms.summary(c.req.valid("param").id), 200));
  app.openapi(draw, async (c) => c.json(await rooms.draw(c.req.valid("param").id), 200));
  return app;
}

/** SSE: the ticket now, then again whenever it changes, until a final state, the client leaves, or SSE_MAX_MS. */
function streamTicket(c: Context<AppEnv>, first: TicketView, read: () => Promise<TicketView>): Response {
  return streamSSE(c, async (stream) => {
    // What counts as a change: not the estimate, which moves with the clock.
    const key = (t: TicketView) => `${t.state}|${t.position}|${t.admissionToken ?? ""}`;
    let last = first;
    await stream.writeSSE({ event: "ticket", data: JSON.stringify(first) });
    const until = Date.now() + SSE_MAX_MS;
    let aborted = false;
    stream.onAbort(() => {
      aborted = true;
    });
    while (!aborted && Date.now() < until && !FINAL_STATES.has(last.state)) {
      await stream.sleep(SSE_INTERVAL_MS);
      const next = await read();
      if (key(next) !== key(last)) await stream.writeSSE({ event: "ticket", data: JSON.stringify(next) });
      last = next;
    }
  });
}
