/**
 * The published event contract, generated from the zod schemas (the single source of each shape):
 * a JSON Schema of the envelope (/schemas/events.json) and an AsyncAPI 3 document of the topic and
 * its dead-letter topic (/asyncapi.json): key, headers, payloads, partitions. The relay's messages
 * are built by shared/kafka/event-message.ts; test/event-contract.test.ts validates real ones.
 */
import { z } from "zod";
import { EVENT_TYPES, SCHEMA_VERSION, stockEventSchema } from "../domain/events.ts";
import { DLQ_HEADERS } from "../projection/dlq.ts";
import { CLOUDEVENTS_SOURCE, CLOUDEVENTS_SPEC_VERSION, EVENT_CONTENT_TYPE } from "./event-message.ts";

const DLQ_HEADER_NAMES: string[] = Object.values(DLQ_HEADERS);

/**
 * JSON Schema (draft-07, which AsyncAPI schemas extend) in input mode: no `additionalProperties:
 * false`, because a new field is additive (docs/design.md §4) and consumers must accept it.
 */
function toSchema(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, { target: "draft-7", io: "input" }) as Record<string, unknown>;
}

export function eventsJsonSchema(): Record<string, unknown> {
  return {
    ...toSchema(stockEventSchema),
    $id: "/schemas/events.json",
    title: "flash-sale stock event",
    description: `The envelope of every event on the stock-events topic, schemaVersion ${SCHEMA_VERSION}. One of the event types, told apart by eventType.`,
  };
}

export interface ContractOptions {
  topic: string;
  dlqTopic: string;
  partitions: number;
  /** Where clients reach Kafka, for the document's server entry. */
  brokers?: readonly string[];
}

const stringHeader = (description: string, extra: Record<string, unknown> = {}) => ({ type: "string", description, ...extra });

/** The headers of every event message (CloudEvents binary mode next to ours). */
function eventHeadersSchema(): Record<string, unknown> {
  return {
    type: "object",
    required: ["eventType", "schemaVersion", "eventId", "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject", "ce_time", "content-type"],
    properties: {
      eventType: stringHeader("the event's type", { enum: [...EVENT_TYPES] }),
      schemaVersion: stringHeader("the envelope's schemaVersion", { const: String(SCHEMA_VERSION) }),
      eventId: stringHeader("the event's id (UUIDv7)", { format: "uuid" }),
      ce_specversion: stringHeader("CloudEvents spec version", { const: CLOUDEVENTS_SPEC_VERSION }),
      ce_id: stringHeader("CloudEvents id = eventId"),
      ce_type: stringHeader("CloudEvents type: flashsale.stock.<eventType>.v<schemaVersion>", { pattern: "^flashsale\\.stock\\.[A-Za-z]+\\.v\\d+$" }),
      ce_source: stringHeader("CloudEvents source", { const: CLOUDEVENTS_SOURCE }),
      ce_subject: stringHeader("CloudEvents subject = aggregateId (the stock id, also the message key)"),
      ce_time: stringHeader("CloudEvents time = occurredAt", { format: "date-time" }),
      "content-type": stringHeader("CloudEvents datacontenttype of the value", { const: EVENT_CONTENT_TYPE }),
      relay: stringHeader("consumer name of the relay that published this copy (duplicates after a take-over come from two relays)"),
      traceparent: stringHeader("W3C trace context of the request that caused the event (absent when none)", {
        pattern: "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
      }),
    },
  };
}

