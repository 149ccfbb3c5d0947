/**
 * One call, composed: the Twilio link and the model link feed what happens into the pure `step`
 * of `call_session.ts`, and the bridge performs the effects it returns through its parts: the
 * links send, the tool runner calls voice-action, the turn recorder writes the transcript, the
 * continuity keeps checkpoints and handover state, the budget guard watches the platform's
 * limits. Audio never waits for the database. The parts and the flow of one frame through them:
 * docs/architecture.md.
 *
 * Handover: each stream knows its budgets (wall clock from the upgrade, CPU by its meter). Near
 * them it hands the call over (`begin_handover`): it closes its model session, saves the
 * conversation as a continuation, waits until Twilio played everything, and closes the Twilio
 * socket without a `stream_ended` report; voice-action's `<Connect action>` answer then opens a
 * new stream whose token names the continuation. A stream started with a continuation claims it
 * (once), skips the lookup, restores the conversation into a fresh model session and carries on
 * without a greeting.
 * @module
 */
import {
  DEFAULT_MAX_AHEAD_MS,
  initialSessionState,
  MULAW_BYTES_PER_MS,
  type SessionEffect,
  type SessionEvent,
  type SessionOptions,
  type SessionState,
  step,
} from "./call_session.ts";
import { verifyStreamToken } from "../_shared/internal_auth.ts";
import {
  buildConversationItemTruncate,
  buildFunctionCallOutput,
  buildInputAudioBufferAppend,
  buildResponseCreate,
  buildUserTextMessage,
} from "../_shared/codec/openai_realtime.ts";
import { concatBase64 } from "../_shared/codec/media_fast_path.ts";
import type { CallerContext } from "../_shared/store/types.ts";
import { type AudioPipeline, createAudioPipeline } from "./audio_pipeline.ts";
import type {
  BridgeDeps,
  BridgeSocket,
  CallIdentity,
  CallScope,
  StreamEndReason,
} from "./bridge_deps.ts";
import { NamedTimers } from "./named_timers.ts";
import { StreamBudgetGuard } from "./stream_budget_guard.ts";
import { TwilioLink, type TwilioStart } from "./twilio_link.ts";
import { ModelLink } from "./model_link.ts";
import { sessionOpening } from "./model_session.ts";
import { TurnRecorder } from "./turn_recorder.ts";
import { ToolRunner } from "./tool_runner.ts";
import { type BeginHandover, CallContinuity } from "./call_continuity.ts";
import { lookupCallerWithinBudget } from "./caller_lookup.ts";

/** Leaves time for the goodbye before the time limit. */
const GOODBYE_LEAD_MS = 8000;
/**
 * A handover waits this long at most for Twilio to echo the last mark: closing the stream drops
 * unplayed audio. More than `DEFAULT_MAX_AHEAD_MS`, the most Twilio ever holds.
 */
const LAST_MARK_WAIT_MS = 700;

/**
 * Runs one call on an accepted Twilio socket; resolves when the call is over and everything is
 * flushed (the caller passes the promise to `EdgeRuntime.waitUntil`).
 */
export function runCallBridge(twilio: BridgeSocket, deps: BridgeDeps): Promise<void> {
  return new CallBridge(twilio, deps).run();
}

