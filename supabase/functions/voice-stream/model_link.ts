/**
 * The OpenAI Realtime side of a call: opens the model socket, reads its events (audio deltas
 * through the fast path, the rest validated) into session events, and sends client events. It
 * remembers the two facts a handover needs from the model's stream: when the caller last started
 * speaking and the assistant's last transcript.
 * @module
 */
import { readRealtimeFrame } from "../_shared/codec/media_fast_path.ts";
import { base64DecodedLength } from "../_shared/codec/pcm.ts";
import type { OpenAIRealtimeServerEvent } from "../_shared/codec/openai_realtime.ts";
import type { SessionEvent } from "./call_session.ts";
import type { AudioPipeline } from "./audio_pipeline.ts";
import { type BridgeDeps, type BridgeSocket, type CallScope, SOCKET_OPEN } from "./bridge_deps.ts";

/** What the link calls back into. */
export interface ModelLinkHandlers {
  /** A model event became a session event. */
  event(event: SessionEvent): void;
  /** Whether events are ignored: a handover saved the state already. */
  ignoring(): boolean;
  /** Whether the socket closing is expected (the call is ending or handing over). */
  closingExpected(): boolean;
  /** Runs a socket handler, charging its time to the stream's CPU meter. */
  metered(handler: () => void): void;
}

/** One call's Realtime socket. */
export class ModelLink {
  #socket: BridgeSocket | null = null;
  #speechStartedAtMs: number | null = null;
  #lastAssistantTranscript: { itemId: string; text: string } | null = null;
  readonly #deps: BridgeDeps;
  readonly #scope: CallScope;
  readonly #pipeline: AudioPipeline;
  readonly #handlers: ModelLinkHandlers;

  constructor(
    deps: BridgeDeps,
    scope: CallScope,
    pipeline: AudioPipeline,
    handlers: ModelLinkHandlers,
  ) {
    this.#deps = deps;
    this.#scope = scope;
    this.#pipeline = pipeline;
    this.#handlers = handlers;
  }

  /** When the caller last started speaking (`speech_started`), monotonic ms; null before. */
  get speechStartedAtMs(): number | null {
    return this.#speechStartedAtMs;
  }

  /** The assistant's transcript of that item, if it was the last one transcribed; else "". */
  transcriptOf(itemId: string): string {
    const last = this.#lastAssistantTranscript;
    return last?.itemId === itemId ? last.text : "";
  }

  /** Sends a client event if the socket is open. */
  send(text: string): void {
    const socket = this.#socket;
    if (socket && socket.readyState === SOCKET_OPEN) socket.send(text);
  }

  /** Closes the socket (no leaked sessions) unless it closed already. */
  close(reason: string): void {
    const socket = this.#socket;
    if (socket && socket.readyState <= SOCKET_OPEN) socket.close(1000, reason);
  }

  /**
   * Connects; resolves true once open, false (logged, and reported as `openai_failed` when the
   * connector throws) when it cannot.
   */
  open(): Promise<boolean> {
    const deps = this.#deps;
    const log = this.#scope.log;
    const started = deps.now();
    return new Promise<boolean>((resolve) => {
      let socket: BridgeSocket;
      try {
        if (!deps.config.openaiApiKey) throw new Error("OPENAI_API_KEY is not set");
        socket = deps.connectRealtime({
          url: deps.config.openaiRealtimeUrl,
          model: deps.config.openaiRealtimeModel,
          apiKey: deps.config.openaiApiKey,
        });
      } catch (error) {
        log.warn("model_connect_failed", { error });
        this.#handlers.event({ type: "openai_failed", reason: "connect_failed" });
        resolve(false);
        return;
      }
      this.#socket = socket;
      let opened = false;
      socket.addEventListener("open", () => {
        opened = true;
        this.#scope.log.info("model_connected", { connectMs: Math.round(deps.now() - started) });
        resolve(true);
      });
      socket.addEventListener(
        "message",
        (event) => this.#handlers.metered(() => this.receive(event.data)),
      );
      socket.addEventListener("error", () => {});
      socket.addEventListener("close", (event) => {
        if (!opened) {
          // The connection or handshake failed (refused, TLS, DNS, a non-101 answer).
          this.#scope.log.warn("model_connect_failed", {
            code: event.code,
            error: event.reason || null,
          });
          resolve(false);
        }
        if (this.#handlers.closingExpected()) return;
        this.#handlers.event({
          type: "openai_failed",
          reason: opened ? `socket_closed_${event.code}` : `connect_refused_${event.code}`,
        });
      });
    });
  }

  /** Handles one server event. */
  receive(data: unknown): void {
    // Events still in flight from a session being handed over change nothing: its state is
    // saved (a tool call it asked for is not run; the next session asks again if it must).
    if (typeof data !== "string" || this.#handlers.ignoring()) return;
    // One parse per event: audio deltas through the fast path, the rest fully validated.
    const frame = readRealtimeFrame(data);
    if (frame.kind === "audio_delta") {
      const { delta } = frame;
      const received = base64DecodedLength(delta.delta);
      const converted = this.#pipeline.outbound(delta.delta);
      if (!converted) return;
      this.#handlers.event({
        type: "openai_audio_delta",
        responseId: delta.responseId,
        itemId: delta.itemId,
        payload: converted.payload,
        durationMs: converted.durationMs,
        receivedMs: received / this.#pipeline.modelBytesPerMs,
      });
      return;
    }
    const parsed = frame.result;
    if (!parsed.success) {
      this.#scope.log.warn("model_event_rejected", { code: parsed.error.code });
      return;
    }
    const event = this.#toSessionEvent(parsed.data);
    if (event !== null) this.#handlers.event(event);
  }

  /** A validated server event as a session event; null for events the session ignores. */
  #toSessionEvent(event: OpenAIRealtimeServerEvent): SessionEvent | null {
    switch (event.type) {
      case "response.created":
        return { type: "openai_response_created", responseId: event.response.id };
      case "input_audio_buffer.speech_started":
        this.#speechStartedAtMs = this.#deps.now();
        return {
          type: "openai_speech_started",
          itemId: event.item_id ?? null,
          audioStartMs: event.audio_start_ms,
        };
      case "input_audio_buffer.speech_stopped":
        return { type: "openai_speech_stopped", itemId: event.item_id ?? null };
      case "conversation.item.input_audio_transcription.completed":
        return {
          type: "openai_input_transcript",
          itemId: event.item_id,
          transcript: event.transcript,
        };
      case "response.output_audio_transcript.done":
        this.#lastAssistantTranscript = { itemId: event.item_id, text: event.transcript };
        return {
          type: "openai_output_transcript",
          itemId: event.item_id,
          transcript: event.transcript,
        };
      case "response.function_call_arguments.done":
        return {
          type: "openai_function_call",
          callId: event.call_id,
          name: event.name,
          arguments: event.arguments,
        };
      case "response.done": {
        const usage = event.response.usage;
        return {
          type: "openai_response_done",
          responseId: event.response.id ?? null,
          status: event.response.status ?? null,
          inputTokens: usage?.input_tokens ?? 0,
          outputTokens: usage?.output_tokens ?? 0,
        };
      }
      case "error": {
        const { type, code, message } = event.error;
        // Our own protocol mistakes are logged; the service failing ends the call gracefully.
        if (type === "invalid_request_error") {
          this.#scope.log.warn("model_error", { errorType: type, code, msg: message });
          return null;
        }
        this.#scope.log.error("model_error", { errorType: type, code, msg: message });
        return { type: "openai_failed", reason: `error_${code ?? type}` };
      }
      default:
        return null;
    }
  }
}
