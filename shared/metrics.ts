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

/**
 * Declares metrics on one registry, each in one call: name, help, then buckets (histograms) and the
 * label names. For the lists of metrics a worker exposes, so each reads as one line.
 */
export function metricsOn(registry: client.Registry) {
  const registers = [registry];
  return {
    counter: <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []) => new client.Counter<L>({ name, help, labelNames, registers }),
    gauge: <L extends string = string>(name: string, help: string, labelNames: readonly L[] = []) => new client.Gauge<L>({ name, help, labelNames, registers }),
    histogram: <L extends string = string>(name: string, help: string, buckets: number[], labelNames: readonly L[] = []) =>
      new client.Histogram<L>({ name, help, buckets, labelNames, registers }),
  };
}
