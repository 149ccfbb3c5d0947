/**
 * Speaks the OpenAI Realtime API (GA shape only) over its WebSocket: builds the client events the
 * bridge sends and validates the server events it reads.
 *
 * The beta shape (`OpenAI-Beta: realtime=v1`, `input_audio_format`, top-level `voice` or
 * `turn_detection`, `g711_ulaw`) is shut down server-side, so nothing here can emit it. Builders
 * are typed against the `openai` package's event types, and the parsed server events are checked
 * against them (openai_realtime_types_check.ts), so a drift fails `deno check`. Type-only imports:
 * no run-time cost. Parsers never throw.
 *
 * @module
 */
import { z } from "zod";
import type {
  ConversationItemCreateEvent,
  ConversationItemTruncateEvent,
  InputAudioBufferAppendEvent,
  RealtimeAudioFormats,
  RealtimeClientEvent,
  RealtimeConversationItemAssistantMessage,
  RealtimeConversationItemFunctionCall,
  RealtimeConversationItemFunctionCallOutput,
  RealtimeConversationItemUserMessage,
  RealtimeFunctionTool,
  RealtimeSessionCreateRequest,
  ResponseCancelEvent,
  ResponseCreateEvent,
  SessionUpdateEvent,
} from "openai/resources/realtime/realtime";
import type { AssertConforms, ServerEventsConform } from "./openai_realtime_types_check.ts";
import { describeIssues, isBase64, quoteForMessage } from "./twilio_media.ts";

// ---------------------------------------------------------------------------------------------
// Client events (what we send)
// ---------------------------------------------------------------------------------------------

/** Audio formats the bridge uses: G.711 mu-law at 8 kHz, or 16-bit PCM at 24 kHz. */
export type OpenAIAudioFormatName = "audio/pcmu" | "audio/pcm";

/** The sample rate OpenAI requires for `audio/pcm`. */
export const OPENAI_PCM_RATE_HZ = 24000;

/** Server VAD settings; every field has a default. */
export interface OpenAIServerVadOptions {
  /** Activation threshold, 0.0 to 1.0. Defaults to 0.5 (OpenAI's default). */
  readonly threshold?: number;
  /** Audio kept before detected speech. Defaults to 300 ms. */
  readonly prefixPaddingMs?: number;
  /** Silence that ends a turn. Defaults to 500 ms. */
  readonly silenceDurationMs?: number;
  /** Respond automatically when the caller stops. Defaults to `true`. */
  readonly createResponse?: boolean;
  /** Cancel the running response when the caller starts speaking. Defaults to `true`. */
  readonly interruptResponse?: boolean;
  /** Trigger a response after this much caller silence. Defaults to unset (no idle timeout). */
  readonly idleTimeoutMs?: number;
}

/** A function the model may call. */
export interface OpenAIFunctionToolSpec {
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments object. */
  readonly parameters: Record<string, unknown>;
}

/** What {@link sessionUpdateEvent} needs to configure a GA realtime session. */
export interface OpenAISessionOptions {
  readonly model: string;
  readonly instructions: string;
  readonly voice: string;
  /** Format of `input_audio_buffer.append` audio. Defaults to `audio/pcmu` (Twilio's format). */
  readonly inputAudioFormat?: OpenAIAudioFormatName;
  /** Format of `response.output_audio.delta` audio. Defaults to `audio/pcmu`. */
  readonly outputAudioFormat?: OpenAIAudioFormatName;
  /** Model transcribing the caller (e.g. `gpt-4o-mini-transcribe`). Omit to leave transcription off. */
  readonly transcriptionModel?: string;
  /** Server VAD settings. Defaults to the defaults of {@link OpenAIServerVadOptions}. */
  readonly turnDetection?: OpenAIServerVadOptions;
  /** Input noise reduction. Omit to leave the server's setting; `null` turns it off. */
  readonly noiseReduction?: "near_field" | "far_field" | null;
  /** Functions the model may call. Defaults to none. */
  readonly tools?: readonly OpenAIFunctionToolSpec[];
}

