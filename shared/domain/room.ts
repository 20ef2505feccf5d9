/**
 * The waiting room's pure rules and shapes (docs/waiting-room.md): the draw, the wait estimate, and
 * the views clients see (one zod source for the type, the validation and the OpenAPI document).
 */
import { createHash } from "node:crypto";
import { z } from "zod";

/** Admission TTL bounds and default (seconds an admitted buyer has to allocate). */
export const MIN_ADMISSION_TTL_SECONDS = 5;
export const MAX_ADMISSION_TTL_SECONDS = 3600;
export const DEFAULT_ADMISSION_TTL_SECONDS = 60;

const TICKET_STATES = ["waiting", "admitted", "sold_out", "expired", "done"] as const;
export type TicketState = (typeof TICKET_STATES)[number];

const int = () => z.number().int();

export const ticketViewShape = {
  ticketId: z.string().describe("random; reveals nothing about the user"),
  state: z.enum(TICKET_STATES),
  position: int().describe("1 = next in line; before the draw a pre-queue ticket's worst case (the pre-queue's size); 0 once not waiting"),
  etaSeconds: int().describe("rough estimate of the wait, from the admission rate so far"),
  admissionToken: z.string().optional().describe("only while admitted: send it as the Admission-Token header of the allocate request (single use)"),
};
export type TicketView = z.infer<z.ZodObject<typeof ticketViewShape>>;

export const roomViewShape = {
  commitment: z.string().describe("hex(sha256(seed's 32 raw bytes)), published at creation"),
  seed: z.string().optional().describe("64 hex, once revealed at the start"),
  waiting: int().describe("tickets waiting (pre-queue and line)"),
  admitted: int().describe("admissions not yet used nor expired"),
  done: int().describe("admissions used by an allocation"),
  expired: int().describe("admissions that ran out unused"),
  soldOut: z.boolean().describe("nothing can come back: every waiting ticket is sold_out"),
  admissions: int().describe("tickets admitted so far"),
  waitedSeconds: z.number().describe("time waited from join to admission, summed over the admissions"),
};
export type RoomView = z.infer<z.ZodObject<typeof roomViewShape>>;

export const drawViewShape = {
  commitment: z.string(),
  seed: z.string().describe("64 hex; sha256 of its 32 bytes is the commitment"),
  tickets: z.array(z.string()).describe("the pre-queue, ordered by hex(sha256(seed + ':' + ticketId)) ascending"),
};
export type DrawView = z.infer<z.ZodObject<typeof drawViewShape>>;

const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex");

/** The draw's sort key of one ticket: hex(sha256(hex(seed) + ":" + ticketId)). */
function drawKey(seedHex: string, ticketId: string): string {
  return sha256Hex(`${seedHex}:${ticketId}`);
}

/** The pre-queue in drawn order: by drawKey ascending (ties, which sha256 makes unthinkable, by id). */
export function drawOrder(seedHex: string, ticketIds: readonly string[]): string[] {
  return ticketIds
    .map((id) => ({ id, key: drawKey(seedHex, id) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1))
    .map((t) => t.id);
}

/** Does the seed match the commitment published at creation? hex(sha256(seed's 32 raw bytes)). */
export function seedMatchesCommitment(seedHex: string, commitment: string): boolean {
  return createHash("sha256").update(Buffer.from(seedHex, "hex")).digest("hex") === commitment;
}

/**
 * A rough wait: the time to the start, then (position - units free now) at the admission rate seen
 * so far. Before any admission the rate is unknown: one ticket per admission TTL, the slowest a
 * room with units can move (each admission either buys or expires within it).
 */
export function estimateWaitSeconds(f: {
  position: number;
  nowMs: number;
  startsAtMs: number;
  admissions: number;
  firstAdmitAtMs: number | null;
  freeUnits: number;
  ttlSeconds: number;
}): number {
  if (f.position <= 0) return 0;
  const untilStart = Math.max(0, f.startsAtMs - f.nowMs) / 1000;
  const ahead = Math.max(0, f.position - Math.max(0, f.freeUnits));
  if (ahead === 0) return Math.ceil(untilStart);
  const elapsed = f.firstAdmitAtMs === null ? 0 : (f.nowMs - f.firstAdmitAtMs) / 1000;
  const rate = f.admissions > 0 && elapsed >= 1 ? f.admissions / elapsed : 1 / Math.max(1, f.ttlSeconds);
  return Math.ceil(untilStart + ahead / rate);
}
