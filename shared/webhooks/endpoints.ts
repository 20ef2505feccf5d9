/**
 * Webhook endpoints in PostgreSQL (migrations/002_webhooks.sql, 004): the one from config (WEBHOOK_URL,
 * written by the notifier at start) and those added with the api's /api/webhooks. Secrets are stored
 * encrypted (secret-box.ts) and are in clear only in memory. Shared by the api
 * (add, list, remove) and the notifier (which endpoints to deliver to).
 */
import { randomBytes } from "node:crypto";
import type postgres from "postgres";
import { z } from "zod";
import { WEBHOOK_SECRET_PATTERN } from "../config.ts";
import { EVENT_TYPES, type EventType } from "../domain/events.ts";
import { storableText } from "../domain/validation.ts";
import type { SecretBox } from "./secret-box.ts";

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
  secret: string | null;
  secret_ciphertext: string | null;
  secret_key_id: string | null;
  event_types: EventType[] | null;
  description: string | null;
  source: "config" | "api";
  created_at: Date;
}

const COLUMNS = "endpoint_id, url, secret, secret_ciphertext, secret_key_id, event_types, description, source, created_at";

/** The row with its secret in clear (decrypted; a row from before encryption carries it as is). */
async function toEndpoint(r: EndpointRow, box: SecretBox): Promise<Endpoint> {
  const secret = r.secret ?? (await box.decrypt({ ciphertext: r.secret_ciphertext!, keyId: r.secret_key_id! }, r.endpoint_id));
  return { id: r.endpoint_id, url: r.url, secret, eventTypes: r.event_types, description: r.description, source: r.source, createdAt: r.created_at };
}

/** A fresh Standard Webhooks secret: 32 random bytes. */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/**
 * The live endpoints with their secrets (the notifier). One whose secret cannot be decrypted (its key
 * is not configured) is left out and reported to `onUndecryptable`: the others are still delivered to.
 */
export async function listEndpoints(sql: postgres.Sql, box: SecretBox, onUndecryptable?: (id: string, err: unknown) => void): Promise<Endpoint[]> {
  const rows = await sql<EndpointRow[]>`
    SELECT ${sql.unsafe(COLUMNS)} FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY created_at, endpoint_id`;
  const endpoints: Endpoint[] = [];
  for (const row of rows) {
    try {
      endpoints.push(await toEndpoint(row, box));
    } catch (err) {
      onUndecryptable?.(row.endpoint_id, err);
    }
  }
  return endpoints;
}

export type EndpointView = Omit<Endpoint, "secret">;

/** The live endpoints without their secrets (the api's list: nothing to decrypt). */
export async function listEndpointViews(sql: postgres.Sql): Promise<EndpointView[]> {
  const rows = await sql<EndpointRow[]>`
    SELECT ${sql.unsafe(COLUMNS)} FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY created_at, endpoint_id`;
  return rows.map((r) => ({ id: r.endpoint_id, url: r.url, eventTypes: r.event_types, description: r.description, source: r.source, createdAt: r.created_at }));
}

export async function createEndpoint(
  sql: postgres.Sql,
  box: SecretBox,
  input: { url: string; secret?: string; eventTypes?: EventType[] | null; description?: string | null },
): Promise<Endpoint> {
  const id = `ep_${Bun.randomUUIDv7().replaceAll("-", "")}`;
  const sealed = await box.encrypt(input.secret ?? generateSecret(), id);
  const [row] = await sql<EndpointRow[]>`
    INSERT INTO webhook_endpoints (endpoint_id, url, secret, secret_ciphertext, secret_key_id, event_types, description, source)
    VALUES (${id}, ${input.url}, ${sealed.plain}, ${sealed.ciphertext}, ${sealed.keyId}, ${input.eventTypes ?? null}, ${input.description ?? null}, 'api')
    RETURNING ${sql.unsafe(COLUMNS)}`;
  return toEndpoint(row!, box);
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
  box: SecretBox,
  config: { url?: string; secret?: string; eventTypes?: EventType[] },
): Promise<Endpoint | null> {
  if (!config.url || !config.secret) {
    await sql`UPDATE webhook_endpoints SET removed_at = now() WHERE endpoint_id = ${CONFIG_ENDPOINT_ID} AND removed_at IS NULL`;
    return null;
  }
  const sealed = await box.encrypt(config.secret, CONFIG_ENDPOINT_ID);
  const [row] = await sql<EndpointRow[]>`
    INSERT INTO webhook_endpoints (endpoint_id, url, secret, secret_ciphertext, secret_key_id, event_types, description, source)
    VALUES (${CONFIG_ENDPOINT_ID}, ${config.url}, ${sealed.plain}, ${sealed.ciphertext}, ${sealed.keyId}, ${config.eventTypes ?? null}, 'WEBHOOK_URL', 'config')
    ON CONFLICT (endpoint_id) DO UPDATE
      SET url = EXCLUDED.url, secret = EXCLUDED.secret, secret_ciphertext = EXCLUDED.secret_ciphertext,
          secret_key_id = EXCLUDED.secret_key_id, event_types = EXCLUDED.event_types, removed_at = NULL
    RETURNING ${sql.unsafe(COLUMNS)}`;
  return toEndpoint(row!, box);
}

/**
 * Key rotation's second step (`bun run webhook-secrets`): every endpoint whose secret is in plain text
 * or under another key than the current one is decrypted (old keys are in the box) and encrypted
 * under the current key, one row per statement, guarded by what was read (a row changed meanwhile
 * is left for the next run). Removed endpoints too: their rows still hold a secret.
 */
export async function reencryptSecrets(sql: postgres.Sql, box: SecretBox): Promise<{ reencrypted: number; failed: { id: string; error: string }[] }> {
  if (!box.currentKeyId) throw new Error("reencryptSecrets needs WEBHOOK_SECRETS_KEY");
  const rows = await sql<EndpointRow[]>`
    SELECT ${sql.unsafe(COLUMNS)} FROM webhook_endpoints
    WHERE secret IS NOT NULL OR secret_key_id IS DISTINCT FROM ${box.currentKeyId}`;
  let reencrypted = 0;
  const failed: { id: string; error: string }[] = [];
  for (const row of rows) {
    try {
      const { secret } = await toEndpoint(row, box);
      const sealed = await box.encrypt(secret, row.endpoint_id);
      const done = await sql`
        UPDATE webhook_endpoints SET secret = NULL, secret_ciphertext = ${sealed.ciphertext}, secret_key_id = ${sealed.keyId}
        WHERE endpoint_id = ${row.endpoint_id} AND secret IS NOT DISTINCT FROM ${row.secret}
          AND secret_ciphertext IS NOT DISTINCT FROM ${row.secret_ciphertext}`;
      reencrypted += done.count;
    } catch (err) {
      failed.push({ id: row.endpoint_id, error: (err as Error).message });
    }
  }
  return { reencrypted, failed };
}
