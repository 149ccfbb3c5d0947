/**
 * The Twilio side of a call: reads Media Streams frames (audio through the fast path, the rest
 * validated) into session events, counts and rate-limits bad frames, and writes media, marks and
 * `clear` back. It owns the stream's `streamSid`; it does not decide anything.
 * @module
 */
import { buildTwilioClear, buildTwilioMark } from "../_shared/codec/twilio_media.ts";
import {
  concatBase64,
  readTwilioFrame,
  twilioMediaFromValidBase64,
} from "../_shared/codec/media_fast_path.ts";
import { base64DecodedLength } from "../_shared/codec/pcm.ts";
import { MULAW_BYTES_PER_MS, parseMarkName, type SessionEvent } from "./call_session.ts";
import { type BridgeSocket, type CallScope, SOCKET_OPEN } from "./bridge_deps.ts";

/** Invalid or out-of-order frames logged per call before the link stops logging them. */
const MAX_LOGGED_BAD_FRAMES = 5;
/** A call is ended after this many invalid frames: it is not Twilio on the other side. */
const MAX_BAD_FRAMES = 500;

/** Twilio's `start` frame, as the bridge needs it. */
export interface TwilioStart {
  streamSid: string;
  callSid: string;
  customParameters: Record<string, string>;
}

/** What the link calls back into. */
export interface TwilioLinkHandlers {
  /** A frame became a session event. */
  event(event: SessionEvent): void;
  /** Whether a `start` frame is still expected (the first one only). */
  awaitingStart(): boolean;
  /** The stream started: the session begins and the token is checked. */
  start(start: TwilioStart): void;
  /** Too many bad frames: the bridge ends the call. */
  tooManyBadFrames(): void;
}

/** One call's Twilio Media Streams socket. */
export class TwilioLink {
  /** Set by the `start` frame; every frame sent back carries it. */
  streamSid = "";
  readonly #socket: BridgeSocket;
  readonly #scope: CallScope;
  readonly #handlers: TwilioLinkHandlers;
  #badFrames = 0;
  #problemsLogged = 0;

  constructor(socket: BridgeSocket, scope: CallScope, handlers: TwilioLinkHandlers) {
    this.#socket = socket;
    this.#scope = scope;
    this.#handlers = handlers;
  }

  /** Whether the socket is open (the caller is still there). */
  isOpen(): boolean {
    return this.#socket.readyState === SOCKET_OPEN;
  }

  /** Closes the socket unless it closed already. */
  close(code: number, reason: string): void {
    if (this.#socket.readyState <= SOCKET_OPEN) this.#socket.close(code, reason);
  }

  /** Sends assistant audio (valid base64, checked on arrival, so joining cannot fail). */
  sendMedia(payloads: readonly string[]): void {
    const payload = payloads.length === 1 ? payloads[0] : concatBase64(payloads);
    if (payload !== null) this.#send(twilioMediaFromValidBase64(this.streamSid, payload));
  }

  sendMark(name: string): void {
    this.#send(buildTwilioMark(this.streamSid, name));
  }

  sendClear(): void {
    this.#send(buildTwilioClear(this.streamSid));
  }

  /** Logs a bad frame; only the first few per call, so a misbehaving peer cannot flood logs. */
  logFrameProblem(event: string, fields: Record<string, unknown>): void {
    this.#problemsLogged++;
    if (this.#problemsLogged <= MAX_LOGGED_BAD_FRAMES) this.#scope.log.warn(event, fields);
  }

  /** Handles one message from Twilio. */
  receive(text: unknown): void {
    if (typeof text !== "string") {
      this.#reject("binary_frame", "Cannot read Twilio frame: Media Streams frames are JSON text");
      return;
    }
    // One parse per frame: audio through the fast path, everything else fully validated.
    const frame = readTwilioFrame(text);
    if (frame.kind === "media") {
      const payload = frame.media.payload;
      this.#handlers.event({
        type: "twilio_media",
        payload,
        durationMs: base64DecodedLength(payload) / MULAW_BYTES_PER_MS,
      });
      return;
    }
    const parsed = frame.result;
    if (!parsed.success) {
      this.#reject(parsed.error.code, parsed.error.message);
      return;
    }
    const message = parsed.data;
    switch (message.event) {
      case "connected":
      case "media": // readTwilioFrame returned it as kind "media" above
        break;
      case "start":
        if (!this.#handlers.awaitingStart()) {
          this.logFrameProblem("frame_out_of_order", { frame: "start" });
          break;
        }
        this.streamSid = message.start.streamSid;
        this.#handlers.start({
          streamSid: message.start.streamSid,
          callSid: message.start.callSid,
          customParameters: message.start.customParameters ?? {},
        });
        break;
      case "mark":
        // Marks echoed after a clear carry an old generation and are expected; a name that is
        // not one of ours is not.
        if (parseMarkName(message.mark.name) === null) {
          this.logFrameProblem("frame_out_of_order", { frame: "mark", reason: "unknown_mark" });
          break;
        }
        this.#handlers.event({ type: "twilio_mark", name: message.mark.name });
        break;
      case "dtmf":
        this.#handlers.event({ type: "twilio_dtmf", digit: message.dtmf.digit });
        break;
      case "stop":
        this.#handlers.event({ type: "twilio_stop" });
        break;
    }
  }

  #send(text: string): void {
    if (this.#socket.readyState === SOCKET_OPEN) this.#socket.send(text);
  }

  #reject(code: string, message: string): void {
    this.#badFrames++;
    this.logFrameProblem("frame_rejected", { code, msg: message });
    if (this.#badFrames >= MAX_BAD_FRAMES) {
      this.#scope.log.warn("security_rejected", { reason: "too_many_bad_frames" });
      this.#handlers.tooManyBadFrames();
    }
  }
}
