/**
 * OpenAI Realtime API, GA WebSocket shape (`/v1/realtime?model=...`): a strict local double of
 * the server side, for testing the bridge without the network.
 *
 * It validates every client event with its own schemas, written from the protocol facts
 * (`shared/reference/protocols.md` §3 and the `openai` package's GA event types), not with the
 * bridge's codec, so the bridge's mistakes surface as `error` events, as they would in
 * production. Error codes and messages copy the real service where they are known from public
 * issue threads ("Audio content of Xms is already shorter than Yms", `invalid_tool_call_id`,
 * `unsupported_content_type`, `conversation_already_has_active_response`,
 * `response_cancel_not_active`, `input_audio_buffer_commit_empty`, `beta_api_shape_disabled`);
 * the rest follow the service's general pattern (`unknown_parameter`,
 * `missing_required_parameter`, `invalid_type`, `invalid_value`).
 *
 * Assistant turns come from a scripted scenario; caller turns are found by an energy VAD on the
 * audio the client really appended (see `OpenAIRealtimeVadOptions` for the threshold mapping).
 * Times in VAD events are positions in the appended audio, never wall clock.
 *
 * Not modelled: `idle_timeout_ms` (accepted, never fires), `semantic_vad` (approximated by the
 * energy VAD with an eagerness-dependent silence duration), `audio/pcma` audio (accepted in the
 * session; appended A-law audio is counted but not analysed, and responses in A-law are refused
 * with an `error`), text-only item content in responses beyond `output_text`.
 * @module
 */

import { z } from "zod";
import { mulawDecode, mulawEncode } from "../../supabase/functions/_shared/codec/g711.ts";
import { createResampler } from "../../supabase/functions/_shared/codec/resample.ts";
import {
  base64ToBytes,
  bytesToBase64,
  int16ToPcm16le,
  pcm16leToInt16,
} from "../../supabase/functions/_shared/codec/pcm.ts";
import { FIXTURE_TRANSCRIPTS, type FixtureName, loadFixture } from "../support/audio_fixtures.ts";

// ---------------------------------------------------------------------------------------------
// Public types

/** The assistant speaks: audio deltas plus transcript deltas, as one `message` item. */
export interface AssistantAudioStep {
  kind: "assistant_audio";
  /** A committed fixture (its transcript is the default `transcript`). */
  fixture?: FixtureName;
  /** Raw 8 kHz mu-law audio, used when `fixture` is not given. */
  audio?: Uint8Array;
  /** What the audio says. Defaults to the fixture's transcript, else "". */
  transcript?: string;
  /** Length of a generated tone when neither `fixture` nor `audio` is given. Defaults to 1000. */
  durationMs?: number;
}

/**
 * The assistant calls a tool: a `function_call` item, then `response.done`. The double then
 * waits for the client's `function_call_output` and `response.create`; `then` (when given) is
 * what that next response plays, ahead of the rest of the scenario.
 */
export interface FunctionCallStep {
  kind: "function_call";
  /** Tool name. */
  name: string;
  /** Tool arguments; sent JSON-encoded, as the service does. */
  arguments: Record<string, unknown>;
  /** Call id. Defaults to a random `call_...` id. */
  callId?: string;
  /** The step of the response that follows the function call output. */
  then?: ScenarioEntry;
}

/**
 * The scenario is over: this response (and any later one) completes with no output. With
 * `close`, the double then closes the socket with code 1000.
 */
export interface EndStep {
  kind: "end";
  close?: boolean;
}

/**
 * Instead of a response, the service fails: an `error` event of type `server_error`, then, with
 * `close`, the socket closes with code 1011.
 */
export interface ServerErrorStep {
  kind: "server_error";
  /** Defaults to the service's usual "The server had an error..." text. */
  message?: string;
  close?: boolean;
}

/**
 * A caller turn: not a response. Each committed user audio item (server VAD or client commit)
 * takes the next caller step in the scenario as its transcript.
 */
export interface CallerStep {
  kind: "caller";
  /** What the caller said. Defaults to the fixture's transcript. */
  transcript?: string;
  fixture?: FixtureName;
}

/** One scripted step. */
export type ScenarioStep =
  | AssistantAudioStep
  | FunctionCallStep
  | EndStep
  | ServerErrorStep
  | CallerStep;

/**
 * A step, or a function that picks the step from what the client has sent so far (called when a
 * response starts; function entries are always response steps, never caller steps).
 */
export type ScenarioEntry =
  | ScenarioStep
  | ((session: SessionRecord) => Exclude<ScenarioStep, CallerStep>);

/**
 * Energy VAD settings. A 20 ms frame is speech when its RMS level in dBFS is above
 * `floorDbfs + threshold * (ceilingDbfs - floorDbfs)`, where `threshold` is the session's
 * `turn_detection.threshold` (0..1): with the defaults, threshold 0.5 means -40 dBFS,
 * 0 means -60 dBFS and 1 means -20 dBFS. Digital silence (mu-law 0xFF) is -infinity dBFS.
 */
export interface OpenAIRealtimeVadOptions {
  /** dBFS level of threshold 0. Defaults to -60. */
  floorDbfs?: number;
  /** dBFS level of threshold 1. Defaults to -20. */
  ceilingDbfs?: number;
  /** Speech must last this long before `speech_started`. Defaults to 60 (3 frames). */
  minSpeechMs?: number;
}

/** Ways to make the double fail on purpose. */
export interface OpenAIRealtimeFaults {
  /**
   * Refuse connections: `http_503` answers the upgrade with HTTP 503; `close_after_upgrade`
   * accepts it and closes at once with code 1011, before `session.created`. Only the first
   * `count` connections are refused (defaults to all).
   */
  refuse?: { mode: "http_503" | "close_after_upgrade"; count?: number };
  /**
   * Drop the TCP connection without a close frame after `afterDeltas` audio deltas of response
   * `responseIndex` (0-based, defaults to 0) on connection `connectionIndex` (defaults to 0).
   * Enables a loopback TCP proxy in front of the server, since Deno's WebSocket cannot be torn
   * down without a close frame otherwise.
   */
  dropMidResponse?: { afterDeltas: number; responseIndex?: number; connectionIndex?: number };
  /** Delay before the first audio delta of each connection's first response. */
  firstDeltaDelayMs?: number;
}

/** Options of `startOpenAIRealtimeDouble`. */
export interface OpenAIRealtimeDoubleOptions {
  /** The API key clients must present. Defaults to `DEFAULT_DOUBLE_API_KEY`. */
  apiKey?: string;
  /** Models accepted in `?model=`. Defaults to `["gpt-realtime", "gpt-realtime-mini"]`. */
  allowedModels?: readonly string[];
  /** The script, the same for every connection, or chosen per connection (0-based index). */
  scenario?: readonly ScenarioEntry[] | ((connectionIndex: number) => readonly ScenarioEntry[]);
  /** Audio per `response.output_audio.delta`, in ms. Defaults to 100. */
  chunkMs?: number;
  /**
   * How much faster than real time assistant audio is sent: one delta every
   * `chunkMs / speedFactor` ms. Defaults to 4; `Infinity` sends as fast as the event loop
   * allows (still yielding between deltas, so cancellations land in between).
   */
  speedFactor?: number;
  /** Energy VAD settings. */
  vad?: OpenAIRealtimeVadOptions;
  /**
   * Keep every append's decoded bytes in `appendedAudio`. Defaults to true; load runs turn it
   * off (hundreds of calls' audio would grow the heap, and its collections stall the clock the
   * forwarding delay is read with). `appendedBytes` and `appendedAtMs` are kept either way.
   */
  keepAppendedAudio?: boolean;
  /** Fault injection. */
  faults?: OpenAIRealtimeFaults;
  /** Transcript reported for a committed user item when the scenario has no caller step left. */
  defaultCallerTranscript?: string;
}

/** An `error` event the double sent (the `error` object of the event). */
export interface RecordedError {
  type: string;
  code: string | null;
  message: string;
  param: string | null;
  event_id: string | null;
}

/** A user audio item committed from the input buffer. */
export interface UserTurnRecord {
  item_id: string;
  /** Start of the item in the appended-audio timeline (prefix padding included). */
  audio_start_ms: number;
  /** End of the item in the appended-audio timeline. */
  audio_end_ms: number;
  transcript: string;
  committedBy: "server_vad" | "client";
}

/** A response the double produced. */
export interface ResponseRecord {
  id: string;
  /** What started it: the client's `response.create` or the end of a VAD turn. */
  trigger: "response.create" | "vad";
  /** The `response` object of the `response.create` event, if any. */
  request: Record<string, unknown> | null;
  stepKind: "assistant_audio" | "function_call" | "end" | "none";
  status: "in_progress" | "completed" | "cancelled" | "failed";
  /** Why it was cancelled, if it was. */
  cancelReason: "client_cancelled" | "turn_detected" | null;
  /** Id of the assistant message item carrying audio, if any. */
  audioItemId: string | null;
  /** Audio sent for that item, in ms. */
  audioMsSent: number;
  /** Number of `response.output_audio.delta` events sent. */
  audioDeltaCount: number;
  /** Transcript of the full step (what the audio says, also when cut short). */
  transcript: string;
}

/** A tool call the double made, with the output the client returned for it. */
export interface FunctionCallRecord {
  call_id: string;
  name: string;
  /** JSON-encoded arguments, as sent. */
  arguments: string;
  item_id: string;
  response_id: string;
  /** The `output` of the client's `function_call_output`, once received. */
  output: string | null;
}

/** An accepted `conversation.item.truncate`. */
export interface TruncationRecord {
  item_id: string;
  content_index: number;
  audio_end_ms: number;
  /** Audio the double had sent for the item when the truncation arrived, in ms. */
  itemAudioMs: number;
}

/** A response cancelled by `response.cancel` or by VAD barge-in. */
export interface CancellationRecord {
  response_id: string;
  reason: "client_cancelled" | "turn_detected";
  /** Audio sent for the response's audio item before the cancellation, in ms. */
  audioMsSent: number;
}

