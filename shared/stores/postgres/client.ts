/**
 * PostgreSQL connections for the read side. Two profiles:
 *  - projector: a few connections, patient (a batch transaction may take a while under load);
 *  - reader (the api): fails fast — a short connect and statement timeout — so a dead or stuck
 *    database answers 503 store_unavailable quickly instead of holding requests.
 * `searchPath` lets the rebuild command point the same code at a fresh schema.
 */
import postgres from "postgres";

export interface ProjectorSqlOptions {
  max?: number;
  searchPath?: string;
  applicationName?: string;
}

export function createProjectorSql(url: string, options: ProjectorSqlOptions = {}): postgres.Sql {
  return postgres(url, {
    max: options.max ?? 4,
    connect_timeout: 5,
    idle_timeout: 60,
    onnotice: () => {},
    connection: {
      application_name: options.applicationName ?? "projector-postgres",
      statement_timeout: 60_000,
      ...(options.searchPath ? { search_path: options.searchPath } : {}),
    },
  });
}

export interface ReaderSqlOptions {
  max?: number;
  connectTimeoutSeconds?: number;
  statementTimeoutMs?: number;
}

export function createReaderSql(url: string, options: ReaderSqlOptions = {}): postgres.Sql {
  return postgres(url, {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 2,
    idle_timeout: 30,
    onnotice: () => {},
    connection: {
      application_name: "api-read",
      statement_timeout: options.statementTimeoutMs ?? 2_000,
      default_transaction_read_only: true,
    },
  });
}
