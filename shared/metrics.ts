/** One Prometheus registry per process, with the runtime's default metrics and the service's name as a label. */
import client from "prom-client";

export { client as prom };

export function createMetricsRegistry(service: string): client.Registry {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service });
  client.collectDefaultMetrics({ register: registry });
  return registry;
}

/** Histogram buckets shared by the workers (one list each, so the dashboards' quantiles compare like with like). */
export const BATCH_SIZE_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/** 1 ms … 10 s: one pipeline step (a batch's round trip, a stage of an event). */
export const STEP_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** The same, up to 30 s: stages that include waiting for an outage to end. */
export const STAGE_SECONDS_BUCKETS = [...STEP_SECONDS_BUCKETS, 30];
