/**
 * Structured logging for operators: one JSON object per line, searchable in Supabase's function
 * logs by `event`, `traceId` or `callSid`. Phone numbers are masked to their last 4 digits and
 * secrets are never printed.
 * @module
 */

/** Log levels in increasing severity. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Extra fields of a log line. */
export type LogFields = Record<string, unknown>;

/** A logger bound to a function name and, optionally, a call's `traceId`/`callSid`. */
export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** A logger whose lines all carry `fields` (e.g. `traceId`, `callSid`). */
  child(fields: LogFields): Logger;
}

/** Where lines go: `console.log` in production (Supabase collects stdout), an array in tests. */
export type LogSink = (line: string) => void;

/** Options of `createLogger`. */
export interface LoggerOptions {
  /** Defaults to `info`. */
  level?: LogLevel;
  /** Defaults to `console.log`, one line per call. */
  sink?: LogSink;
  /** Defaults to `Date.now`. */
  clock?: () => number;
}

// Keys whose values are credentials: replaced, whatever they hold.
const SECRET_KEY = /(token|secret|password|authorization|api_?key|signature|cookie|credential)/i;
// E.164 numbers inside any text. The leading `+` keeps ids such as CallSids (hex) searchable.
// No word boundary: `+15551230001x` or overlong digit runs must not escape masking.
const E164_IN_TEXT = /\+\d{7,}/g;
// Keys whose values are phone numbers even without a `+` (Twilio's `From`, `Called`, ...).
const PHONE_KEY = /^(from|to|caller|called|phone|number|phoneNumber|transferNumber)$|Phone$/i;

/** Masks a phone number to its last 4 digits: `+15551230001` -> `***0001`. */
export function maskPhone(value: string): string {
  const digits = value.replace(/\D/g, "");
  if (digits.length < 5) return "***";
  return `***${digits.slice(-4)}`;
}

function maskPhonesInText(text: string): string {
  return text.replace(E164_IN_TEXT, (match) => maskPhone(match));
}

function sanitize(value: unknown, key: string, depth: number): unknown {
  if (SECRET_KEY.test(key) && key !== "tokens" && !key.endsWith("Tokens")) {
    return value === undefined || value === null ? value : "[redacted]";
  }
  if (typeof value === "string") {
    if (PHONE_KEY.test(key) && /\d{5,}/.test(value)) return maskPhone(value);
    return maskPhonesInText(value);
  }
  if (value instanceof Error) {
    return { name: value.name, message: maskPhonesInText(value.message) };
  }
  if (depth > 4 || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((item) => sanitize(item, key, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [childKey, child] of Object.entries(value)) {
    out[childKey] = sanitize(child, childKey, depth + 1);
  }
  return out;
}

/**
 * Creates a logger for one function.
 * @param fn the function's name, e.g. `voice-frontdoor`
 */
export function createLogger(fn: string, options: LoggerOptions = {}): Logger {
  const minRank = LEVEL_RANK[options.level ?? "info"];
  const sink = options.sink ?? ((line: string) => console.log(line));
  const clock = options.clock ?? Date.now;
  const make = (bound: LogFields): Logger => {
    const write = (level: LogLevel, event: string, fields?: LogFields) => {
      if (LEVEL_RANK[level] < minRank) return;
      const line: Record<string, unknown> = {
        ts: new Date(clock()).toISOString(),
        level,
        fn,
        event,
      };
      for (const source of [bound, fields ?? {}]) {
        for (const [key, value] of Object.entries(source)) {
          if (value !== undefined) line[key] = sanitize(value, key, 0);
        }
      }
      let text: string;
      try {
        text = JSON.stringify(line);
      } catch {
        text = JSON.stringify({ ts: line.ts, level, fn, event, msg: "unserializable log fields" });
      }
      sink(text);
    };
    return {
      debug: (event, fields) => write("debug", event, fields),
      info: (event, fields) => write("info", event, fields),
      warn: (event, fields) => write("warn", event, fields),
      error: (event, fields) => write("error", event, fields),
      child: (fields) => make({ ...bound, ...fields }),
    };
  };
  return make({});
}

/** A logger that keeps its lines, for tests. */
export function createMemoryLogger(fn: string, level: LogLevel = "debug") {
  const lines: string[] = [];
  const logger = createLogger(fn, { level, sink: (line) => lines.push(line) });
  return {
    logger,
    lines,
    /** The parsed lines, optionally only those with `event`. */
    entries(event?: string): Record<string, unknown>[] {
      const parsed = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      return event ? parsed.filter((entry) => entry.event === event) : parsed;
    },
  };
}