export function asyncApiDocument(options: ContractOptions): Record<string, unknown> {
  const kafkaBinding = "0.5.0";
  const variants = stockEventSchema.options;
  const messages = Object.fromEntries(
    variants.map((variant) => {
      const type = variant.shape.eventType.value;
      return [
        type,
        {
          name: type,
          title: type,
          contentType: EVENT_CONTENT_TYPE,
          headers: { $ref: "#/components/schemas/EventHeaders" },
          payload: { $ref: `#/components/schemas/${type}` },
          correlationId: { description: "the trace of the request that caused it", location: "$message.header#/traceparent" },
          bindings: { kafka: { key: { type: "string", description: "the stock id (aggregateId): a stock's events stay in order on one partition" }, bindingVersion: kafkaBinding } },
        },
      ];
    }),
  );
  const refs = (channel: string, names: string[]) => names.map((n) => ({ $ref: `#/channels/${channel}/messages/${n}` }));
  return {
    asyncapi: "3.0.0",
    info: {
      title: "flash-sale stock events",
      version: String(SCHEMA_VERSION),
      description:
        "Every change of a stock, as a past-tense fact, from the Redis outbox to Kafka (at least once: consumers dedupe by eventId and version). " +
        "Headers follow the CloudEvents Kafka binding in binary mode; the value is the event JSON. A new field is additive; a breaking change bumps schemaVersion.",
    },
    defaultContentType: EVENT_CONTENT_TYPE,
    servers: {
      kafka: { host: (options.brokers ?? ["127.0.0.1:9092"]).join(","), protocol: "kafka", description: "the stack's broker (KAFKA_BROKERS)" },
    },
    channels: {
      stockEvents: {
        address: options.topic,
        title: "stock events",
        description: "Key = stock id, murmur2-partitioned (the Java client's default), so a stock's events are in order on one partition. Retention: forever (the log rebuilds replay).",
        messages: Object.fromEntries(EVENT_TYPES.map((t) => [t, { $ref: `#/components/messages/${t}` }])),
        bindings: {
          kafka: { topic: options.topic, partitions: options.partitions, topicConfiguration: { "retention.ms": -1 }, bindingVersion: kafkaBinding },
        },
      },
      deadLetters: {
        address: options.dlqTopic,
        title: "dead letters",
        description: "Messages a projector could not parse or apply after bounded retries: the original key, value and headers, plus dlq-* headers saying why and where.",
        messages: { DeadLetter: { $ref: "#/components/messages/DeadLetter" } },
        bindings: { kafka: { topic: options.dlqTopic, bindingVersion: kafkaBinding } },
      },
    },
    operations: {
      relayStockEvents: {
        action: "send",
        title: "the relay publishes each outbox event (idempotent producer, acks=all)",
        channel: { $ref: "#/channels/stockEvents" },
        messages: refs("stockEvents", [...EVENT_TYPES]),
      },
      projectStockEvents: {
        action: "receive",
        title: "projector-postgres and projector-search consume, each in its own group",
        channel: { $ref: "#/channels/stockEvents" },
        messages: refs("stockEvents", [...EVENT_TYPES]),
        bindings: { kafka: { groupId: { type: "string", enum: ["projector-postgres", "projector-search"] }, bindingVersion: kafkaBinding } },
      },
      deadLetter: {
        action: "send",
        title: "a projector dead-letters a poison message and moves on",
        channel: { $ref: "#/channels/deadLetters" },
        messages: refs("deadLetters", ["DeadLetter"]),
      },
    },
    components: {
      schemas: {
        EventHeaders: eventHeadersSchema(),
        ...Object.fromEntries(variants.map((variant) => [variant.shape.eventType.value, toSchema(variant)])),
        DeadLetterHeaders: {
          type: "object",
          description: "The original message's headers (as on the stock-events topic, when it had them), plus:",
          required: DLQ_HEADER_NAMES,
          properties: Object.fromEntries(DLQ_HEADER_NAMES.map((n) => [n, { type: "string" }])),
        },
      },
      messages: {
        ...messages,
        DeadLetter: {
          name: "DeadLetter",
          title: "a message the projectors could not use",
          headers: { $ref: "#/components/schemas/DeadLetterHeaders" },
          payload: { description: "the original value, byte for byte (it may not be JSON: that can be why it is here)" },
          bindings: { kafka: { key: { type: "string", description: "the original key" }, bindingVersion: kafkaBinding } },
        },
      },
    },
  };
}
