/**
 * Stream handover, the pure parts: when a voice-stream worker must hand its call to a fresh one
 * (its wall clock and CPU budget, protocols.md §1), and the continuation state it leaves in
 * `call_continuations` for the next worker (JSON, checked with zod when claimed). No I/O.
 *
 * The state carries what the next model session needs to continue without a lookup or a second
 * greeting: the caller context, the recent turns (as conversation items) and a summary of the
 * older ones, tool context, the next transcript sequence number, what the assistant was saying if
 * it was cut off, and the caller's unfinished words (audio) if they were. Metrics are not carried: each stream adds its own (`record_call_metrics`).
 * @module
 */
import { z } from "zod";
import type { HandoverLevel } from "./call_session.ts";
import type { CallerContext } from "../_shared/store/types.ts";

/** At this share of either budget a stream hands over at the next natural pause. */
export const HANDOVER_SOFT_FRACTION = 0.8;
/**
 * At this share of either budget a stream hands over as soon as the caller is not speaking,
 * cutting the assistant short (the next stream resumes the sentence); no tool call is cut.
 */
export const HANDOVER_HARD_FRACTION = 0.95;
/** At this share of either budget a stream hands over even while the caller speaks. */
export const HANDOVER_FINAL_FRACTION = 0.99;
/** Turns passed to the next model session as conversation items; older ones are summarized. */
export const RECENT_TURNS_KEPT = 12;
/** Longest summary of older turns, characters (the newest part is kept). */
export const MAX_SUMMARY_CHARS = 2000;
/** Each older turn is cut to this many characters in the summary. */
export const SUMMARY_TURN_CHARS = 160;
/** Recent tool results passed on (name, arguments and output). */
export const RECENT_TOOL_RESULTS_KEPT = 3;
/** A tool output passed on is cut to this many characters. */
export const MAX_TOOL_OUTPUT_CHARS = 2000;
/** The caller's unfinished words carried to the next stream: at most this much audio, ms. */
export const MAX_CARRIED_CALLER_AUDIO_MS = 8000;
/** The same limit in base64 characters of 8 kHz mu-law (8 bytes per ms). */
export const MAX_CARRIED_CALLER_AUDIO_CHARS = Math.ceil((MAX_CARRIED_CALLER_AUDIO_MS * 8) / 3) * 4;
/** Version of the continuation state's shape. */
export const CONTINUATION_STATE_VERSION = 1;

/** A stream's budgets. */
export interface StreamBudget {
  /** Wall clock from the WebSocket upgrade, ms (`STREAM_WALL_CLOCK_SECONDS`). */
  readonly wallClockMs: number;
  /** CPU, ms (`STREAM_CPU_BUDGET_MS`), measured as the bridge's own handler time. */
  readonly cpuMs: number;
}

/** How much of its budgets a stream has used. */
export interface StreamUsage {
  /** Since the WebSocket upgrade. */
  readonly elapsedMs: number;
  readonly cpuMs: number;
}

/**
 * How pressing a handover is: `soft` once either budget is 80% used, `hard` from 95%, `final`
 * from 99%, else null.
 * @param budget the stream's budgets
 * @param usage what it used so far
 */
export function handoverLevel(budget: StreamBudget, usage: StreamUsage): HandoverLevel | null {
  const used = Math.max(usage.elapsedMs / budget.wallClockMs, usage.cpuMs / budget.cpuMs);
  if (used >= HANDOVER_FINAL_FRACTION) return "final";
  if (used >= HANDOVER_HARD_FRACTION) return "hard";
  if (used >= HANDOVER_SOFT_FRACTION) return "soft";
  return null;
}

/** When, in ms since the upgrade, the wall clock makes a handover soft, hard and final. */
export function wallClockHandoverTimes(
  budget: StreamBudget,
): { softAtMs: number; hardAtMs: number; finalAtMs: number } {
  return {
    softAtMs: Math.round(budget.wallClockMs * HANDOVER_SOFT_FRACTION),
    hardAtMs: Math.round(budget.wallClockMs * HANDOVER_HARD_FRACTION),
    finalAtMs: Math.round(budget.wallClockMs * HANDOVER_FINAL_FRACTION),
  };
}

/** A transcript turn as the continuation keeps it. */
export interface ContinuationTurn {
  sequence: number;
  speaker: "caller" | "assistant";
  text: string;
}

/** A tool call and its result, as the continuation keeps it. */
export interface ContinuationToolResult {
  name: string;
  /** The model's JSON arguments text. */
  arguments: string;
  output: string;
}

/** A tool call whose result arrived after the handover began: the next model answers it. */
export interface ContinuationCarriedTool extends ContinuationToolResult {
  callId: string;
}

