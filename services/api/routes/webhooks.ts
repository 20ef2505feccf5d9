/**
 * Webhook endpoints (admin): add, list, remove. Stored in PostgreSQL (shared/webhooks/endpoints.ts);
 * the notifier picks changes up within a few seconds. The secret is shown once, in the 201 of the
 * create; lists never carry it. The endpoint from WEBHOOK_URL (id "config") is listed but cannot be
 * removed here (409): the notifier would write it back at its next start.
 */
import { createRoute, z, type OpenAPIHono } from "@hono/zod-openapi";
import postgres from "postgres";
import { isPostgresOutage } from "../../../shared/projection/errors.ts";
import { checkWebhookUrl, type Resolver } from "../../../shared/webhooks/address-policy.ts";
import { createEndpoint, eventTypes, listEndpointViews, removeEndpoint, webhookSecret, webhookUrl, type EndpointView } from "../../../shared/webhooks/endpoints.ts";
import { secretBoxFromConfig, type SecretBox } from "../../../shared/webhooks/secret-box.ts";
import { storableText } from "../../../shared/domain/validation.ts";
import { adminOnly, bearer } from "../auth.ts";
import type { AppEnv } from "../env.ts";
import { ApiProblem } from "../problem.ts";
import { createRouter } from "../router.ts";
import { edgeProblems, jsonContent, problems } from "../schemas.ts";

const createWebhookBody = z
  .object({
    // The shared schemas are plain zod (the notifier uses them too), so no .openapi() on them: it only
    // exists on schemas made after @hono/zod-openapi extended zod; .describe() is zod's own.
    url: webhookUrl.describe(
      "http(s) URL the events are POSTed to; redirects are not followed. Refused (400 webhook_url_not_allowed) when its host is, " +
        "or resolves to, a loopback, link-local, private, unspecified, multicast or broadcast address (unless the deployment allows private networks)",
    ),
    secret: webhookSecret.optional().describe("Standard Webhooks secret (whsec_…); generated when omitted"),
    eventTypes: eventTypes.optional().describe("event types to deliver; all when omitted"),
    description: z.string().trim().max(500).refine(storableText("multiline"), "must not contain NUL or other control characters").optional(),
  })
  .strict()
  .openapi("CreateWebhook");

const webhookView = z
  .object({
    id: z.string(),
    url: z.string(),
    eventTypes: z.array(z.string()).nullable().openapi({ description: "null = every event type" }),
    description: z.string().nullable(),
    source: z.enum(["config", "api"]),
    createdAt: z.string(),
  })
  .openapi("Webhook");

const createdWebhookView = webhookView.extend({ secret: z.string().openapi({ description: "shown only here" }) }).openapi("CreatedWebhook");
const webhookList = z.object({ items: z.array(webhookView) }).openapi("WebhookList");
const webhookIdParam = z.object({
  id: z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/).openapi({ param: { name: "id", in: "path" }, example: "ep_01934f2a7c9b7d3e8f1a2b3c4d5e6f70" }),
});

/** Admin only, checked in route middleware: 401/403 come before the body is looked at. */
const admin = [
  [401, "`unauthorized`: no admin token"],
  [403, "`forbidden`: not the admin token"],
] as const;

const createWebhook = createRoute({
  method: "post",
  path: "/webhooks",
  operationId: "createWebhook",
  tags: ["webhooks"],
  summary: "Add a webhook endpoint (admin): every later event of the chosen types is POSTed to it as a Standard Webhook",
  ...bearer(adminOnly), // 401/403 before the body is validated
  request: { body: { required: true, content: { "application/json": { schema: createWebhookBody } } } },
  responses: {
    201: jsonContent(createdWebhookView, "added; the secret is shown only in this answer"),
    ...edgeProblems("post"),
    ...problems(
      [400, "`invalid_request`: a bad body; `webhook_url_not_allowed`: the URL's host is, or resolves to, an address webhooks may not reach, or does not resolve"],
      ...admin,
      [503, "`store_unavailable`: PostgreSQL is down or slow"],
    ),
  },
});

const listWebhooks = createRoute({
  method: "get",
  path: "/webhooks",
  operationId: "listWebhooks",
  tags: ["webhooks"],
  summary: "List the webhook endpoints (admin), without their secrets",
  ...bearer(adminOnly),
  responses: {
    200: jsonContent(webhookList, "the endpoints"),
    ...edgeProblems("get"),
    ...problems(...admin, [503, "`store_unavailable`: PostgreSQL is down or slow"]),
  },
});

