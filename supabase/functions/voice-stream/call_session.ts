/**
 * The call session: a pure state machine deciding what the voice-stream bridge does between the
 * Twilio Media Stream and the OpenAI Realtime session. `step(state, event, nowMs)` returns the next
 * state and the effects to perform; it never reads the clock, starts timers or touches sockets.
 *
 * Playback bookkeeping follows protocols.md §4: assistant audio is paced to Twilio at most
 * `maxAheadMs` ahead of real time, queued audio goes out in chunks of up to 200 ms, a mark follows
 * every ~200 ms of audio and the end of each response's audio, and on barge-in the
 * bridge clears Twilio, truncates the item at the played position (integer ms, capped at what was
 * sent) and drops late deltas of the interrupted response.
 *
 * Handover (a stream nearing its worker's wall clock or CPU budget): once `handover_due` arrives,
 * the session waits for a natural pause (see `isNaturalPause`) and then asks the bridge to hand
 * the call over (`begin_handover`). At the `hard` level it hands over at the first moment the
 * caller is not speaking (and their last words are transcribed) and no tool call is in flight,
 * cutting the assistant short if it is speaking; at the `final` level it no longer waits for the
 * caller either (the bridge carries their unfinished words as audio). A tool result that
 * arrives once a hard handover is due is carried to the next stream instead of being sent to this
 * model session.
 * @module
 */

/** Bytes of 8 kHz mu-law per millisecond. */
export const MULAW_BYTES_PER_MS = 8;
/** Assistant audio may be at most this far ahead of real time at Twilio. */
export const DEFAULT_MAX_AHEAD_MS = 500;
/**
 * A mark follows at least this much audio (and the end of a response's audio). Marks only confirm
 * what the clock already tells (`playedMs` counts played audio from the send times), so one per
 * 200 ms keeps the played position exact while sending half the messages of one per 100 ms.
 */
export const MARK_EVERY_MS = 200;
/**
 * Queued assistant audio goes to Twilio in `media` messages of up to this much audio: a model
 * that streams faster than real time (the usual case) costs fewer messages than one per delta.
 */
export const MEDIA_CHUNK_MAX_MS = 200;
/** Caller audio kept while the model session is not ready: about 2 s. */
export const EARLY_AUDIO_LIMIT_MS = 2000;
/**
 * Caller audio goes to the model as it comes: one `input_audio_buffer.append` per 20 ms Twilio
 * frame (a shorter frame waits for the next). Joining frames saved sends but delayed every frame
 * but the last of a batch by up to the batch's length (p50 32-35 ms at 80 ms appends), and the
 * model's VAD, barge-in and end of turn with it. Each append is ~250 bytes of JSON, one write on
 * either model socket (no header/payload split, so no delayed-ACK stall).
 */
export const APPEND_EVERY_MS = 20;
/** After the goodbye at the call's time limit, hang up at the latest this much later. */
export const GOODBYE_GRACE_MS = 10_000;
/** After the caller stopped or a response was requested, a response counts as coming this long. */
export const RESPONSE_WAIT_MS = 1500;
/** After the caller stopped, their transcript counts as coming this long. */
export const TRANSCRIPT_WAIT_MS = 2000;

/** What the bridge does once the assistant's last words have played. */
export type AfterPlayback = "end_call" | "transfer" | "hangup";

/** A tool result that arrived once a hard handover was due: the next stream's model gets it. */
export interface CarriedToolResult {
  readonly callId: string;
  readonly name: string;
  readonly output: string;
}

/**
 * How pressing a handover is: `soft` waits for a natural pause, `hard` only for the caller to
 * finish speaking (the assistant is cut short), `final` for nothing but a running tool call.
 */
export type HandoverLevel = "soft" | "hard" | "final";

const HANDOVER_RANK: Readonly<Record<HandoverLevel, number>> = { soft: 1, hard: 2, final: 3 };

/** Phases of a call. */
export type SessionPhase = "awaiting_start" | "connecting" | "streaming" | "closing" | "closed";

interface QueuedChunk {
  readonly responseId: string;
  readonly itemId: string;
  /** Base64 mu-law for Twilio. */
  readonly payload: string;
  readonly durationMs: number;
}

interface ItemPlayback {
  /** Assistant audio of this item sent to Twilio, ms. */
  readonly sentMs: number;
  /** Audio of this item Twilio confirmed played (last echoed mark), ms. */
  readonly ackedMs: number;
  /** Audio of this item received from the model, ms. */
  readonly receivedMs: number;
}

/** A caller or assistant transcript turn awaiting storage. */
export interface TranscriptTurn {
  readonly sequence: number;
  readonly speaker: "caller" | "assistant";
  readonly text: string;
  readonly startMs: number | null;
  readonly endMs: number | null;
}

