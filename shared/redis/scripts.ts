/**
 * Runs the Lua scripts (script-sources.ts) on an ioredis client: as commands defined on it, which
 * ioredis runs with EVALSHA and falls back to EVAL on NOSCRIPT (after a Redis restart or failover),
 * also inside pipelines.
 */
import type { ChainableCommander } from "ioredis";
import { retryUnexecuted, type RedisClient } from "./client.ts";
import { SCRIPT_COMMANDS, SCRIPT_NAMES, scriptKeyCount, type ScriptName } from "./script-sources.ts";

export { scriptKeyCount, scriptSource, type ScriptName } from "./script-sources.ts";
export type ScriptReply = [string, ...unknown[]];
export type ScriptArg = string | number;

const defined = new WeakSet<RedisClient>();

/**
 * Clients from createRedis have every script from their constructor on. Any other client gets them
 * here, at its first script call; that is only safe before its first command: ioredis copies a
 * client's commands into an auto-pipeline when it opens one, so a script queued into a pipeline
 * opened earlier in the same tick finds no such command there, and the pipeline's replies then no
 * longer line up with its callbacks (ioredis throws an uncaught TypeError at exec: issue #1931; it
 * killed an api restarted under traffic in a test run).
 */
function ensureDefined(redis: RedisClient): void {
  if (defined.has(redis)) return;
  for (const name of SCRIPT_NAMES) if (!(name in redis)) redis.defineCommand(name, SCRIPT_COMMANDS[name]);
  defined.add(redis);
}

/**
 * One script's KEYS and ARGV, built by its args builder in calls.ts (the only place that knows the
 * order); `Reply` is what the script answers.
 */
export interface ScriptCall<Reply = ScriptReply> {
  readonly script: ScriptName;
  readonly keys: string[];
  readonly args: ScriptArg[];
  /** Never set: carries the reply's type from the builder to runScript. */
  readonly reply?: Reply;
}

/** Runs one script on a client. Keys must all carry the same hash tag (checked by the key layout). */
export function runScript<Reply>(redis: RedisClient, call: ScriptCall<Reply>): Promise<Reply> {
  ensureDefined(redis);
  const { script: name, keys, args } = call;
  if (keys.length !== scriptKeyCount(name)) throw new Error(`${name} takes ${scriptKeyCount(name)} keys, got ${keys.length}`);
  const command = (redis as unknown as Record<ScriptName, (...a: ScriptArg[]) => Promise<Reply>>)[name];
  return retryUnexecuted(() => command.call(redis, ...keys, ...args));
}

/** Queues one script on a pipeline of a client that ran `prepareScripts`. */
export function queueScript(pipeline: ChainableCommander, call: ScriptCall<unknown>): void {
  const command = (pipeline as unknown as Record<ScriptName, (...a: ScriptArg[]) => ChainableCommander>)[call.script];
  command.call(pipeline, ...call.keys, ...call.args);
}

/** Defines the scripts on a client up front (needed before building pipelines). */
export function prepareScripts(redis: RedisClient): void {
  ensureDefined(redis);
}
