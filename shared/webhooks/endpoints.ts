/**
 * Webhook endpoints in PostgreSQL (migrations/002_webhooks.sql): the one from config (WEBHOOK_URL,
 * written by the notifier at start) and those added with the api's /api/webhooks. Shared by the api
 * (add, list, remove) and the notifier (which endpoints to deliver to).
 */
import { randomBytes } from "node:crypto";
import type postgres from "postgres";
import { z } from "zod";
import { WEBHOOK_SECRET_PATTERN } from "../config.ts";
import { EVENT_TYPES, type EventType } from "../domain/events.ts";
import { storableText } from "../domain/validation.ts";

/** The id of the endpoint that comes from WEBHOOK_URL. */
const CONFIG_ENDPOINT_ID = "config";

/** Only http(s): a webhook URL is a place to POST events, never file:, data: or anything a fetch might resolve locally. */
export const webhookUrl = z
  .string()
  .max(2048)
  .url()
  // zod runs refinements after a failed .url() too: parse defensively, never throw from a check.
  .refine((u) => /^https?:$/.test(URL.parse(u)?.protocol ?? ""), "must be an http:// or https:// URL")
  .refine((u) => !URL.parse(u)?.username && !URL.parse(u)?.password, "must not carry credentials")
  .refine(storableText("line"), "must not contain control characters (PostgreSQL cannot store NUL)");

export const webhookSecret = z.string().regex(WEBHOOK_SECRET_PATTERN, "must be whsec_ followed by the base64 of 24-64 bytes");
export const eventTypes = z.array(z.enum(EVENT_TYPES)).min(1).max(EVENT_TYPES.length);

export interface Endpoint {
  id: string;
  url: string;
  secret: string;
  /** null = every event type. */
  eventTypes: EventType[] | null;
  description: string | null;
  source: "config" | "api";
  createdAt: Date;
}

interface EndpointRow {
  endpoint_id: string;
  url: string;
  secret: string;
  event_types: EventType[] | null;
  description: string | null;
  source: "config" | "api";
  created_at: Date;
}

const toEndpoint = (r: EndpointRow): Endpoint => ({
  id: r.endpoint_id,
  url: r.url,
  secret: r.secret,
  eventTypes: r.event_types,
  description: r.description,
  source: r.source,
  createdAt: r.created_at,
});

/** A fresh Standard Webhooks secret: 32 random bytes. */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

export async function listEndpoints(sql: postgres.Sql): Promise<Endpoint[]> {
  const rows = await sql<EndpointRow[]>`
    SELECT endpoint_id, url, secret, event_types, description, source, created_at
    FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY created_at, endpoint_id`;
  return rows.map(toEndpoint);
}

export async function createEndpoint(
  sql: postgres.Sql,
  input: { url: string; secret?: string; eventTypes?: EventType[] | null; description?: string | null },
): Promise<Endpoint> {
  const id = `ep_${Bun.randomUUIDv7().replaceAll("-", "")}`;
  const [row] = await sql<EndpointRow[]>`
    INSERT INTO webhook_endpoints (endpoint_id, url, secret, event_types, description, source)
    VALUES (${id}, ${input.url}, ${input.secret ?? generateSecret()}, ${input.eventTypes ?? null}, ${input.description ?? null}, 'api')
    RETURNING endpoint_id, url, secret, event_types, description, source, created_at`;
  return toEndpoint(row!);
}

export type RemoveResult = "removed" | "not_found" | "configured";

/**
 * Stops deliveries to an endpoint: marks it removed and drops its pending deliveries (delivered and
 * dead ones stay, as history). The configured endpoint is refused: the notifier would write it back
 * at its next start; unset WEBHOOK_URL instead.
 */
export async function removeEndpoint(sql: postgres.Sql, id: string): Promise<RemoveResult> {
  return sql.begin(async (tx) => {
    const [row] = await tx<{ source: string }[]>`
      SELECT source FROM webhook_endpoints WHERE endpoint_id = ${id} AND removed_at IS NULL FOR UPDATE`;
    if (!row) return "not_found" as const;
    if (row.source === "config") return "configured" as const;
    await tx`UPDATE webhook_endpoints SET removed_at = now() WHERE endpoint_id = ${id}`;
    await tx`DELETE FROM webhook_deliveries WHERE endpoint_id = ${id} AND status = 'pending'`;
    return "removed" as const;
  });
}

/**
 * Makes the configured endpoint what the environment says: created or updated from WEBHOOK_URL,
 * removed (no more deliveries) when WEBHOOK_URL is unset. Returns it, or null.
 */
export async function syncConfiguredEndpoint(
  sql: postgres.Sql,
  config: { url?: string; secret?: string; eventTypes?: EventType[] },
): Promise<Endpoint | null> {
  if (!config.url || !config.secret) {
    await sql`UPDATE webhook_endpoints SET removed_at = now() WHERE endpoint_id = ${CONFIG_ENDPOINT_ID} AND removed_at IS NULL`;
    return null;
  }
  const [row] = await sql<EndpointRow[]>`
    INSERT INTO webhook_endpoints (endpoint_id, url, secret, event_types, description, source)
    VALUES (${CONFIG_ENDPOINT_ID}, ${config.url}, ${config.secret}, ${config.eventTypes ?? null}, 'WEBHOOK_URL', 'config')
    ON CONFLICT (endpoint_id) DO UPDATE
      SET url = EXCLUDED.url, secret = EXCLUDED.secret, event_types = EXCLUDED.event_types, removed_at = NULL
    RETURNING endpoint_id, url, secret, event_types, description, source, created_at`;
  return toEndpoint(row!);
}