/** Everything one connection did, for assertions. Mutated live while the connection runs. */
export interface SessionRecord {
  /** 0-based connection index. */
  index: number;
  /** Model from the URL. */
  model: string;
  /** How the client authenticated. */
  auth: "header" | "subprotocol";
  /** Whether the client sent the retired `OpenAI-Beta: realtime=v1` header. */
  betaHeader: boolean;
  /** Whether the connection was refused by `faults.refuse` after the upgrade. */
  refused: boolean;
  /**
   * Every client event in order, parsed (`audio` of appends replaced by a placeholder; the
   * decoded bytes are in `appendedAudio`). Messages that are not JSON are recorded as
   * `{ type: "<invalid json>", raw }`.
   */
  clientEvents: Record<string, unknown>[];
  /** Every server event in order (`delta` of audio deltas replaced by a placeholder). */
  serverEvents: Record<string, unknown>[];
  /** The `error` objects of every `error` event sent. */
  errors: RecordedError[];
  /** The effective session configuration (as in the last `session.updated`). */
  session: Record<string, unknown>;
  /** The `session` objects of accepted `session.update` events, in order. */
  sessionUpdates: Record<string, unknown>[];
  /** Decoded appended audio, one array per `input_audio_buffer.append`. */
  appendedAudio: Uint8Array[];
  /** `performance.now()` when each `input_audio_buffer.append` arrived, in order. */
  appendedAtMs: number[];
  /** Decoded size of each `input_audio_buffer.append`, in order. */
  appendedBytes: number[];
  /** Total bytes appended. */
  appendedAudioBytes: number;
  /** Total audio appended, in ms of the input format at the time. */
  appendedAudioMs: number;
  userTurns: UserTurnRecord[];
  responses: ResponseRecord[];
  functionCalls: FunctionCallRecord[];
  truncations: TruncationRecord[];
  cancellations: CancellationRecord[];
  /** Whether the socket has closed (either side). */
  closed: boolean;
  closeCode: number | null;
  closeReason: string | null;
}

/** A running double. */
export interface OpenAIRealtimeDouble {
  /** `ws://127.0.0.1:<port>/v1/realtime` (append `?model=gpt-realtime`). */
  url: string;
  port: number;
  /** The API key it accepts. */
  apiKey: string;
  /** One record per upgraded connection, in order. */
  sessions: SessionRecord[];
  /** Upgrade requests seen, including refused ones. */
  connectionAttempts(): number;
  /**
   * Resolves with the predicate's first truthy result, re-checked whenever the double records
   * something; rejects after `timeoutMs` (default 5000).
   */
  waitFor<T>(
    predicate: () => T | undefined | null | false,
    timeoutMs?: number,
    what?: string,
  ): Promise<T>;
  /** Waits for connection `index` (default 0) to exist. */
  waitForSession(index?: number, timeoutMs?: number): Promise<SessionRecord>;
  /** Waits for a server event of `type` on session `index`, counting from `fromCount` events. */
  waitForServerEvent(
    type: string,
    options?: { sessionIndex?: number; timeoutMs?: number; fromCount?: number },
  ): Promise<Record<string, unknown>>;
  /** Drops connection `index` without a close frame (only with `faults.dropMidResponse`). */
  dropConnection(index: number): void;
  /** Closes every socket and the server. */
  close(): Promise<void>;
}

/** API key the double accepts by default. */
export const DEFAULT_DOUBLE_API_KEY = "sk-test-openai-realtime-double";

/** Models the double accepts by default. */
export const DEFAULT_ALLOWED_MODELS: readonly string[] = ["gpt-realtime", "gpt-realtime-mini"];

/** Close code the service uses after rejecting the beta API shape. */
export const BETA_SHAPE_CLOSE_CODE = 4000;

// ---------------------------------------------------------------------------------------------
// Constants

const REALTIME_PATH = "/v1/realtime";
const SUBPROTOCOL_REALTIME = "realtime";
const SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key.";

/** Client event types the GA service lists as supported (its `invalid_value` message). */
const SUPPORTED_CLIENT_EVENT_TYPES = [
  "session.update",
  "input_audio_buffer.append",
  "input_audio_buffer.commit",
  "input_audio_buffer.clear",
  "conversation.item.create",
  "conversation.item.truncate",
  "conversation.item.delete",
  "conversation.item.retrieve",
  "response.create",
  "response.cancel",
  "output_audio_buffer.clear",
] as const;

/** Session keys of the retired beta shape. */
const BETA_SESSION_KEYS = [
  "input_audio_format",
  "output_audio_format",
  "voice",
  "turn_detection",
  "modalities",
  "input_audio_transcription",
  "input_audio_noise_reduction",
];

const VAD_FRAME_MS = 20;
const DEFAULT_THRESHOLD = 0.5;
const DEFAULT_PREFIX_PADDING_MS = 300;
/** The GA docs' default `silence_duration_ms`. */
const DEFAULT_SILENCE_DURATION_MS = 500;
/** Silence that ends a turn under `semantic_vad`, by eagerness (our approximation). */
const SEMANTIC_SILENCE_MS = { low: 1000, medium: 600, high: 300, auto: 600 } as const;
/** The service refuses to commit less audio than this. */
const MIN_COMMIT_MS = 100;
/** Level of the tone played when a step has no audio: -20 dBFS, 440 Hz. */
const TONE_AMPLITUDE = Math.round(32767 * 0.1);
const TONE_HZ = 440;

/** Delay between stopping output and cutting the TCP connection in a simulated drop. */
const DROP_FLUSH_MS = 50;

const SERVER_ERROR_MESSAGE =
  "The server had an error while processing your request. Sorry about that!";

// ---------------------------------------------------------------------------------------------
// Client event schemas (GA), written independently of the bridge's codec

const eventId = z.string().optional();

const audioFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("audio/pcm"), rate: z.literal(24000).optional() }).strict(),
  z.object({ type: z.literal("audio/pcmu") }).strict(),
  z.object({ type: z.literal("audio/pcma") }).strict(),
]);

const serverVadSchema = z.object({
  type: z.literal("server_vad"),
  threshold: z.number().min(0).max(1).optional(),
  prefix_padding_ms: z.number().int().min(0).optional(),
  silence_duration_ms: z.number().int().min(0).optional(),
  idle_timeout_ms: z.number().int().min(0).nullable().optional(),
  create_response: z.boolean().optional(),
  interrupt_response: z.boolean().optional(),
}).strict();

const semanticVadSchema = z.object({
  type: z.literal("semantic_vad"),
  eagerness: z.enum(["low", "medium", "high", "auto"]).optional(),
  create_response: z.boolean().optional(),
  interrupt_response: z.boolean().optional(),
}).strict();

const turnDetectionSchema = z.discriminatedUnion("type", [serverVadSchema, semanticVadSchema]);

const transcriptionSchema = z.object({
  model: z.string().optional(),
  language: z.string().optional(),
  prompt: z.string().optional(),
  delay: z.enum(["minimal", "low", "medium", "high", "xhigh"]).optional(),
  keywords: z.array(z.string()).optional(),
  languages: z.array(z.string()).optional(),
}).strict();

const noiseReductionSchema = z.object({
  type: z.enum(["near_field", "far_field"]).optional(),
  strength: z.number().optional(),
}).strict();

const voiceSchema = z.union([z.string(), z.object({ id: z.string() }).strict()]);

const audioConfigSchema = z.object({
  input: z.object({
    format: audioFormatSchema.optional(),
    noise_reduction: noiseReductionSchema.nullable().optional(),
    transcription: transcriptionSchema.nullable().optional(),
    turn_detection: turnDetectionSchema.nullable().optional(),
  }).strict().optional(),
  output: z.object({
    format: audioFormatSchema.optional(),
    voice: voiceSchema.optional(),
    speed: z.number().min(0.25).max(1.5).optional(),
  }).strict().optional(),
}).strict();

const functionToolSchema = z.object({
  type: z.literal("function"),
  name: z.string(),
  description: z.string().optional(),
  parameters: z.record(z.string(), z.unknown()).optional(),
}).strict();

const mcpToolSchema = z.looseObject({ type: z.literal("mcp"), server_label: z.string() });

const toolSchema = z.discriminatedUnion("type", [functionToolSchema, mcpToolSchema]);

const toolChoiceSchema = z.union([
  z.enum(["auto", "none", "required"]),
  z.object({ type: z.literal("function"), name: z.string() }).strict(),
  z.object({ type: z.literal("mcp"), server_label: z.string(), name: z.string().optional() })
    .strict(),
]);

const maxOutputTokensSchema = z.union([z.number().int().min(1).max(4096), z.literal("inf")]);

const sessionSchema = z.object({
  type: z.literal("realtime"),
  model: z.string().optional(),
  instructions: z.string().optional(),
  output_modalities: z.array(z.enum(["audio", "text"])).optional(),
  audio: audioConfigSchema.optional(),
  tools: z.array(toolSchema).optional(),
  tool_choice: toolChoiceSchema.optional(),
  max_output_tokens: maxOutputTokensSchema.optional(),
  include: z.array(z.literal("item.input_audio_transcription.logprobs")).nullable().optional(),
  tracing: z.union([z.literal("auto"), z.record(z.string(), z.unknown())]).nullable().optional(),
  truncation: z.union([
    z.enum(["auto", "disabled"]),
    z.record(z.string(), z.unknown()),
  ]).optional(),
  prompt: z.record(z.string(), z.unknown()).nullable().optional(),
  parallel_tool_calls: z.boolean().optional(),
  reasoning: z.object({ effort: z.enum(["minimal", "low", "medium", "high", "xhigh"]) })
    .partial().strict().optional(),
}).strict();

const textPart = (type: string) => z.object({ type: z.literal(type), text: z.string() }).strict();

const userMessageSchema = z.object({
  type: z.literal("message"),
  role: z.literal("user"),
  content: z.array(z.discriminatedUnion("type", [
    textPart("input_text"),
    z.object({
      type: z.literal("input_audio"),
      audio: z.string().optional(),
      transcript: z.string().nullable().optional(),
    }).strict(),
    z.object({
      type: z.literal("input_image"),
      image_url: z.string(),
      detail: z.enum(["auto", "low", "high"]).optional(),
    }).strict(),
  ])),
  id: z.string().optional(),
  object: z.literal("realtime.item").optional(),
  status: z.enum(["completed", "incomplete", "in_progress"]).optional(),
}).strict();

const systemMessageSchema = z.object({
  type: z.literal("message"),
  role: z.literal("system"),
  content: z.array(textPart("input_text")),
  id: z.string().optional(),
  object: z.literal("realtime.item").optional(),
  status: z.enum(["completed", "incomplete", "in_progress"]).optional(),
}).strict();

const assistantMessageSchema = z.object({
  type: z.literal("message"),
  role: z.literal("assistant"),
  content: z.array(textPart("output_text")),
  id: z.string().optional(),
  object: z.literal("realtime.item").optional(),
  status: z.enum(["completed", "incomplete", "in_progress"]).optional(),
}).strict();

/** Call ids must match the service's pattern (seen in public issue threads). */
const callIdSchema = z.string().regex(/^[a-zA-Z0-9_-]+$/);

const functionCallItemSchema = z.object({
  type: z.literal("function_call"),
  name: z.string(),
  arguments: z.string(),
  call_id: callIdSchema.optional(),
  id: z.string().optional(),
  object: z.literal("realtime.item").optional(),
  status: z.enum(["completed", "incomplete", "in_progress"]).optional(),
}).strict();