/** Per-call figures written when the call ends. */
export interface SessionMetrics {
  readonly bargeIns: number;
  readonly toolCalls: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** From `start` to the first assistant audio sent to Twilio. */
  readonly firstAudioMs: number | null;
  readonly framesIn: number;
  readonly framesOut: number;
}

/** The whole state of one call, readonly. */
export interface SessionState {
  readonly phase: SessionPhase;
  readonly streamSid: string | null;
  readonly startedAtMs: number | null;
  readonly modelReady: boolean;
  /** Caller audio (base64 mu-law frames) held until the model is ready. */
  readonly earlyAudio: readonly string[];
  readonly earlyAudioMs: number;
  readonly droppedEarlyAudioMs: number;
  /** Caller audio waiting to be coalesced into one append. */
  readonly pendingAppend: readonly string[];
  readonly pendingAppendMs: number;
  readonly activeResponseId: string | null;
  readonly discardedResponseIds: readonly string[];
  readonly queue: readonly QueuedChunk[];
  readonly items: Readonly<Record<string, ItemPlayback>>;
  /** The item whose audio is playing or was played last. */
  readonly playingItemId: string | null;
  /** When Twilio's buffer will run dry, on our clock. */
  readonly bufferEndAtMs: number;
  readonly unmarkedMs: number;
  /** Bumped on every clear, so marks echoed after a clear are ignored. */
  readonly generation: number;
  readonly paceTimerAtMs: number | null;
  readonly afterPlayback: AfterPlayback | null;
  /** True once the response following `afterPlayback` finished (the last words are all sent). */
  readonly lastWordsDone: boolean;
  readonly nextSequence: number;
  readonly metrics: SessionMetrics;
  readonly toolCallsInFlight: readonly string[];
  /** Between the model's `speech_started` and `speech_stopped`. */
  readonly callerSpeaking: boolean;
  /** Since when a response is expected (the caller stopped, or one was requested), or null. */
  readonly awaitingResponseSinceMs: number | null;
  /** Caller items whose transcript has not arrived yet. */
  readonly pendingTranscriptItemIds: readonly string[];
  readonly lastSpeechStoppedAtMs: number;
  /** A handover the budget asked for and not begun yet. */
  readonly handoverDue: HandoverLevel | null;
  readonly carriedToolResults: readonly CarriedToolResult[];
}

/** Options fixed for a call. */
export interface SessionOptions {
  readonly maxAheadMs: number;
  /**
   * Caller audio per `input_audio_buffer.append`, ms. Defaults to `APPEND_EVERY_MS` (every 20 ms
   * frame at once); more joins frames, fewer sends for a batching delay (`CALLER_AUDIO_APPEND_MS`).
   */
  readonly appendEveryMs?: number;
  /** Bytes per ms of the audio the model sends (8 for mu-law), to measure received audio. */
  readonly modelOutputBytesPerMs: number;
}

/** Events, named by their source. */
export type SessionEvent =
  | { type: "twilio_start"; streamSid: string }
  | { type: "twilio_media"; payload: string; durationMs: number }
  | { type: "twilio_mark"; name: string }
  | { type: "twilio_dtmf"; digit: string }
  | { type: "twilio_stop" }
  | { type: "twilio_closed" }
  | {
    type: "openai_ready";
    /** A continued call: transcript numbering goes on from here. */
    nextSequence?: number;
    /** Whether the bridge asks for a response at once (a greeting or a resumption). */
    responds?: boolean;
  }
  | { type: "openai_response_created"; responseId: string }
  | {
    type: "openai_audio_delta";
    responseId: string;
    itemId: string;
    /** Base64 mu-law for Twilio (after conversion in the pcm24k pipeline). */
    payload: string;
    durationMs: number;
    /** Audio received from the model for this delta, ms (before conversion). */
    receivedMs: number;
  }
  | { type: "openai_speech_started"; itemId: string | null; audioStartMs: number }
  | { type: "openai_speech_stopped"; itemId: string | null }
  | { type: "openai_input_transcript"; itemId: string; transcript: string }
  | { type: "openai_output_transcript"; itemId: string; transcript: string }
  | { type: "openai_function_call"; callId: string; name: string; arguments: string }
  | {
    type: "openai_response_done";
    responseId: string | null;
    status: string | null;
    inputTokens: number;
    outputTokens: number;
  }
  | { type: "openai_failed"; reason: string }
  | {
    type: "tool_result";
    callId: string;
    name: string;
    output: string;
    effect: "end_call" | "transfer" | null;
  }
  | { type: "max_duration_reached" }
  | { type: "handover_due"; level: HandoverLevel }
  | { type: "timer_fired"; name: "pace" | "goodbye_grace" };