/** What the assistant was saying when a hard handover cut it off. */
export interface ContinuationInterruption {
  /** Its whole transcript, when known ("" otherwise). */
  text: string;
  /** The part the caller heard, estimated from the played audio. */
  heardText: string;
}

/** The state a stream leaves for the stream continuing its call (`call_continuations.state`). */
export interface ContinuationState {
  version: typeof CONTINUATION_STATE_VERSION;
  /** When the call's first stream started, ms since the epoch (the call's time limit counts it). */
  callStartedAtMs: number;
  /** Handovers so far, this one included. */
  handovers: number;
  /** The sequence number of the call's next transcript turn. */
  nextSequence: number;
  /** Older turns, condensed; "" when every turn is recent. */
  summary: string;
  recentTurns: ContinuationTurn[];
  /** The lookup's result (null: it failed or timed out, the call goes on generically). */
  callerContext: CallerContext | null;
  bookingInProgress: boolean;
  recentToolResults: ContinuationToolResult[];
  carriedToolResults: ContinuationCarriedTool[];
  interrupted: ContinuationInterruption | null;
  /**
   * What the caller said since they started their unfinished sentence (base64 8 kHz mu-law), for
   * the next model session to hear before the live audio; null when they were not cut off.
   */
  callerAudio: string | null;
  /** Whether the next model session speaks at once. */
  respond: boolean;
}

const vadSchema = z.object({
  threshold: z.number(),
  silenceDurationMs: z.number(),
  prefixPaddingMs: z.number(),
});

const providerSchema = z.object({ id: z.string(), name: z.string() });

// Defaults: a continuation saved before services and providers existed still resumes.
const serviceSchema = z.object({
  id: z.string(),
  name: z.string(),
  durationMinutes: z.number(),
  bufferAfterMinutes: z.number(),
  instructions: z.string(),
  isDefault: z.boolean(),
  providers: z.array(z.string()),
});

const callerContextSchema = z.object({
  org: z.object({
    id: z.string(),
    name: z.string(),
    timezone: z.string(),
    greeting: z.string(),
    persona: z.string(),
    appointmentMinutes: z.number(),
    transferNumber: z.string().nullable(),
    smsRecoveryTemplate: z.string(),
    emergencyKeywords: z.array(z.string()),
    maxCallSeconds: z.number().nullable(),
    voice: z.string(),
    languages: z.array(z.string()).default(["en"]),
    vad: vadSchema,
    phoneNumber: z.string(),
    services: z.array(serviceSchema).default([]),
    providers: z.array(providerSchema).default([]),
    bookingRules: z.object({
      minNoticeMinutes: z.number(),
      bookingHorizonDays: z.number().nullable(),
      slotGranularityMinutes: z.number().nullable(),
    }).default({ minNoticeMinutes: 0, bookingHorizonDays: null, slotGranularityMinutes: null }),
  }),
  client: z.object({
    id: z.string(),
    firstName: z.string().nullable(),
    lastName: z.string().nullable(),
    phone: z.string(),
    preferredProvider: providerSchema.nullable().default(null),
  }).nullable(),
  upcomingAppointments: z.array(z.object({
    id: z.string(),
    startsAt: z.string(),
    endsAt: z.string(),
    confirmationCode: z.string(),
    status: z.string(),
    serviceId: z.string().nullable().default(null),
    serviceName: z.string().nullable().default(null),
    providerId: z.string().nullable().default(null),
    providerName: z.string().nullable().default(null),
  })),
  lastProvider: providerSchema.nullable().default(null),
  lastCallOutcome: z.string().nullable(),
});

const turnSchema = z.object({
  sequence: z.number().int().min(0),
  speaker: z.enum(["caller", "assistant"]),
  text: z.string(),
});

const toolResultSchema = z.object({ name: z.string(), arguments: z.string(), output: z.string() });

const continuationStateSchema = z.object({
  version: z.literal(CONTINUATION_STATE_VERSION),
  callStartedAtMs: z.number(),
  handovers: z.number().int().min(1),
  nextSequence: z.number().int().min(0),
  summary: z.string(),
  recentTurns: z.array(turnSchema),
  callerContext: callerContextSchema.nullable(),
  bookingInProgress: z.boolean(),
  recentToolResults: z.array(toolResultSchema),
  carriedToolResults: z.array(toolResultSchema.extend({ callId: z.string().min(1) })),
  interrupted: z.object({ text: z.string(), heardText: z.string() }).nullable(),
  callerAudio: z.string().max(MAX_CARRIED_CALLER_AUDIO_CHARS).nullable(),
  respond: z.boolean(),
});

/**
 * Checks a claimed continuation state. Never throws.
 * @param value the `state` jsonb `claim_call_continuation` returned
 */