const functionCallOutputItemSchema = z.object({
  type: z.literal("function_call_output"),
  call_id: callIdSchema,
  output: z.string(),
  id: z.string().optional(),
  object: z.literal("realtime.item").optional(),
  status: z.enum(["completed", "incomplete", "in_progress"]).optional(),
}).strict();

const responseParamsSchema = z.object({
  conversation: z.string().optional(),
  instructions: z.string().optional(),
  output_modalities: z.array(z.enum(["audio", "text"])).optional(),
  audio: z.object({
    output: z.object({ format: audioFormatSchema.optional(), voice: voiceSchema.optional() })
      .strict().optional(),
  }).strict().optional(),
  tools: z.array(toolSchema).optional(),
  tool_choice: toolChoiceSchema.optional(),
  max_output_tokens: maxOutputTokensSchema.optional(),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
  input: z.array(z.record(z.string(), z.unknown())).optional(),
  prompt: z.record(z.string(), z.unknown()).nullable().optional(),
  parallel_tool_calls: z.boolean().optional(),
  reasoning: z.object({ effort: z.enum(["minimal", "low", "medium", "high", "xhigh"]) })
    .partial().strict().optional(),
}).strict();

const itemIdEvent = (type: string) =>
  z.object({ type: z.literal(type), event_id: eventId, item_id: z.string() }).strict();
const bareEvent = (type: string) => z.object({ type: z.literal(type), event_id: eventId }).strict();

const CLIENT_EVENT_SCHEMAS: Record<(typeof SUPPORTED_CLIENT_EVENT_TYPES)[number], z.ZodType> = {
  "session.update": z.object({
    type: z.literal("session.update"),
    event_id: eventId,
    session: z.record(z.string(), z.unknown()),
  }).strict(),
  "input_audio_buffer.append": z.object({
    type: z.literal("input_audio_buffer.append"),
    event_id: eventId,
    audio: z.string(),
  }).strict(),
  "input_audio_buffer.commit": bareEvent("input_audio_buffer.commit"),
  "input_audio_buffer.clear": bareEvent("input_audio_buffer.clear"),
  "conversation.item.create": z.object({
    type: z.literal("conversation.item.create"),
    event_id: eventId,
    previous_item_id: z.string().nullable().optional(),
    item: z.record(z.string(), z.unknown()),
  }).strict(),
  "conversation.item.truncate": z.object({
    type: z.literal("conversation.item.truncate"),
    event_id: eventId,
    item_id: z.string(),
    content_index: z.number().int().min(0),
    audio_end_ms: z.number().int().min(0),
  }).strict(),
  "conversation.item.delete": itemIdEvent("conversation.item.delete"),
  "conversation.item.retrieve": itemIdEvent("conversation.item.retrieve"),
  "response.create": z.object({
    type: z.literal("response.create"),
    event_id: eventId,
    response: responseParamsSchema.optional(),
  }).strict(),
  "response.cancel": z.object({
    type: z.literal("response.cancel"),
    event_id: eventId,
    response_id: z.string().optional(),
  }).strict(),
  "output_audio_buffer.clear": bareEvent("output_audio_buffer.clear"),
};

// ---------------------------------------------------------------------------------------------
// Validation errors in the service's words

interface ErrorBody {
  type: string;
  code: string | null;
  message: string;
  param: string | null;
}

/** Parameters the service types as integers (its range errors say `integer_...`). */
const INTEGER_PARAM = /(_ms|max_output_tokens|content_index)$/;

function describeJsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "number") {
    return Number.isInteger(value) ? "an integer" : "a decimal number";
  }
  if (typeof value === "string") return "a string";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "object") return "an object";
  return typeof value;
}

function describeExpected(expected: string): string {
  switch (expected) {
    case "int":
      return "an integer";
    case "number":
      return "a number";
    case "string":
      return "a string";
    case "boolean":
      return "a boolean";
    case "object":
    case "record":
      return "an object";
    case "array":
      return "an array";
    default:
      return expected;
  }
}

function joinPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** The service reports one problem per event: the first issue, in its error vocabulary. */
function issueToError(issue: z.core.$ZodIssue, prefix: string): ErrorBody {
  const param = joinPath(prefix, issue.path);
  const base = { type: "invalid_request_error" };
  const input = (issue as { input?: unknown }).input;
  switch (issue.code) {
    case "unrecognized_keys": {
      const key = joinPath(param, [issue.keys[0]]);
      return {
        ...base,
        code: "unknown_parameter",
        message: `Unknown parameter: '${key}'.`,
        param: key,
      };
    }
    case "invalid_type":
      if (!("input" in issue) || input === undefined) {
        return {
          ...base,
          code: "missing_required_parameter",
          message: `Missing required parameter: '${param}'.`,
          param,
        };
      }
      return {
        ...base,
        code: "invalid_type",
        message: `Invalid type for '${param}': expected ${
          describeExpected(issue.expected)
        }, but got ${describeJsonType(input)} instead.`,
        param,
      };
    case "invalid_value":
      if (!("input" in issue) || input === undefined) {
        return {
          ...base,
          code: "missing_required_parameter",
          message: `Missing required parameter: '${param}'.`,
          param,
        };
      }
      return {
        ...base,
        code: "invalid_value",
        message: `Invalid value: '${String(input)}'. Supported values are: ${
          issue.values.map((value) => `'${String(value)}'`).join(", ")
        }.`,
        param,
      };
    case "invalid_union": {
      const discriminatorIssue = issue as { options?: unknown[] };
      const options = discriminatorIssue.options ?? [];
      const value = input !== null && typeof input === "object"
        ? (input as Record<string, unknown>).type
        : input;
      if (value === undefined && options.length > 0) {
        return {
          ...base,
          code: "missing_required_parameter",
          message: `Missing required parameter: '${param}'.`,
          param,
        };
      }
      return {
        ...base,
        code: "invalid_value",
        message: `Invalid value: '${String(value)}'.${
          options.length > 0
            ? ` Supported values are: ${options.map((o) => `'${String(o)}'`).join(", ")}.`
            : ""
        }`,
        param,
      };
    }
    case "too_small":
    case "too_big": {
      const integer = INTEGER_PARAM.test(param);
      const below = issue.code === "too_small";
      const limit = below ? issue.minimum : issue.maximum;
      return {
        ...base,
        code: `${integer ? "integer" : "decimal"}_${below ? "below_min" : "above_max"}_value`,
        message: `Invalid '${param}': ${integer ? "integer" : "decimal"} ${
          below ? "below minimum" : "above maximum"
        } value. Expected a value ${below ? ">=" : "<="} ${String(limit)}, but got ${
          String(input)
        } instead.`,
        param,
      };
    }
    default:
      return { ...base, code: "invalid_value", message: `Invalid '${param}'.`, param };
  }
}

function validate<T>(
  schema: z.ZodType<T>,
  value: unknown,
  prefix = "",
): { success: true; data: T } | { success: false; error: ErrorBody } {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return { success: true, data: result.data };
  return { success: false, error: issueToError(result.error.issues[0], prefix) };
}

function isStrictBase64(text: string): boolean {
  return text.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(text);
}

// ---------------------------------------------------------------------------------------------
// Session configuration

type Json = Record<string, unknown>;

function vadDefaults(turnDetection: Json): Json {
  if (turnDetection.type === "semantic_vad") {
    return { eagerness: "auto", create_response: true, interrupt_response: true, ...turnDetection };
  }
  return {
    threshold: DEFAULT_THRESHOLD,
    prefix_padding_ms: DEFAULT_PREFIX_PADDING_MS,
    silence_duration_ms: DEFAULT_SILENCE_DURATION_MS,
    idle_timeout_ms: null,
    create_response: true,
    interrupt_response: true,
    ...turnDetection,
  };
}

function defaultSession(model: string): Json {
  return {
    type: "realtime",
    object: "realtime.session",
    id: newId("sess"),
    model,
    output_modalities: ["audio"],
    instructions: "You are a helpful, witty, and friendly AI.",
    tools: [],
    tool_choice: "auto",
    max_output_tokens: "inf",
    tracing: null,
    truncation: "auto",
    prompt: null,
    expires_at: Math.floor(Date.now() / 1000) + 3600,
    include: null,
    audio: {
      input: {
        format: { type: "audio/pcm", rate: 24000 },
        transcription: null,
        noise_reduction: null,
        turn_detection: vadDefaults({ type: "server_vad" }),
      },
      output: { format: { type: "audio/pcm", rate: 24000 }, voice: "marin", speed: 1 },
    },
  };
}

function normalizeFormat(format: Json): Json {
  return format.type === "audio/pcm" ? { type: "audio/pcm", rate: 24000 } : { type: format.type };
}

/** Field-level merge: top-level keys replace, `audio.input` / `audio.output` merge by key. */
function mergeSession(current: Json, update: Json): Json {
  const next = structuredClone(current);
  for (const [key, value] of Object.entries(update)) {
    if (key !== "audio") {
      next[key] = structuredClone(value);
      continue;
    }
    const audio = next.audio as { input: Json; output: Json };
    const audioUpdate = value as { input?: Json; output?: Json };
    for (const [inputKey, inputValue] of Object.entries(audioUpdate.input ?? {})) {
      if (inputKey === "turn_detection") {
        audio.input.turn_detection = inputValue === null ? null : vadDefaults(inputValue as Json);
      } else if (inputKey === "format") {
        audio.input.format = normalizeFormat(inputValue as Json);
      } else {
        audio.input[inputKey] = structuredClone(inputValue);
      }
    }
    for (const [outputKey, outputValue] of Object.entries(audioUpdate.output ?? {})) {
      audio.output[outputKey] = outputKey === "format"
        ? normalizeFormat(outputValue as Json)
        : structuredClone(outputValue);
    }
  }
  return next;
}

function inputOf(session: Json): Json {
  return (session.audio as { input: Json }).input;
}

function outputOf(session: Json): Json {
  return (session.audio as { output: Json }).output;
}

function formatType(format: unknown): string {
  return (format as { type: string }).type;
}

/** Bytes per ms of a format: pcm is 24 kHz 16-bit, G.711 is 8 kHz 8-bit. */
function bytesPerMs(type: string): number {
  return type === "audio/pcm" ? 48 : 8;
}