/** Effects, named as commands for the glue. */
export type SessionEffect =
  /** One `media` message with these base64 chunks joined (oldest first). */
  | { type: "send_twilio_media"; payloads: readonly string[] }
  | { type: "send_twilio_mark"; name: string }
  | { type: "send_twilio_clear" }
  | { type: "send_openai_append"; payloads: readonly string[] }
  | { type: "send_openai_session_update_and_greet" }
  | { type: "send_openai_truncate"; itemId: string; audioEndMs: number }
  | { type: "send_openai_function_output"; callId: string; output: string }
  | { type: "send_openai_response_create"; instructions?: string }
  | { type: "send_openai_user_text"; text: string }
  | { type: "call_tool"; callId: string; name: string; arguments: string }
  | { type: "call_control"; action: "transfer" | "hangup" | "recover"; reason: string }
  | { type: "record_turn"; turn: TranscriptTurn }
  | { type: "schedule_timer"; name: "pace" | "goodbye_grace"; atMs: number }
  | {
    type: "log";
    level: "info" | "warn";
    event: string;
    fields: Record<string, unknown>;
  }
  | { type: "close_call"; reason: string }
  | {
    type: "begin_handover";
    /** False at a natural pause. */
    forced: boolean;
    /** The assistant item cut short (Twilio was cleared) and how much of it the caller heard. */
    interrupted: { itemId: string; playedMs: number } | null;
    /** Whether the next stream's model should speak at once (resume, answer, carried result). */
    respond: boolean;
    /** The caller was speaking: their words so far must reach the next stream's model. */
    callerInterrupted: boolean;
    carriedToolResults: readonly CarriedToolResult[];
  };

/** The result of one step. */
export interface StepResult {
  readonly state: SessionState;
  readonly effects: SessionEffect[];
}

/** A new call, before Twilio's `start`. */
export function initialSessionState(): SessionState {
  return {
    phase: "awaiting_start",
    streamSid: null,
    startedAtMs: null,
    modelReady: false,
    earlyAudio: [],
    earlyAudioMs: 0,
    droppedEarlyAudioMs: 0,
    pendingAppend: [],
    pendingAppendMs: 0,
    activeResponseId: null,
    discardedResponseIds: [],
    queue: [],
    items: {},
    playingItemId: null,
    bufferEndAtMs: 0,
    unmarkedMs: 0,
    generation: 0,
    paceTimerAtMs: null,
    afterPlayback: null,
    lastWordsDone: false,
    nextSequence: 0,
    metrics: {
      bargeIns: 0,
      toolCalls: 0,
      inputTokens: 0,
      outputTokens: 0,
      firstAudioMs: null,
      framesIn: 0,
      framesOut: 0,
    },
    toolCallsInFlight: [],
    callerSpeaking: false,
    awaitingResponseSinceMs: null,
    pendingTranscriptItemIds: [],
    lastSpeechStoppedAtMs: 0,
    handoverDue: null,
    carriedToolResults: [],
  };
}

/**
 * Encodes a mark name: generation, item and the item's sent position in ms. Positions are
 * fractional (8 mu-law bytes per ms: a 903-byte delta is 112.875 ms) and written exactly.
 */
export function markName(generation: number, itemId: string, sentMs: number): string {
  return `g${generation}:${sentMs}:${itemId}`;
}

/** Decodes a mark name from `markName`; null when it is not one of ours. */
export function parseMarkName(
  name: string,
): { generation: number; itemId: string; sentMs: number } | null {
  const match = /^g(\d+):(\d+(?:\.\d+)?):(.+)$/.exec(name);
  if (!match) return null;
  return { generation: Number(match[1]), sentMs: Number(match[2]), itemId: match[3] };
}

/**
 * Milliseconds of `itemId` the caller has heard at `nowMs`: audio plays at real time from when it
 * reaches Twilio, so what is still buffered there is not yet played. Echoed marks are a floor.
 */
export function playedMs(state: SessionState, itemId: string, nowMs: number): number {
  const item = state.items[itemId];
  if (!item) return 0;
  if (state.playingItemId !== itemId) return item.sentMs;
  const buffered = Math.max(0, state.bufferEndAtMs - nowMs);
  return Math.max(item.ackedMs, Math.min(item.sentMs, item.sentMs - buffered));
}

/** True while assistant audio is queued here or still playing at Twilio. */
export function isAssistantAudible(state: SessionState, nowMs: number): boolean {
  return state.queue.length > 0 || state.bufferEndAtMs > nowMs;
}

/**
 * True at a natural pause, when a stream can be handed over without cutting anyone off: the
 * assistant is silent with no response in progress or coming, the caller is silent with no
 * transcript coming, no tool call is in flight and the call is not ending.
 */
