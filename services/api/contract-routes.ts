/**
 * The published event contract, public like /openapi.json: /asyncapi.json (AsyncAPI 3: the topic,
 * its dead-letter topic, key, headers, payloads, partitions) and /schemas/events.json (the event
 * envelope's JSON Schema), both generated from the zod schemas once at start.
 */
import { Hono } from "hono";
import { asyncApiDocument, eventsJsonSchema, type ContractOptions } from "../../shared/kafka/contract.ts";

export function contractRoutes(options: ContractOptions): Hono {
  const app = new Hono();
  const asyncApi = asyncApiDocument(options);
  const schema = eventsJsonSchema();
  app.get("/asyncapi.json", (c) => c.json(asyncApi));
  app.get("/schemas/events.json", (c) => c.body(JSON.stringify(schema), 200, { "Content-Type": "application/schema+json" }));
  return app;
}
