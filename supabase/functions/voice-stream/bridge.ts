/**
 * The glue of one call: owns the Twilio Media Stream socket, the OpenAI Realtime socket, timers,
 * the store and tool calls, and feeds what happens into the pure `step` of `call_session.ts`,
 * performing the effects it returns. Audio never waits for the database.
 *
 * Handover: each stream knows its budgets (wall clock from the upgrade, CPU as its own handler
 * time). Near them it hands the call over (`begin_handover`): it closes its model session, saves
 * the conversation as a continuation, waits until Twilio played everything, and closes the Twilio
 * socket without a `stream_ended` report; voice-action's `<Connect action>` answer then opens a
 * new stream whose token names the continuation. A stream started with a continuation claims it
 * (once), skips the lookup, restores the conversation into a fresh model session and carries on
 * without a greeting.
 * @module
 */
import { type CpuMeter, createCpuMeter } from "./cpu_meter.ts";
import {
  DEFAULT_MAX_AHEAD_MS,
  initialSessionState,
  MULAW_BYTES_PER_MS,
  parseMarkName,
  type SessionEffect,
  type SessionEvent,
  type SessionOptions,
  type SessionState,
  step,
  type TranscriptTurn,
} from "./call_session.ts";
import {
  type Config,
  DEFAULT_STREAM_CPU_BUDGET_MS,
  DEFAULT_STREAM_WALL_CLOCK_SECONDS,
} from "../_shared/config.ts";
import type { Logger } from "../_shared/log.ts";
import { verifyStreamToken } from "../_shared/internal_auth.ts";
import { buildTwilioClear, buildTwilioMark } from "../_shared/codec/twilio_media.ts";
import {
  concatBase64,
  readRealtimeFrame,
  readTwilioFrame,
  twilioMediaFromValidBase64,
} from "../_shared/codec/media_fast_path.ts";
import {
  buildAssistantTextMessage,
  buildConversationItemTruncate,
  buildFunctionCallItem,
  buildFunctionCallOutput,
  buildInputAudioBufferAppend,
  buildResponseCreate,
  buildSessionUpdate,
  buildUserTextMessage,
  type OpenAIFunctionToolSpec,
} from "../_shared/codec/openai_realtime.ts";
import { base64DecodedLength } from "../_shared/codec/pcm.ts";
import type { CallerContext, CallMetrics, CallTurnInput } from "../_shared/store/types.ts";
import {
  buildContinuationInstructions,
  buildGreetingInstructions,
  buildInstructions,
  buildResumeInstructions,
} from "./prompt.ts";
import {
  buildContinuationState,
  type ContinuationInterruption,
  type ContinuationState,
  type ContinuationToolResult,
  type ContinuationTurn,
  HANDOVER_FINAL_FRACTION,
  HANDOVER_HARD_FRACTION,
  HANDOVER_SOFT_FRACTION,
  handoverLevel,
  type HandoverSnapshot,
  heardPrefix,
  safeParseContinuationState,
  type StreamBudget,
  wallClockHandoverTimes,
} from "./handover.ts";
import { createAudioPipeline } from "./audio_pipeline.ts";
import { RecentCallerAudio } from "./recent_caller_audio.ts";

/** The minimal WebSocket surface the bridge uses (the platform's `WebSocket`). */
export interface BridgeSocket {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open", listener: () => void): void;
  addEventListener(
    type: "message",
    listener: (event: MessageEvent) => void,
  ): void;
  addEventListener(type: "close", listener: (event: CloseEvent) => void): void;
  addEventListener(type: "error", listener: (event: Event) => void): void;
}

/** Opens a Realtime socket; the default uses the platform's `WebSocket`. */
export type RealtimeConnector = (options: {
  url: string;
  model: string;
  apiKey: string;
}) => BridgeSocket;

/** What a tool call returned, as voice-action answered it. */
export interface ToolOutcome {
  /** JSON text for `function_call_output`. */
  output: string;
  effect: "end_call" | "transfer" | null;
  /** Set when the tool opened (true) or closed (false) a booking flow. */
  bookingInProgress?: boolean;
}

/** How the conversation's stream ended (voice-action's `<Connect action>` answer depends on it). */
export type StreamEndReason =
  | "assistant_ended"
  | "transferred"
  | "caller_hung_up"
  | "max_duration"
  | "model_failed"
  | "error";

/** voice-action, as the bridge sees it. */
export interface VoiceActionClient {
  callTool(request: {
    callSid: string;
    traceId: string;
    callId: string;
    name: string;
    arguments: string;
  }): Promise<ToolOutcome>;
  control(request: {
    callSid: string;
    traceId: string;
    action: "transfer" | "hangup" | "recover";
    reason: string;
  }): Promise<void>;
  /** Reports how the stream ended, before the socket closes. */
  streamEnded(request: {
    callSid: string;
    traceId: string;
    reason: StreamEndReason;
    bookingInProgress: boolean;
  }): Promise<void>;
}

/** An opaque timer handle. */
export type TimerHandle = unknown;

/** Timers, injectable so tests can drive them. */
export interface Timers {
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(id: TimerHandle): void;
}

