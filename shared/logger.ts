/** pino JSON logs; every line names its service, and request/event ids are added by child loggers. */
import pino, { type Logger } from "pino";

export type { Logger };

export function createLogger(service: string, level: string = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
