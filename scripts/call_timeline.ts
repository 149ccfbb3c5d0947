/**
 * Speaks SQL (postgres.js) to the project's database: prints one call's timeline (the call and
 * its metrics, events, tool events, transcript turns, texts and appointments) from the
 * `operator_call_timeline` view, given the call's Twilio CallSid or its traceId.
 *
 * Usage: `deno run -A scripts/call_timeline.ts <CallSid|traceId> [--database-url URL] [--json]`.
 * The URL defaults to `DATABASE_URL`, then `SUPABASE_DB_URL`. Text output masks phone numbers to
 * their last 4 digits, as the function logs do; `--json` prints the rows as stored.
 * @module
 */

import postgres from "postgres";
import { maskPhone } from "../supabase/functions/_shared/log.ts";

/** Where a timeline row comes from. */
export type TimelineSource = "call" | "event" | "tool" | "turn" | "sms" | "appointment";

/** One step of a call, as `operator_call_timeline` holds it. */
export interface TimelineRow {
  callId: string;
  callSid: string;
  traceId: string | null;
  orgId: string | null;
  /** ISO 8601 (UTC) time the step happened or was recorded. */
  at: string;
  source: TimelineSource;
  /** Event kind, speaker, SMS kind or appointment change; `call` for the call itself. */
  label: string;
  detail: Record<string, unknown>;
  /** Tie-breaker among rows with the same `at` (event id, turn sequence). */
  seq: number;
}

/** A postgres.js pool or transaction: anything that runs tagged-template queries. */
export type Queryable = postgres.Sql | postgres.TransactionSql;

interface TimelineRecord {
  call_id: string;
  call_sid: string;
  trace_id: string | null;
  org_id: string | null;
  at: Date | string;
  source: TimelineSource;
  label: string;
  detail: Record<string, unknown> | null;
  seq: string | number;
}

/**
 * Loads the timeline of every call whose CallSid or traceId is `id`, in time order. Runs as the
 * connection's role, so row level security decides what an org member sees.
 * @param sql a connection pool or a transaction
 * @param id a Twilio CallSid (`CA…`) or a traceId
 * @returns the rows, grouped by call; empty when no visible call matches
 */
export async function loadTimeline(sql: Queryable, id: string): Promise<TimelineRow[]> {
  const records = await sql<TimelineRecord[]>`
    select call_id, call_sid, trace_id, org_id, at, source, label, detail, seq
    from public.operator_call_timeline
    where call_sid = ${id} or trace_id = ${id}
    order by call_sid, at, (source <> 'call'), seq
  `;
  return records.map((record) => ({
    callId: record.call_id,
    callSid: record.call_sid,
    traceId: record.trace_id,
    orgId: record.org_id,
    at: new Date(record.at).toISOString(),
    source: record.source,
    label: record.label,
    detail: record.detail ?? {},
    seq: Number(record.seq),
  }));
}

/** Options of {@link renderTimeline}. */
export interface RenderTimelineOptions {
  /** Mask phone numbers to their last 4 digits. Defaults to true. */
  maskPhones?: boolean;
}

// Keys whose values are phone numbers, and E.164 numbers inside any text (as in log.ts).
const PHONE_KEY = /^(from|to|caller|called|phone|number)$|phone|_number$/i;
const E164_IN_TEXT = /\+\d{7,15}\b/g;
// Bookkeeping that says nothing to an operator reading a timeline.
const HIDDEN_KEYS = new Set(["idempotency_key", "received_at", "appointment_id", "sequence"]);
const SOURCE_WIDTH = 11;
const LABEL_WIDTH = 22;

/**
 * Renders timeline rows as text, one header per call and one line per step:
 * `time  +offset  source  label  key=value …`. Pure: the same rows give the same text.
 * @param rows rows from {@link loadTimeline}, grouped by call
 * @param options phone masking
 */
export function renderTimeline(rows: TimelineRow[], options: RenderTimelineOptions = {}): string {
  const mask = options.maskPhones ?? true;
  const byCall = new Map<string, TimelineRow[]>();
  for (const row of rows) {
    const group = byCall.get(row.callSid) ?? [];
    group.push(row);
    byCall.set(row.callSid, group);
  }
  const blocks: string[] = [];
  for (const [callSid, group] of byCall) {
    const sorted = [...group].sort(compareRows);
    const callRow = sorted.find((row) => row.source === "call");
    const startMs = Date.parse(callRow?.at ?? sorted[0].at);
    const lines = [headerLine(callSid, callRow ?? sorted[0], mask)];
    if (callRow) lines.push(...summaryLines(callRow.detail, mask));
    for (const row of sorted) {
      if (row.source === "call") continue;
      const offsetSeconds = (Date.parse(row.at) - startMs) / 1000;
      const offset = `${offsetSeconds >= 0 ? "+" : "-"}${Math.abs(offsetSeconds).toFixed(1)}s`;
      lines.push(
        [
          row.at,
          offset.padStart(8),
          row.source.padEnd(SOURCE_WIDTH),
          row.label.padEnd(LABEL_WIDTH),
          describe(row, mask),
        ].join("  ").trimEnd(),
      );
    }
    blocks.push(lines.join("\n"));
  }
  return blocks.length === 0 ? "" : `${blocks.join("\n\n")}\n`;
}