/** Default server VAD activation threshold (OpenAI's documented default). */
export const DEFAULT_VAD_THRESHOLD = 0.5;
/** Default audio kept before detected speech (OpenAI's documented default). */
export const DEFAULT_VAD_PREFIX_PADDING_MS = 300;
/** Default silence that ends a caller turn (OpenAI's documented default). */
export const DEFAULT_VAD_SILENCE_DURATION_MS = 500;

/** A GA `session.update` whose session is a realtime (not transcription) session. */
export type OpenAISessionUpdateEvent = SessionUpdateEvent & {
  session: RealtimeSessionCreateRequest;
};

function audioFormat(name: OpenAIAudioFormatName): RealtimeAudioFormats {
  return name === "audio/pcm" ? { type: "audio/pcm", rate: OPENAI_PCM_RATE_HZ } : {
    type: "audio/pcmu",
  };
}

/**
 * Builds a GA `session.update` event object (session type `realtime`, audio only, server VAD).
 * @param options model, instructions, voice, formats, VAD and tools
 */
export function sessionUpdateEvent(options: OpenAISessionOptions): OpenAISessionUpdateEvent {
  const vad = options.turnDetection ?? {};
  const turnDetection: NonNullable<
    NonNullable<NonNullable<RealtimeSessionCreateRequest["audio"]>["input"]>["turn_detection"]
  > = {
    type: "server_vad",
    threshold: vad.threshold ?? DEFAULT_VAD_THRESHOLD,
    prefix_padding_ms: vad.prefixPaddingMs ?? DEFAULT_VAD_PREFIX_PADDING_MS,
    silence_duration_ms: vad.silenceDurationMs ?? DEFAULT_VAD_SILENCE_DURATION_MS,
    create_response: vad.createResponse ?? true,
    interrupt_response: vad.interruptResponse ?? true,
    ...(vad.idleTimeoutMs === undefined ? {} : { idle_timeout_ms: vad.idleTimeoutMs }),
  };
  const input: NonNullable<NonNullable<RealtimeSessionCreateRequest["audio"]>["input"]> = {
    format: audioFormat(options.inputAudioFormat ?? "audio/pcmu"),
    turn_detection: turnDetection,
  };
  if (options.transcriptionModel !== undefined) {
    input.transcription = { model: options.transcriptionModel };
  }
  if (options.noiseReduction !== undefined) {
    // The SDK types the field as an object, but OpenAI documents `null` as "off".
    input.noise_reduction = (options.noiseReduction === null
      ? null
      : { type: options.noiseReduction }) as typeof input.noise_reduction;
  }
  const tools: RealtimeFunctionTool[] = (options.tools ?? []).map((tool) => ({
    type: "function",
    name: tool.name,
    description: tool.description,
    parameters: tool.parameters,
  }));
  return {
    type: "session.update",
    session: {
      type: "realtime",
      model: options.model,
      instructions: options.instructions,
      output_modalities: ["audio"],
      audio: {
        input,
        output: {
          format: audioFormat(options.outputAudioFormat ?? "audio/pcmu"),
          voice: options.voice,
        },
      },
      tools,
      tool_choice: "auto",
    },
  } satisfies RealtimeClientEvent;
}

/** JSON text of {@link sessionUpdateEvent}. */
export function buildSessionUpdate(options: OpenAISessionOptions): string {
  return JSON.stringify(sessionUpdateEvent(options));
}

/**
 * Builds an `input_audio_buffer.append` event object.
 * @param audioBase64 base64 audio in the session's input format
 */
export function inputAudioBufferAppendEvent(audioBase64: string): InputAudioBufferAppendEvent {
  return { type: "input_audio_buffer.append", audio: audioBase64 } satisfies RealtimeClientEvent;
}

/** JSON text of {@link inputAudioBufferAppendEvent}. */
export function buildInputAudioBufferAppend(audioBase64: string): string {
  return JSON.stringify(inputAudioBufferAppendEvent(audioBase64));
}

