/**
 * Parsing the environment with a section's schema (re-exported by shared/config.ts, the entry): the
 * error that lists every bad variable, and what a binary or a tool does with it. Apart from the schemas
 * so that code that only tells a ConfigError apart (shared/retry.ts) does not load every section.
 */
import type { z } from "zod";

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

/** Parses `env` with `schema`; throws ConfigError listing every bad variable. */
export function parseConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined> = process.env): z.infer<S> {
  // Treat empty strings as unset so `FOO=` in a compose file falls back to the default.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = schema.safeParse(cleaned);
  if (result.success) return result.data;
  throw new ConfigError(result.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`));
}

/** For a command-line tool's entry point: a bad variable is a usage error (its message, exit 2, no stack trace). */
export function usageOnConfigError(err: unknown): number {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message);
  return 2;
}

/** For main.ts: parse or print the problems and exit 1 (fail fast, before connecting anywhere). */
export function loadConfigOrExit<S extends z.ZodType>(schema: S, service: string): z.infer<S> {
  try {
    return parseConfig(schema);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(JSON.stringify({ level: "fatal", service, msg: err.message, problems: err.problems }));
    process.exit(1);
  }
}