function compareRows(a: TimelineRow, b: TimelineRow): number {
  const byTime = Date.parse(a.at) - Date.parse(b.at);
  if (byTime !== 0) return byTime;
  if ((a.source === "call") !== (b.source === "call")) return a.source === "call" ? -1 : 1;
  return a.seq - b.seq;
}

function headerLine(callSid: string, row: TimelineRow, mask: boolean): string {
  const parts = [`Call ${callSid}`];
  if (row.traceId) parts.push(`trace ${row.traceId}`);
  parts.push(row.orgId ? `org ${row.orgId}` : "no org");
  return maskText(parts.join("  "), mask);
}

function summaryLines(detail: Record<string, unknown>, mask: boolean): string[] {
  const value = (key: string) => detail[key] ?? null;
  const phone = (key: string) => {
    const raw = value(key);
    if (typeof raw !== "string") return "?";
    return mask ? maskPhone(raw) : raw;
  };
  const first = [
    `from ${phone("from")} to ${phone("to")}`,
    `status ${value("status") ?? "?"}`,
    `outcome ${value("outcome") ?? "?"}`,
  ];
  if (value("duration_seconds") !== null) first.push(`${value("duration_seconds")} s`);
  const second = [
    `lookup ${msText(value("lookup_ms"))}`,
    `first audio ${msText(value("first_audio_ms"))}`,
    `barge-ins ${value("barge_ins") ?? 0}`,
    `tool calls ${value("tool_calls") ?? 0}`,
    `tokens ${value("model_input_tokens") ?? 0} in / ${value("model_output_tokens") ?? 0} out`,
  ];
  return [`  ${first.join(" · ")}`, `  ${second.join(" · ")}`];
}

function msText(value: unknown): string {
  return value === null || value === undefined ? "?" : `${value} ms`;
}

function describe(row: TimelineRow, mask: boolean): string {
  if (row.source === "turn") {
    return maskText(JSON.stringify(String(row.detail.text ?? "")), mask);
  }
  const parts: string[] = [];
  const { body, ...rest } = row.detail;
  for (const [key, value] of flatten(rest)) {
    if (HIDDEN_KEYS.has(key)) continue;
    parts.push(`${key}=${formatValue(key, value, mask)}`);
  }
  if (typeof body === "string") parts.push(maskText(JSON.stringify(body), mask));
  return parts.join(" ");
}

/** Nested objects (an event's payload) become dotted keys: `payload.callerName`. */
function flatten(value: Record<string, unknown>, prefix = ""): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [key, child] of Object.entries(value)) {
    if (child === null || child === undefined) continue;
    const name = `${prefix}${key}`;
    if (typeof child === "object" && !Array.isArray(child)) {
      out.push(...flatten(child as Record<string, unknown>, `${name}.`));
    } else {
      out.push([name, child]);
    }
  }
  return out;
}

function formatValue(key: string, value: unknown, mask: boolean): string {
  const leaf = key.slice(key.lastIndexOf(".") + 1);
  if (typeof value === "string") {
    if (mask && PHONE_KEY.test(leaf) && /\d{5,}/.test(value)) return maskPhone(value);
    const text = maskText(value, mask);
    return /^[^\s"=]+$/.test(text) ? text : JSON.stringify(text);
  }
  return maskText(JSON.stringify(value), mask);
}

function maskText(text: string, mask: boolean): string {
  return mask ? text.replace(E164_IN_TEXT, (match) => maskPhone(match)) : text;
}

const USAGE =
  "Usage: deno run -A scripts/call_timeline.ts <CallSid|traceId> [--database-url URL] [--json]";

/** Parsed command line. */
interface TimelineArgs {
  id: string;
  databaseUrl: string | null;
  json: boolean;
}

function parseArgs(args: string[]): TimelineArgs | string {
  let id: string | null = null;
  let databaseUrl: string | null = null;
  let json = false;
  for (let index = 0; index < args.length; index++) {
    const arg = args[index];
    if (arg === "--json") json = true;
    else if (arg === "--database-url") {
      databaseUrl = args[++index] ?? null;
      if (!databaseUrl) return "--database-url needs a value";
    } else if (arg.startsWith("--database-url=")) databaseUrl = arg.slice("--database-url=".length);
    else if (arg === "-h" || arg === "--help") return "";
    else if (arg.startsWith("-")) return `Unknown option ${arg}`;
    else if (id === null) id = arg;
    else return `Unexpected argument ${arg}`;
  }
  if (!id) return "Missing the CallSid or traceId";
  return { id, databaseUrl, json };
}

async function main(args: string[]): Promise<number> {
  const parsed = parseArgs(args);
  if (typeof parsed === "string") {
    if (parsed !== "") console.error(parsed);
    console.error(USAGE);
    return parsed === "" ? 0 : 2;
  }
  const url = parsed.databaseUrl ?? Deno.env.get("DATABASE_URL") ??
    Deno.env.get("SUPABASE_DB_URL");
  if (!url) {
    console.error("Cannot read the timeline: pass --database-url or set DATABASE_URL");
    return 2;
  }
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const rows = await loadTimeline(sql, parsed.id);
    if (rows.length === 0) {
      console.error(`No call with CallSid or traceId ${parsed.id}`);
      return 1;
    }
    console.log(parsed.json ? JSON.stringify(rows, null, 2) : renderTimeline(rows).trimEnd());
    return 0;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