/** A `conversation.item.create` carrying a function call's result. */
export type OpenAIFunctionCallOutputEvent = ConversationItemCreateEvent & {
  item: RealtimeConversationItemFunctionCallOutput;
};

/**
 * Builds a `conversation.item.create` event object with a `function_call_output` item.
 * @param callId the `call_id` of `response.function_call_arguments.done`
 * @param output the result, usually JSON text
 */
export function functionCallOutputEvent(
  callId: string,
  output: string,
): OpenAIFunctionCallOutputEvent {
  return {
    type: "conversation.item.create",
    item: { type: "function_call_output", call_id: callId, output },
  } satisfies RealtimeClientEvent;
}

/** JSON text of {@link functionCallOutputEvent}. */
export function buildFunctionCallOutput(callId: string, output: string): string {
  return JSON.stringify(functionCallOutputEvent(callId, output));
}

/** A `conversation.item.create` carrying a user text message. */
export type OpenAIUserTextMessageEvent = ConversationItemCreateEvent & {
  item: RealtimeConversationItemUserMessage;
};

/**
 * Builds a `conversation.item.create` event object with a user text message, e.g. to tell the
 * model which DTMF digits the caller pressed.
 * @param text the message text
 */
export function userTextMessageEvent(text: string): OpenAIUserTextMessageEvent {
  return {
    type: "conversation.item.create",
    item: { type: "message", role: "user", content: [{ type: "input_text", text }] },
  } satisfies RealtimeClientEvent;
}

/** JSON text of {@link userTextMessageEvent}. */
export function buildUserTextMessage(text: string): string {
  return JSON.stringify(userTextMessageEvent(text));
}

/** A `conversation.item.create` carrying an assistant text message. */
export type OpenAIAssistantTextMessageEvent = ConversationItemCreateEvent & {
  item: RealtimeConversationItemAssistantMessage;
};

/**
 * Builds a `conversation.item.create` event object with an assistant message (GA content type
 * `output_text`), e.g. to replay what the assistant said earlier in a continued call.
 * @param text what the assistant said
 */
export function assistantTextMessageEvent(text: string): OpenAIAssistantTextMessageEvent {
  return {
    type: "conversation.item.create",
    item: { type: "message", role: "assistant", content: [{ type: "output_text", text }] },
  } satisfies RealtimeClientEvent;
}

/** JSON text of {@link assistantTextMessageEvent}. */
export function buildAssistantTextMessage(text: string): string {
  return JSON.stringify(assistantTextMessageEvent(text));
}

/** A `conversation.item.create` carrying a function call the model made. */
export type OpenAIFunctionCallItemEvent = ConversationItemCreateEvent & {
  item: RealtimeConversationItemFunctionCall;
};

/**
 * Builds a `conversation.item.create` event object with a `function_call` item, so a later
 * `function_call_output` for `callId` has its call in a new session's conversation.
 * @param callId the call's id
 * @param name the tool's name
 * @param args the JSON arguments text
 */
export function functionCallItemEvent(
  callId: string,
  name: string,
  args: string,
): OpenAIFunctionCallItemEvent {
  return {
    type: "conversation.item.create",
    item: { type: "function_call", call_id: callId, name, arguments: args },
  } satisfies RealtimeClientEvent;
}

/** JSON text of {@link functionCallItemEvent}. */
export function buildFunctionCallItem(callId: string, name: string, args: string): string {
  return JSON.stringify(functionCallItemEvent(callId, name, args));
}

/** Options of {@link responseCreateEvent}. */
export interface OpenAIResponseCreateOptions {
  /** Instructions for this response only, overriding the session's. Defaults to the session's. */
  readonly instructions?: string;
}

/**
 * Builds a `response.create` event object.
 * @param options optional per-response instructions
 */
export function responseCreateEvent(
  options: OpenAIResponseCreateOptions = {},
): ResponseCreateEvent {
  if (options.instructions === undefined) {
    return { type: "response.create" } satisfies RealtimeClientEvent;
  }
  return {
    type: "response.create",
    response: { instructions: options.instructions },
  } satisfies RealtimeClientEvent;
}