function isBetaShapedSession(session: Json): boolean {
  if (BETA_SESSION_KEYS.some((key) => key in session)) return true;
  const audio = session.audio as { input?: Json; output?: Json } | undefined;
  if (audio !== null && typeof audio === "object") {
    if (typeof audio.input?.format === "string" || typeof audio.output?.format === "string") {
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Helpers

const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function newId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(17));
  let id = `${prefix}_`;
  for (const byte of bytes) id += ID_ALPHABET[byte % ID_ALPHABET.length];
  return id;
}

function generateTone(durationMs: number): Uint8Array {
  const samples = new Int16Array(Math.round(durationMs * 8));
  for (let i = 0; i < samples.length; i++) {
    samples[i] = Math.round(TONE_AMPLITUDE * Math.sin((2 * Math.PI * TONE_HZ * i) / 8000));
  }
  return mulawEncode(samples);
}

function splitWords(text: string): string[] {
  return text.length === 0 ? [] : text.match(/\S+\s*/g) ?? [];
}

// ---------------------------------------------------------------------------------------------
// Connection state

interface VadState {
  /** Whether the VAD is inside a speech segment. */
  speaking: boolean;
  /** Consecutive voiced frames while not speaking. */
  voicedRunFrames: number;
  /** Timeline ms where the current voiced run started. */
  runStartMs: number;
  /** Consecutive unvoiced frames while speaking. */
  silenceRunFrames: number;
  /** Item id announced by `speech_started`. */
  itemId: string | null;
  audioStartMs: number;
  /** Samples of an incomplete frame carried to the next append. */
  carry: Int16Array;
  carryLength: number;
  /** Sample rate of `carry`. */
  carryRate: number;
}

interface ConversationEntry {
  item: Json;
  /** Assistant audio items: audio the double sent, in ms. */
  audioMs: number | null;
}

interface ActiveResponse {
  record: ResponseRecord;
  /** Wire `response` object (without final status). */
  outputItems: Json[];
  /** The item being produced, if any. */
  openItem: Json | null;
  /** Whether an audio content part is open on `openItem`. */
  audioPartOpen: boolean;
  transcriptSent: string;
  finished: boolean;
  /** Wakes the runner from a pacing sleep. */
  wake: (() => void) | null;
}

interface Connection {
  index: number;
  record: SessionRecord;
  socket: WebSocket;
  queue: ScenarioEntry[];
  session: Json;
  conversation: Map<string, ConversationEntry>;
  /** Item ids in conversation order. */
  order: string[];
  active: ActiveResponse | null;
  responseCount: number;
  /** Timeline position of the start of the uncommitted input buffer. */
  bufferStartMs: number;
  /** Timeline position of the end of appended audio (float ms). */
  appendedMs: number;
  vad: VadState;
  callIds: Map<string, FunctionCallRecord>;
  tasks: Set<Promise<void>>;
  sleepers: Set<() => void>;
  dropped: boolean;
  anyAssistantAudio: boolean;
  drop: (() => void) | null;
}

interface DoubleContext {
  options:
    & Required<Pick<OpenAIRealtimeDoubleOptions, "chunkMs" | "speedFactor">>
    & OpenAIRealtimeDoubleOptions;
  vad: Required<OpenAIRealtimeVadOptions>;
  notify: () => void;
  convertedAudio: WeakMap<Uint8Array, Map<string, Uint8Array>>;
}

function newVadState(): VadState {
  return {
    speaking: false,
    voicedRunFrames: 0,
    runStartMs: 0,
    silenceRunFrames: 0,
    itemId: null,
    audioStartMs: 0,
    carry: new Int16Array(0),
    carryLength: 0,
    carryRate: 0,
  };
}

function recordable(event: Json): Json {
  if (event.type === "response.output_audio.delta" && typeof event.delta === "string") {
    return { ...event, delta: `<base64 ${event.delta.length} chars>` };
  }
  // A snapshot: items are mutated after they are sent (status, content).
  return structuredClone(event);
}

function send(ctx: DoubleContext, conn: Connection, event: Json): void {
  if (conn.dropped || conn.socket.readyState !== WebSocket.OPEN) return;
  const full = { event_id: newId("event"), ...event };
  conn.socket.send(JSON.stringify(full));
  conn.record.serverEvents.push(recordable(full));
  ctx.notify();
}

function sendError(
  ctx: DoubleContext,
  conn: Connection,
  error: ErrorBody,
  clientEventId: string | null,
): void {
  const body: RecordedError = { ...error, event_id: clientEventId };
  conn.record.errors.push(body);
  send(ctx, conn, { type: "error", error: body });
}

function invalidRequest(code: string, message: string, param: string | null = null): ErrorBody {
  return { type: "invalid_request_error", code, message, param };
}

function closeSocket(ctx: DoubleContext, conn: Connection, code: number, reason: string): void {
  if (
    conn.socket.readyState === WebSocket.OPEN || conn.socket.readyState === WebSocket.CONNECTING
  ) {
    conn.socket.close(code, reason);
  }
  stopAll(conn);
  ctx.notify();
}

function stopAll(conn: Connection): void {
  if (conn.active !== null) conn.active.finished = true;
  for (const wake of conn.sleepers) wake();
  conn.sleepers.clear();
}

function sleep(conn: Connection, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const wake = () => {
      clearTimeout(timer);
      conn.sleepers.delete(wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    conn.sleepers.add(wake);
  });
}

function addConversationItem(conn: Connection, item: Json, audioMs: number | null): string | null {
  const previous = conn.order.length > 0 ? conn.order[conn.order.length - 1] : null;
  conn.conversation.set(item.id as string, { item, audioMs });
  conn.order.push(item.id as string);
  return previous;
}

// ---------------------------------------------------------------------------------------------
// Scenario

function takeCallerTranscript(ctx: DoubleContext, conn: Connection): string {
  const index = conn.queue.findIndex((entry) =>
    typeof entry !== "function" && entry.kind === "caller"
  );
  if (index === -1) return ctx.options.defaultCallerTranscript ?? "";
  const step = conn.queue.splice(index, 1)[0] as CallerStep;
  return step.transcript ?? (step.fixture ? FIXTURE_TRANSCRIPTS[step.fixture] : "");
}

function takeResponseStep(conn: Connection): Exclude<ScenarioStep, CallerStep> | null {
  const index = conn.queue.findIndex((entry) =>
    typeof entry === "function" || entry.kind !== "caller"
  );
  if (index === -1) return null;
  const entry = conn.queue[index];
  if (typeof entry !== "function" && entry.kind === "end") return entry; // sticky: stays queued
  conn.queue.splice(index, 1);
  return typeof entry === "function"
    ? entry(conn.record)
    : (entry as Exclude<ScenarioStep, CallerStep>);
}

function stepAudio(step: AssistantAudioStep): Uint8Array {
  if (step.fixture) return fixtureAudio(step.fixture);
  if (step.audio) return step.audio;
  return generateTone(step.durationMs ?? 1000);
}

const fixtureCache = new Map<FixtureName, Uint8Array>();

function fixtureAudio(name: FixtureName): Uint8Array {
  let bytes = fixtureCache.get(name);
  if (bytes === undefined) {
    bytes = loadFixture(name);
    fixtureCache.set(name, bytes);
  }
  return bytes;
}

/** Assistant audio (8 kHz mu-law) in the session's output format. */
function convertOutput(ctx: DoubleContext, mulaw: Uint8Array, type: string): Uint8Array {
  if (type === "audio/pcmu") return mulaw;
  let byFormat = ctx.convertedAudio.get(mulaw);
  if (byFormat === undefined) {
    byFormat = new Map();
    ctx.convertedAudio.set(mulaw, byFormat);
  }
  let converted = byFormat.get(type);
  if (converted === undefined) {
    const resampler = createResampler(8000, 24000);
    const delay = resampler.delaySamples;
    const input = new Int16Array(mulaw.length + Math.ceil(delay / 3) + 1);
    input.set(mulawDecode(mulaw));
    const upsampled = resampler.process(input).slice(delay, delay + mulaw.length * 3);
    converted = int16ToPcm16le(upsampled);
    byFormat.set(type, converted);
  }
  return converted;
}

// ---------------------------------------------------------------------------------------------
// Responses

function wireResponse(conn: Connection, active: ActiveResponse, status: string): Json {
  const record = active.record;
  const output = outputOf(conn.session);
  const request = record.request ?? {};
  const done = status !== "in_progress";
  let statusDetails: Json | null = null;
  if (status === "cancelled") statusDetails = { type: "cancelled", reason: record.cancelReason };
  if (status === "failed") {
    statusDetails = {
      type: "failed",
      error: { type: "server_error", code: null, message: SERVER_ERROR_MESSAGE },
    };
  }
  return {
    object: "realtime.response",
    id: record.id,
    status,
    status_details: statusDetails,
    output: done ? active.outputItems : [],
    conversation_id: request.conversation === "none" ? null : `conv_${conn.record.index}`,
    output_modalities: request.output_modalities ?? conn.session.output_modalities,
    max_output_tokens: request.max_output_tokens ?? conn.session.max_output_tokens,
    audio: { output: { format: output.format, voice: output.voice } },
    usage: done ? usageFor(conn, record) : null,
    metadata: request.metadata ?? null,
  };
}

/** Token counts are an approximation (audio: 1 token per 50 ms out, per 100 ms in). */
function usageFor(conn: Connection, record: ResponseRecord): Json {
  const outputAudioTokens = Math.ceil(record.audioMsSent / 50);
  const outputTextTokens = Math.ceil(splitWords(record.transcript).length * 1.3);
  const instructions = String(conn.session.instructions ?? "");
  const inputTextTokens = Math.ceil(instructions.length / 4);
  const inputAudioTokens = Math.ceil(conn.appendedMs / 100);
  const inputTokens = inputTextTokens + inputAudioTokens;
  const outputTokens = outputAudioTokens + outputTextTokens;
  return {
    total_tokens: inputTokens + outputTokens,
    input_tokens: inputTokens,
    output_tokens: outputTokens,
    input_token_details: {
      text_tokens: inputTextTokens,
      audio_tokens: inputAudioTokens,
      image_tokens: 0,
      cached_tokens: 0,
      cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 0 },
    },
    output_token_details: { text_tokens: outputTextTokens, audio_tokens: outputAudioTokens },
  };
}