export function isNaturalPause(state: SessionState, nowMs: number): boolean {
  return state.phase === "streaming" && state.modelReady &&
    state.toolCallsInFlight.length === 0 && state.afterPlayback === null &&
    state.activeResponseId === null && !isAssistantAudible(state, nowMs) &&
    !state.callerSpeaking &&
    (state.awaitingResponseSinceMs === null ||
      nowMs - state.awaitingResponseSinceMs >= RESPONSE_WAIT_MS) &&
    (state.pendingTranscriptItemIds.length === 0 ||
      nowMs - state.lastSpeechStoppedAtMs >= TRANSCRIPT_WAIT_MS);
}

/** Advances the session by one event. */
export function step(
  state: SessionState,
  event: SessionEvent,
  nowMs: number,
  options: SessionOptions,
): StepResult {
  const effects: SessionEffect[] = [];
  if (state.phase === "closed") return { state, effects };
  let next = applyEvent(state, event, nowMs, options, effects);
  if (next.handoverDue !== null && next.phase === "streaming") {
    next = maybeBeginHandover(next, nowMs, effects);
  }
  return { state: next, effects };
}

/** One event's change, by its family. */
function applyEvent(
  state: SessionState,
  event: SessionEvent,
  nowMs: number,
  options: SessionOptions,
  effects: SessionEffect[],
): SessionState {
  switch (event.type) {
    case "twilio_start":
    case "twilio_media":
    case "twilio_mark":
    case "twilio_dtmf":
    case "twilio_stop":
    case "twilio_closed":
      return onTwilioEvent(state, event, nowMs, options, effects);
    case "openai_ready":
    case "openai_response_created":
    case "openai_audio_delta":
    case "openai_response_done":
    case "openai_failed":
      return onModelEvent(state, event, nowMs, options, effects);
    case "openai_speech_started":
    case "openai_speech_stopped":
    case "openai_input_transcript":
    case "openai_output_transcript":
      return onSpeechEvent(state, event, nowMs, options, effects);
    case "openai_function_call":
    case "tool_result":
      return onToolEvent(state, event, nowMs, options, effects);
    case "timer_fired":
    case "max_duration_reached":
    case "handover_due":
      return onClockEvent(state, event, nowMs, options, effects);
  }
}

/** How one family of events changes the state (and which effects it asks for). */
type EventFamily<Event extends SessionEvent> = (
  state: SessionState,
  event: Event,
  nowMs: number,
  options: SessionOptions,
  effects: SessionEffect[],
) => SessionState;

type TwilioEvent = Extract<
  SessionEvent,
  {
    type:
      | "twilio_start"
      | "twilio_media"
      | "twilio_mark"
      | "twilio_dtmf"
      | "twilio_stop"
      | "twilio_closed";
  }
>;
type ModelEvent = Extract<
  SessionEvent,
  {
    type:
      | "openai_ready"
      | "openai_response_created"
      | "openai_audio_delta"
      | "openai_response_done"
      | "openai_failed";
  }
>;
type SpeechEvent = Extract<
  SessionEvent,
  {
    type:
      | "openai_speech_started"
      | "openai_speech_stopped"
      | "openai_input_transcript"
      | "openai_output_transcript";
  }
>;
type ToolEvent = Extract<SessionEvent, { type: "openai_function_call" | "tool_result" }>;
type ClockEvent = Extract<
  SessionEvent,
  { type: "timer_fired" | "max_duration_reached" | "handover_due" }
>;

