/**
 * The command line of the operator's commands (scripts/): a malformed line or a bad value is a usage
 * error, the message and the usage on stderr and exit 2 (never a stack trace).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

export function usageError(usage: string, message: string): never {
  console.error(`${message}\n${usage}`);
  process.exit(2);
}

/** node:util parseArgs; what it refuses (an unknown option, a missing value) is a usage error. */
export function parseCommandLine<T extends ParseArgsConfig>(usage: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    usageError(usage, (err as Error).message);
  }
}
