/** One Prometheus registry per process, with the runtime's default metrics and the service's name as a label. */
import client from "prom-client";

export { client as prom };

export function createMetricsRegistry(service: string): client.Registry {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service });
  client.collectDefaultMetrics({ register: registry });
  return registry;
}