/** Closes whatever is open and sends `response.done`. Synchronous, so callers see it at once. */
function finishResponse(
  ctx: DoubleContext,
  conn: Connection,
  active: ActiveResponse,
  status: "completed" | "cancelled",
  reason: "client_cancelled" | "turn_detected" | null,
): void {
  if (active.finished) return;
  active.finished = true;
  const record = active.record;
  record.status = status;
  record.cancelReason = reason;
  if (status === "cancelled" && reason !== null) {
    conn.record.cancellations.push({
      response_id: record.id,
      reason,
      audioMsSent: record.audioMsSent,
    });
  }
  const item = active.openItem;
  if (item !== null) {
    const common = { response_id: record.id, item_id: item.id, output_index: 0 };
    const transcript = active.transcriptSent;
    if (active.audioPartOpen) {
      send(ctx, conn, { type: "response.output_audio.done", ...common, content_index: 0 });
      send(ctx, conn, {
        type: "response.output_audio_transcript.done",
        ...common,
        content_index: 0,
        transcript,
      });
      send(ctx, conn, {
        type: "response.content_part.done",
        ...common,
        content_index: 0,
        part: { type: "audio", transcript },
      });
      item.content = [{ type: "output_audio", transcript }];
    }
    item.status = status === "completed" ? "completed" : "incomplete";
    send(ctx, conn, {
      type: "response.output_item.done",
      response_id: record.id,
      output_index: 0,
      item,
    });
    send(ctx, conn, { type: "conversation.item.done", item });
    active.outputItems.push(item);
    active.openItem = null;
    active.audioPartOpen = false;
  }
  send(ctx, conn, { type: "response.done", response: wireResponse(conn, active, status) });
  send(ctx, conn, {
    type: "rate_limits.updated",
    rate_limits: [
      { name: "requests", limit: 5000, remaining: 4999, reset_seconds: 0.012 },
      { name: "tokens", limit: 40000, remaining: 39000, reset_seconds: 1.5 },
    ],
  });
  if (conn.active === active) conn.active = null;
  active.wake?.();
}

function cancelActive(
  ctx: DoubleContext,
  conn: Connection,
  reason: "client_cancelled" | "turn_detected",
): void {
  if (conn.active !== null) finishResponse(ctx, conn, conn.active, "cancelled", reason);
}

/** Starts a response. Everything up to the first pacing sleep happens synchronously. */
function startResponse(
  ctx: DoubleContext,
  conn: Connection,
  trigger: ResponseRecord["trigger"],
  request: Json | null,
): void {
  const responseIndex = conn.responseCount++;
  const step = takeResponseStep(conn);
  if (step?.kind === "server_error") {
    sendError(ctx, conn, {
      type: "server_error",
      code: null,
      message: step.message ?? SERVER_ERROR_MESSAGE,
      param: null,
    }, null);
    if (step.close) closeSocket(ctx, conn, 1011, "server_error");
    return;
  }
  const record: ResponseRecord = {
    id: newId("resp"),
    trigger,
    request,
    stepKind: step === null ? "none" : step.kind,
    status: "in_progress",
    cancelReason: null,
    audioItemId: null,
    audioMsSent: 0,
    audioDeltaCount: 0,
    transcript: "",
  };
  conn.record.responses.push(record);
  const active: ActiveResponse = {
    record,
    outputItems: [],
    openItem: null,
    audioPartOpen: false,
    transcriptSent: "",
    finished: false,
    wake: null,
  };
  conn.active = active;
  send(ctx, conn, {
    type: "response.created",
    response: wireResponse(conn, active, "in_progress"),
  });
  if (step === null || step.kind === "end") {
    finishResponse(ctx, conn, active, "completed", null);
    if (step?.kind === "end" && step.close) closeSocket(ctx, conn, 1000, "scenario ended");
    return;
  }
  if (step.kind === "function_call") {
    emitFunctionCall(ctx, conn, active, step);
    return;
  }
  const task = streamAssistantAudio(ctx, conn, active, step, responseIndex).catch((error) => {
    console.error("openai_realtime_double: response failed", error);
  });
  conn.tasks.add(task);
  task.finally(() => conn.tasks.delete(task));
}

function emitFunctionCall(
  ctx: DoubleContext,
  conn: Connection,
  active: ActiveResponse,
  step: FunctionCallStep,
): void {
  const record = active.record;
  const callId = step.callId ?? newId("call");
  const args = JSON.stringify(step.arguments);
  const item: Json = {
    id: newId("item"),
    object: "realtime.item",
    type: "function_call",
    status: "in_progress",
    name: step.name,
    call_id: callId,
    arguments: "",
  };
  const previous = addConversationItem(conn, item, null);
  active.openItem = item;
  send(ctx, conn, {
    type: "response.output_item.added",
    response_id: record.id,
    output_index: 0,
    item,
  });
  send(ctx, conn, { type: "conversation.item.added", previous_item_id: previous, item });
  const half = Math.ceil(args.length / 2);
  for (const delta of [args.slice(0, half), args.slice(half)]) {
    if (delta.length === 0) continue;
    send(ctx, conn, {
      type: "response.function_call_arguments.delta",
      response_id: record.id,
      item_id: item.id,
      output_index: 0,
      call_id: callId,
      delta,
    });
  }
  send(ctx, conn, {
    type: "response.function_call_arguments.done",
    response_id: record.id,
    item_id: item.id,
    output_index: 0,
    call_id: callId,
    name: step.name,
    arguments: args,
  });
  item.arguments = args;
  const call: FunctionCallRecord = {
    call_id: callId,
    name: step.name,
    arguments: args,
    item_id: item.id as string,
    response_id: record.id,
    output: null,
  };
  conn.callIds.set(callId, call);
  conn.record.functionCalls.push(call);
  if (step.then !== undefined) conn.queue.unshift(step.then);
  finishResponse(ctx, conn, active, "completed", null);
}

async function streamAssistantAudio(
  ctx: DoubleContext,
  conn: Connection,
  active: ActiveResponse,
  step: AssistantAudioStep,
  responseIndex: number,
): Promise<void> {
  const record = active.record;
  const transcript = step.transcript ??
    (step.fixture ? FIXTURE_TRANSCRIPTS[step.fixture] : "");
  record.transcript = transcript;
  const modalities =
    (record.request?.output_modalities ?? conn.session.output_modalities) as string[];
  const item: Json = {
    id: newId("item"),
    object: "realtime.item",
    type: "message",
    status: "in_progress",
    role: "assistant",
    content: [],
  };
  const entry: ConversationEntry = { item, audioMs: 0 };
  const previous = conn.order.length > 0 ? conn.order[conn.order.length - 1] : null;
  conn.conversation.set(item.id as string, entry);
  conn.order.push(item.id as string);
  active.openItem = item;
  const common = { response_id: record.id, item_id: item.id, output_index: 0 };
  send(ctx, conn, {
    type: "response.output_item.added",
    response_id: record.id,
    output_index: 0,
    item,
  });
  send(ctx, conn, { type: "conversation.item.added", previous_item_id: previous, item });

  if (!modalities.includes("audio")) {
    // Text-only session: the transcript becomes output text.
    send(ctx, conn, {
      type: "response.content_part.added",
      ...common,
      content_index: 0,
      part: { type: "text", text: "" },
    });
    send(ctx, conn, {
      type: "response.output_text.delta",
      ...common,
      content_index: 0,
      delta: transcript,
    });
    send(ctx, conn, {
      type: "response.output_text.done",
      ...common,
      content_index: 0,
      text: transcript,
    });
    send(ctx, conn, {
      type: "response.content_part.done",
      ...common,
      content_index: 0,
      part: { type: "text", text: transcript },
    });
    item.content = [{ type: "output_text", text: transcript }];
    active.transcriptSent = transcript;
    finishResponse(ctx, conn, active, "completed", null);
    return;
  }

  const requestFormat = (record.request?.audio as { output?: { format?: Json } } | undefined)
    ?.output?.format;
  const format = formatType(requestFormat ?? outputOf(conn.session).format);
  if (format === "audio/pcma") {
    sendError(
      ctx,
      conn,
      invalidRequest("double_unsupported", "The test double cannot produce audio/pcma output"),
      null,
    );
    finishResponse(ctx, conn, active, "completed", null);
    return;
  }
  const audio = convertOutput(ctx, stepAudio(step), format);
  const perMs = bytesPerMs(format);
  const chunkBytes = Math.max(perMs, Math.round(ctx.options.chunkMs * perMs));
  const chunkCount = Math.max(1, Math.ceil(audio.length / chunkBytes));
  const words = splitWords(transcript);
  let wordsSent = 0;
  record.audioItemId = item.id as string;
  active.audioPartOpen = true;
  send(ctx, conn, {
    type: "response.content_part.added",
    ...common,
    content_index: 0,
    part: { type: "audio", transcript: "" },
  });
  const drop = ctx.options.faults?.dropMidResponse;
  const dropHere = drop !== undefined && (drop.connectionIndex ?? 0) === conn.index &&
    (drop.responseIndex ?? 0) === responseIndex;
  const firstDelayMs = responseIndex === 0 ? ctx.options.faults?.firstDeltaDelayMs ?? 0 : 0;
  if (firstDelayMs > 0) {
    await pace(conn, active, firstDelayMs);
    if (active.finished) return;
  }
  const intervalMs = ctx.options.chunkMs / ctx.options.speedFactor;
  for (let chunk = 0; chunk < chunkCount; chunk++) {
    if (active.finished || conn.dropped) return;
    const bytes = audio.subarray(
      chunk * chunkBytes,
      Math.min(audio.length, (chunk + 1) * chunkBytes),
    );
    send(ctx, conn, {
      type: "response.output_audio.delta",
      ...common,
      content_index: 0,
      delta: bytesToBase64(bytes),
    });
    record.audioDeltaCount++;
    entry.audioMs = (entry.audioMs ?? 0) + bytes.length / perMs;
    record.audioMsSent = entry.audioMs;
    conn.anyAssistantAudio = true;
    const wordTarget = Math.round(((chunk + 1) / chunkCount) * words.length);
    if (wordTarget > wordsSent) {
      const delta = words.slice(wordsSent, wordTarget).join("");
      wordsSent = wordTarget;
      active.transcriptSent += delta;
      send(ctx, conn, {
        type: "response.output_audio_transcript.delta",
        ...common,
        content_index: 0,
        delta,
      });
    }
    if (dropHere && record.audioDeltaCount >= drop.afterDeltas) {
      conn.drop?.();
      return;
    }
    await pace(conn, active, intervalMs);
  }
  if (!active.finished && !conn.dropped) finishResponse(ctx, conn, active, "completed", null);
}

/** Sleeps between deltas; a cancellation or close wakes it early. */
async function pace(conn: Connection, active: ActiveResponse, ms: number): Promise<void> {
  const done = sleep(conn, Number.isFinite(ms) ? Math.max(0, ms) : 0);
  active.wake = () => {
    for (const wake of conn.sleepers) wake();
  };
  await done;
  active.wake = null;
}

// ---------------------------------------------------------------------------------------------
// Input audio and VAD

function vadThresholdDbfs(ctx: DoubleContext, threshold: number): number {
  return ctx.vad.floorDbfs + threshold * (ctx.vad.ceilingDbfs - ctx.vad.floorDbfs);
}

