/**
 * projector-search's store side: per batch, one realtime mget (static fields and stored version of
 * the stocks whose StockCreated is not in the batch and whose static fields this process has not
 * seen yet) and one bulk of complete documents, indexed with version_type=external and
 * version = stock version. A 409 is "already applied".
 *
 * Static fields never change after StockCreated, so a projector remembers them (`knownStatics`):
 * in steady state a batch is one bulk and no mget. That matters beyond the round trip: a realtime
 * get of a document changed since the last refresh makes Elasticsearch refresh the shard.
 */
import type { Client } from "@elastic/elasticsearch";
import type { StockEvent } from "../../domain/events.ts";
import type { Logger } from "../../logger.ts";
import { isTransientElasticStatus, RejectedEventError, StoreUnavailableError } from "../../projection/errors.ts";
import {
  buildStockDocument,
  completeDocument,
  planSearchBatch,
  staticFieldsFromDocument,
  type SearchPlanEntry,
  type StaticFields,
} from "./documents.ts";
import type { StockDocument } from "./mapping.ts";

export interface SearchApplyResult {
  applied: StockEvent[];
  duplicates: number;
  /** Documents written without their static fields (StockCreated not seen yet). */
  incomplete: number;
}

export interface SearchTarget {
  es: Client;
  /** The alias (live projector) or a concrete index (rebuild). */
  index: string;
  /** True when `index` must be an alias: a missing alias then fails instead of auto-creating an index. */
  requireAlias: boolean;
  logger?: Logger;
  /** Complete static fields by stock id, kept across batches by the caller (see the header). */
  knownStatics?: Map<string, StaticFields>;
}

/** Bound on remembered stocks; past it the memory starts again (an mget per stock refills it). */
const MAX_KNOWN_STATICS = 100_000;

function remember(target: SearchTarget, stockId: string, doc: StockDocument): void {
  const known = target.knownStatics;
  if (!known || !doc.complete || known.has(stockId)) return;
  if (known.size >= MAX_KNOWN_STATICS) known.clear();
  known.set(stockId, staticFieldsFromDocument(doc));
}

interface StoredDocument {
  doc: StockDocument;
  version: number;
}

async function fetchDocuments(target: SearchTarget, ids: string[]): Promise<Map<string, StoredDocument>> {
  const found = new Map<string, StoredDocument>();
  if (ids.length === 0) return found;
  const result = await target.es.mget<StockDocument>({ index: target.index, ids, realtime: true });
  for (const item of result.docs) {
    if ("found" in item && item.found && item._source) {
      found.set(item._id, { doc: item._source, version: item._version ?? item._source.version });
    } else if ("error" in item && item.error) {
      throw new StoreUnavailableError(`mget ${item._id}: ${item.error.type}: ${item.error.reason ?? ""}`);
    }
  }
  return found;
}

type Op = { entry: SearchPlanEntry; doc: StockDocument };

function statusError(status: number, error: unknown, id: string): Error {
  const e = error as { type?: string; reason?: string } | undefined;
  const message = `bulk item ${id}: ${status} ${e?.type ?? ""}: ${e?.reason ?? ""}`;
  return isTransientElasticStatus(status) ? new StoreUnavailableError(message) : new RejectedEventError(message);
}