/** The parts of one call and the session's state; see the module doc. */
class CallBridge {
  readonly #deps: BridgeDeps;
  readonly #options: SessionOptions;
  readonly #pipeline: AudioPipeline;
  readonly #scope: CallScope;
  readonly #background: Promise<unknown>[] = [];
  readonly #timers: NamedTimers;
  readonly #guard: StreamBudgetGuard;
  readonly #twilio: TwilioLink;
  readonly #model: ModelLink;
  readonly #turns: TurnRecorder;
  readonly #tools: ToolRunner;
  readonly #continuity: CallContinuity;
  readonly #canHandOver: boolean;
  #state: SessionState = initialSessionState();
  #context: CallerContext | null = null;
  #lookupMs: number | null = null;
  #startedAt = 0;
  #closed = false;
  #handingOver = false;
  #markWaiter: (() => void) | null = null;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(twilioSocket: BridgeSocket, deps: BridgeDeps) {
    this.#deps = deps;
    this.#options = {
      maxAheadMs: deps.maxAheadMs ?? DEFAULT_MAX_AHEAD_MS,
      modelOutputBytesPerMs: MULAW_BYTES_PER_MS,
      appendEveryMs: deps.config.callerAudioAppendMs,
    };
    this.#pipeline = createAudioPipeline(deps.config.audioPipeline);
    this.#done = new Promise<void>((resolve) => this.#resolveDone = resolve);
    this.#scope = {
      log: deps.log,
      identity: null,
      track: (promise) => {
        const guarded = promise.catch((error) =>
          this.#scope.log.error("bridge_task_failed", { error })
        );
        this.#background.push(guarded);
      },
    };
    this.#canHandOver = deps.store.saveCallContinuation !== undefined;
    this.#timers = new NamedTimers(deps.timers);
    const dispatch = (event: SessionEvent) => this.#dispatch(event);
    this.#guard = new StreamBudgetGuard(deps, this.#scope, {
      handoverDue: (level) => dispatch({ type: "handover_due", level }),
      ended: () => this.#closed,
    }, { canHandOver: this.#canHandOver, upgradedAtMs: deps.now() });
    this.#twilio = new TwilioLink(twilioSocket, this.#scope, {
      event: dispatch,
      awaitingStart: () => !this.#scope.identity && this.#state.phase === "awaiting_start",
      start: (start) => this.#onStart(start),
      tooManyBadFrames: () => void this.#closeCall("bad_frames"),
    });
    this.#model = new ModelLink(deps, this.#scope, this.#pipeline, {
      event: dispatch,
      ignoring: () => this.#handingOver,
      closingExpected: () =>
        this.#closed || this.#handingOver || this.#state.phase === "closing" ||
        this.#state.phase === "closed",
      metered: (handler) => this.#guard.metered(handler),
    });
    this.#tools = new ToolRunner(deps, this.#scope, dispatch);
    this.#turns = new TurnRecorder(deps, this.#scope, () => this.#continuity.checkpoint());
    this.#continuity = new CallContinuity(deps, this.#scope, {
      session: () => this.#state,
      turns: this.#turns.streamTurns,
      tools: this.#tools,
      callerContext: () => this.#context,
      speechStartedAtMs: () => this.#model.speechStartedAtMs,
      transcriptOf: (itemId) => this.#model.transcriptOf(itemId),
      ended: () => this.#closed,
    });
    // The handler is timed by a listener before and one after it (listeners run in order).
    twilioSocket.addEventListener(
      "message",
      (event) => this.#guard.metered(() => this.#twilio.receive(event.data)),
    );
    twilioSocket.addEventListener("close", () => this.#onTwilioClosed());
    twilioSocket.addEventListener("error", () => {});
  }

  run(): Promise<void> {
    this.#guard.listen();
    return this.#done.finally(() => this.#guard.stop());
  }

  #dispatch(event: SessionEvent): void {
    const result = step(this.#state, event, this.#deps.now(), this.#options);
    this.#state = result.state;
    for (const effect of result.effects) this.#perform(effect);
    if (this.#markWaiter !== null) this.#markWaiter();
  }

  #perform(effect: SessionEffect): void {
    switch (effect.type) {
      case "send_twilio_media":
        this.#twilio.sendMedia(effect.payloads);
        break;
      case "send_twilio_mark":
        this.#twilio.sendMark(effect.name);
        break;
      case "send_twilio_clear":
        this.#twilio.sendClear();
        break;
      case "send_openai_append":
        this.#appendCallerAudio(effect.payloads);
        break;
      case "send_openai_session_update_and_greet":
        this.#openSession();
        break;
      case "send_openai_truncate":
        this.#model.send(buildConversationItemTruncate(effect.itemId, effect.audioEndMs));
        break;
      case "send_openai_function_output":
        this.#model.send(buildFunctionCallOutput(effect.callId, effect.output));
        break;
      case "send_openai_response_create":
        this.#model.send(
          buildResponseCreate(effect.instructions ? { instructions: effect.instructions } : {}),
        );
        break;
      case "send_openai_user_text":
        this.#model.send(buildUserTextMessage(effect.text));
        break;
      case "call_tool":
        this.#tools.run(effect.callId, effect.name, effect.arguments);
        break;
      case "call_control":
        this.#tools.control(effect.action, effect.reason);
        break;
      case "record_turn":
        this.#turns.record(effect.turn);
        break;
      case "schedule_timer": {
        const name = effect.name;
        // Pacing sends the assistant's audio: its time counts towards the CPU meter too.
        this.#timers.set(
          name,
          effect.atMs - this.#deps.now(),
          () => this.#guard.metered(() => this.#dispatch({ type: "timer_fired", name })),
        );
        break;
      }
      case "log":
        if (effect.event === "frame_out_of_order") {
          this.#twilio.logFrameProblem(effect.event, effect.fields);
        } else this.#scope.log[effect.level](effect.event, effect.fields);
        break;
      case "close_call":
        void this.#closeCall(effect.reason);
        break;
      case "begin_handover":
        void this.#handOver(effect);
        break;
    }
  }

  /** The caller's audio to the model (queued payloads are valid base64: joining cannot fail). */
  #appendCallerAudio(payloads: readonly string[]): void {
    const mulaw = payloads.length === 1 ? payloads[0] : concatBase64(payloads);
    if (mulaw === null) return;
    if (this.#canHandOver) this.#continuity.keepCallerAudio(mulaw);
    const audio = this.#pipeline.inbound(mulaw);
    if (audio) this.#model.send(buildInputAudioBufferAppend(audio));
  }

  /** The model session's opening: the caller's record, then a greeting or the restored call. */
  #openSession(): void {
    const resumed = this.#continuity.resumed;
    const events = sessionOpening({
      config: this.#deps.config,
      tools: this.#deps.tools,
      pipeline: this.#pipeline,
      context: this.#context,
      resumed,
      nowMs: this.#deps.clock(),
    });
    for (const event of events) this.#model.send(event);
    const sinceStartMs = Math.round(this.#deps.now() - this.#startedAt);
    if (resumed) {
      this.#scope.log.info("continuation_restored", {
        continuationId: this.#continuity.resumedFrom,
        handovers: resumed.handovers,
        turns: resumed.recentTurns.length,
        carriedToolResults: resumed.carriedToolResults.length,
        resumed: resumed.respond,
        readyMs: sinceStartMs,
      });
    } else {
      this.#scope.log.info("greeting_triggered", {
        sinceStartMs,
        known: Boolean(this.#context?.client),
      });
    }
  }

  /** Twilio's `start`: the session starts at once (caller audio is kept), the rest in the background. */
  #onStart(start: TwilioStart): void {
    this.#startedAt = this.#deps.now();
    this.#dispatch({ type: "twilio_start", streamSid: start.streamSid });
    this.#scope.track(this.#start(start));
  }

  /**
   * Checks the stream's token (and claims its continuation) before any model session opens, then
   * looks the caller up while the model connects; the session starts when both are settled.
   */
  async #start(start: TwilioStart): Promise<void> {
    const identity = await this.#admit(start);
    if (identity === null) return;
    const continuity = this.#continuity;
    continuity.callStartedAtMs = continuity.resumed?.callStartedAtMs ?? this.#deps.clock();
    this.#scope.identity = identity;
    const log = this.#scope.log = this.#deps.log.child({
      traceId: identity.traceId,
      callSid: identity.callSid,
    });
    const resumed = continuity.resumed;
    log.info("call_started", {
      from: identity.from,
      to: identity.to,
      pipeline: this.#pipeline.name,
      // What the worker's thread had used before this stream (boot): the CPU budget counts it.
      startCpuMs: Math.round(this.#guard.meter.usedMs()),
      cpuMeter: this.#guard.meter.kind,
      ...(resumed ? { continuationId: continuity.resumedFrom, handovers: resumed.handovers } : {}),
    });
    // A continued call has its caller context already.
    const lookup = resumed
      ? Promise.resolve({ context: resumed.callerContext, lookupMs: null })
      : lookupCallerWithinBudget(this.#deps, log, identity);
    const [found, opened] = await Promise.all([lookup, this.#model.open()]);
    this.#context = found.context;
    this.#lookupMs = found.lookupMs;
    if (!opened || this.#closed) return;
    // A continued call is checkpointed at once: its worker may die before the next turn.
    if (resumed) continuity.checkpoint();
    // The call's limit counts from its first stream: handovers do not reset it.
    const maxSeconds = this.#context?.org.maxCallSeconds ?? this.#deps.config.maxCallSeconds;
    const elapsedCallMs = Math.max(0, this.#deps.clock() - continuity.callStartedAtMs);
    const limitMs = Math.max(5_000, maxSeconds * 1000 - GOODBYE_LEAD_MS - elapsedCallMs);
    this.#timers.set(
      "max_duration",
      limitMs,
      () => this.#dispatch({ type: "max_duration_reached" }),
    );
    this.#guard.scheduleWallClock(this.#timers);
    this.#dispatch({
      type: "openai_ready",
      nextSequence: resumed?.nextSequence,
      responds: resumed ? resumed.respond : true,
    });
  }

  /** The call's identity if the stream's token (and continuation) hold; else refuses the stream. */
  async #admit(start: TwilioStart): Promise<CallIdentity | null> {
    const params = start.customParameters;
    const traceId = params.traceId ?? "";
    const continuationId = params.continuation || null;
    const check = await verifyStreamToken(this.#deps.config.internalSecret, params.token, {
      callSid: start.callSid,
      traceId,
      nowMs: this.#deps.clock(),
      continuationId,
    });
    // The stream may have ended while the token was checked: then no model session may open.
    if (this.#closed) return null;
    const refuse = (reason: string) => {
      this.#scope.log.warn("security_rejected", { reason, callSid: start.callSid, traceId });
      this.#closed = true;
      this.#state = { ...this.#state, phase: "closed" };
      this.#twilio.close(1008, "Invalid stream token");
      this.#resolveDone();
      return null;
    };
    if (!check.ok || params.callSid !== start.callSid) {
      return refuse(check.ok ? "token_call_mismatch" : `token_${check.reason}`);
    }
    if (continuationId !== null) {
      // Claimed before any model session opens: a reused or unknown continuation gets none.
      const resumed = await this.#continuity.resume(continuationId, start.callSid);
      if (this.#closed) return null;
      if (resumed === null) return refuse("continuation_refused");
      // A booking the previous stream had open stays open (voice-action's answer depends on it).
      this.#tools.bookingInProgress = resumed.bookingInProgress;
    }
    return { callSid: start.callSid, traceId, from: params.from ?? "", to: params.to ?? "" };
  }

  #onTwilioClosed(): void {
    if (!this.#scope.identity) {
      this.#closed = true;
      this.#model.close("call ended");
      this.#resolveDone();
      return;
    }
    this.#dispatch({ type: "twilio_closed" });
  }

  /** Resolves once Twilio echoed the mark after the last audio sent, or after `timeoutMs`. */
  #lastMarkEchoed(timeoutMs: number): Promise<void> {
    const played = () => {
      const itemId = this.#state.playingItemId;
      if (itemId === null || !this.#twilio.isOpen()) return true;
      const item = this.#state.items[itemId];
      return item.ackedMs >= item.sentMs;
    };
    if (played()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = () => {
        this.#timers.cancel("last_mark");
        this.#markWaiter = null;
        resolve();
      };
      this.#timers.set("last_mark", timeoutMs, finish);
      this.#markWaiter = () => {
        if (played()) finish();
      };
    });
  }

  /** Stops the stream's timers and its model session: nothing changes the call's state after. */
  #stopLive(reason: string): void {
    this.#closed = true;
    this.#timers.cancelAll();
    this.#turns.stopTimer();
    // No leaked sessions: the model socket goes first.
    this.#model.close(reason);
  }

  /**
   * Hands the call over: the model session closes first (nothing changes the saved state after
   * it), the continuation is saved while Twilio plays out, then the Twilio socket closes and
   * voice-action's `<Connect action>` answer opens the next stream.
   */
  async #handOver(effect: BeginHandover): Promise<void> {
    const call = this.#scope.identity;
    const store = this.#deps.store;
    if (this.#closed || !call || !store.saveCallContinuation) return;
    this.#handingOver = true;
    const startedHandover = this.#deps.now();
    this.#stopLive("handover");
    const continuation = this.#continuity.handoverState(effect);
    this.#scope.log.info("handover_started", {
      forced: effect.forced,
      elapsedMs: Math.round(this.#guard.elapsedMs()),
      ...this.#guard.cpuFields(),
      respond: effect.respond,
      interrupted: effect.interrupted !== null,
      callerInterrupted: effect.callerInterrupted,
      carriedToolResults: effect.carriedToolResults.length,
      nextSequence: continuation.nextSequence,
    });
    let continuationId: string | null = null;
    const saving = store.saveCallContinuation(
      call.callSid,
      call.traceId || null,
      continuation as unknown as Record<string, unknown>,
    ).then(
      (id) => continuationId = id,
      (error) => this.#scope.log.error("handover_failed", { error }),
    );
    // Twilio drops unplayed audio on close; a cut-off sentence was cleared already.
    await Promise.all([
      saving,
      effect.interrupted ? null : this.#lastMarkEchoed(LAST_MARK_WAIT_MS),
    ]);
    await Promise.allSettled(this.#background);
    const callerGone = !this.#twilio.isOpen();
    if (continuationId === null || callerGone) {
      // No handover after all: report the end so voice-action's answer fits (an apology when the
      // state could not be saved, nothing when the caller hung up meanwhile).
      await this.#reportStreamEnd(call, callerGone ? "caller_hung_up" : "error");
    }
    this.#twilio.close(1000, "handover");
    this.#scope.log.info("call_ended", {
      reason: continuationId === null ? "handover_failed" : "handover",
      continuationId,
      prepMs: Math.round(this.#deps.now() - startedHandover),
      ...this.#callSummary(),
      ...this.#guard.cpuFields(),
    });
    await this.#finish(call);
  }

  async #closeCall(reason: string): Promise<void> {
    if (this.#closed) return;
    this.#stopLive("call ended");
    const call = this.#scope.identity;
    if (call) {
      this.#scope.log.info("call_ended", { reason, ...this.#callSummary() });
      // The stream's end reason tells voice-action's <Connect action> how to continue.
      await this.#reportStreamEnd(call, streamEndReason(reason, this.#tools.transferred));
    }
    // Let in-flight control requests (recover, transfer) land before Twilio moves on.
    await Promise.allSettled(this.#background);
    this.#twilio.close(1000, reason);
    if (call) await this.#finish(call);
    else this.#resolveDone();
  }

  #reportStreamEnd(call: CallIdentity, reason: StreamEndReason): Promise<void> {
    return this.#deps.voiceAction.streamEnded({
      callSid: call.callSid,
      traceId: call.traceId,
      reason,
      bookingInProgress: this.#tools.bookingInProgress,
    }).catch((error) => this.#scope.log.warn("stream_end_report_failed", { error }));
  }

  /** The figures of a `call_ended` line. */
  #callSummary(): Record<string, number | null> {
    const metrics = this.#state.metrics;
    return {
      durationMs: Math.round(this.#deps.now() - this.#startedAt),
      bargeIns: metrics.bargeIns,
      toolCalls: metrics.toolCalls,
      firstAudioMs: metrics.firstAudioMs,
      framesIn: metrics.framesIn,
      framesOut: metrics.framesOut,
    };
  }

  /** The last transcript turns and this stream's metrics (the database adds them to the call's). */
  async #finish(call: CallIdentity): Promise<void> {
    await this.#turns.flush();
    const metrics = this.#state.metrics;
    await this.#deps.store.recordCallMetrics(call.callSid, {
      lookupMs: this.#lookupMs,
      firstAudioMs: metrics.firstAudioMs,
      bargeIns: metrics.bargeIns,
      toolCalls: metrics.toolCalls,
      modelInputTokens: metrics.inputTokens,
      modelOutputTokens: metrics.outputTokens,
      streamSeconds: Math.round((this.#deps.now() - this.#startedAt) / 100) / 10,
    }).catch((error) => this.#scope.log.warn("metrics_store_failed", { error }));
    this.#resolveDone();
  }
}

/** Maps the session's close reason to the protocol's stream end reason. */
export function streamEndReason(closeReason: string, transferred: boolean): StreamEndReason {
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