/** The Twilio side: the stream starts and stops, caller audio, echoed marks, keys pressed. */
const onTwilioEvent: EventFamily<TwilioEvent> = (state, event, nowMs, options, effects) => {
  let next: SessionState = state;
  switch (event.type) {
    case "twilio_start": {
      if (state.phase !== "awaiting_start") {
        effects.push(log("warn", "frame_out_of_order", { frame: "start", phase: state.phase }));
        break;
      }
      next = { ...state, phase: "connecting", streamSid: event.streamSid, startedAtMs: nowMs };
      break;
    }
    case "twilio_media": {
      if (state.phase === "awaiting_start") {
        effects.push(log("warn", "frame_out_of_order", { frame: "media", phase: state.phase }));
        break;
      }
      if (state.phase !== "connecting" && state.phase !== "streaming") break;
      const metrics = { ...state.metrics, framesIn: state.metrics.framesIn + 1 };
      if (!state.modelReady) {
        // Keep the newest ~2 s in order; the model hears them once ready.
        const earlyAudio = [...state.earlyAudio, event.payload];
        let earlyAudioMs = state.earlyAudioMs + event.durationMs;
        let dropped = state.droppedEarlyAudioMs;
        while (earlyAudioMs > EARLY_AUDIO_LIMIT_MS && earlyAudio.length > 1) {
          earlyAudio.shift();
          earlyAudioMs -= event.durationMs;
          dropped += event.durationMs;
        }
        next = { ...state, earlyAudio, earlyAudioMs, droppedEarlyAudioMs: dropped, metrics };
        break;
      }
      const pendingAppendMs = state.pendingAppendMs + event.durationMs;
      if (pendingAppendMs >= (options.appendEveryMs ?? APPEND_EVERY_MS)) {
        // The usual case, a whole frame: straight out, no list copied.
        const payloads = state.pendingAppend.length === 0
          ? [event.payload]
          : [...state.pendingAppend, event.payload];
        effects.push({ type: "send_openai_append", payloads });
        next = state.pendingAppend.length === 0
          ? { ...state, metrics }
          : { ...state, pendingAppend: [], pendingAppendMs: 0, metrics };
      } else {
        const pendingAppend = [...state.pendingAppend, event.payload];
        next = { ...state, pendingAppend, pendingAppendMs, metrics };
      }
      break;
    }
    case "twilio_mark": {
      const mark = parseMarkName(event.name);
      if (!mark || mark.generation !== state.generation) break;
      const item = state.items[mark.itemId];
      if (!item || mark.sentMs <= item.ackedMs) break;
      next = {
        ...state,
        items: { ...state.items, [mark.itemId]: { ...item, ackedMs: mark.sentMs } },
      };
      break;
    }
    case "twilio_dtmf": {
      if (!state.modelReady) break;
      if (event.digit === "0") {
        effects.push(log("info", "dtmf_transfer", {}));
        effects.push({ type: "call_control", action: "transfer", reason: "caller pressed 0" });
      } else if (/^[0-9*#A-D]$/.test(event.digit)) {
        effects.push({
          type: "send_openai_user_text",
          text: `[The caller pressed key ${event.digit}]`,
        });
        effects.push({ type: "send_openai_response_create" });
        next = { ...state, awaitingResponseSinceMs: nowMs };
      }
      break;
    }
    case "twilio_stop":
    case "twilio_closed": {
      if (state.phase === "closing" && event.type === "twilio_stop") break;
      effects.push({
        type: "close_call",
        reason: event.type === "twilio_stop" ? "twilio_stop" : "twilio_closed",
      });
      next = { ...state, phase: "closed", queue: [] };
      break;
    }
  }
  return next;
};

/** The model session: ready, its responses and their audio, its failure. */
const onModelEvent: EventFamily<ModelEvent> = (state, event, nowMs, options, effects) => {
  let next: SessionState = state;
  switch (event.type) {
    case "openai_ready": {
      if (state.modelReady || (state.phase !== "connecting" && state.phase !== "streaming")) break;
      effects.push({ type: "send_openai_session_update_and_greet" });
      if (event.nextSequence !== undefined) next = { ...next, nextSequence: event.nextSequence };
      if (event.responds !== false) next = { ...next, awaitingResponseSinceMs: nowMs };
      if (state.earlyAudio.length > 0) {
        effects.push({ type: "send_openai_append", payloads: state.earlyAudio });
        effects.push(log("info", "early_audio_flushed", {
          earlyAudioMs: state.earlyAudioMs,
          droppedMs: state.droppedEarlyAudioMs,
        }));
      }
      next = { ...next, phase: "streaming", modelReady: true, earlyAudio: [], earlyAudioMs: 0 };
      break;
    }
    case "openai_response_created": {
      next = { ...state, activeResponseId: event.responseId, awaitingResponseSinceMs: null };
      break;
    }
    case "openai_audio_delta": {
      if (state.discardedResponseIds.includes(event.responseId)) break;
      if (state.phase !== "streaming") break;
      const item = state.items[event.itemId] ?? { sentMs: 0, ackedMs: 0, receivedMs: 0 };
      next = {
        ...state,
        items: {
          ...state.items,
          [event.itemId]: { ...item, receivedMs: item.receivedMs + event.receivedMs },
        },
        queue: [...state.queue, {
          responseId: event.responseId,
          itemId: event.itemId,
          payload: event.payload,
          durationMs: event.durationMs,
        }],
      };
      next = pump(next, nowMs, options, effects);
      break;
    }
    case "openai_response_done": {
      const metrics = {
        ...state.metrics,
        inputTokens: state.metrics.inputTokens + event.inputTokens,
        outputTokens: state.metrics.outputTokens + event.outputTokens,
      };
      effects.push(log("info", "response_done", {
        responseId: event.responseId,
        status: event.status,
        inputTokens: event.inputTokens,
        outputTokens: event.outputTokens,
      }));
      const done = event.responseId === state.activeResponseId ? null : state.activeResponseId;
      next = { ...state, metrics, activeResponseId: done };
      if (next.queue.length === 0 && next.unmarkedMs > 0 && next.playingItemId !== null) {
        // All of the response's audio is at Twilio: mark its end.
        effects.push({
          type: "send_twilio_mark",
          name: markName(
            next.generation,
            next.playingItemId,
            next.items[next.playingItemId].sentMs,
          ),
        });
        next = { ...next, unmarkedMs: 0 };
      }
      // The last words are the response after the tool result that asked to end or transfer.
      if (state.afterPlayback && state.toolCallsInFlight.length === 0) {
        next = { ...next, lastWordsDone: true };
        next = pump(next, nowMs, options, effects);
      }
      break;
    }
    case "openai_failed": {
      if (state.phase === "closing") break;
      effects.push(log("warn", "model_failed", { reason: event.reason }));
      effects.push({ type: "call_control", action: "recover", reason: event.reason });
      effects.push({ type: "close_call", reason: "model_failed" });
      next = { ...state, phase: "closing", queue: [] };
      break;
    }
  }
  return next;
};

/** The conversation's turns: the caller starts and stops speaking (barge-in), transcripts. */
const onSpeechEvent: EventFamily<SpeechEvent> = (state, event, nowMs, _options, effects) => {
  let next: SessionState = state;
  switch (event.type) {
    case "openai_speech_started": {
      next = { ...state, callerSpeaking: true };
      const itemId = state.playingItemId;
      if (!itemId || !isAssistantAudible(state, nowMs)) break;
      const item = state.items[itemId];
      const played = Math.floor(playedMs(state, itemId, nowMs));
      const audioEndMs = Math.min(played, item.sentMs, item.receivedMs);
      effects.push({ type: "send_twilio_clear" });
      effects.push({ type: "send_openai_truncate", itemId, audioEndMs });
      const interrupted = state.activeResponseId ??
        state.queue.find((chunk) => chunk.itemId === itemId)?.responseId ?? null;
      const discarded = interrupted && !state.discardedResponseIds.includes(interrupted)
        ? [...state.discardedResponseIds.slice(-20), interrupted]
        : state.discardedResponseIds;
      effects.push(log("info", "barge_in", { playedMs: audioEndMs, itemId, sentMs: item.sentMs }));
      next = {
        ...next,
        queue: [],
        bufferEndAtMs: nowMs,
        unmarkedMs: 0,
        generation: state.generation + 1,
        discardedResponseIds: discarded,
        items: { ...state.items, [itemId]: { ...item, sentMs: audioEndMs, ackedMs: audioEndMs } },
        metrics: { ...state.metrics, bargeIns: state.metrics.bargeIns + 1 },
      };
      break;
    }
    case "openai_speech_stopped": {
      // Server VAD commits the turn and answers it: a transcript and a response are coming.
      next = {
        ...state,
        callerSpeaking: false,
        awaitingResponseSinceMs: nowMs,
        lastSpeechStoppedAtMs: nowMs,
        pendingTranscriptItemIds: event.itemId === null
          ? state.pendingTranscriptItemIds
          : [...state.pendingTranscriptItemIds.slice(-10), event.itemId],
      };
      break;
    }
    case "openai_input_transcript": {
      if (state.pendingTranscriptItemIds.includes(event.itemId)) {
        next = {
          ...state,
          pendingTranscriptItemIds: state.pendingTranscriptItemIds.filter((id) =>
            id !== event.itemId
          ),
        };
      }
      if (event.transcript.trim() === "") break;
      effects.push({
        type: "record_turn",
        turn: {
          sequence: state.nextSequence,
          speaker: "caller",
          text: event.transcript,
          startMs: null,
          endMs: state.startedAtMs === null ? null : Math.round(nowMs - state.startedAtMs),
        },
      });
      next = { ...next, nextSequence: state.nextSequence + 1 };
      break;
    }
    case "openai_output_transcript": {
      if (event.transcript.trim() === "") break;
      effects.push({
        type: "record_turn",
        turn: {
          sequence: state.nextSequence,
          speaker: "assistant",
          text: event.transcript,
          startMs: null,
          endMs: state.startedAtMs === null ? null : Math.round(nowMs - state.startedAtMs),
        },
      });
      next = { ...state, nextSequence: state.nextSequence + 1 };
      break;
    }
  }
  return next;
};

/** Tool calls the model asks for and their results. */
const onToolEvent: EventFamily<ToolEvent> = (state, event, nowMs, _options, effects) => {
  let next: SessionState = state;
  switch (event.type) {
    case "openai_function_call": {
      effects.push({
        type: "call_tool",
        callId: event.callId,
        name: event.name,
        arguments: event.arguments,
      });
      next = {
        ...state,
        toolCallsInFlight: [...state.toolCallsInFlight, event.callId],
        metrics: { ...state.metrics, toolCalls: state.metrics.toolCalls + 1 },
      };
      break;
    }
    case "tool_result": {
      if (!state.toolCallsInFlight.includes(event.callId) || state.phase !== "streaming") break;
      if (
        state.handoverDue !== null && state.handoverDue !== "soft" && event.effect === null
      ) {
        // Handing over at once: the next stream's model gets the result and answers with it.
        next = {
          ...state,
          toolCallsInFlight: state.toolCallsInFlight.filter((id) => id !== event.callId),
          carriedToolResults: [...state.carriedToolResults, {
            callId: event.callId,
            name: event.name,
            output: event.output,
          }],
        };
        break;
      }
      effects.push({
        type: "send_openai_function_output",
        callId: event.callId,
        output: event.output,
      });
      effects.push({ type: "send_openai_response_create" });
      next = {
        ...state,
        toolCallsInFlight: state.toolCallsInFlight.filter((id) => id !== event.callId),
        afterPlayback: event.effect ?? state.afterPlayback,
        lastWordsDone: event.effect ? false : state.lastWordsDone,
        awaitingResponseSinceMs: nowMs,
      };
      break;
    }
  }
  return next;
};

/** Time: the pacing and goodbye timers, the call's time limit, a handover coming due. */
const onClockEvent: EventFamily<ClockEvent> = (state, event, nowMs, options, effects) => {
  let next: SessionState = state;
  switch (event.type) {
    case "timer_fired": {
      if (event.name === "pace") {
        next = pump({ ...state, paceTimerAtMs: null }, nowMs, options, effects);
      } else if (state.phase === "streaming") {
        effects.push(log("warn", "goodbye_timeout", {}));
        next = finishAfterPlayback({ ...state, afterPlayback: "hangup" }, effects);
      }
      break;
    }
    case "max_duration_reached": {
      if (state.phase !== "streaming" || state.afterPlayback) break;
      effects.push(log("info", "max_duration_reached", {}));
      effects.push({
        type: "send_openai_response_create",
        instructions:
          "The call has reached its time limit. Say a short, warm goodbye in one sentence now.",
      });
      effects.push({
        type: "schedule_timer",
        name: "goodbye_grace",
        atMs: nowMs + GOODBYE_GRACE_MS,
      });
      next = { ...state, afterPlayback: "hangup", lastWordsDone: false };
      break;
    }
    case "handover_due": {
      if (state.phase !== "connecting" && state.phase !== "streaming") break;
      const current = state.handoverDue === null ? 0 : HANDOVER_RANK[state.handoverDue];
      if (HANDOVER_RANK[event.level] <= current) break;
      effects.push(log("info", "handover_due", { level: event.level }));
      next = { ...state, handoverDue: event.level };
      break;
    }
  }
  return next;
};

/**
 * Begins a due handover at a natural pause or, when it is hard, as soon as the caller is silent
 * and no tool is running (final: even while the caller speaks).
 */
function maybeBeginHandover(
  state: SessionState,
  nowMs: number,
  effects: SessionEffect[],
): SessionState {
  // A call that is ending (goodbye, transfer) ends on this stream.
  if (state.afterPlayback !== null) return state;
  const pause = isNaturalPause(state, nowMs);
  let interrupted: { itemId: string; playedMs: number } | null = null;
  let respond = state.carriedToolResults.length > 0;
  if (!pause) {
    if (state.handoverDue === "soft" || state.toolCallsInFlight.length > 0) return state;
    const transcriptComing = state.pendingTranscriptItemIds.length > 0 &&
      nowMs - state.lastSpeechStoppedAtMs < TRANSCRIPT_WAIT_MS;
    if (state.handoverDue === "hard" && (state.callerSpeaking || transcriptComing)) return state;
    if (state.playingItemId && isAssistantAudible(state, nowMs)) {
      const item = state.items[state.playingItemId];
      const played = Math.floor(playedMs(state, state.playingItemId, nowMs));
      effects.push({ type: "send_twilio_clear" });
      interrupted = {
        itemId: state.playingItemId,
        playedMs: Math.min(played, item.sentMs, item.receivedMs),
      };
      respond = true;
    } else if (
      state.activeResponseId !== null ||
      (state.awaitingResponseSinceMs !== null &&
        nowMs - state.awaitingResponseSinceMs < RESPONSE_WAIT_MS)
    ) {
      // The assistant was about to speak: the next stream's model speaks instead.
      respond = true;
    }
  }
  // A caller cut mid-sentence finishes it on the next stream; its model answers them then.
  const callerInterrupted = !pause && state.callerSpeaking;
  effects.push({
    type: "begin_handover",
    forced: !pause,
    interrupted,
    respond: respond && !callerInterrupted,
    callerInterrupted,
    carriedToolResults: state.carriedToolResults,
  });
  return {
    ...state,
    phase: "closing",
    queue: [],
    bufferEndAtMs: interrupted ? nowMs : state.bufferEndAtMs,
    handoverDue: null,
    carriedToolResults: [],
  };
}

/** Sends queued audio while Twilio holds less than `maxAheadMs`; schedules the next send. */
function pump(
  state: SessionState,
  nowMs: number,
  options: SessionOptions,
  effects: SessionEffect[],
): SessionState {
  let next = state;
  let bufferEndAtMs = Math.max(next.bufferEndAtMs, nowMs);
  const queue = [...next.queue];
  let items = next.items;
  let unmarkedMs = next.unmarkedMs;
  let playingItemId = next.playingItemId;
  let metrics = next.metrics;
  while (queue.length > 0 && bufferEndAtMs - nowMs < options.maxAheadMs) {
    const first = queue.shift()!;
    // Join the next chunks of the same item while the message stays under MEDIA_CHUNK_MAX_MS
    // and Twilio under maxAheadMs.
    const payloads = [first.payload];
    let durationMs = first.durationMs;
    while (
      queue.length > 0 && queue[0].itemId === first.itemId &&
      durationMs + queue[0].durationMs <= MEDIA_CHUNK_MAX_MS &&
      bufferEndAtMs + durationMs + queue[0].durationMs - nowMs <= options.maxAheadMs
    ) {
      const joined = queue.shift()!;
      payloads.push(joined.payload);
      durationMs += joined.durationMs;
    }
    if (playingItemId && playingItemId !== first.itemId && unmarkedMs > 0) {
      // Close the previous item's bookkeeping with a mark at its end.
      effects.push({
        type: "send_twilio_mark",
        name: markName(next.generation, playingItemId, items[playingItemId].sentMs),
      });
      unmarkedMs = 0;
    }
    playingItemId = first.itemId;
    const item = items[first.itemId] ?? { sentMs: 0, ackedMs: 0, receivedMs: durationMs };
    const sentMs = item.sentMs + durationMs;
    items = { ...items, [first.itemId]: { ...item, sentMs } };
    effects.push({ type: "send_twilio_media", payloads });
    if (metrics.firstAudioMs === null && next.startedAtMs !== null) {
      metrics = { ...metrics, firstAudioMs: Math.round(nowMs - next.startedAtMs) };
    }
    metrics = { ...metrics, framesOut: metrics.framesOut + 1 };
    bufferEndAtMs += durationMs;
    unmarkedMs += durationMs;
    // Mark every ~200 ms, and the end of a response's audio (its last words have played then).
    const responseAudioEnded = queue.length === 0 && first.responseId !== next.activeResponseId;
    if (unmarkedMs >= MARK_EVERY_MS || responseAudioEnded) {
      effects.push({
        type: "send_twilio_mark",
        name: markName(next.generation, first.itemId, sentMs),
      });
      unmarkedMs = 0;
    }
  }
  next = { ...next, queue, items, unmarkedMs, playingItemId, bufferEndAtMs, metrics };
  if (queue.length > 0) {
    // Wake when a whole chunk fits under the limit again: Twilio then holds 300-500 ms.
    const atMs = bufferEndAtMs - options.maxAheadMs + MEDIA_CHUNK_MAX_MS;
    if (next.paceTimerAtMs === null || next.paceTimerAtMs > atMs) {
      effects.push({ type: "schedule_timer", name: "pace", atMs });
      next = { ...next, paceTimerAtMs: atMs };
    }
  } else if (next.afterPlayback && next.lastWordsDone) {
    if (bufferEndAtMs > nowMs) {
      // Wake up when the last words have played.
      if (next.paceTimerAtMs === null || next.paceTimerAtMs > bufferEndAtMs) {
        effects.push({ type: "schedule_timer", name: "pace", atMs: bufferEndAtMs });
        next = { ...next, paceTimerAtMs: bufferEndAtMs };
      }
    } else {
      next = finishAfterPlayback(next, effects);
    }
  }
  return next;
}

function finishAfterPlayback(state: SessionState, effects: SessionEffect[]): SessionState {
  switch (state.afterPlayback) {
    case "transfer":
      effects.push({ type: "call_control", action: "transfer", reason: "assistant transferred" });
      break;
    case "hangup":
      effects.push({ type: "call_control", action: "hangup", reason: "max_duration" });
      effects.push({ type: "close_call", reason: "max_duration" });
      break;
    case "end_call":
      effects.push({ type: "close_call", reason: "end_call" });
      break;
    default:
      return state;
  }
  return {
    ...state,
    afterPlayback: null,
    phase: state.afterPlayback === "transfer" ? state.phase : "closing",
  };
}

function log(
  level: "info" | "warn",
  event: string,
  fields: Record<string, unknown>,
): SessionEffect {
  return { type: "log", level, event, fields };
}