/**
 * dBFS threshold the double's VAD uses for a session `threshold`, with the given options
 * (exported so tests can document their margins).
 * @param threshold the session's `turn_detection.threshold`, 0..1
 * @param options floor and ceiling of the mapping
 */
export function vadThresholdToDbfs(
  threshold: number,
  options: OpenAIRealtimeVadOptions = {},
): number {
  const floor = options.floorDbfs ?? -60;
  const ceiling = options.ceilingDbfs ?? -20;
  return floor + threshold * (ceiling - floor);
}

function decodeInput(
  bytes: Uint8Array,
  type: string,
): { samples: Int16Array; rate: number } | null {
  if (type === "audio/pcmu") return { samples: mulawDecode(bytes), rate: 8000 };
  if (type === "audio/pcm") return { samples: pcm16leToInt16(bytes), rate: 24000 };
  return null;
}

function frameDbfs(samples: Int16Array, start: number, length: number): number {
  let energy = 0;
  for (let i = start; i < start + length; i++) energy += samples[i] * samples[i];
  if (energy === 0) return -Infinity;
  return 10 * Math.log10(energy / length / (32768 * 32768));
}

function handleAppendedAudio(ctx: DoubleContext, conn: Connection, bytes: Uint8Array): void {
  const type = formatType(inputOf(conn.session).format);
  const startMs = conn.appendedMs;
  conn.appendedMs += bytes.length / bytesPerMs(type);
  conn.record.appendedAudioMs = conn.appendedMs;
  const turnDetection = inputOf(conn.session).turn_detection as Json | null;
  const decoded = decodeInput(bytes, type);
  if (turnDetection === null || decoded === null) return;
  const vad = conn.vad;
  const frameSamples = (decoded.rate * VAD_FRAME_MS) / 1000;
  if (vad.carryRate !== decoded.rate) {
    vad.carry = new Int16Array(frameSamples);
    vad.carryLength = 0;
    vad.carryRate = decoded.rate;
  }
  // Position (ms) of the first sample of the carried partial frame.
  let frameStartMs = startMs - (vad.carryLength * 1000) / decoded.rate;
  let offset = 0;
  const samples = decoded.samples;
  while (offset < samples.length) {
    const take = Math.min(frameSamples - vad.carryLength, samples.length - offset);
    vad.carry.set(samples.subarray(offset, offset + take), vad.carryLength);
    vad.carryLength += take;
    offset += take;
    if (vad.carryLength < frameSamples) break;
    vad.carryLength = 0;
    const dbfs = frameDbfs(vad.carry, 0, frameSamples);
    processVadFrame(ctx, conn, turnDetection, dbfs, frameStartMs);
    frameStartMs += VAD_FRAME_MS;
    if (conn.dropped || conn.socket.readyState !== WebSocket.OPEN) return;
  }
}

function processVadFrame(
  ctx: DoubleContext,
  conn: Connection,
  turnDetection: Json,
  dbfs: number,
  frameStartMs: number,
): void {
  const vad = conn.vad;
  const semantic = turnDetection.type === "semantic_vad";
  const threshold = semantic ? DEFAULT_THRESHOLD : Number(turnDetection.threshold);
  const voiced = dbfs > vadThresholdDbfs(ctx, threshold);
  const frameEndMs = frameStartMs + VAD_FRAME_MS;
  if (!vad.speaking) {
    if (!voiced) {
      vad.voicedRunFrames = 0;
      return;
    }
    if (vad.voicedRunFrames === 0) vad.runStartMs = frameStartMs;
    vad.voicedRunFrames++;
    if (vad.voicedRunFrames * VAD_FRAME_MS < ctx.vad.minSpeechMs) return;
    const prefixMs = semantic ? DEFAULT_PREFIX_PADDING_MS : Number(turnDetection.prefix_padding_ms);
    vad.speaking = true;
    vad.silenceRunFrames = 0;
    vad.itemId = newId("item");
    vad.audioStartMs = Math.round(Math.max(conn.bufferStartMs, vad.runStartMs - prefixMs));
    send(ctx, conn, {
      type: "input_audio_buffer.speech_started",
      audio_start_ms: vad.audioStartMs,
      item_id: vad.itemId,
    });
    if (turnDetection.interrupt_response !== false) cancelActive(ctx, conn, "turn_detected");
    return;
  }
  if (voiced) {
    vad.silenceRunFrames = 0;
    return;
  }
  vad.silenceRunFrames++;
  const silenceMs = semantic
    ? SEMANTIC_SILENCE_MS[(turnDetection.eagerness ?? "auto") as keyof typeof SEMANTIC_SILENCE_MS]
    : Number(turnDetection.silence_duration_ms);
  if (vad.silenceRunFrames * VAD_FRAME_MS < silenceMs) return;
  const itemId = vad.itemId ?? newId("item");
  const audioEndMs = Math.round(frameEndMs);
  send(ctx, conn, {
    type: "input_audio_buffer.speech_stopped",
    audio_end_ms: audioEndMs,
    item_id: itemId,
  });
  commitUserAudio(ctx, conn, itemId, vad.audioStartMs, audioEndMs, "server_vad");
  if (turnDetection.create_response !== false && conn.active === null) {
    startResponse(ctx, conn, "vad", null);
  }
}

/** Forgets the current turn; keeps the partial frame (it is audio already in the timeline). */
function resetVad(conn: Connection): void {
  // Mutated in place: `handleAppendedAudio` holds a reference while it walks the frames.
  const vad = conn.vad;
  vad.speaking = false;
  vad.voicedRunFrames = 0;
  vad.runStartMs = 0;
  vad.silenceRunFrames = 0;
  vad.itemId = null;
  vad.audioStartMs = 0;
}

function commitUserAudio(
  ctx: DoubleContext,
  conn: Connection,
  itemId: string,
  audioStartMs: number,
  audioEndMs: number,
  committedBy: UserTurnRecord["committedBy"],
): void {
  resetVad(conn);
  conn.bufferStartMs = audioEndMs;
  const previous = conn.order.length > 0 ? conn.order[conn.order.length - 1] : null;
  send(ctx, conn, {
    type: "input_audio_buffer.committed",
    previous_item_id: previous,
    item_id: itemId,
  });
  const item: Json = {
    id: itemId,
    object: "realtime.item",
    type: "message",
    status: "completed",
    role: "user",
    content: [{ type: "input_audio", transcript: null }],
  };
  addConversationItem(conn, item, null);
  send(ctx, conn, { type: "conversation.item.added", previous_item_id: previous, item });
  send(ctx, conn, { type: "conversation.item.done", previous_item_id: previous, item });
  const transcript = takeCallerTranscript(ctx, conn);
  conn.record.userTurns.push({
    item_id: itemId,
    audio_start_ms: audioStartMs,
    audio_end_ms: audioEndMs,
    transcript,
    committedBy,
  });
  const transcription = inputOf(conn.session).transcription as Json | null;
  if (transcription !== null && transcription !== undefined) {
    item.content = [{ type: "input_audio", transcript }];
    send(ctx, conn, {
      type: "conversation.item.input_audio_transcription.completed",
      item_id: itemId,
      content_index: 0,
      transcript,
      usage: { type: "duration", seconds: Math.max(0, (audioEndMs - audioStartMs) / 1000) },
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Client events

function handleClientMessage(ctx: DoubleContext, conn: Connection, data: unknown): void {
  if (typeof data !== "string") {
    conn.record.clientEvents.push({ type: "<binary>" });
    sendError(
      ctx,
      conn,
      invalidRequest("invalid_json", "Expected a text frame holding JSON"),
      null,
    );
    return;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    conn.record.clientEvents.push({ type: "<invalid json>", raw: data.slice(0, 200) });
    sendError(
      ctx,
      conn,
      invalidRequest("invalid_json", "We could not parse the JSON body of your request."),
      null,
    );
    return;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    conn.record.clientEvents.push({ type: "<invalid json>", raw: data.slice(0, 200) });
    sendError(
      ctx,
      conn,
      invalidRequest("invalid_type", "Invalid type for event: expected an object.", null),
      null,
    );
    return;
  }
  const event = parsed as Json;
  const clientEventId = typeof event.event_id === "string" ? event.event_id : null;
  if (event.type === "input_audio_buffer.append" && typeof event.audio === "string") {
    conn.record.clientEvents.push({ ...event, audio: `<base64 ${event.audio.length} chars>` });
  } else {
    conn.record.clientEvents.push(event);
  }
  ctx.notify();
  const type = event.type;
  if (type === undefined) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "missing_required_parameter",
        "Missing required parameter: 'type'.",
        "type",
      ),
      clientEventId,
    );
    return;
  }
  if (typeof type !== "string" || !(type in CLIENT_EVENT_SCHEMAS)) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "invalid_value",
        `Invalid value: '${String(type)}'. Supported values are: ${
          SUPPORTED_CLIENT_EVENT_TYPES.map((name) => `'${name}'`).join(", ")
        }.`,
        "type",
      ),
      clientEventId,
    );
    return;
  }
  const known = type as keyof typeof CLIENT_EVENT_SCHEMAS;
  if (known === "session.update" && isSessionObject(event.session)) {
    // The beta shape is refused before anything else, and ends the connection.
    if (isBetaShapedSession(event.session)) {
      rejectBetaShape(ctx, conn, clientEventId);
      return;
    }
  }
  const checked = validate(CLIENT_EVENT_SCHEMAS[known], event);
  if (!checked.success) {
    sendError(ctx, conn, checked.error, clientEventId);
    return;
  }
  switch (known) {
    case "session.update":
      return onSessionUpdate(ctx, conn, event.session as Json, clientEventId);
    case "input_audio_buffer.append":
      return onAppend(ctx, conn, event.audio as string, clientEventId);
    case "input_audio_buffer.commit":
      return onCommit(ctx, conn, clientEventId);
    case "input_audio_buffer.clear":
      resetVad(conn);
      conn.vad.carryLength = 0;
      conn.bufferStartMs = conn.appendedMs;
      send(ctx, conn, { type: "input_audio_buffer.cleared" });
      return;
    case "conversation.item.create":
      return onItemCreate(ctx, conn, event, clientEventId);
    case "conversation.item.truncate":
      return onTruncate(ctx, conn, event, clientEventId);
    case "conversation.item.delete":
      return onItemDelete(ctx, conn, event.item_id as string, clientEventId);
    case "conversation.item.retrieve": {
      const entry = conn.conversation.get(event.item_id as string);
      if (entry === undefined) {
        return itemNotFound(ctx, conn, event.item_id as string, clientEventId);
      }
      send(ctx, conn, { type: "conversation.item.retrieved", item: entry.item });
      return;
    }
    case "response.create":
      return onResponseCreate(
        ctx,
        conn,
        (event.response as Json | undefined) ?? null,
        clientEventId,
      );
    case "response.cancel":
      return onResponseCancel(ctx, conn, event.response_id as string | undefined, clientEventId);
    case "output_audio_buffer.clear":
      sendError(
        ctx,
        conn,
        invalidRequest(
          "invalid_value",
          "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
          "type",
        ),
        clientEventId,
      );
      return;
  }
}

