/**
 * What a call's bridge needs from the world and what its parts share: the socket surface, the
 * Realtime connector, voice-action as the bridge sees it, timers, the bridge's dependencies, and
 * the call's scope (logger, identity, background tasks). Types only, plus the socket's open state.
 * @module
 */
import type { Config } from "../_shared/config.ts";
import type { Logger } from "../_shared/log.ts";
import type { OpenAIFunctionToolSpec } from "../_shared/codec/openai_realtime.ts";
import type { CallerContext, CallMetrics, CallTurnInput } from "../_shared/store/types.ts";
import type { CpuMeter } from "./cpu_meter.ts";

/** `WebSocket.OPEN`. */
export const SOCKET_OPEN = 1;

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

/** Who is on the call, once the stream's token is checked. */
export interface CallIdentity {
  callSid: string;
  traceId: string;
  from: string;
  to: string;
}

/** What the parts of one call share: read when used, written by the bridge alone. */
export interface CallScope {
  /** The call's logger: a child with `traceId` and `callSid` once the stream started. */
  log: Logger;
  /** Set once the stream's token is checked. */
  identity: CallIdentity | null;
  /** Keeps a background task (a tool call, a store write) to await before the call ends. */
  track(promise: Promise<unknown>): void;
}