export function safeParseContinuationState(
  value: unknown,
): { success: true; data: ContinuationState } | { success: false; error: string } {
  const parsed = continuationStateSchema.safeParse(value);
  if (parsed.success) return { success: true, data: parsed.data as ContinuationState };
  const details = parsed.error.issues.slice(0, 3).map((issue) =>
    `${issue.path.join(".") || "state"}: ${issue.message}`
  );
  return { success: false, error: `Cannot read continuation state: ${details.join("; ")}` };
}

/** What a stream knows when it hands over; `buildContinuationState` condenses it. */
export interface HandoverSnapshot {
  /** The state this stream was continued from, or null for a call's first stream. */
  previous: ContinuationState | null;
  callStartedAtMs: number;
  nextSequence: number;
  /** Turns this stream recorded, in order. */
  turns: readonly ContinuationTurn[];
  callerContext: CallerContext | null;
  bookingInProgress: boolean;
  /** Tool results this stream got, in order. */
  toolResults: readonly ContinuationToolResult[];
  carriedToolResults: readonly ContinuationCarriedTool[];
  interrupted: ContinuationInterruption | null;
  callerAudio: string | null;
  respond: boolean;
}

/**
 * Builds the continuation state: the newest turns stay verbatim, older ones join the summary.
 * @param snapshot what the stream knows
 */
export function buildContinuationState(snapshot: HandoverSnapshot): ContinuationState {
  const previous = snapshot.previous;
  const turns = [...(previous?.recentTurns ?? []), ...snapshot.turns];
  const cut = Math.max(0, turns.length - RECENT_TURNS_KEPT);
  const tools = [...(previous?.recentToolResults ?? []), ...snapshot.toolResults]
    .slice(-RECENT_TOOL_RESULTS_KEPT)
    .map((tool) => ({ ...tool, output: clip(tool.output, MAX_TOOL_OUTPUT_CHARS) }));
  return {
    version: CONTINUATION_STATE_VERSION,
    callStartedAtMs: previous?.callStartedAtMs ?? snapshot.callStartedAtMs,
    handovers: (previous?.handovers ?? 0) + 1,
    nextSequence: snapshot.nextSequence,
    summary: summarizeTurns(previous?.summary ?? "", turns.slice(0, cut)),
    recentTurns: turns.slice(cut),
    callerContext: snapshot.callerContext,
    bookingInProgress: snapshot.bookingInProgress,
    recentToolResults: tools,
    carriedToolResults: snapshot.carriedToolResults.map((tool) => ({
      ...tool,
      output: clip(tool.output, MAX_TOOL_OUTPUT_CHARS),
    })),
    interrupted: snapshot.interrupted,
    callerAudio: snapshot.callerAudio,
    respond: snapshot.respond,
  };
}

/**
 * Appends older turns to a summary, one short line each, keeping the newest `MAX_SUMMARY_CHARS`
 * (no model call: the recent turns carry the detail, this only keeps the thread).
 * @param previous the summary so far
 * @param turns turns leaving the recent window, in order
 */
export function summarizeTurns(previous: string, turns: readonly ContinuationTurn[]): string {
  const lines = turns
    .filter((turn) => turn.text.trim() !== "")
    .map((turn) =>
      `${turn.speaker === "caller" ? "Caller" : "Assistant"}: ${
        clip(turn.text.replace(/\s+/g, " ").trim(), SUMMARY_TURN_CHARS)
      }`
    );
  let summary = [previous, ...lines].filter((part) => part !== "").join("\n");
  if (summary.length > MAX_SUMMARY_CHARS) {
    const tail = summary.slice(summary.length - MAX_SUMMARY_CHARS);
    const lineStart = tail.indexOf("\n");
    summary = `...\n${lineStart >= 0 ? tail.slice(lineStart + 1) : tail}`;
  }
  return summary;
}

/**
 * The words of `transcript` a caller heard after `playedMs` of its `totalMs` of audio: words are
 * spread evenly over the audio, so this is an estimate good to a word or two.
 * @param transcript what the whole item says
 * @param playedMs audio played
 * @param totalMs audio the item has (received so far)
 */
export function heardPrefix(transcript: string, playedMs: number, totalMs: number): string {
  const text = transcript.trim();
  if (text === "" || totalMs <= 0 || playedMs <= 0) return "";
  if (playedMs >= totalMs) return text;
  const budget = text.length * (playedMs / totalMs);
  const words = text.split(/\s+/);
  let length = 0;
  const heard: string[] = [];
  for (const word of words) {
    if (length + word.length > budget) break;
    heard.push(word);
    length += word.length + 1;
  }
  return heard.join(" ");
}

function clip(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars - 3)}...`;
}