function isSessionObject(value: unknown): value is Json {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function rejectBetaShape(ctx: DoubleContext, conn: Connection, clientEventId: string | null): void {
  sendError(
    ctx,
    conn,
    invalidRequest(
      "beta_api_shape_disabled",
      "The Realtime API beta shape is no longer supported. Use the GA session shape " +
        "(session.type 'realtime', audio.input / audio.output, format objects) and do not " +
        "send the 'OpenAI-Beta: realtime=v1' header.",
    ),
    clientEventId,
  );
  closeSocket(ctx, conn, BETA_SHAPE_CLOSE_CODE, "beta_api_shape_disabled");
}

function onSessionUpdate(
  ctx: DoubleContext,
  conn: Connection,
  update: Json,
  clientEventId: string | null,
): void {
  const checked = validate(sessionSchema, update, "session");
  if (!checked.success) {
    sendError(ctx, conn, checked.error, clientEventId);
    return;
  }
  if (
    update.model !== undefined && !(ctx.options.allowedModels ?? DEFAULT_ALLOWED_MODELS).includes(
      update.model as string,
    )
  ) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "invalid_value",
        `Invalid value: '${String(update.model)}'. Supported values are: ${
          (ctx.options.allowedModels ?? DEFAULT_ALLOWED_MODELS).map((m) => `'${m}'`).join(", ")
        }.`,
        "session.model",
      ),
      clientEventId,
    );
    return;
  }
  const newVoice = (update.audio as { output?: Json } | undefined)?.output?.voice;
  if (
    newVoice !== undefined && conn.anyAssistantAudio &&
    JSON.stringify(newVoice) !== JSON.stringify(outputOf(conn.session).voice)
  ) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "cannot_update_voice",
        "Cannot update a conversation's voice if assistant audio is present.",
        "session.audio.output.voice",
      ),
      clientEventId,
    );
    return;
  }
  const previousInput = formatType(inputOf(conn.session).format);
  conn.session = mergeSession(conn.session, update);
  if (formatType(inputOf(conn.session).format) !== previousInput) {
    conn.vad.carryLength = 0;
    conn.vad.carryRate = 0;
  }
  conn.record.session = conn.session;
  conn.record.sessionUpdates.push(structuredClone(update));
  send(ctx, conn, { type: "session.updated", session: conn.session });
}

function onAppend(
  ctx: DoubleContext,
  conn: Connection,
  audio: string,
  clientEventId: string | null,
) {
  const bytes = isStrictBase64(audio) ? base64ToBytes(audio) : null;
  if (bytes === null) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "invalid_value",
        "Invalid 'audio'. Expected base64-encoded audio bytes.",
        "audio",
      ),
      clientEventId,
    );
    return;
  }
  const copy = bytes.slice();
  if (ctx.options.keepAppendedAudio !== false) conn.record.appendedAudio.push(copy);
  conn.record.appendedAtMs.push(performance.now());
  conn.record.appendedBytes.push(copy.length);
  conn.record.appendedAudioBytes += copy.length;
  handleAppendedAudio(ctx, conn, copy);
  ctx.notify();
}

function onCommit(ctx: DoubleContext, conn: Connection, clientEventId: string | null): void {
  const bufferedMs = conn.appendedMs - conn.bufferStartMs;
  if (bufferedMs < MIN_COMMIT_MS) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "input_audio_buffer_commit_empty",
        `Error committing input audio buffer: buffer too small. Expected at least ${MIN_COMMIT_MS}ms ` +
          `of audio, but buffer only has ${bufferedMs.toFixed(2)}ms of audio.`,
      ),
      clientEventId,
    );
    return;
  }
  const itemId = conn.vad.itemId ?? newId("item");
  commitUserAudio(
    ctx,
    conn,
    itemId,
    Math.round(conn.bufferStartMs),
    Math.round(conn.appendedMs),
    "client",
  );
  conn.vad.carryLength = 0;
}

function itemNotFound(
  ctx: DoubleContext,
  conn: Connection,
  itemId: string,
  clientEventId: string | null,
): void {
  sendError(
    ctx,
    conn,
    invalidRequest(
      "item_not_found",
      `Item with item_id '${itemId}' not found.`,
      "item_id",
    ),
    clientEventId,
  );
}

function onItemCreate(
  ctx: DoubleContext,
  conn: Connection,
  event: Json,
  clientEventId: string | null,
): void {
  const item = event.item as Json;
  let checked: { success: true; data: unknown } | { success: false; error: ErrorBody };
  if (item.type === "message") {
    const schema: z.ZodType | null = item.role === "user"
      ? userMessageSchema
      : item.role === "system"
      ? systemMessageSchema
      : item.role === "assistant"
      ? assistantMessageSchema
      : null;
    checked = schema === null
      ? {
        success: false,
        error: item.role === undefined
          ? invalidRequest(
            "missing_required_parameter",
            "Missing required parameter: 'item.role'.",
            "item.role",
          )
          : invalidRequest(
            "invalid_value",
            `Invalid value: '${String(item.role)}'. Supported values are: 'user', 'assistant', ` +
              "'system'.",
            "item.role",
          ),
      }
      : validate(schema, item, "item");
  } else if (item.type === "function_call") {
    checked = validate(functionCallItemSchema, item, "item");
  } else if (item.type === "function_call_output") {
    checked = validate(functionCallOutputItemSchema, item, "item");
  } else {
    checked = {
      success: false,
      error: item.type === undefined
        ? invalidRequest(
          "missing_required_parameter",
          "Missing required parameter: 'item.type'.",
          "item.type",
        )
        : invalidRequest(
          "invalid_value",
          `Invalid value: '${String(item.type)}'. Supported values are: 'message', ` +
            "'function_call', 'function_call_output'.",
          "item.type",
        ),
    };
  }
  if (!checked.success) {
    sendError(ctx, conn, checked.error, clientEventId);
    return;
  }
  const previousItemId = event.previous_item_id as string | null | undefined;
  if (
    typeof previousItemId === "string" && previousItemId !== "root" &&
    !conn.conversation.has(previousItemId)
  ) {
    itemNotFound(ctx, conn, previousItemId, clientEventId);
    return;
  }
  if (typeof item.id === "string" && conn.conversation.has(item.id)) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "item_already_exists",
        `Item with id '${item.id}' already exists.`,
        "item.id",
      ),
      clientEventId,
    );
    return;
  }
  if (item.type === "function_call_output") {
    const call = conn.callIds.get(item.call_id as string);
    if (call === undefined) {
      sendError(
        ctx,
        conn,
        invalidRequest(
          "invalid_tool_call_id",
          `Tool call ID '${String(item.call_id)}' not found in conversation.`,
          "item.call_id",
        ),
        clientEventId,
      );
      return;
    }
    call.output = item.output as string;
  }
  if (item.type === "function_call" && typeof item.call_id === "string") {
    const call: FunctionCallRecord = {
      call_id: item.call_id,
      name: item.name as string,
      arguments: item.arguments as string,
      item_id: "",
      response_id: "",
      output: null,
    };
    conn.callIds.set(item.call_id, call);
  }
  const stored: Json = {
    ...structuredClone(item),
    id: typeof item.id === "string" ? item.id : newId("item"),
    object: "realtime.item",
    status: "completed",
  };
  const previous = addConversationItem(conn, stored, null);
  send(ctx, conn, { type: "conversation.item.added", previous_item_id: previous, item: stored });
  send(ctx, conn, { type: "conversation.item.done", previous_item_id: previous, item: stored });
}

function onTruncate(
  ctx: DoubleContext,
  conn: Connection,
  event: Json,
  clientEventId: string | null,
) {
  const itemId = event.item_id as string;
  const audioEndMs = event.audio_end_ms as number;
  const contentIndex = event.content_index as number;
  const entry = conn.conversation.get(itemId);
  if (entry === undefined) return itemNotFound(ctx, conn, itemId, clientEventId);
  const isAssistantAudio = entry.item.type === "message" && entry.item.role === "assistant" &&
    entry.audioMs !== null && entry.audioMs > 0;
  if (!isAssistantAudio) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "unsupported_content_type",
        "Only model output audio messages can be truncated",
        "item_id",
      ),
      clientEventId,
    );
    return;
  }
  if (contentIndex !== 0) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "invalid_value",
        `Invalid 'content_index': the item has no content part ${contentIndex}.`,
        "content_index",
      ),
      clientEventId,
    );
    return;
  }
  const itemAudioMs = entry.audioMs as number;
  if (audioEndMs > itemAudioMs) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "invalid_value",
        `Audio content of ${Math.floor(itemAudioMs)}ms is already shorter than ${audioEndMs}ms`,
        "audio_end_ms",
      ),
      clientEventId,
    );
    return;
  }
  conn.record.truncations.push({
    item_id: itemId,
    content_index: contentIndex,
    audio_end_ms: audioEndMs,
    itemAudioMs,
  });
  entry.audioMs = audioEndMs;
  send(ctx, conn, {
    type: "conversation.item.truncated",
    item_id: itemId,
    content_index: contentIndex,
    audio_end_ms: audioEndMs,
  });
}

function onItemDelete(
  ctx: DoubleContext,
  conn: Connection,
  itemId: string,
  clientEventId: string | null,
) {
  if (!conn.conversation.has(itemId)) return itemNotFound(ctx, conn, itemId, clientEventId);
  conn.conversation.delete(itemId);
  conn.order.splice(conn.order.indexOf(itemId), 1);
  send(ctx, conn, { type: "conversation.item.deleted", item_id: itemId });
}

function onResponseCreate(
  ctx: DoubleContext,
  conn: Connection,
  request: Json | null,
  clientEventId: string | null,
): void {
  if (conn.active !== null) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "conversation_already_has_active_response",
        `Conversation already has an active response in progress: ${conn.active.record.id}. ` +
          "Wait until the response is finished before creating a new one.",
      ),
      clientEventId,
    );
    return;
  }
  startResponse(ctx, conn, "response.create", request);
}

function onResponseCancel(
  ctx: DoubleContext,
  conn: Connection,
  responseId: string | undefined,
  clientEventId: string | null,
): void {
  if (conn.active === null || (responseId !== undefined && responseId !== conn.active.record.id)) {
    sendError(
      ctx,
      conn,
      invalidRequest(
        "response_cancel_not_active",
        "Cancellation failed: no active response found",
      ),
      clientEventId,
    );
    return;
  }
  cancelActive(ctx, conn, "client_cancelled");
}