const deleteWebhook = createRoute({
  method: "delete",
  path: "/webhooks/{id}",
  operationId: "deleteWebhook",
  tags: ["webhooks"],
  summary: "Remove a webhook endpoint (admin): nothing more is sent to it; its delivery log stays",
  ...bearer(adminOnly), // 401/403 before the id is validated
  request: { params: webhookIdParam },
  responses: {
    204: { description: "removed" },
    ...edgeProblems("delete"),
    ...problems(
      400,
      ...admin,
      [404, "`not_found`: no such endpoint"],
      [409, "`webhook_configured`: the endpoint of WEBHOOK_URL, removed only by the notifier's environment"],
      [503, "`store_unavailable`: PostgreSQL is down or slow"],
    ),
  },
});

const view = (e: EndpointView) => ({
  id: e.id,
  url: e.url,
  eventTypes: e.eventTypes,
  description: e.description,
  source: e.source,
  createdAt: e.createdAt.toISOString(),
});

async function fromPostgres<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (isPostgresOutage(err)) throw new ApiProblem(503, "store_unavailable", "the webhook database is unavailable, try again shortly");
    throw err;
  }
}

export interface WebhookRouteOptions {
  /** Encrypts the secrets stored (no key: plain text, see shared/webhooks/secret-box.ts). */
  box: SecretBox;
  /** WEBHOOK_ALLOW_PRIVATE_NETWORKS: local receivers allowed (development, tests). */
  allowPrivate: boolean;
  /** Host name → addresses; the system resolver by default (tests inject one). */
  resolve?: Resolver;
}

/** `sql` must be writable (not the api's read-only reader). */
export function webhookRoutes(sql: postgres.Sql, options: WebhookRouteOptions): OpenAPIHono<AppEnv> {
  const app = createRouter();

  app.openapi(createWebhook, async (c) => {
    const body = c.req.valid("json");
    // SSRF: the URL may not name the inside (docs/webhooks.md "Security"); the notifier checks again at every send.
    const check = await checkWebhookUrl(body.url, { allowPrivate: options.allowPrivate, resolve: options.resolve });
    if (!check.ok) throw new ApiProblem(400, "webhook_url_not_allowed", `webhook URL not allowed: ${check.reason}`);
    const endpoint = await fromPostgres(() => createEndpoint(sql, options.box, body));
    c.get("log").info({ endpoint: endpoint.id, url: endpoint.url }, "webhook endpoint added");
    return c.json({ ...view(endpoint), secret: endpoint.secret }, 201);
  });

  app.openapi(listWebhooks, async (c) => {
    const items = await fromPostgres(() => listEndpointViews(sql));
    return c.json({ items: items.map(view) }, 200);
  });

  app.openapi(deleteWebhook, async (c) => {
    const { id } = c.req.valid("param");
    const result = await fromPostgres(() => removeEndpoint(sql, id));
    if (result === "not_found") throw new ApiProblem(404, "not_found", "no such webhook endpoint");
    if (result === "configured") {
      throw new ApiProblem(409, "webhook_configured", "this endpoint comes from WEBHOOK_URL: change or unset it in the notifier's environment");
    }
    c.get("log").info({ endpoint: id }, "webhook endpoint removed");
    return c.body(null, 204);
  });

  return app;
}

/** For services/api/main.ts: the routes with their own small writable pool (fails fast, like the readers), and how to close it. */
export async function webhookRoutesFromConfig(config: {
  DATABASE_URL: string;
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: boolean;
  WEBHOOK_SECRETS_KEY?: string;
  WEBHOOK_SECRETS_OLD_KEYS?: string[];
}): Promise<{ routes: OpenAPIHono<AppEnv>; close(): Promise<void>; encrypted: boolean }> {
  const sql = postgres(config.DATABASE_URL, {
    max: 2,
    connect_timeout: 2,
    idle_timeout: 30,
    onnotice: () => {},
    connection: { application_name: "api-webhooks", statement_timeout: 2_000 },
  });
  const box = await secretBoxFromConfig(config);
  return {
    routes: webhookRoutes(sql, { box, allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_NETWORKS }),
    close: () => sql.end({ timeout: 5 }),
    encrypted: box.currentKeyId !== null,
  };
}
