/**
 * The one list of read models: a store fed only by the event topic, through its projector binary.
 * What a read model is, is said once here; everything else derives from the list:
 *   - its projector binary and admin port (shared/services.ts spreads READ_MODEL_SERVICES into SERVICES, so
 *     scripts/build.ts, scripts/up.sh, compose.yaml's and Prometheus' checks in test/compose.unit.test.ts,
 *     the dashboard's worker list and its lag panel follow);
 *   - `bun run verify --layers <name>` (I6: the read model's counters against Redis, shared/verify/) and
 *     `bun run repair --from <name>` (the highest version it has seen), through `open(env).counters()`;
 *   - `bun run rebuild <name>` (scripts/rebuild.ts rebuildModel → shared/projection/rebuild.ts), through `rebuild()`.
 * A third read model: its store under shared/stores/<store>/ (a sink for createProjector that also reads
 * counters back), one entry below, and a compose.yaml service (test/compose.unit.test.ts fails until it
 * exists); its services/projector-<store>/main.ts is one runProjector call. docs/design.md §14 (c).
 *
 * Nothing here imports a store at load time (shared/services.ts runs in shell scripts): `open` imports
 * what it needs when a tool asks.
 */
import type { StockCounters } from "./domain/views.ts";
import type { RebuildCommon } from "./projection/rebuild.ts";

/**
 * What `open` gets: the downstream part of the typed config (shared/config.ts `downstreamSchema`, parsed
 * by the caller: this module is imported by shared/services.ts, which shared/config.ts reads, so it cannot
 * import the config itself). A read model adds its own variables there.
 */
interface DownstreamConfig {
  DATABASE_URL: string;
  ELASTICSEARCH_URL: string;
  ELASTICSEARCH_INDEX_ALIAS: string;
}

/** The servers of the stack a binary talks to (compose.yaml's depends_on is held to this). */
export type StackServer = "redis" | "postgres" | "kafka" | "elasticsearch";

/** A read model as the operator's tools see it: counters per stock, read back from the store. */
export interface ReadModelReader {
  /** The layer's name in verify's findings and repair's `--from`. */
  readonly name: string;
  /** The stocks it has, with the version each is at (stocks it lacks are left out). */
  counters(stockIds: readonly string[]): Promise<Map<string, StockCounters>>;
  close(): Promise<void>;
}

export interface ReadModel<Service extends string = string> {
  readonly name: string;
  /** Its projector binary: services/<service>/main.ts. */
  readonly service: Service;
  readonly adminPort: number;
  readonly job: string;
  readonly needs: readonly StackServer[];
  /** Opens the store for verify and repair. */
  open(config: DownstreamConfig): Promise<ReadModelReader>;
  /**
   * `bun run rebuild <name>`: fills a fresh copy from the whole topic and swaps readers to it, through
   * shared/projection/rebuild.ts rebuildReadModel (its store part: a RebuildStore). Returns what the
   * operator is told.
   */
  rebuild(config: DownstreamConfig, common: RebuildCommon): Promise<string>;
}

/** A read model named `name`; its projector binary is services/projector-<name>/. */
export function defineReadModel<const N extends string>(name: N, spec: Omit<ReadModel, "name" | "service">): ReadModel<`projector-${N}`> {
  return { name, service: `projector-${name}`, ...spec };
}

const postgresReadModel = defineReadModel("postgres", {
  adminPort: 9103,
  job: "Kafka → PostgreSQL order history and analytics",
  needs: ["kafka", "postgres"],
  async open(config) {
    const [{ default: connect }, { readPostgresCounters }] = await Promise.all([import("postgres"), import("./stores/postgres/analytics.ts")]);
    const sql = connect(config.DATABASE_URL, { max: 2, onnotice: () => {} });
    return { name: "postgres", counters: (ids) => readPostgresCounters(sql, ids), close: () => sql.end({ timeout: 2 }) };
  },
  async rebuild(config, common) {
    const { rebuildPostgres, describePostgresRebuild } = await import("./stores/postgres/rebuild.ts");
    return describePostgresRebuild(await rebuildPostgres({ ...common, databaseUrl: config.DATABASE_URL }));
  },
});

const searchReadModel = defineReadModel("search", {
  adminPort: 9104,
  job: "Kafka → Elasticsearch stock search",
  needs: ["kafka", "elasticsearch"],
  async open(config) {
    const [{ createSearchClient }, { readSearchCounters }] = await Promise.all([import("./stores/search/mapping.ts"), import("./stores/search/queries.ts")]);
    const es = createSearchClient(config.ELASTICSEARCH_URL, { requestTimeoutMs: 10_000 });
    return { name: "search", counters: (ids) => readSearchCounters(es, config.ELASTICSEARCH_INDEX_ALIAS, ids), close: () => es.close() };
  },
  async rebuild(config, common) {
    const [{ createSearchClient }, { rebuildSearch, describeSearchRebuild }] = await Promise.all([import("./stores/search/mapping.ts"), import("./stores/search/rebuild.ts")]);
    const es = createSearchClient(config.ELASTICSEARCH_URL);
    try {
      const alias = config.ELASTICSEARCH_INDEX_ALIAS;
      return describeSearchRebuild(await rebuildSearch({ ...common, es, alias }), alias, common.dropOld ?? false);
    } finally {
      await es.close();
    }
  },
});

/** Every read model of the product, in the order tools report them. */
export const READ_MODELS = [postgresReadModel, searchReadModel] as const;

export type ReadModelService = (typeof READ_MODELS)[number]["service"];
export const READ_MODEL_NAMES: readonly string[] = READ_MODELS.map((m) => m.name);

/** The projector binaries, as shared/services.ts lists binaries. */
export const READ_MODEL_SERVICES = Object.fromEntries(
  READ_MODELS.map((m) => [m.service, { adminPort: m.adminPort, runtimeFlags: [] as readonly string[], job: m.job, needs: m.needs }]),
) as { [S in ReadModelService]: { adminPort: number; runtimeFlags: readonly string[]; job: string; needs: readonly StackServer[] } };

/** The read models named in `names` (unknown names are the caller's usage error). */
export function readModelsNamed(names: Iterable<string>): ReadModel[] {
  const wanted = new Set(names);
  return READ_MODELS.filter((m) => wanted.has(m.name));
}