/** JSON text of {@link responseCreateEvent}. */
export function buildResponseCreate(options: OpenAIResponseCreateOptions = {}): string {
  return JSON.stringify(responseCreateEvent(options));
}

/**
 * Builds a `response.cancel` event object.
 * @param responseId the response to cancel; defaults to the one in progress
 */
export function responseCancelEvent(responseId?: string): ResponseCancelEvent {
  if (responseId === undefined) return { type: "response.cancel" } satisfies RealtimeClientEvent;
  return { type: "response.cancel", response_id: responseId } satisfies RealtimeClientEvent;
}

/** JSON text of {@link responseCancelEvent}. */
export function buildResponseCancel(responseId?: string): string {
  return JSON.stringify(responseCancelEvent(responseId));
}

/**
 * Builds a `conversation.item.truncate` event object for content part 0 of an assistant item.
 * `audio_end_ms` must be an integer on the wire: fractions are floored and negatives become 0.
 * Throws a `RangeError` if `audioEndMs` is not finite (NaN would serialize as `null`).
 * @param itemId the assistant item being cut
 * @param audioEndMs how much of the item's audio the caller heard
 */
export function conversationItemTruncateEvent(
  itemId: string,
  audioEndMs: number,
): ConversationItemTruncateEvent {
  if (!Number.isFinite(audioEndMs)) {
    throw new RangeError(
      `Cannot build conversation.item.truncate: audioEndMs is ${audioEndMs}, not a finite number`,
    );
  }
  return {
    type: "conversation.item.truncate",
    item_id: itemId,
    content_index: 0,
    audio_end_ms: Math.max(0, Math.floor(audioEndMs)),
  } satisfies RealtimeClientEvent;
}

/** JSON text of {@link conversationItemTruncateEvent}; throws like it. */
export function buildConversationItemTruncate(itemId: string, audioEndMs: number): string {
  return JSON.stringify(conversationItemTruncateEvent(itemId, audioEndMs));
}

// ---------------------------------------------------------------------------------------------
// Server events (what we read)
// ---------------------------------------------------------------------------------------------

const base64Delta = z.string().refine((text) => text.length > 0 && isBase64(text), {
  message: "Expected non-empty base64",
});

// Every server event carries an `event_id`; it is optional here because nothing depends on it.
const eventId = z.string().optional();

const sessionCreatedSchema = z.looseObject({
  type: z.literal("session.created"),
  event_id: eventId,
  session: z.looseObject({}),
});

const sessionUpdatedSchema = z.looseObject({
  type: z.literal("session.updated"),
  event_id: eventId,
  session: z.looseObject({}),
});

const speechStartedSchema = z.looseObject({
  type: z.literal("input_audio_buffer.speech_started"),
  event_id: eventId,
  audio_start_ms: z.number(),
  item_id: z.string(),
});

const speechStoppedSchema = z.looseObject({
  type: z.literal("input_audio_buffer.speech_stopped"),
  event_id: eventId,
  audio_end_ms: z.number(),
  item_id: z.string(),
});

const inputTranscriptionCompletedSchema = z.looseObject({
  type: z.literal("conversation.item.input_audio_transcription.completed"),
  event_id: eventId,
  item_id: z.string(),
  transcript: z.string(),
});

const responseCreatedSchema = z.looseObject({
  type: z.literal("response.created"),
  event_id: eventId,
  response: z.looseObject({ id: z.string() }),
});

const outputAudioDeltaSchema = z.looseObject({
  type: z.literal("response.output_audio.delta"),
  event_id: eventId,
  response_id: z.string(),
  item_id: z.string(),
  delta: base64Delta,
});

const outputAudioTranscriptDoneSchema = z.looseObject({
  type: z.literal("response.output_audio_transcript.done"),
  event_id: eventId,
  item_id: z.string(),
  transcript: z.string(),
});