// ---------------------------------------------------------------------------------------------
// Server

function jsonError(status: number, code: string, message: string, param: string | null = null) {
  return Response.json(
    { error: { message, type: "invalid_request_error", code, param } },
    { status },
  );
}

interface ProxyPair {
  client: Deno.TcpConn;
  upstream: Deno.TcpConn;
  closed: boolean;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const read = await from.read(buffer);
      if (read === null) break;
      let written = 0;
      while (written < read) written += await to.write(buffer.subarray(written, read));
    }
  } catch {
    // The other side went away, or `drop` closed both ends on purpose.
  }
}

/**
 * Starts the double on 127.0.0.1 (random port). See the module doc for what it checks, and
 * `OpenAIRealtimeDoubleOptions` for the script and fault injection.
 * @param options script, pacing, VAD and faults
 */
export function startOpenAIRealtimeDouble(
  options: OpenAIRealtimeDoubleOptions = {},
): Promise<OpenAIRealtimeDouble> {
  const apiKey = options.apiKey ?? DEFAULT_DOUBLE_API_KEY;
  const allowedModels = options.allowedModels ?? DEFAULT_ALLOWED_MODELS;
  const sessions: SessionRecord[] = [];
  const connections: Connection[] = [];
  const waiters = new Set<() => void>();
  let attempts = 0;
  const ctx: DoubleContext = {
    options: { chunkMs: 100, speedFactor: 4, ...options },
    vad: { floorDbfs: -60, ceilingDbfs: -20, minSpeechMs: 60, ...options.vad },
    notify: () => {
      for (const waiter of [...waiters]) waiter();
    },
    convertedAudio: new WeakMap(),
  };
  if (!(ctx.options.chunkMs > 0)) throw new RangeError("Cannot start double: chunkMs must be > 0");
  if (!(ctx.options.speedFactor > 0)) {
    throw new RangeError("Cannot start double: speedFactor must be > 0");
  }

  const useProxy = options.faults?.dropMidResponse !== undefined;
  const pairsByUpstreamPort = new Map<number, ProxyPair>();
  const proxyTasks = new Set<Promise<void>>();
  const pendingDrops = new Set<Promise<void>>();

  const handler = (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response => {
    const url = new URL(request.url);
    // Everything about the request must be read before the upgrade consumes it.
    const remotePort = info.remoteAddr.port;
    if (url.pathname !== REALTIME_PATH) return jsonError(404, "not_found", "Not found");
    const connectionIndex = attempts++;
    ctx.notify();
    const refuse = options.faults?.refuse;
    const refuseThis = refuse !== undefined && connectionIndex < (refuse.count ?? Infinity);
    if (refuseThis && refuse.mode === "http_503") {
      return Response.json(
        { error: { message: "Service unavailable", type: "server_error", code: null } },
        { status: 503 },
      );
    }
    const offered = (request.headers.get("sec-websocket-protocol") ?? "")
      .split(",").map((part) => part.trim()).filter((part) => part.length > 0);
    const keyProtocol = offered.find((part) => part.startsWith(SUBPROTOCOL_KEY_PREFIX));
    const authorization = request.headers.get("authorization");
    let auth: SessionRecord["auth"];
    if (authorization !== null) {
      if (authorization !== `Bearer ${apiKey}`) {
        return jsonError(401, "invalid_api_key", "Incorrect API key provided.");
      }
      auth = "header";
    } else if (keyProtocol !== undefined) {
      if (
        keyProtocol.slice(SUBPROTOCOL_KEY_PREFIX.length) !== apiKey ||
        !offered.includes(SUBPROTOCOL_REALTIME)
      ) {
        return jsonError(401, "invalid_api_key", "Incorrect API key provided.");
      }
      auth = "subprotocol";
    } else {
      return jsonError(
        401,
        "missing_api_key",
        "You didn't provide an API key. Provide it in the Authorization header (Bearer auth).",
      );
    }
    const model = url.searchParams.get("model");
    if (model === null || model === "") {
      return jsonError(
        400,
        "missing_required_parameter",
        "Missing required parameter: 'model'.",
        "model",
      );
    }
    if (!allowedModels.includes(model)) {
      return jsonError(
        404,
        "model_not_found",
        `The model '${model}' does not exist or you do not have access to it.`,
        "model",
      );
    }
    if ((request.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
      return jsonError(400, "invalid_request", "Expected a WebSocket upgrade request");
    }
    const betaHeader = (request.headers.get("openai-beta") ?? "").includes("realtime=v1");
    const { socket, response } = Deno.upgradeWebSocket(request, {
      idleTimeout: 0,
      ...(offered.includes(SUBPROTOCOL_REALTIME) ? { protocol: SUBPROTOCOL_REALTIME } : {}),
    });
    const scenario = typeof options.scenario === "function"
      ? options.scenario(connectionIndex)
      : options.scenario ?? [];
    const session = defaultSession(model);
    const record: SessionRecord = {
      index: sessions.length,
      model,
      auth,
      betaHeader,
      refused: refuseThis,
      clientEvents: [],
      serverEvents: [],
      errors: [],
      session,
      sessionUpdates: [],
      appendedAudio: [],
      appendedAtMs: [],
      appendedBytes: [],
      appendedAudioBytes: 0,
      appendedAudioMs: 0,
      userTurns: [],
      responses: [],
      functionCalls: [],
      truncations: [],
      cancellations: [],
      closed: false,
      closeCode: null,
      closeReason: null,
    };
    const conn: Connection = {
      index: record.index,
      record,
      socket,
      queue: [...scenario],
      session,
      conversation: new Map(),
      order: [],
      active: null,
      responseCount: 0,
      bufferStartMs: 0,
      appendedMs: 0,
      vad: newVadState(),
      callIds: new Map(),
      tasks: new Set(),
      sleepers: new Set(),
      dropped: false,
      anyAssistantAudio: false,
      drop: null,
    };
    const pair = pairsByUpstreamPort.get(remotePort);
    if (pair !== undefined) {
      conn.drop = () => {
        if (conn.dropped) return;
        conn.dropped = true;
        stopAll(conn);
        // Let what was already written reach the client first: the fault is "N deltas, then
        // silence and a dead socket", not "fewer than N deltas".
        const task = new Promise<void>((resolve) => {
          setTimeout(() => {
            pair.closed = true;
            closeQuietly(pair.client);
            closeQuietly(pair.upstream);
            ctx.notify();
            resolve();
          }, DROP_FLUSH_MS);
        });
        pendingDrops.add(task);
      };
    }
    sessions.push(record);
    connections.push(conn);
    socket.onopen = () => {
      if (refuseThis) {
        closeSocket(ctx, conn, 1011, "refused by fault injection");
        return;
      }
      send(ctx, conn, { type: "session.created", session: conn.session });
      if (betaHeader) rejectBetaShape(ctx, conn, null);
    };
    socket.onmessage = (message) => {
      if (conn.dropped || record.closed) return;
      handleClientMessage(ctx, conn, message.data);
    };
    socket.onclose = (close) => {
      record.closed = true;
      record.closeCode = close.code;
      record.closeReason = close.reason;
      stopAll(conn);
      ctx.notify();
    };
    socket.onerror = () => {
      // A close event follows; nothing to record twice.
    };
    ctx.notify();
    return response;
  };

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
  }, handler as (request: Request, info: Deno.ServeHandlerInfo) => Response);
  const innerPort = server.addr.port;

  let listener: Deno.TcpListener | null = null;
  let acceptTask: Promise<void> | null = null;
  if (useProxy) {
    listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const proxyListener = listener;
    acceptTask = (async () => {
      try {
        for await (const client of proxyListener) {
          const task = (async () => {
            let upstream: Deno.TcpConn;
            try {
              upstream = await Deno.connect({ hostname: "127.0.0.1", port: innerPort });
            } catch {
              closeQuietly(client);
              return;
            }
            const pair: ProxyPair = { client, upstream, closed: false };
            const upstreamPort = (upstream.localAddr as Deno.NetAddr).port;
            pairsByUpstreamPort.set(upstreamPort, pair);
            await Promise.all([pump(client, upstream), pump(upstream, client)]);
            pairsByUpstreamPort.delete(upstreamPort);
            closeQuietly(client);
            closeQuietly(upstream);
          })();
          proxyTasks.add(task);
          task.finally(() => proxyTasks.delete(task));
        }
      } catch {
        // Listener closed.
      }
    })();
  }
  const port = listener !== null ? (listener.addr as Deno.NetAddr).port : innerPort;

  const waitFor = <T>(
    predicate: () => T | undefined | null | false,
    timeoutMs = 5000,
    what = "condition",
  ): Promise<T> => {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        let value: T | undefined | null | false;
        try {
          value = predicate();
        } catch (error) {
          finish();
          reject(error);
          return;
        }
        if (value) {
          finish();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  };

  return Promise.resolve({
    url: `ws://127.0.0.1:${port}${REALTIME_PATH}`,
    port,
    apiKey,
    sessions,
    connectionAttempts: () => attempts,
    waitFor,
    waitForSession: (index = 0, timeoutMs = 5000) =>
      waitFor(() => sessions[index], timeoutMs, `session ${index}`),
    waitForServerEvent: (type, waitOptions = {}) => {
      const sessionIndex = waitOptions.sessionIndex ?? 0;
      const fromCount = waitOptions.fromCount ?? 0;
      return waitFor(
        () => sessions[sessionIndex]?.serverEvents.slice(fromCount).find((e) => e.type === type),
        waitOptions.timeoutMs ?? 5000,
        `server event ${type} on session ${sessionIndex}`,
      );
    },
    dropConnection: (index) => {
      const conn = connections[index];
      if (conn?.drop === null || conn === undefined) {
        throw new Error("Cannot drop connection: start the double with faults.dropMidResponse");
      }
      conn.drop();
    },
    close: async () => {
      for (const conn of connections) {
        stopAll(conn);
        if (
          conn.socket.readyState === WebSocket.OPEN ||
          conn.socket.readyState === WebSocket.CONNECTING
        ) {
          conn.socket.close(1001, "double closing");
        }
      }
      await Promise.all(connections.flatMap((conn) => [...conn.tasks]));
      // Give clients a moment to answer the close frames, so the server can shut down cleanly.
      await waitFor(() => connections.every((conn) => conn.record.closed), 1000, "sockets to close")
        .catch(() => {});
      await Promise.all([...pendingDrops]);
      listener?.close();
      await acceptTask;
      for (const pair of pairsByUpstreamPort.values()) {
        closeQuietly(pair.client);
        closeQuietly(pair.upstream);
      }
      await Promise.all([...proxyTasks]);
      await server.shutdown();
    },
  });
}