/** Everything a call needs. */
export interface BridgeDeps {
  config:
    & Pick<
      Config,
      | "internalSecret"
      | "openaiRealtimeUrl"
      | "openaiRealtimeModel"
      | "openaiApiKey"
      | "openaiVoice"
      | "openaiTranscriptionModel"
      | "audioPipeline"
      | "lookupBudgetMs"
      | "maxCallSeconds"
    >
    /** Budgets of one stream; default to Supabase Free's 150 s and 2 s. */
    & Partial<
      Pick<
        Config,
        "streamWallClockSeconds" | "streamCpuBudgetMs" | "streamCpuMeter" | "callerAudioAppendMs"
      >
    >;
  log: Logger;
  /** Wall clock, ms since the epoch (token expiry). */
  clock: () => number;
  /** Monotonic clock, ms (pacing, latencies). */
  now: () => number;
  timers: Timers;
  store: {
    lookupCaller(to: string, from: string): Promise<CallerContext | null>;
    appendCallTurns(callSid: string, turns: CallTurnInput[]): Promise<number>;
    recordCallMetrics(callSid: string, metrics: CallMetrics): Promise<void>;
    /** Saves a handover's state; without it the stream never hands over. */
    saveCallContinuation?(
      callSid: string,
      traceId: string | null,
      state: Record<string, unknown>,
    ): Promise<string>;
    /**
     * Saves the conversation at a turn (replacing the call's previous checkpoint); without it a
     * stream whose worker dies cannot be resumed.
     */
    saveCallCheckpoint?(
      callSid: string,
      traceId: string | null,
      state: Record<string, unknown>,
    ): Promise<string>;
    /** Claims a continuation; without it streams that continue a call are refused. */
    claimCallContinuation?(
      continuationId: string,
      callSid: string,
    ): Promise<Record<string, unknown> | null>;
  };
  connectRealtime: RealtimeConnector;
  voiceAction: VoiceActionClient;
  /** Functions the model may call (voice-action's catalog). */
  tools: readonly OpenAIFunctionToolSpec[];
  /** Assistant audio at most this far ahead of real time at Twilio. Defaults to 500 ms. */
  maxAheadMs?: number;
  /**
   * Clock the bridge's own handler time (part of its CPU estimate) is measured with, ms. Defaults
   * to `now`; tests pass one they advance.
   */
  cpuClock?: () => number;
  /** The stream's CPU meter; defaults to `createCpuMeter` with `config.streamCpuMeter`. */
  cpuMeter?: CpuMeter;
  /**
   * Where the runtime dispatches `beforeunload` (`ev.detail.reason`) before it ends the worker.
   * Defaults to `globalThis`.
   */
  runtimeEvents?: EventTarget;
}

/** Transcript turns are written in batches this often. */
export const TURN_FLUSH_INTERVAL_MS = 1000;
/** Invalid or out-of-order frames logged per call before the bridge stops logging them. */
const MAX_LOGGED_BAD_FRAMES = 5;
/** A call is ended after this many invalid frames: it is not Twilio on the other side. */
const MAX_BAD_FRAMES = 500;
/** Leaves time for the goodbye before the time limit. */
const GOODBYE_LEAD_MS = 8000;
/**
 * A handover waits this long at most for Twilio to echo the last mark: closing the stream drops
 * unplayed audio. More than `DEFAULT_MAX_AHEAD_MS`, the most Twilio ever holds.
 */
const LAST_MARK_WAIT_MS = 700;
/** Transcript turns of the stream kept for the handover (a stream is at most a few minutes). */
const MAX_STREAM_TURNS = 500;
/** Caller audio from this long before `speech_started` is carried too (VAD prefix and delay). */
const CALLER_PREROLL_MS = 1000;
/** A continuation id: a uuid (the token binds it; this only keeps junk away from the database). */
const CONTINUATION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const OPEN = 1;

interface CallIdentity {
  callSid: string;
  traceId: string;
  from: string;
  to: string;
}

/**
 * Runs one call on an accepted Twilio socket; resolves when the call is over and everything is
 * flushed (the caller passes the promise to `EdgeRuntime.waitUntil`).
 */