const functionCallArgumentsDoneSchema = z.looseObject({
  type: z.literal("response.function_call_arguments.done"),
  event_id: eventId,
  call_id: z.string(),
  name: z.string(),
  // JSON text produced by the model: the tool layer validates it, not the codec.
  arguments: z.string(),
});

const responseDoneSchema = z.looseObject({
  type: z.literal("response.done"),
  event_id: eventId,
  response: z.looseObject({
    id: z.string(),
    // `completed`, `cancelled`, `failed` or `incomplete`; kept open so a new status still parses.
    status: z.string(),
    status_details: z.looseObject({
      type: z.string().optional(),
      reason: z.string().optional(),
    }).nullish(),
    usage: z.looseObject({
      total_tokens: z.number().optional(),
      input_tokens: z.number().optional(),
      output_tokens: z.number().optional(),
    }).nullish(),
  }),
});

const rateLimitsUpdatedSchema = z.looseObject({
  type: z.literal("rate_limits.updated"),
  event_id: eventId,
  rate_limits: z.array(z.looseObject({
    name: z.string().optional(),
    limit: z.number().optional(),
    remaining: z.number().optional(),
    reset_seconds: z.number().optional(),
  })),
});

const errorSchema = z.looseObject({
  type: z.literal("error"),
  event_id: eventId,
  error: z.looseObject({
    type: z.string(),
    code: z.string().nullish(),
    message: z.string(),
    param: z.string().nullish(),
    event_id: z.string().nullish(),
  }),
});

const serverEventSchema = z.discriminatedUnion("type", [
  sessionCreatedSchema,
  sessionUpdatedSchema,
  speechStartedSchema,
  speechStoppedSchema,
  inputTranscriptionCompletedSchema,
  responseCreatedSchema,
  outputAudioDeltaSchema,
  outputAudioTranscriptDoneSchema,
  functionCallArgumentsDoneSchema,
  responseDoneSchema,
  rateLimitsUpdatedSchema,
  errorSchema,
]);

/** `session.created`. */
export type OpenAISessionCreatedEvent = z.infer<typeof sessionCreatedSchema>;
/** `session.updated`: the server accepted our `session.update`. */
export type OpenAISessionUpdatedEvent = z.infer<typeof sessionUpdatedSchema>;
/** `input_audio_buffer.speech_started`: the caller started talking (barge-in trigger). */
export type OpenAISpeechStartedEvent = z.infer<typeof speechStartedSchema>;
/** `input_audio_buffer.speech_stopped`. */
export type OpenAISpeechStoppedEvent = z.infer<typeof speechStoppedSchema>;
/** `conversation.item.input_audio_transcription.completed`: what the caller said. */
export type OpenAIInputTranscriptionCompletedEvent = z.infer<
  typeof inputTranscriptionCompletedSchema
>;
/** `response.created`. */
export type OpenAIResponseCreatedEvent = z.infer<typeof responseCreatedSchema>;
/** `response.output_audio.delta`: a chunk of assistant audio, base64 in the output format. */
export type OpenAIOutputAudioDeltaEvent = z.infer<typeof outputAudioDeltaSchema>;
/** `response.output_audio_transcript.done`: what the assistant said. */
export type OpenAIOutputAudioTranscriptDoneEvent = z.infer<typeof outputAudioTranscriptDoneSchema>;
/** `response.function_call_arguments.done`: the model calls a tool. */
export type OpenAIFunctionCallArgumentsDoneEvent = z.infer<typeof functionCallArgumentsDoneSchema>;
/** `response.done`: final status and token usage of a response. */
export type OpenAIResponseDoneEvent = z.infer<typeof responseDoneSchema>;
/** `rate_limits.updated`. */
export type OpenAIRateLimitsUpdatedEvent = z.infer<typeof rateLimitsUpdatedSchema>;
/** `error`: a recoverable or fatal error (e.g. code `beta_api_shape_disabled`). */
export type OpenAIErrorEvent = z.infer<typeof errorSchema>;
/** A well-formed server event the bridge does not use; `rawType` is its `type`. */
export interface OpenAIOtherEvent {
  readonly type: "other";
  readonly rawType: string;
}

