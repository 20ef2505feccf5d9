/**
 * Plumbing shared by the load-test runner (loadtests/run.ts) and the benches (loadtests/bench/):
 * the benches' settings from the environment, tokens, child processes we start and stop by pid, k6,
 * the machine, throwaway databases.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import postgres from "postgres";
import { z } from "zod";
import { mintUserToken } from "../shared/dev/token.ts";
import { migrate } from "../shared/stores/postgres/migrate.ts";
import { MIGRATIONS_DIR } from "../shared/stores/postgres/migration-files.ts";
import { freePort } from "../shared/dev/env.ts";

export const REPO_ROOT = resolve(import.meta.dir, "..");
export const RESULTS_DIR = join(REPO_ROOT, "loadtests", "results");
export const K6_DIR = join(REPO_ROOT, "loadtests", "k6");

/**
 * The api's request-rate limits under k6 (docs/design.md §12). k6 is one client address for every
 * buyer, so the per-IP limit is off; the per-user buckets stay on (their cost is part of what is
 * measured) with a limit k6's randomly chosen buyers never reach, even when a warm-up and the
 * measured run pick the same user.
 */
export const LOAD_RATE_LIMITS = { RATE_LIMIT_IP: "off", RATE_LIMIT_ALLOCATE: "1000/10s", RATE_LIMIT_PURCHASE: "1000/10s", RATE_LIMIT_CANCEL: "1000/10s" };

/**
 * A bench's knobs (BENCH_*, and the service variables it sizes itself by, e.g. OUTBOX_SHARDS): a whole
 * number of at least `min` (at most `max`), `fallback` when unset or empty.
 */
export const benchInt = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max).default(fallback);
/** A switch: 1 or true on, 0 or false (or unset) off. */
export const benchFlag = z.enum(["0", "1", "false", "true"]).default("0").transform((v) => v === "1" || v === "true");

/**
 * The one reader of a bench's settings: `shape` (one zod entry per variable, each defaulted) parsed
 * from the environment, typed by it. A malformed value throws BenchEnvError, naming every bad variable
 * beside the value it was given (rather than a NaN that surfaces as a figure later).
 */
export function parseBenchEnv<S extends z.ZodRawShape>(shape: S, env: Record<string, string | undefined> = process.env): z.infer<z.ZodObject<S>> {
  // Empty counts as unset (`BENCH_EVENTS= bun run …` keeps the default), as in shared/config.ts.
  const given = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = z.object(shape).safeParse(given);
  if (result.success) return result.data;
  throw new BenchEnvError(result.error.issues.map((i) => `${i.path.join(".")}=${JSON.stringify(given[String(i.path[0])] ?? "")}: ${i.message}`));
}

