/**
 * Structured logs with pino: JSON lines when stderr is not a terminal (journald, files), a
 * compact readable form on a terminal. Secrets are redacted wherever they appear in a logged
 * object.
 */
import { createRequire } from "node:module";
import pino, { type Logger } from "pino";
import type PinoPretty from "pino-pretty";

const require = createRequire(import.meta.url);

export type { Logger };
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "silent";

export const REDACT_PATHS = [
  "password",
  "*.password",
  "*.*.password",
  "token",
  "*.token",
  "key",
  "*.key",
  "*.*.key",
  "secret",
  "*.secret",
  "authorization",
  "*.authorization",
];

export interface LoggerOptions {
  level?: LogLevel;
  /** Force readable (true) or JSON (false) output; by default readable only on a terminal. */
  pretty?: boolean;
  destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const destination = opts.destination ?? process.stderr;
  const readable = opts.pretty ?? Boolean((destination as { isTTY?: boolean }).isTTY);
  const base = {
    level: opts.level ?? "info",
    base: undefined,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
  };
  if (readable) {
    // Only a technician's terminal needs the readable form: the service never loads it.
    const pretty = require("pino-pretty") as typeof PinoPretty;
    return pino(
      base,
      pretty({ destination, sync: true, colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname" }),
    );
  }
  return pino({ ...base, timestamp: pino.stdTimeFunctions.isoTime }, opts.destination ?? pino.destination({ dest: 2, sync: true }));
}

/** A logger that prints nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