export function runCallBridge(
  twilio: BridgeSocket,
  deps: BridgeDeps,
): Promise<void> {
  const options: SessionOptions = {
    maxAheadMs: deps.maxAheadMs ?? DEFAULT_MAX_AHEAD_MS,
    modelOutputBytesPerMs: MULAW_BYTES_PER_MS,
    appendEveryMs: deps.config.callerAudioAppendMs,
  };
  const pipeline = createAudioPipeline(deps.config.audioPipeline);
  let state: SessionState = initialSessionState();
  let log = deps.log;
  let identity: CallIdentity | null = null;
  let streamSid = "";
  let model: BridgeSocket | null = null;
  let context: CallerContext | null = null;
  let lookupMs: number | null = null;
  let badFrames = 0;
  let frameProblemsLogged = 0;
  let closed = false;
  let startedAt = 0;
  let bookingInProgress = false;
  let transferred = false;
  // Handover bookkeeping (see the module doc).
  const upgradedAt = deps.now();
  const cpuClock = deps.cpuClock ?? deps.now;
  const budget: StreamBudget = {
    wallClockMs: (deps.config.streamWallClockSeconds ?? DEFAULT_STREAM_WALL_CLOCK_SECONDS) * 1000,
    cpuMs: deps.config.streamCpuBudgetMs ?? DEFAULT_STREAM_CPU_BUDGET_MS,
  };
  const canHandOver = deps.store.saveCallContinuation !== undefined;
  const cpuMeter = deps.cpuMeter ?? createCpuMeter({ mode: deps.config.streamCpuMeter });
  // The next CPU figure worth a look (the budget check is skipped below it, every frame).
  let cpuCheckAtMs = canHandOver ? budget.cpuMs * HANDOVER_SOFT_FRACTION : Infinity;
  let resumed: ContinuationState | null = null;
  let resumedFrom: string | null = null;
  let callStartedAtMs = 0;
  let handingOver = false;
  let markWaiter: (() => void) | null = null;
  let lastAssistantTranscript: { itemId: string; text: string } | null = null;
  const streamTurns: ContinuationTurn[] = [];
  const toolResults: ContinuationToolResult[] = [];
  const toolArguments = new Map<string, string>();
  // The caller audio appended lately (mu-law), for words a final handover cuts off.
  const recentCallerAudio = new RecentCallerAudio();
  let speechStartedAtMs: number | null = null;
  const timers = new Map<string, TimerHandle>();
  const pendingTurns: TranscriptTurn[] = [];
  const background: Promise<unknown>[] = [];
  let flushTimer: TimerHandle | null = null;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => resolveDone = resolve);

  const dispatch = (event: SessionEvent) => {
    const result = step(state, event, deps.now(), options);
    state = result.state;
    for (const effect of result.effects) perform(effect);
    if (markWaiter !== null) markWaiter();
  };

  /** Charges one message and its handler's time; near the CPU budget, asks for a handover. */
  function chargeCpu(ms: number): void {
    cpuMeter.charge(ms);
    const usedMs = cpuMeter.usedMs();
    if (usedMs < cpuCheckAtMs) return;
    const level = handoverLevel(budget, { elapsedMs: 0, cpuMs: usedMs });
    cpuCheckAtMs = budget.cpuMs *
      (level === "soft"
        ? HANDOVER_HARD_FRACTION
        : level === "hard"
        ? HANDOVER_FINAL_FRACTION
        : Infinity);
    if (level !== null) dispatch({ type: "handover_due", level });
  }

  /** Runs a socket handler, charging its time to the stream's CPU estimate. */
  function metered(handler: () => void): void {
    const started = cpuClock();
    try {
      handler();
    } finally {
      chargeCpu(cpuClock() - started);
    }
  }

  /** The CPU figures operators read: what the budget counts, by which meter, and the estimate. */
  function cpuFields(): { cpuMs: number; cpuMeter: string; estimatedCpuMs: number } {
    return {
      cpuMs: Math.round(cpuMeter.usedMs()),
      cpuMeter: cpuMeter.kind,
      estimatedCpuMs: Math.round(cpuMeter.estimatedMs()),
    };
  }

  /**
   * The edge runtime's warning that it will end this worker: `ev.detail.reason` is its
   * `WillTerminateReason` in snake_case (`cpu`, `memory`, `wall_clock`, `early_drop`,
   * `termination`). Hand over now, before the end: the wall clock (and an early drop) leaves a few
   * seconds, so the stream still waits for the caller to pause; the others do not wait.
   */
  function onBeforeUnload(event: Event): void {
    const detail = (event as CustomEvent<{ reason?: unknown } | null>).detail;
    const reason = typeof detail?.reason === "string" ? detail.reason : "unknown";
    if (closed || !canHandOver) return;
    log.warn("runtime_beforeunload", { reason, ...cpuFields() });
    const patient = reason === "wall_clock" || reason === "early_drop";
    dispatch({ type: "handover_due", level: patient ? "hard" : "final" });
  }
  const runtimeEvents = deps.runtimeEvents ?? globalThis;

  const sendTwilio = (text: string) => {
    if (twilio.readyState === OPEN) twilio.send(text);
  };
  const sendModel = (text: string) => {
    if (model && model.readyState === OPEN) model.send(text);
  };

  function perform(effect: SessionEffect): void {
    switch (effect.type) {
      case "send_twilio_media": {
        // Queued payloads are valid base64 (checked on arrival), so joining them cannot fail.
        const payload = effect.payloads.length === 1
          ? effect.payloads[0]
          : concatBase64(effect.payloads);
        if (payload !== null) sendTwilio(twilioMediaFromValidBase64(streamSid, payload));
        break;
      }
      case "send_twilio_mark":
        sendTwilio(buildTwilioMark(streamSid, effect.name));
        break;
      case "send_twilio_clear":
        sendTwilio(buildTwilioClear(streamSid));
        break;
      case "send_openai_append": {
        const mulaw = effect.payloads.length === 1
          ? effect.payloads[0]
          : concatBase64(effect.payloads);
        if (mulaw === null) break;
        if (canHandOver) recentCallerAudio.keep(deps.now(), mulaw);
        const audio = pipeline.inbound(mulaw);
        if (audio) sendModel(buildInputAudioBufferAppend(audio));
        break;
      }
      case "send_openai_session_update_and_greet": {
        const org = context?.org;
        let instructions = buildInstructions(context, deps.clock());
        if (resumed) instructions = buildContinuationInstructions(instructions, resumed);
        sendModel(buildSessionUpdate({
          model: deps.config.openaiRealtimeModel,
          instructions,
          voice: org?.voice || deps.config.openaiVoice,
          inputAudioFormat: pipeline.modelFormat,
          outputAudioFormat: pipeline.modelFormat,
          transcriptionModel: deps.config.openaiTranscriptionModel,
          turnDetection: {
            threshold: org?.vad.threshold ?? 0.6,
            silenceDurationMs: org?.vad.silenceDurationMs ?? 400,
            prefixPaddingMs: org?.vad.prefixPaddingMs ?? 300,
            createResponse: true,
            interruptResponse: true,
          },
          tools: deps.tools,
        }));
        if (resumed) {
          restoreConversation(resumed, instructions);
          break;
        }
        sendModel(
          buildResponseCreate({
            instructions: buildGreetingInstructions(context),
          }),
        );
        log.info("greeting_triggered", {
          sinceStartMs: Math.round(deps.now() - startedAt),
          known: Boolean(context?.client),
        });
        break;
      }
      case "send_openai_truncate":
        sendModel(
          buildConversationItemTruncate(effect.itemId, effect.audioEndMs),
        );
        break;
      case "send_openai_function_output":
        sendModel(buildFunctionCallOutput(effect.callId, effect.output));
        break;
      case "send_openai_response_create":
        sendModel(buildResponseCreate(
          effect.instructions ? { instructions: effect.instructions } : {},
        ));
        break;
      case "send_openai_user_text":
        sendModel(buildUserTextMessage(effect.text));
        break;
      case "call_tool":
        runTool(effect.callId, effect.name, effect.arguments);
        break;
      case "call_control":
        track(control(effect.action, effect.reason));
        break;
      case "record_turn":
        pendingTurns.push(effect.turn);
        if (streamTurns.length < MAX_STREAM_TURNS) {
          const { sequence, speaker, text } = effect.turn;
          streamTurns.push({ sequence, speaker, text });
        }
        scheduleTurnFlush();
        break;
      case "schedule_timer":
        schedule(effect.name, effect.atMs);
        break;
      case "log":
        if (effect.event === "frame_out_of_order") logFrameProblem(effect.event, effect.fields);
        else log[effect.level](effect.event, effect.fields);
        break;
      case "close_call":
        void closeCall(effect.reason);
        break;
      case "begin_handover":
        void handOver(effect);
        break;
    }
  }

  /** The caller's unfinished sentence so far (base64 mu-law), from just before it started. */
  function unfinishedCallerAudio(): string | null {
    return recentCallerAudio.since((speechStartedAtMs ?? deps.now()) - CALLER_PREROLL_MS);
  }

  /**
   * Gives a fresh model session the conversation so far: the recent turns as conversation items,
   * carried tool results as call + output, then a response if the assistant must speak at once.
   */
  function restoreConversation(continuation: ContinuationState, instructions: string): void {
    for (const turn of continuation.recentTurns) {
      sendModel(
        turn.speaker === "caller"
          ? buildUserTextMessage(turn.text)
          : buildAssistantTextMessage(turn.text),
      );
    }
    for (const tool of continuation.carriedToolResults) {
      sendModel(buildFunctionCallItem(tool.callId, tool.name, tool.arguments));
      sendModel(buildFunctionCallOutput(tool.callId, tool.output));
    }
    // The caller's cut-off words come first, then the audio that arrived since (early audio).
    const callerAudio = continuation.callerAudio
      ? pipeline.inbound(continuation.callerAudio)
      : null;
    if (callerAudio) sendModel(buildInputAudioBufferAppend(callerAudio));
    if (continuation.respond) {
      sendModel(buildResponseCreate({
        instructions: buildResumeInstructions(instructions, continuation.interrupted),
      }));
    }
    log.info("continuation_restored", {
      continuationId: resumedFrom,
      handovers: continuation.handovers,
      turns: continuation.recentTurns.length,
      carriedToolResults: continuation.carriedToolResults.length,
      resumed: continuation.respond,
      readyMs: Math.round(deps.now() - startedAt),
    });
  }

  function schedule(name: "pace" | "goodbye_grace", atMs: number): void {
    const existing = timers.get(name);
    if (existing !== undefined) deps.timers.clearTimeout(existing);
    const delay = Math.max(0, atMs - deps.now());
    timers.set(
      name,
      deps.timers.setTimeout(() => {
        timers.delete(name);
        // Pacing sends the assistant's audio: its time counts towards the CPU estimate too.
        metered(() => dispatch({ type: "timer_fired", name }));
      }, delay),
    );
  }

  /** Logs a bad frame; only the first few per call, so a misbehaving peer cannot flood logs. */
  function logFrameProblem(event: string, fields: Record<string, unknown>): void {
    frameProblemsLogged++;
    if (frameProblemsLogged <= MAX_LOGGED_BAD_FRAMES) log.warn(event, fields);
  }

  function rejectFrame(code: string, message: string): void {
    badFrames++;
    logFrameProblem("frame_rejected", { code, msg: message });
    if (badFrames >= MAX_BAD_FRAMES) {
      log.warn("security_rejected", { reason: "too_many_bad_frames" });
      void closeCall("bad_frames");
    }
  }

  function track(promise: Promise<unknown>): void {
    const guarded = promise.catch((error) => log.error("bridge_task_failed", { error }));
    background.push(guarded);
  }

  function runTool(callId: string, name: string, args: string): void {
    if (!identity) return;
    const started = deps.now();
    const { callSid, traceId } = identity;
    toolArguments.set(callId, args);
    track(
      deps.voiceAction.callTool({
        callSid,
        traceId,
        callId,
        name,
        arguments: args,
      }).then(
        (outcome) => {
          if (outcome.bookingInProgress !== undefined) {
            bookingInProgress = outcome.bookingInProgress;
          }
          toolResults.push({ name, arguments: args, output: outcome.output });
          if (toolResults.length > 10) toolResults.shift();
          log.info("tool_call", {
            name,
            ms: Math.round(deps.now() - started),
            outcome: "ok",
          });
          dispatch({
            type: "tool_result",
            callId,
            name,
            output: outcome.output,
            effect: outcome.effect,
          });
        },
        (error) => {
          log.warn("tool_call", {
            name,
            ms: Math.round(deps.now() - started),
            outcome: "failed",
            error,
          });
          dispatch({
            type: "tool_result",
            callId,
            name,
            output: JSON.stringify({
              error: "The system could not complete this right now. Apologise briefly and offer " +
                "to take a message or transfer the caller.",
            }),
            effect: null,
          });
        },
      ),
    );
  }

  async function control(
    action: "transfer" | "hangup" | "recover",
    reason: string,
  ) {
    if (!identity) return;
    if (action === "transfer") transferred = true;
    await deps.voiceAction.control({
      callSid: identity.callSid,
      traceId: identity.traceId,
      action,
      reason,
    });
  }

  function scheduleTurnFlush(): void {
    if (flushTimer !== null) return;
    flushTimer = deps.timers.setTimeout(() => {
      flushTimer = null;
      track(flushTurns());
    }, TURN_FLUSH_INTERVAL_MS);
  }

  async function flushTurns(): Promise<void> {
    if (!identity || pendingTurns.length === 0) return;
    const batch = pendingTurns.splice(0, pendingTurns.length);
    try {
      await deps.store.appendCallTurns(
        identity.callSid,
        batch.map((turn) => ({ ...turn })),
      );
      // The stored turns are the checkpoint's: a resumed stream continues after them.
      checkpoint();
    } catch (error) {
      // Keep them for the final flush; the database deduplicates by sequence.
      pendingTurns.unshift(...batch);
      log.warn("turns_flush_failed", { error, turns: batch.length });
    }
  }

  let checkpointing = false;
  let checkpointAgain = false;

  /** The conversation so far, as a handover or a checkpoint leaves it for the next stream. */
  function conversationState(
    moment: Pick<
      HandoverSnapshot,
      "carriedToolResults" | "interrupted" | "callerAudio" | "respond"
    >,
  ): ContinuationState {
    return buildContinuationState({
      previous: resumed,
      callStartedAtMs,
      nextSequence: state.nextSequence,
      turns: streamTurns,
      callerContext: context,
      bookingInProgress,
      toolResults,
      ...moment,
    });
  }

  /**
   * Saves the conversation as the call's checkpoint, in the background: if this worker dies
   * without warning, voice-action resumes the call from it on a new stream. One save at a time;
   * a turn that arrives meanwhile saves again after it.
   */
  function checkpoint(): void {
    const save = deps.store.saveCallCheckpoint;
    if (!save || closed || !identity) return;
    if (checkpointing) {
      checkpointAgain = true;
      return;
    }
    checkpointing = true;
    const call = identity;
    const lastSpeaker = streamTurns.at(-1)?.speaker ?? resumed?.recentTurns.at(-1)?.speaker;
    const snapshot = conversationState({
      carriedToolResults: [],
      interrupted: null,
      callerAudio: null,
      // The caller spoke last: the resumed assistant answers at once; else it waits for them.
      respond: lastSpeaker === "caller",
    });
    track(
      save(call.callSid, call.traceId || null, snapshot as unknown as Record<string, unknown>)
        .then(
          () => {},
          (error) => log.warn("checkpoint_failed", { error }),
        ).finally(() => {
          checkpointing = false;
          if (checkpointAgain) {
            checkpointAgain = false;
            checkpoint();
          }
        }),
    );
  }

  async function start(message: {
    streamSid: string;
    callSid: string;
    customParameters: Record<string, string>;
  }): Promise<void> {
    const params = message.customParameters ?? {};
    const traceId = params.traceId ?? "";
    const continuationId = params.continuation || null;
    const check = await verifyStreamToken(
      deps.config.internalSecret,
      params.token,
      {
        callSid: message.callSid,
        traceId,
        nowMs: deps.clock(),
        continuationId,
      },
    );
    // The stream may have ended while the token was checked: then no model session may open.
    if (closed) return;
    const refuse = (reason: string) => {
      log.warn("security_rejected", { reason, callSid: message.callSid, traceId });
      closed = true;
      state = { ...state, phase: "closed" };
      twilio.close(1008, "Invalid stream token");
      resolveDone();
    };
    if (!check.ok || params.callSid !== message.callSid) {
      refuse(check.ok ? "token_call_mismatch" : `token_${check.reason}`);
      return;
    }
    if (continuationId !== null) {
      // Claimed before any model session opens: a reused or unknown continuation gets none.
      const claimStarted = deps.now();
      const claimed = await claimContinuation(continuationId, message.callSid);
      if (closed) return;
      if (claimed === null) {
        refuse("continuation_refused");
        return;
      }
      resumed = claimed;
      resumedFrom = continuationId;
      bookingInProgress = claimed.bookingInProgress;
      log.debug("continuation_claimed", {
        continuationId,
        claimMs: Math.round(deps.now() - claimStarted),
      });
    }
    callStartedAtMs = resumed?.callStartedAtMs ?? deps.clock();
    identity = {
      callSid: message.callSid,
      traceId,
      from: params.from ?? "",
      to: params.to ?? "",
    };
    log = deps.log.child({ traceId, callSid: message.callSid });
    log.info("call_started", {
      from: identity.from,
      to: identity.to,
      pipeline: pipeline.name,
      cpuMeter: cpuMeter.kind,
      ...(resumed ? { continuationId: resumedFrom, handovers: resumed.handovers } : {}),
    });

    // Lookup and model connection run in parallel; the session starts when both are settled. A
    // continued call has its caller context already.
    const lookup = resumed ? Promise.resolve(resumed.callerContext) : lookupWithBudget(identity);
    const modelOpen = openModel();
    const [found, opened] = await Promise.all([lookup, modelOpen]);
    context = found;
    if (!opened || closed) return;
    // A continued call is checkpointed at once: its worker may die before the next turn.
    if (resumed) checkpoint();
    // The call's limit counts from its first stream: handovers do not reset it.
    const maxSeconds = context?.org.maxCallSeconds ?? deps.config.maxCallSeconds;
    const elapsedCallMs = Math.max(0, deps.clock() - callStartedAtMs);
    const limitMs = Math.max(5_000, maxSeconds * 1000 - GOODBYE_LEAD_MS - elapsedCallMs);
    timers.set(
      "max_duration",
      deps.timers.setTimeout(
        () => dispatch({ type: "max_duration_reached" }),
        limitMs,
      ),
    );
    scheduleHandoverTimers();
    dispatch({
      type: "openai_ready",
      nextSequence: resumed?.nextSequence,
      responds: resumed ? resumed.respond : true,
    });
  }

  /** Claims and checks a continuation; null (logged) when it cannot be used. */
  async function claimContinuation(
    continuationId: string,
    callSid: string,
  ): Promise<ContinuationState | null> {
    if (!deps.store.claimCallContinuation || !CONTINUATION_ID.test(continuationId)) return null;
    let claimed: Record<string, unknown> | null;
    try {
      claimed = await deps.store.claimCallContinuation(continuationId, callSid);
    } catch (error) {
      log.warn("continuation_claim_failed", { continuationId, error });
      return null;
    }
    if (claimed === null) return null;
    const parsed = safeParseContinuationState(claimed);
    if (!parsed.success) {
      log.warn("continuation_invalid", { continuationId, error: parsed.error });
      return null;
    }
    return parsed.data;
  }

  /** The wall clock asks for a handover at 80%, 95% and 99% of the stream's budget. */
  function scheduleHandoverTimers(): void {
    if (!canHandOver) return;
    const { softAtMs, hardAtMs, finalAtMs } = wallClockHandoverTimes(budget);
    const sinceUpgrade = deps.now() - upgradedAt;
    for (
      const [name, atMs, level] of [
        ["handover_soft", softAtMs, "soft"],
        ["handover_hard", hardAtMs, "hard"],
        ["handover_final", finalAtMs, "final"],
      ] as const
    ) {
      timers.set(
        name,
        deps.timers.setTimeout(() => {
          timers.delete(name);
          dispatch({ type: "handover_due", level });
        }, Math.max(0, atMs - sinceUpgrade)),
      );
    }
  }

  /** Resolves once Twilio echoed the mark after the last audio sent, or after `timeoutMs`. */
  function lastMarkEchoed(timeoutMs: number): Promise<void> {
    const played = () => {
      const itemId = state.playingItemId;
      if (itemId === null || twilio.readyState !== OPEN) return true;
      const item = state.items[itemId];
      return item.ackedMs >= item.sentMs;
    };
    if (played()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = deps.timers.setTimeout(finish, timeoutMs);
      function finish() {
        deps.timers.clearTimeout(timer);
        markWaiter = null;
        resolve();
      }
      markWaiter = () => {
        if (played()) finish();
      };
    });
  }

  /**
   * Hands the call over: the model session closes first (nothing changes the saved state after
   * it), the continuation is saved while Twilio plays out, then the Twilio socket closes and
   * voice-action's `<Connect action>` answer opens the next stream.
   */
  async function handOver(
    effect: Extract<SessionEffect, { type: "begin_handover" }>,
  ): Promise<void> {
    if (closed || !identity || !deps.store.saveCallContinuation) return;
    closed = true;
    handingOver = true;
    const call = identity;
    const startedHandover = deps.now();
    for (const id of timers.values()) deps.timers.clearTimeout(id);
    timers.clear();
    if (flushTimer !== null) deps.timers.clearTimeout(flushTimer);
    if (model && model.readyState <= OPEN) model.close(1000, "handover");
    let interrupted: ContinuationInterruption | null = null;
    if (effect.interrupted) {
      const transcript = lastAssistantTranscript?.itemId === effect.interrupted.itemId
        ? lastAssistantTranscript.text
        : "";
      const item = state.items[effect.interrupted.itemId];
      interrupted = {
        text: transcript,
        heardText: heardPrefix(transcript, effect.interrupted.playedMs, item?.receivedMs ?? 0),
      };
    }
    const continuation = conversationState({
      carriedToolResults: effect.carriedToolResults.map((tool) => ({
        ...tool,
        arguments: toolArguments.get(tool.callId) ?? "{}",
      })),
      interrupted,
      callerAudio: effect.callerInterrupted ? unfinishedCallerAudio() : null,
      respond: effect.respond,
    });
    const elapsedMs = Math.round(startedHandover - upgradedAt);
    log.info("handover_started", {
      forced: effect.forced,
      elapsedMs,
      ...cpuFields(),
      respond: effect.respond,
      interrupted: effect.interrupted !== null,
      callerInterrupted: effect.callerInterrupted,
      carriedToolResults: effect.carriedToolResults.length,
      nextSequence: continuation.nextSequence,
    });
    let continuationId: string | null = null;
    const saving = deps.store.saveCallContinuation(
      call.callSid,
      call.traceId || null,
      continuation as unknown as Record<string, unknown>,
    ).then(
      (id) => continuationId = id,
      (error) => log.error("handover_failed", { error }),
    );
    // Twilio drops unplayed audio on close; a cut-off sentence was cleared already.
    await Promise.all([saving, effect.interrupted ? null : lastMarkEchoed(LAST_MARK_WAIT_MS)]);
    await Promise.allSettled(background);
    const callerGone = twilio.readyState !== OPEN;
    if (continuationId === null || callerGone) {
      // No handover after all: report the end so voice-action's answer fits (an apology when the
      // state could not be saved, nothing when the caller hung up meanwhile).
      await deps.voiceAction.streamEnded({
        callSid: call.callSid,
        traceId: call.traceId,
        reason: callerGone ? "caller_hung_up" : "error",
        bookingInProgress,
      }).catch((error) => log.warn("stream_end_report_failed", { error }));
    }
    if (twilio.readyState <= OPEN) twilio.close(1000, "handover");
    const durationMs = Math.round(deps.now() - startedAt);
    log.info("call_ended", {
      reason: continuationId === null ? "handover_failed" : "handover",
      continuationId,
      prepMs: Math.round(deps.now() - startedHandover),
      durationMs,
      ...cpuFields(),
      bargeIns: state.metrics.bargeIns,
      toolCalls: state.metrics.toolCalls,
      firstAudioMs: state.metrics.firstAudioMs,
      framesIn: state.metrics.framesIn,
      framesOut: state.metrics.framesOut,
    });
    await flushTurns();
    await writeMetrics(call);
    resolveDone();
  }

  /** This stream's metrics; the database adds them to the call's (one row per call). */
  async function writeMetrics(call: CallIdentity): Promise<void> {
    await deps.store.recordCallMetrics(call.callSid, {
      lookupMs,
      firstAudioMs: state.metrics.firstAudioMs,
      bargeIns: state.metrics.bargeIns,
      toolCalls: state.metrics.toolCalls,
      modelInputTokens: state.metrics.inputTokens,
      modelOutputTokens: state.metrics.outputTokens,
      streamSeconds: Math.round((deps.now() - startedAt) / 100) / 10,
    }).catch((error) => log.warn("metrics_store_failed", { error }));
  }

  async function lookupWithBudget(
    call: CallIdentity,
  ): Promise<CallerContext | null> {
    const started = deps.now();
    let timer: TimerHandle | undefined;
    const budget = new Promise<"timeout">((resolve) => {
      timer = deps.timers.setTimeout(
        () => resolve("timeout"),
        deps.config.lookupBudgetMs,
      );
    });
    try {
      const result = await Promise.race([
        deps.store.lookupCaller(call.to, call.from),
        budget,
      ]);
      lookupMs = Math.round(deps.now() - started);
      if (result === "timeout") {
        log.warn("lookup_timeout", {
          lookupMs,
          budgetMs: deps.config.lookupBudgetMs,
        });
        return null;
      }
      if (result?.client) {
        log.info("client_identified", { lookupMs, clientId: result.client.id });
      } else {
        log.info("client_unknown", { lookupMs, orgKnown: result !== null });
      }
      return result;
    } catch (error) {
      lookupMs = Math.round(deps.now() - started);
      log.warn("lookup_failed", { lookupMs, error });
      return null;
    } finally {
      if (timer !== undefined) deps.timers.clearTimeout(timer);
    }
  }

  function openModel(): Promise<boolean> {
    const started = deps.now();
    return new Promise<boolean>((resolve) => {
      let socket: BridgeSocket;
      try {
        if (!deps.config.openaiApiKey) {
          throw new Error("OPENAI_API_KEY is not set");
        }
        socket = deps.connectRealtime({
          url: deps.config.openaiRealtimeUrl,
          model: deps.config.openaiRealtimeModel,
          apiKey: deps.config.openaiApiKey,
        });
      } catch (error) {
        log.warn("model_connect_failed", { error });
        dispatch({ type: "openai_failed", reason: "connect_failed" });
        resolve(false);
        return;
      }
      model = socket;
      let opened = false;
      socket.addEventListener("open", () => {
        opened = true;
        log.info("model_connected", {
          connectMs: Math.round(deps.now() - started),
        });
        resolve(true);
      });
      socket.addEventListener("message", (event) => metered(() => onModelMessage(event.data)));
      socket.addEventListener("error", () => {});
      socket.addEventListener("close", (event) => {
        if (!opened) {
          // The connection or handshake failed (refused, TLS, DNS, a non-101 answer).
          log.warn("model_connect_failed", { code: event.code, error: event.reason || null });
          resolve(false);
        }
        if (closed || handingOver || state.phase === "closing" || state.phase === "closed") {
          return;
        }
        dispatch({
          type: "openai_failed",
          reason: opened ? `socket_closed_${event.code}` : `connect_refused_${event.code}`,
        });
      });
    });
  }

  function onModelMessage(data: unknown): void {
    // Events still in flight from a session being handed over change nothing: its state is
    // saved (a tool call it asked for is not run; the next session asks again if it must).
    if (typeof data !== "string" || handingOver) return;
    // One parse per event: audio deltas through the fast path, the rest fully validated.
    const frame = readRealtimeFrame(data);
    if (frame.kind === "audio_delta") {
      const { delta } = frame;
      const received = base64DecodedLength(delta.delta);
      const converted = pipeline.outbound(delta.delta);
      if (!converted) return;
      dispatch({
        type: "openai_audio_delta",
        responseId: delta.responseId,
        itemId: delta.itemId,
        payload: converted.payload,
        durationMs: converted.durationMs,
        receivedMs: received / pipeline.modelBytesPerMs,
      });
      return;
    }
    const parsed = frame.result;
    if (!parsed.success) {
      log.warn("model_event_rejected", { code: parsed.error.code });
      return;
    }
    const event = parsed.data;
    switch (event.type) {
      case "response.created":
        dispatch({
          type: "openai_response_created",
          responseId: event.response.id,
        });
        break;
      case "input_audio_buffer.speech_started":
        speechStartedAtMs = deps.now();
        dispatch({
          type: "openai_speech_started",
          itemId: event.item_id ?? null,
          audioStartMs: event.audio_start_ms,
        });
        break;
      case "input_audio_buffer.speech_stopped":
        dispatch({ type: "openai_speech_stopped", itemId: event.item_id ?? null });
        break;
      case "conversation.item.input_audio_transcription.completed":
        dispatch({
          type: "openai_input_transcript",
          itemId: event.item_id,
          transcript: event.transcript,
        });
        break;
      case "response.output_audio_transcript.done":
        lastAssistantTranscript = { itemId: event.item_id, text: event.transcript };
        dispatch({
          type: "openai_output_transcript",
          itemId: event.item_id,
          transcript: event.transcript,
        });
        break;
      case "response.function_call_arguments.done":
        dispatch({
          type: "openai_function_call",
          callId: event.call_id,
          name: event.name,
          arguments: event.arguments,
        });
        break;
      case "response.done": {
        const usage = (event.response as {
          usage?: { input_tokens?: number; output_tokens?: number };
        })
          .usage;
        dispatch({
          type: "openai_response_done",
          responseId: event.response.id ?? null,
          status: event.response.status ?? null,
          inputTokens: usage?.input_tokens ?? 0,
          outputTokens: usage?.output_tokens ?? 0,
        });
        break;
      }
      case "error": {
        const { type, code, message } = event.error;
        // Our own protocol mistakes are logged; the service failing ends the call gracefully.
        if (type === "invalid_request_error") {
          log.warn("model_error", { errorType: type, code, msg: message });
        } else {
          log.error("model_error", { errorType: type, code, msg: message });
          dispatch({ type: "openai_failed", reason: `error_${code ?? type}` });
        }
        break;
      }
      default:
        break;
    }
  }

  async function closeCall(reason: string): Promise<void> {
    if (closed) return;
    closed = true;
    for (const id of timers.values()) deps.timers.clearTimeout(id);
    timers.clear();
    if (flushTimer !== null) deps.timers.clearTimeout(flushTimer);
    // No leaked sessions: the model socket goes first.
    if (model && model.readyState <= OPEN) model.close(1000, "call ended");
    const call = identity;
    if (call) {
      const durationMs = Math.round(deps.now() - startedAt);
      log.info("call_ended", {
        reason,
        durationMs,
        bargeIns: state.metrics.bargeIns,
        toolCalls: state.metrics.toolCalls,
        firstAudioMs: state.metrics.firstAudioMs,
        framesIn: state.metrics.framesIn,
        framesOut: state.metrics.framesOut,
      });
      // The stream's end reason tells voice-action's <Connect action> how to continue.
      await deps.voiceAction.streamEnded({
        callSid: call.callSid,
        traceId: call.traceId,
        reason: streamEndReason(reason, transferred),
        bookingInProgress,
      }).catch((error) => log.warn("stream_end_report_failed", { error }));
    }
    // Let in-flight control requests (recover, transfer) land before Twilio moves on.
    await Promise.allSettled(background);
    if (twilio.readyState <= OPEN) twilio.close(1000, reason);
    if (call) {
      await flushTurns();
      await writeMetrics(call);
    }
    resolveDone();
  }

  // The handler below is timed by a listener before and one after it (listeners run in order).
  function onTwilioMessage(text: unknown): void {
    if (typeof text !== "string") {
      rejectFrame("binary_frame", "Cannot read Twilio frame: Media Streams frames are JSON text");
      return;
    }
    // One parse per frame: audio through the fast path, everything else fully validated.
    const frame = readTwilioFrame(text);
    if (frame.kind === "media") {
      dispatch({
        type: "twilio_media",
        payload: frame.media.payload,
        durationMs: base64DecodedLength(frame.media.payload) / MULAW_BYTES_PER_MS,
      });
      return;
    }
    const parsed = frame.result;
    if (!parsed.success) {
      rejectFrame(parsed.error.code, parsed.error.message);
      return;
    }
    const message = parsed.data;
    switch (message.event) {
      case "connected":
        break;
      case "start":
        if (identity || state.phase !== "awaiting_start") {
          logFrameProblem("frame_out_of_order", { frame: "start" });
          break;
        }
        // The session starts at once so caller audio is kept while the token is checked; the
        // model session opens only after the check.
        streamSid = message.start.streamSid;
        startedAt = deps.now();
        dispatch({ type: "twilio_start", streamSid });
        track(start({
          streamSid: message.start.streamSid,
          callSid: message.start.callSid,
          customParameters: message.start.customParameters ?? {},
        }));
        break;
      case "media": // readTwilioFrame returned it as kind "media" above
        break;
      case "mark":
        // Marks echoed after a clear carry an old generation and are expected; a name that is
        // not one of ours is not.
        if (parseMarkName(message.mark.name) === null) {
          logFrameProblem("frame_out_of_order", { frame: "mark", reason: "unknown_mark" });
          break;
        }
        dispatch({ type: "twilio_mark", name: message.mark.name });
        break;
      case "dtmf":
        dispatch({ type: "twilio_dtmf", digit: message.dtmf.digit });
        break;
      case "stop":
        dispatch({ type: "twilio_stop" });
        break;
    }
  }
  twilio.addEventListener("message", (event) => metered(() => onTwilioMessage(event.data)));
  twilio.addEventListener("close", () => {
    if (!identity) {
      closed = true;
      if (model && model.readyState <= OPEN) model.close(1000, "call ended");
      resolveDone();
      return;
    }
    dispatch({ type: "twilio_closed" });
  });
  twilio.addEventListener("error", () => {});
  runtimeEvents.addEventListener("beforeunload", onBeforeUnload);

  return done.finally(() => runtimeEvents.removeEventListener("beforeunload", onBeforeUnload));
}

/** Maps the session's close reason to the protocol's stream end reason. */
export function streamEndReason(
  closeReason: string,
  transferred: boolean,
): StreamEndReason {
  if (transferred) return "transferred";
  switch (closeReason) {
    case "end_call":
      return "assistant_ended";
    case "max_duration":
      return "max_duration";
    case "model_failed":
      return "model_failed";
    case "twilio_stop":
    case "twilio_closed":
      return "caller_hung_up";
    default:
      return "error";
  }
}
