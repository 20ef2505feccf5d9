/**
 * The one list of flash-sale's binaries: name, admin port (health, readiness, /metrics) and the
 * runtime flags baked into its compiled file. Everything that starts, builds, scrapes or checks the
 * services reads it: shared/config.ts (ADMIN_PORT defaults, the dashboard's worker list),
 * scripts/build.ts, scripts/up.sh (through `bun shared/services.ts shell`), and the tests that hold
 * compose.yaml, the Dockerfile and ops/prometheus/*.yml to it (test/compose.unit.test.ts).
 *
 * A new binary: add it here and create services/<name>/main.ts; then the places the type checker
 * cannot see: a compose.yaml service, a Prometheus job, its config schema in shared/config.ts.
 * A new read model's projector is not added here but in shared/read-models.ts, which this spreads in.
 */
import { READ_MODEL_SERVICES, type StackServer } from "./read-models.ts";

export interface ServiceSpec {
  /** Health, readiness and /metrics; the api's public port is separate (PORT, 3000). */
  readonly adminPort: number;
  /** Flags for the runtime itself, baked into the compiled binary (`--compile-exec-argv`). */
  readonly runtimeFlags: readonly string[];
  readonly job: string;
  /** Servers it needs before it can be ready; one with postgres also needs the migrations applied. */
  readonly needs: readonly StackServer[];
}

export const SERVICES = {
  api: {
    adminPort: 9105,
    // The HTTP server accepts headers up to 64 KiB so the app itself answers oversized ones
    // (MAX_HEADER_BYTES, 8 KiB) with a problem+json 431; only past 64 KiB does Bun answer a bare 431.
    runtimeFlags: ["--max-http-header-size=65536"],
    job: "HTTP: commands and strong reads on Redis; order history, search and analytics from the read side",
    needs: ["redis", "postgres", "elasticsearch"],
  },
  relay: { adminPort: 9101, runtimeFlags: [], job: "outbox streams → Kafka, at-least-once, XACK after Kafka acknowledged", needs: ["redis", "kafka"] },
  expirer: { adminPort: 9102, runtimeFlags: [], job: "releases holds that time out", needs: ["redis"] },
  // One projector binary per read model (projector-postgres 9103, projector-search 9104): shared/read-models.ts.
  ...READ_MODEL_SERVICES,
  notifier: { adminPort: 9106, runtimeFlags: [], job: "Kafka → signed webhooks (Standard Webhooks)", needs: ["kafka", "postgres"] },
} as const satisfies Record<string, ServiceSpec>;

export type ServiceName = keyof typeof SERVICES;

/**
 * With API_WORKERS, api worker i answers on the api's ADMIN_PORT + i × this (worker 0 on ADMIN_PORT
 * itself). The registry's admin ports are consecutive, so a step of 1 put worker 1 on the
 * notifier's port and `bun run up` failed to start the notifier.
 */
const API_WORKER_ADMIN_PORT_STEP = 100;
export const apiWorkerAdminPort = (adminPort: number, worker: number) => adminPort + worker * API_WORKER_ADMIN_PORT_STEP;
export const SERVICE_NAMES = Object.keys(SERVICES) as ServiceName[];

/** The workers (every binary but the api), whose /metrics the api's dashboard reads. */
export const WORKER_NAMES = SERVICE_NAMES.filter((n) => n !== "api");

/** `bun shared/services.ts shell`: the registry as bash assignments, for scripts/up.sh. */
function asShell(): string {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  return [
    `SERVICES=(${SERVICE_NAMES.join(" ")})`,
    `API_WORKER_ADMIN_PORT_STEP=${API_WORKER_ADMIN_PORT_STEP}`,
    `declare -A SERVICE_ADMIN_PORT=(${SERVICE_NAMES.map((n) => `[${n}]=${SERVICES[n].adminPort}`).join(" ")})`,
    `declare -A SERVICE_RUNTIME_FLAGS=(${SERVICE_NAMES.map((n) => `[${n}]=${q(SERVICES[n].runtimeFlags.join(" "))}`).join(" ")})`,
  ].join("\n");
}

if (import.meta.main) {
  if (process.argv[2] !== "shell") {
    console.error("usage: bun shared/services.ts shell");
    process.exit(2);
  }
  console.log(asShell());
}