/** A server event the bridge reads, discriminated on `type`. */
export type OpenAIRealtimeServerEvent =
  | OpenAISessionCreatedEvent
  | OpenAISessionUpdatedEvent
  | OpenAISpeechStartedEvent
  | OpenAISpeechStoppedEvent
  | OpenAIInputTranscriptionCompletedEvent
  | OpenAIResponseCreatedEvent
  | OpenAIOutputAudioDeltaEvent
  | OpenAIOutputAudioTranscriptDoneEvent
  | OpenAIFunctionCallArgumentsDoneEvent
  | OpenAIResponseDoneEvent
  | OpenAIRateLimitsUpdatedEvent
  | OpenAIErrorEvent
  | OpenAIOtherEvent;

// Fails `deno check` if a parsed event no longer matches the openai package's GA server event of
// the same `type` (renamed type or field, changed field type). Adding a schema checks it too.
type _ParsedEventsConform = AssertConforms<
  ServerEventsConform<Exclude<OpenAIRealtimeServerEvent, OpenAIOtherEvent>>
>;

/** The server event types parsed into their own variant; any other type becomes `other`. */
export const OPENAI_PARSED_SERVER_EVENT_TYPES: readonly string[] = serverEventSchema.options.map(
  (option) => option.shape.type.value,
);
const PARSED_TYPES: ReadonlySet<string> = new Set(OPENAI_PARSED_SERVER_EVENT_TYPES);

/** Why a server event could not be parsed. */
export type OpenAIParseErrorCode = "invalid_json" | "invalid_message";

/** A failed parse: a code and a readable message (never echoes audio). */
export interface OpenAIParseError {
  readonly code: OpenAIParseErrorCode;
  readonly message: string;
}

/** Result of {@link safeParseRealtimeServerEvent}, in zod's safeParse shape. */
export type SafeParseRealtimeServerEventResult =
  | { readonly success: true; readonly data: OpenAIRealtimeServerEvent }
  | { readonly success: false; readonly error: OpenAIParseError };

function failure(code: OpenAIParseErrorCode, message: string): SafeParseRealtimeServerEventResult {
  return { success: false, error: { code, message } };
}

/**
 * Validates an already JSON-parsed server event. Used by {@link safeParseRealtimeServerEvent} and
 * by the fast path's fallback.
 */
export function safeParseRealtimeServerValue(value: unknown): SafeParseRealtimeServerEventResult {
  try {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return failure("invalid_message", "Cannot read OpenAI event: expected a JSON object");
    }
    const type = (value as { type?: unknown }).type;
    if (typeof type !== "string") {
      return failure("invalid_message", "Cannot read OpenAI event: `type` is not a string");
    }
    if (!PARSED_TYPES.has(type)) return { success: true, data: { type: "other", rawType: type } };
    const result = serverEventSchema.safeParse(value);
    if (!result.success) {
      return failure(
        "invalid_message",
        `Cannot read OpenAI ${quoteForMessage(type)} event: ${describeIssues(result.error)}`,
      );
    }
    return { success: true, data: result.data };
  } catch (error) {
    // zod should not throw; this guards the "never throws" promise against exotic values.
    return failure("invalid_message", `Cannot read OpenAI event: ${String(error).slice(0, 200)}`);
  }
}

/**
 * Parses one Realtime server event. Never throws: invalid JSON gives `invalid_json`, a missing
 * `type` or a used event with wrong fields gives `invalid_message`, and a well-formed event of a
 * type the bridge ignores gives `{ type: "other", rawType }`. Extra fields are kept.
 * @param text the WebSocket text frame as received
 */
export function safeParseRealtimeServerEvent(text: string): SafeParseRealtimeServerEventResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return failure("invalid_json", "Cannot read OpenAI event: not valid JSON");
  }
  return safeParseRealtimeServerValue(value);
}