export async function applyEventsToSearch(target: SearchTarget, events: readonly StockEvent[]): Promise<SearchApplyResult> {
  const plan = planSearchBatch(events);
  const result: SearchApplyResult = { applied: [], duplicates: 0, incomplete: 0 };
  // Stocks whose StockCreated is in the batch need nothing stored; the others need their static fields.
  const known = target.knownStatics;
  const stored = await fetchDocuments(
    target,
    plan.filter((e) => !e.created && !known?.has(e.stockId)).map((e) => e.stockId),
  );

  const ops: Op[] = [];
  for (const entry of plan) {
    const existing = stored.get(entry.stockId) ?? null;
    if (existing && existing.version >= entry.newest.version) {
      result.duplicates += entry.events.length; // nothing newer in this batch
      continue;
    }
    const doc = buildStockDocument(entry, existing?.doc ?? null, known?.get(entry.stockId));
    if (!doc.complete) {
      result.incomplete += 1;
      target.logger?.warn({ stockId: entry.stockId, version: doc.version }, "StockCreated not seen: indexing counters without static fields");
    }
    ops.push({ entry, doc });
  }
  if (ops.length === 0) return result;

  const body: unknown[] = [];
  for (const op of ops) {
    body.push({ index: { _index: target.index, _id: op.entry.stockId, version: op.doc.version, version_type: "external" } });
    body.push(op.doc);
  }
  const response = await target.es.bulk({ operations: body, require_alias: target.requireAlias, refresh: false });

  let firstError: Error | null = null;
  const conflictsWithCreation: Op[] = [];
  response.items.forEach((item, i) => {
    const op = ops[i]!;
    const outcome = item.index!;
    const status = outcome.status;
    if (status === 200 || status === 201) {
      result.applied.push(...op.entry.events);
      remember(target, op.entry.stockId, op.doc);
    } else if (status === 409) {
      // Already applied: the stored version is at least ours. If this batch held the StockCreated,
      // make sure the stored document has the static fields (see completeIfNeeded).
      if (op.entry.created) conflictsWithCreation.push(op);
      else result.duplicates += op.entry.events.length;
    } else {
      const err = statusError(status, outcome.error, op.entry.stockId);
      // An outage anywhere in the bulk wins: retry the whole batch (idempotent) rather than dead-letter.
      if (!firstError || (err instanceof StoreUnavailableError && !(firstError instanceof StoreUnavailableError))) firstError = err;
    }
  });
  if (firstError) throw firstError;
  if (conflictsWithCreation.length > 0) await completeIfNeeded(target, conflictsWithCreation, result);
  return result;
}

/**
 * Rare path: a StockCreated met a newer document that lacks the static fields (its creation was
 * dead-lettered earlier, or a rebuild writer raced the live one). Fill them in on top of the stored
 * counters, at the stored version (external_gte), re-reading if yet another write slips in between.
 */
async function completeIfNeeded(target: SearchTarget, ops: Op[], result: SearchApplyResult): Promise<void> {
  const current = await fetchDocuments(target, ops.map((op) => op.entry.stockId));
  for (const op of ops) {
    let stored = current.get(op.entry.stockId);
    let repaired = false;
    for (let attempt = 0; attempt < 5 && stored && !stored.doc.complete; attempt++) {
      try {
        await target.es.index({
          index: target.index,
          id: op.entry.stockId,
          version: stored.version,
          version_type: "external_gte",
          document: completeDocument(stored.doc, op.entry.created!),
          require_alias: target.requireAlias,
        });
        repaired = true;
        break;
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 409) throw err;
        stored = (await fetchDocuments(target, [op.entry.stockId])).get(op.entry.stockId);
      }
    }
    if (repaired) result.applied.push(...op.entry.events);
    else result.duplicates += op.entry.events.length;
  }
}

/**
 * The probe (shared/projection/probe.ts) for a search target: the documents the probe lifecycle
 * makes (complete, and counters-only as for a stock whose StockCreated is not seen yet), validated
 * by the simulate ingest API against the target's mapping and pipelines. Nothing is indexed.
 */
export async function probeSearch(target: SearchTarget, events: readonly StockEvent[]): Promise<void> {
  const [whole] = planSearchBatch(events);
  const [countersOnly] = planSearchBatch(events.filter((e) => e.eventType !== "StockCreated").slice(-1));
  const docs = [buildStockDocument(whole!, null), buildStockDocument(countersOnly!, null)];
  const response = await target.es.simulate.ingest({
    index: target.index,
    docs: docs.map((doc, i) => ({ _id: `${doc.stockId}-${i}`, _source: doc as unknown as Record<string, unknown> })),
  });
  for (const result of response.docs) {
    const error = result.doc?.error;
    if (error) throw new RejectedEventError(`probe document refused: ${error.type}: ${error.reason ?? ""}`);
  }
}