export class BenchEnvError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid bench settings:\n  ${problems.join("\n  ")}`);
    this.name = "BenchEnvError";
  }
}

/** parseBenchEnv for a bench's entry point: on a bad value, the problems on stderr and exit 2, before anything starts. */
export function readBenchEnv<S extends z.ZodRawShape>(shape: S): z.infer<z.ZodObject<S>> {
  try {
    return parseBenchEnv(shape);
  } catch (err) {
    if (!(err instanceof BenchEnvError)) throw err;
    console.error(err.message);
    process.exit(2);
  }
}

/** A short id that names this bench run's topics, groups, prefixes and databases. */
export function benchRunId(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** The p-th percentile of an ascending list (NaN when empty). */
export const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
/** A count as the benches print it: rounded, with thousands separators. */
export const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

export function runId(label: string): string {
  const t = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-");
  return `${label}-${t}-${Math.random().toString(36).slice(2, 6)}`;
}

/** A Redis key prefix / database name / topic suffix no other run uses ([a-z0-9_], ≤ 32). */
export function uniquePrefix(label: string): string {
  return `ld${label}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 5)}`.toLowerCase().replace(/[^a-z0-9_]/g, "").slice(0, 32);
}

export function resultsDir(id: string): string {
  const dir = join(RESULTS_DIR, id);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function randomSecret(bytes = 32): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("base64url");
}

/** One load run or bench: its id, its results folder, and the throwaway secrets its apis start with. */
export interface LoadRun {
  id: string;
  dir: string;
  adminToken: string;
  jwtSecret: string;
}

export function newLoadRun(label: string): LoadRun {
  const id = runId(label);
  return { id, dir: resultsDir(id), adminToken: randomSecret(), jwtSecret: randomSecret(48) };
}

/** The environment of an api a load run or bench starts: its ports, the run's secrets, LOAD_RATE_LIMITS, then `extra`. */
export function loadApiEnv(
  run: Pick<LoadRun, "adminToken" | "jwtSecret">,
  port: number,
  adminPort: number,
  extra: Record<string, string> = {},
): Record<string, string> {
  return { PORT: String(port), ADMIN_PORT: String(adminPort), ADMIN_TOKEN: run.adminToken, JWT_SECRET: run.jwtSecret, ...LOAD_RATE_LIMITS, ...extra };
}

/** Mints `count` user JWTs (users b0..b{count-1}) into a JSON file k6 loads with SharedArray. */
export async function mintTokens(file: string, count: number, secret: string, ttlSeconds = 4 * 3600): Promise<{ users: string[]; tokens: string[] }> {
  const users = Array.from({ length: count }, (_, i) => `b${i}`);
  const tokens: string[] = new Array(count);
  // hono's sign is async (WebCrypto); a few thousand at a time keeps memory flat.
  for (let i = 0; i < count; i += 2000) {
    const part = await Promise.all(users.slice(i, i + 2000).map((u) => mintUserToken(u, secret, ttlSeconds)));
    for (let j = 0; j < part.length; j++) tokens[i + j] = part[j]!;
  }
  await Bun.write(file, JSON.stringify({ users, tokens }));
  return { users, tokens };
}

/** A child process this run started; stopped by its own pid only. */
export interface Child {
  name: string;
  proc: ReturnType<typeof Bun.spawn>;
  logFile: string;
  stop(timeoutMs?: number): Promise<number | null>;
}

export function startProcess(name: string, cmd: string[], env: Record<string, string>, logDir: string): Child {
  const logFile = join(logDir, `${name}.log`);
  const proc = Bun.spawn(cmd, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdout: Bun.file(logFile),
    stderr: Bun.file(join(logDir, `${name}.err.log`)),
    stdin: "ignore",
  });
  return {
    name,
    proc,
    logFile,
    async stop(timeoutMs = 15_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      const exited = await Promise.race([proc.exited, Bun.sleep(timeoutMs).then(() => null)]);
      if (exited === null) {
        proc.kill("SIGKILL");
        return await proc.exited;
      }
      return exited;
    },
  };
}

/** Polls `url` until it answers 2xx (or the process dies / time runs out). */
export async function waitHealthy(url: string, child?: Child, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (child && (child.proc.exitCode !== null || child.proc.signalCode !== null)) {
      const err = existsSync(child.logFile.replace(/\.log$/, ".err.log")) ? readFileSync(child.logFile.replace(/\.log$/, ".err.log"), "utf8") : "";
      const out = existsSync(child.logFile) ? readFileSync(child.logFile, "utf8") : "";
      throw new Error(`${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}) before answering ${url}\n${(out + err).slice(-2000)}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await Bun.sleep(100);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms (${last})`);
}

/** An api a load run or bench started, answering on `baseUrl`. */
export interface StartedApi {
  child: Child;
  baseUrl: string;
  adminPort: number;
}

/**
 * Starts `bun [bunArgs] services/api/main.ts` as `name` (logs in `logDir`) with loadApiEnv on free
 * ports (or the admin port given) plus `env`, and waits until /readyz answers; stopped again if it does not.
 */
export async function startApi(
  run: Pick<LoadRun, "adminToken" | "jwtSecret">,
  o: { name: string; logDir: string; env?: Record<string, string>; adminPort?: number; bunArgs?: string[] },
): Promise<StartedApi> {
  const port = await freePort();
  const adminPort = o.adminPort ?? (await freePort());
  const child = startProcess(o.name, [process.execPath, ...(o.bunArgs ?? []), "services/api/main.ts"], loadApiEnv(run, port, adminPort, o.env), o.logDir);
  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(`${baseUrl}/readyz`, child);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return { child, baseUrl, adminPort };
}

/** The k6 binary: $K6, else the one scripts/stack.sh builds (version pinned there), else PATH. */
export function findK6(): string {
  if (process.env.K6) return process.env.K6;
  try {
    const stack = readFileSync(join(REPO_ROOT, "scripts", "stack.sh"), "utf8");
    const version = /^K6_VERSION=(\S+)/m.exec(stack)?.[1];
    const cache = process.env.FLASHSALE_CACHE_DIR ?? join(process.env.HOME ?? "/root", ".cache", "flash-sale");
    const bin = version ? join(cache, `k6-${version}`, "k6") : "";
    if (bin && existsSync(bin)) return bin;
  } catch {
    // fall through
  }
  const onPath = Bun.which("k6");
  if (onPath) return onPath;
  throw new Error("k6 not found: run `bash scripts/stack.sh up` (it builds k6), or set K6=/path/to/k6");
}

export interface K6Result {
  exitCode: number;
  summaryFile: string;
  summary: K6Summary | null;
}

export interface K6Summary {
  scenario: string;
  ok: boolean;
  thresholds: { metric: string; threshold: string; ok: boolean }[];
  expect: { unitsAllocated: number; unitsReleased: number; allocations?: number; perStock?: Record<string, { allocated: number; released: number }> };
  metrics: Record<string, { values: Record<string, number> }>;
  table: string;
  [key: string]: unknown;
}

/** Where k6's HTML report of a run goes: next to its JSON summary (x-summary.json → x-report.html). */
export function htmlReportOf(summaryFile: string): string {
  return summaryFile.replace(/(-summary)?\.json$/, "-report.html");
}

/**
 * Runs one k6 script (from loadtests/k6) with the given environment; k6's own output goes to our
 * stdout (the table from handleSummary included). Returns its exit code and parsed summary.
 * With `htmlReport`, k6's web dashboard writes its HTML report next to the summary at the end of the
 * run (K6_WEB_DASHBOARD_EXPORT), with its HTTP server off (port -1): nothing listens, nothing opens.
 */
export async function runK6(
  script: string,
  env: Record<string, string>,
  summaryFile: string,
  options: { quiet?: boolean; htmlReport?: boolean } = {},
): Promise<K6Result> {
  const args = [findK6(), "run", "--quiet", "--no-usage-report", join(K6_DIR, script)];
  const report: Record<string, string> =
    options.htmlReport && summaryFile
      ? { K6_WEB_DASHBOARD: "true", K6_WEB_DASHBOARD_PORT: "-1", K6_WEB_DASHBOARD_EXPORT: htmlReportOf(summaryFile) }
      : {};
  const proc = Bun.spawn(args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, ...report, SUMMARY_FILE: summaryFile, K6_NO_USAGE_REPORT: "true" },
    stdout: options.quiet ? "pipe" : "inherit",
    stderr: "inherit",
    stdin: "ignore",
  });
  const exitCode = await proc.exited;
  const summary = existsSync(summaryFile) ? ((await Bun.file(summaryFile).json()) as K6Summary) : null;
  return { exitCode, summaryFile, summary };
}

/** CPU time (user + system) a process has used so far, in seconds, from /proc; NaN when it is gone or not Linux. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime (fields 14, 15), CLK_TCK = 100
  } catch {
    return Number.NaN;
  }
}

export function machine(): { nproc: number; cpu: string; memoryGiB: number; kernel: string; bun: string } {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    cpu = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  let kernel = "";
  try {
    kernel = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
  } catch {
    // not Linux
  }
  return { nproc: cpus().length, cpu, memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10, kernel, bun: Bun.version };
}

/** Admin API call with the run's admin token; throws with the body on a non-2xx. */
export async function adminPost(baseUrl: string, adminToken: string, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${baseUrl}${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${path} → ${res.status}: ${text}`);
  return JSON.parse(text);
}

/**
 * A throwaway database on the stack's PostgreSQL with the read-model migrations applied, for a
 * bench's own projectors; returns its URL. The caller drops it (DROP DATABASE … WITH (FORCE)).
 */
export async function createMigratedDatabase(databaseUrl: string, name: string): Promise<string> {
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  await migrate(sql, MIGRATIONS_DIR);
  await sql.end();
  return url.toString();
}

export async function dropDatabase(databaseUrl: string, name: string): Promise<void> {
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
