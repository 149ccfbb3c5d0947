/**
 * What lets a call outlive its stream: the conversation state a handover leaves and a checkpoint
 * saves at every stored turn (so a worker that dies without warning can be resumed), and the
 * claim of the state a previous stream left. The bridge decides when; this builds and stores.
 * @module
 */
import type { CallerContext } from "../_shared/store/types.ts";
import type { SessionEffect, SessionState } from "./call_session.ts";
import {
  buildContinuationState,
  type ContinuationInterruption,
  type ContinuationState,
  type ContinuationToolResult,
  type ContinuationTurn,
  type HandoverSnapshot,
  heardPrefix,
  safeParseContinuationState,
} from "./handover.ts";
import { RecentCallerAudio } from "./recent_caller_audio.ts";
import type { BridgeDeps, CallScope } from "./bridge_deps.ts";

/** Caller audio from this long before `speech_started` is carried too (VAD prefix and delay). */
const CALLER_PREROLL_MS = 1000;
/** A continuation id: a uuid (the token binds it; this only keeps junk away from the database). */
const CONTINUATION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The `begin_handover` effect the session asks for. */
export type BeginHandover = Extract<SessionEffect, { type: "begin_handover" }>;

/** Where the conversation's parts live (read when a state is built). */
export interface ConversationSources {
  session(): SessionState;
  /** This stream's transcript turns. */
  readonly turns: readonly ContinuationTurn[];
  /** The tool runner's memory. */
  readonly tools: {
    readonly bookingInProgress: boolean;
    readonly results: readonly ContinuationToolResult[];
    argumentsOf(callId: string): string;
  };
  callerContext(): CallerContext | null;
  /** When the caller last started speaking, monotonic ms. */
  speechStartedAtMs(): number | null;
  /** The assistant's transcript of an item ("" if not known). */
  transcriptOf(itemId: string): string;
  /** Whether the stream has ended (no checkpoint after that). */
  ended(): boolean;
}

/** One stream's continuity: the state it resumed from and the state it leaves. */
export class CallContinuity {
  /** The conversation a previous stream left, once claimed. */
  resumed: ContinuationState | null = null;
  /** The id of that continuation. */
  resumedFrom: string | null = null;
  /** When the call's first stream started (wall clock, ms): handovers do not reset the limit. */
  callStartedAtMs = 0;
  readonly #recentCallerAudio = new RecentCallerAudio();
  readonly #deps: Pick<BridgeDeps, "store" | "now">;
  readonly #scope: CallScope;
  readonly #sources: ConversationSources;
  #checkpointing = false;
  #checkpointAgain = false;

  constructor(
    deps: Pick<BridgeDeps, "store" | "now">,
    scope: CallScope,
    sources: ConversationSources,
  ) {
    this.#deps = deps;
    this.#scope = scope;
    this.#sources = sources;
  }

  /** Keeps the caller audio just appended (base64 mu-law), for words a handover cuts off. */
  keepCallerAudio(mulaw: string): void {
    this.#recentCallerAudio.keep(this.#deps.now(), mulaw);
  }

  /**
   * Claims a continuation and checks it; the stream resumes from it. Null (logged) when it cannot
   * be used: a reused or unknown one gets no model session.
   */
  async resume(continuationId: string, callSid: string): Promise<ContinuationState | null> {
    const claimStarted = this.#deps.now();
    const claimed = await this.#claim(continuationId, callSid);
    if (claimed === null) return null;
    this.resumed = claimed;
    this.resumedFrom = continuationId;
    this.#scope.log.debug("continuation_claimed", {
      continuationId,
      claimMs: Math.round(this.#deps.now() - claimStarted),
    });
    return claimed;
  }

  /**
   * Saves the conversation as the call's checkpoint, in the background: if this worker dies
   * without warning, voice-action resumes the call from it on a new stream. One save at a time;
   * a turn that arrives meanwhile saves again after it.
   */
  checkpoint(): void {
    const save = this.#deps.store.saveCallCheckpoint;
    const call = this.#scope.identity;
    if (!save || this.#sources.ended() || !call) return;
    if (this.#checkpointing) {
      this.#checkpointAgain = true;
      return;
    }
    this.#checkpointing = true;
    const lastSpeaker = this.#sources.turns.at(-1)?.speaker ??
      this.resumed?.recentTurns.at(-1)?.speaker;
    const snapshot = this.#conversationState({
      carriedToolResults: [],
      interrupted: null,
      callerAudio: null,
      // The caller spoke last: the resumed assistant answers at once; else it waits for them.
      respond: lastSpeaker === "caller",
    });
    this.#scope.track(
      save(call.callSid, call.traceId || null, snapshot as unknown as Record<string, unknown>)
        .then(
          () => {},
          (error) => this.#scope.log.warn("checkpoint_failed", { error }),
        ).finally(() => {
          this.#checkpointing = false;
          if (this.#checkpointAgain) {
            this.#checkpointAgain = false;
            this.checkpoint();
          }
        }),
    );
  }

  /** The state a handover leaves: what was cut off, the tool results to carry, who speaks next. */
  handoverState(effect: BeginHandover): ContinuationState {
    let interrupted: ContinuationInterruption | null = null;
    if (effect.interrupted) {
      const transcript = this.#sources.transcriptOf(effect.interrupted.itemId);
      const item = this.#sources.session().items[effect.interrupted.itemId];
      interrupted = {
        text: transcript,
        heardText: heardPrefix(transcript, effect.interrupted.playedMs, item?.receivedMs ?? 0),
      };
    }
    return this.#conversationState({
      carriedToolResults: effect.carriedToolResults.map((tool) => ({
        ...tool,
        arguments: this.#sources.tools.argumentsOf(tool.callId),
      })),
      interrupted,
      callerAudio: effect.callerInterrupted ? this.#unfinishedCallerAudio() : null,
      respond: effect.respond,
    });
  }

  /** The caller's unfinished sentence so far (base64 mu-law), from just before it started. */
  #unfinishedCallerAudio(): string | null {
    const startedAt = this.#sources.speechStartedAtMs() ?? this.#deps.now();
    return this.#recentCallerAudio.since(startedAt - CALLER_PREROLL_MS);
  }

  /** The conversation so far, as a handover or a checkpoint leaves it for the next stream. */
  #conversationState(
    moment: Pick<
      HandoverSnapshot,
      "carriedToolResults" | "interrupted" | "callerAudio" | "respond"
    >,
  ): ContinuationState {
    return buildContinuationState({
      previous: this.resumed,
      callStartedAtMs: this.callStartedAtMs,
      nextSequence: this.#sources.session().nextSequence,
      turns: this.#sources.turns,
      callerContext: this.#sources.callerContext(),
      bookingInProgress: this.#sources.tools.bookingInProgress,
      toolResults: this.#sources.tools.results,
      ...moment,
    });
  }

  /** Claims and checks a continuation; null (logged) when it cannot be used. */
  async #claim(continuationId: string, callSid: string): Promise<ContinuationState | null> {
    const store = this.#deps.store;
    if (!store.claimCallContinuation || !CONTINUATION_ID.test(continuationId)) return null;
    let claimed: Record<string, unknown> | null;
    try {
      claimed = await store.claimCallContinuation(continuationId, callSid);
    } catch (error) {
      this.#scope.log.warn("continuation_claim_failed", { continuationId, error });
      return null;
    }
    if (claimed === null) return null;
    const parsed = safeParseContinuationState(claimed);
    if (!parsed.success) {
      this.#scope.log.warn("continuation_invalid", { continuationId, error: parsed.error });
      return null;
    }
    return parsed.data;
  }
}
