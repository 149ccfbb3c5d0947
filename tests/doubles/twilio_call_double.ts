/**
 * Twilio Programmable Voice as seen by our functions: the signed voice webhook, TwiML execution
 * (`<Connect><Stream>`, `<Say>`, `<Play>`, `<Pause>`, `<Record>`, `<Dial>`, `<Redirect>`,
 * `<Hangup>`) and a bidirectional Media Streams WebSocket with a phone line's playout. A test
 * double for end-to-end tests: it places an inbound call against a served `voice-frontdoor`,
 * plays a scripted caller, and records everything the product did.
 *
 * It is written independently of the product's TwiML and Media Streams codecs (TwiML is parsed
 * with fast-xml-parser, Media Streams JSON is built here) so that a bug shared by both cannot
 * pass unnoticed.
 *
 * Time: the call runs on a virtual clock, `speed` times faster than real time (`pacing`). Every
 * `…Ms` value recorded is in call milliseconds since the call started (the webhook), so results
 * mean the same thing at every speed; a 160-byte frame is 20 call-ms.
 *
 * Behaviour modelled on Twilio's documentation, with the choices made where it is silent:
 * - Outbound audio is queued and played at 8 bytes per call-ms; a `mark` is echoed when the audio
 *   queued before it has played (at once when nothing is queued); `clear` drops unplayed audio and
 *   echoes pending marks at once. When the stream closes, unplayed audio is lost and pending marks
 *   are never echoed (close only after the last mark comes back).
 * - Invalid messages from the server are ignored and recorded as Twilio warnings 31950 (binary
 *   frame) / 31951 (not JSON, unknown event, wrong `streamSid`, missing or extra field, invalid
 *   base64); Twilio logs them and keeps the stream (`closeOnProtocolError` makes the double
 *   strict).
 * - When the stream ends because the server closed it, `<Connect action>` is requested with
 *   `CallStatus=in-progress` and its TwiML executed; without `action` the next verb runs. When the
 *   caller (or a REST `Status=completed`) hangs up, Twilio sends `stop`, closes, and `action` is
 *   requested with `CallStatus=completed` (its answer is recorded, not executed). A REST
 *   `Twiml`/`Url` update sends `stop`, closes the stream, and runs the new TwiML without
 *   requesting `action`. Action requests carry Twilio's standard call parameters only (no
 *   `StreamSid`: not documented for `<Connect>`).
 * - `<Stream url>` must be `wss://` without a query string (errors 31922 / 31923); its upgrade is
 *   signed (`x-twilio-signature`) over that URL as written, with no parameters.
 * @module
 */

import { XMLParser, XMLValidator } from "fast-xml-parser";
import { mulawDecode } from "../../supabase/functions/_shared/codec/g711.ts";
import { base64ToBytes, bytesToBase64 } from "../../supabase/functions/_shared/codec/pcm.ts";
import { writeStereoWav } from "../support/wav.ts";
import { connectNoDelayWebSocket } from "../../supabase/functions/voice-stream/nodelay_websocket.ts";
import {
  sendTwilioWebhook,
  signTwilioRequest,
  TWILIO_API_VERSION,
  type TwilioCallRegistration,
  type TwilioCallUpdate,
  type TwilioLiveCall,
  type TwilioParams,
  type TwilioRestDouble,
  twilioSid,
  type TwilioWebhookDelivery,
} from "./twilio_rest_double.ts";

/** Media Streams frame length Twilio sends, in ms. */
export const FRAME_MS = 20;

/** mu-law bytes per ms at 8 kHz. */
export const MULAW_BYTES_PER_MS = 8;

/** Bytes in one 20 ms frame. */
export const FRAME_BYTES = FRAME_MS * MULAW_BYTES_PER_MS;
/** Agent chunks' bytes when `recordMedia` is off. */
const NO_BYTES = new Uint8Array(0);

/** mu-law code of silence: what a quiet phone line carries. */
export const MULAW_SILENCE = 0xff;

/** Speed factor of `pacing: "fast"`. */
export const FAST_SPEED_FACTOR = 20;

/** Shortest real sleep of the frame loop: at high speed several frames go per wake-up. */
const MIN_TICK_REAL_MS = 2;

/** Longest real sleep of the frame loop, so it notices new work promptly. */
const MAX_TICK_REAL_MS = 20;

/** Default `maxCallMs`: the double hangs up a call that is still going after this. */
const DEFAULT_MAX_CALL_MS = 300_000;

/** TwiML documents one call may fetch before the double assumes a redirect loop. */
const MAX_DOCUMENTS_PER_CALL = 50;

/** Default speaking rate of `<Say>`, in call-ms per character. */
const DEFAULT_SAY_MS_PER_CHARACTER = 60;

/** How long to wait for a WebSocket handshake or close, in real ms. */
const SOCKET_WAIT_REAL_MS = 5_000;

/** Events a Media Streams server may send (Twilio's bidirectional protocol). */
const SERVER_EVENTS = new Set(["media", "mark", "clear"]);

/** TwiML content types Twilio reads as TwiML. */
const TWIML_CONTENT_TYPES = ["text/xml", "application/xml", "text/html"];

/** Strict base64: standard alphabet, padding only at the end. */
const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** One step of the caller's script. Steps run while a stream is open. */
export type CallerStep =
  /** Speak these mu-law bytes (sent in 160-byte frames, the last one padded with silence). */
  | { send: Uint8Array; label?: string }
  /** Stay silent this long. */
  | { silenceMs: number }
  /** Press keys: one `dtmf` event per character. */
  | { dtmf: string }
  /** Wait this long (silence on the line). */
  | { waitMs: number }
  /** Wait until this much more agent audio has played since the step began. */
  | { waitForAgentAudioMs: number; timeoutMs?: number }
  /** Wait until the agent has been silent this long (counted from the step's start at least). */
  | { waitForAgentSilenceMs: number; timeoutMs?: number }
  /** Hang up. */
  | { hangup: true };

/** Where a caller is, as Twilio reports it (`FromCity`…). */
export interface CallerGeo {
  city?: string;
  state?: string;
  zip?: string;
  country?: string;
}

/** Options of `startCall` / `placeCall`. */
export interface PlaceCallOptions {
  /** URL the webhook is POSTed to (e.g. `http://127.0.0.1:54321/functions/v1/voice-frontdoor`). */
  frontdoorUrl: string;
  /** URL Twilio believes it calls and signs. Defaults to `frontdoorUrl`. */
  publicFrontdoorUrl?: string;
  authToken: string;
  accountSid: string;
  /** Defaults to a fresh `CA…` SID. */
  callSid?: string;
  from: string;
  to: string;
  /** `CallerName` (sent only when given, as with Twilio's caller ID lookup). */
  callerName?: string;
  /** Caller location. Defaults to country `US`, other fields empty. */
  fromGeo?: CallerGeo;
  /** Called number location. Defaults to country `US`, other fields empty. */
  toGeo?: CallerGeo;
  /** `StirVerstat` (sent only when given). */
  stirVerstat?: string;
  /** Extra or overriding webhook parameters (e.g. `ForwardedFrom`). */
  extraWebhookParams?: Record<string, string>;
  /** The caller's script. Defaults to silence until the call ends. */
  audio?: CallerStep[];
  /** `realtime` (1x), `fast` (20x) or a speed factor. Defaults to `fast`. */
  pacing?: "realtime" | "fast" | number;
  /**
   * Open the Media Streams socket with TCP_NODELAY (the product's RFC 6455 client) instead of
   * Deno's `WebSocket`, whose Nagle stalls would count against the bridge in delay figures.
   */
  noDelaySocket?: boolean;
  /** Maps the `<Stream url>` (wss, public) to the URL connected to. Defaults to `rewriteUrl`'s mapping. */
  rewriteStreamUrl?: (wssUrl: string) => string;
  /**
   * Maps a public http(s) URL to the URL fetched. Defaults to replacing the public frontdoor's
   * base with the local one (derived from the two frontdoor URLs' common path suffix).
   */
  rewriteUrl?: (publicUrl: string) => string;
  /** REST double to register the live call with (for `Calls/{sid}.json` and status callbacks). */
  restDouble?: TwilioRestDouble;
  /** Status callback URL of this call (the phone number's setting); defaults to the REST double's. */
  statusCallbackUrl?: string;
  /** Send `I-Twilio-Idempotency-Token` on webhooks. Defaults to true. */
  idempotencyTokens?: boolean;
  /** Hang up after this many call-ms. Defaults to 300000. */
  maxCallMs?: number;
  /** Close the stream on the first protocol error (Twilio only logs a warning). Defaults to false. */
  closeOnProtocolError?: boolean;
  /**
   * Keep audio in the record: `media` messages in `sentEvents`/`receivedEvents`, the caller's
   * frames and the agent's bytes (for `wav()`). Defaults to true; load runs turn it off (the
   * heap of hundreds of calls' audio stalls the process in garbage collection).
   */
  recordMedia?: boolean;
  /** Speaking rate of `<Say>` in call-ms per character. Defaults to 60; 0 makes `<Say>` instant. */
  sayMsPerCharacter?: number;
  /** Send this as the webhook's `X-Twilio-Signature` (negative tests). */
  webhookSignatureOverride?: string;
  /** Send this as the stream upgrade's `x-twilio-signature` (negative tests). */
  streamSignatureOverride?: string;
}

/** A Twilio error or warning the double raised (Twilio would log it in the debugger). */
export interface ProtocolError {
  atMs: number;
  /** Twilio error code (11200, 12100, 12300, 31920, 31950, 31951…). */
  code: number;
  message: string;
  streamSid: string | null;
  /** The offending message, when there is one. */
  raw?: string;
}

/** A Media Streams message the double sent. */
export interface SentStreamEvent {
  atMs: number;
  streamSid: string;
  message: Record<string, unknown>;
}

/** A Media Streams message the double received. */
export interface ReceivedStreamEvent {
  atMs: number;
  streamSid: string;
  /** The text frame (or `<binary N bytes>`). */
  raw: string;
  /** Parsed JSON, or null when it did not parse. */
  message: unknown;
}

/** A chunk of agent audio (one `media` message) and how much of it was played. */
export interface AgentChunk {
  /** Position in the call (0-based, across streams). */
  index: number;
  streamSid: string;
  receivedAtMs: number;
  /** When playout of this chunk began. */
  startMs: number;
  durationMs: number;
  /** Played ms (final once the call ended; see `playedMsOf` for a live value). */
  playedMs: number;
  /** When a `clear` or the stream's end cut it, or null. */
  cutAtMs: number | null;
  bytes: Uint8Array;
}

/** A mark that came back. */
export interface EchoedMark {
  name: string;
  streamSid: string;
  receivedAtMs: number;
  /** When the audio before it finished playing (its ideal echo time). */
  dueMs: number;
  echoedAtMs: number;
  /** True when returned early by a `clear`. */
  cleared: boolean;
}

/** A `clear` and what it cut. */
export interface ClearRecord {
  atMs: number;
  streamSid: string;
  /** Agent audio played in this stream when the clear arrived. */
  playedMsAtClear: number;
  /** Unplayed audio dropped. */
  droppedMs: number;
  marksReturned: string[];
  /** The chunks it cut: how much of each had played. */
  cutChunks: Array<{ index: number; playedMs: number; droppedMs: number }>;
}

/** One Media Streams connection. */
export interface StreamRecord {
  streamSid: string;
  /** `<Stream url>` as written (what the upgrade signs). */
  url: string;
  /** URL actually connected to. */
  connectUrl: string;
  name: string | null;
  customParameters: Record<string, string>;
  /** The upgrade's signature. */
  signature: string;
  openedAtMs: number | null;
  endedAtMs: number | null;
  endedBy:
    | "server"
    | "caller-hangup"
    | "api-update"
    | "api-hangup"
    | "test-hangup"
    | "max-duration"
    | "protocol-error"
    | "handshake-failed"
    | null;
  /**
   * Close code seen. Deno's WebSocket server drops the connection when a caller frame crosses its
   * close frame, and Deno's client then reports 0 (no close frame): read 0 and 1006 as "closed
   * without a clean handshake".
   */
  closeCode: number | null;
  closeReason: string | null;
  /** The close event's `wasClean`. */
  closeClean: boolean | null;
  framesSent: number;
  /**
   * `performance.now()` when each caller `media` frame of this stream was handed to the socket,
   * in order (with the model double's `appendedAtMs`, in the same process, the forwarding delay).
   */
  callerFrameSentAt: number[];
  /** Marks still pending when the stream ended (never echoed). */
  unechoedMarks: string[];
}

/** An HTTP request the double made for the call (webhook, actions, redirects, REST `Url`). */
export interface CallHttpRequest {
  atMs: number;
  purpose:
    | "webhook"
    | "connect-action"
    | "dial-action"
    | "record-action"
    | "redirect"
    | "rest-update";
  delivery: TwilioWebhookDelivery;
}

/** A TwiML document the call executed (or received after hanging up). */
export interface TwimlDocumentRecord {
  atMs: number;
  /** Public URL it came from, or `inline` for a REST `Twiml` update. */
  source: string;
  twiml: string;
  executed: boolean;
}

/** A verb the call executed. */
export interface VerbRecord {
  atMs: number;
  verb: string;
  attributes: Record<string, string>;
  text: string;
}

/** Why the call ended. */
export type CallEndReason =
  | "caller-hangup"
  | "twiml-hangup"
  | "end-of-document"
  | "api-hangup"
  | "test-hangup"
  | "max-duration"
  | "application-error";

/** Everything recorded about a call; filled in while it runs. */
export interface CallRecord {
  callSid: string;
  /** First stream's SID, or null when no stream opened. */
  streamSid: string | null;
  /** First TwiML document (the webhook's answer). */
  twiml: string | null;
  /** First stream's `customParameters`. */
  customParameters: Record<string, string>;
  /** Last TwiML document received. */
  finalTwiml: string | null;
  documents: TwimlDocumentRecord[];
  streams: StreamRecord[];
  sentEvents: SentStreamEvent[];
  receivedEvents: ReceivedStreamEvent[];
  marksEchoed: EchoedMark[];
  clears: ClearRecord[];
  agentChunks: AgentChunk[];
  /** Total agent audio played (final once the call ended). */
  agentAudioPlayedMs: number;
  /** Caller audio sent (frames x 20 ms). */
  callerAudioSentMs: number;
  protocolErrors: ProtocolError[];
  requests: CallHttpRequest[];
  /** Every request but the first webhook (Connect/Dial/Record actions, redirects, REST `Url`). */
  actionRequests: CallHttpRequest[];
  verbs: VerbRecord[];
  says: Array<{ atMs: number; text: string; voice: string | null; language: string | null }>;
  dials: Array<{ atMs: number; target: string; attributes: Record<string, string> }>;
  /** Last stream's close code. */
  closeCode: number | null;
  /** REST updates the call received. */
  updates: Array<{ atMs: number; update: TwilioCallUpdate }>;
  /** Script steps as they ran. */
  scriptLog: Array<{ index: number; kind: string; startedAtMs: number; endedAtMs: number | null }>;
  /** Wait steps that gave up (`timeoutMs`). */
  scriptTimeouts: Array<{ index: number; atMs: number }>;
  status: "ringing" | "in-progress" | "completed";
  endReason: CallEndReason | null;
  durationMs: number | null;
}

/** A finished call. */
export interface CallResult extends CallRecord {
  /** The call as a stereo WAV: caller left, agent right (as played), aligned on call time. */
  wav(): Uint8Array;
  /**
   * Writes `wav()` to a file.
   * @param path where
   */
  saveWav(path: string): Promise<void>;
}

/** A call in progress. */
export interface TwilioCallHandle {
  readonly callSid: string;
  /** Resolves when the call has ended. */
  readonly result: Promise<CallResult>;
  /** The record, filled in as the call runs. */
  readonly live: CallRecord;
  /** Call-ms since the call started. */
  nowMs(): number;
  /** Agent audio played so far. */
  agentAudioPlayedMs(): number;
  /** Hangs up from the caller's side, wherever the call is. */
  hangup(): void;
  /**
   * Resolves once `predicate()` holds (polled every few ms); rejects after `timeoutMs` real ms.
   * @param predicate condition over `live`
   * @param options timeout in real ms (default 10000)
   */
  waitUntil(predicate: () => boolean, options?: { timeoutMs?: number }): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/**
 * Maps URLs under a public base to a local base, derived from one known pair: the two URLs'
 * longest common path suffix (by segment) is dropped, what remains are the bases.
 * `https://x.supabase.co/functions/v1/voice-frontdoor` and `http://127.0.0.1:9000/voice-frontdoor`
 * map `https://x.supabase.co/functions/v1/` to `http://127.0.0.1:9000/`; `wss://` maps to `ws://`
 * alongside `https://` to `http://`.
 * @param localUrl the URL actually requested
 * @param publicUrl the URL Twilio believes it requests
 */
export function publicToLocalUrlMapper(
  localUrl: string,
  publicUrl: string,
): (url: string) => string {
  if (localUrl === publicUrl) return (url) => url;
  const local = new URL(localUrl);
  const remote = new URL(publicUrl);
  const localSegments = local.pathname.split("/");
  const publicSegments = remote.pathname.split("/");
  let common = 0;
  while (
    common < localSegments.length - 1 && common < publicSegments.length - 1 &&
    localSegments[localSegments.length - 1 - common] ===
      publicSegments[publicSegments.length - 1 - common]
  ) common++;
  const localBase = local.origin +
    localSegments.slice(0, localSegments.length - common).join("/");
  const publicBase = remote.origin +
    publicSegments.slice(0, publicSegments.length - common).join("/");
  const toWebSocket = (base: string) => base.replace(/^http/, "ws");
  return (url) => {
    if (url.startsWith(publicBase)) return localBase + url.slice(publicBase.length);
    if (url.startsWith(toWebSocket(publicBase))) {
      return toWebSocket(localBase) + url.slice(toWebSocket(publicBase).length);
    }
    return url;
  };
}

/** A TwiML element. */
export interface TwimlNode {
  name: string;
  attributes: Record<string, string>;
  /** Concatenated text content (trimmed). */
  text: string;
  children: TwimlNode[];
}

type OrderedXml = Array<Record<string, unknown>>;

const twimlParser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: "",
  parseAttributeValue: false,
  parseTagValue: false,
  trimValues: true,
  processEntities: true,
});

function toTwimlNodes(items: OrderedXml): { nodes: TwimlNode[]; text: string } {
  const nodes: TwimlNode[] = [];
  let text = "";
  for (const item of items) {
    for (const [key, value] of Object.entries(item)) {
      if (key === ":@") continue;
      if (key === "#text") {
        text += String(value);
        continue;
      }
      if (key.startsWith("?") || key.startsWith("!")) continue;
      const inner = toTwimlNodes(value as OrderedXml);
      const rawAttributes = (item[":@"] ?? {}) as Record<string, unknown>;
      const attributes: Record<string, string> = {};
      for (const [name, attributeValue] of Object.entries(rawAttributes)) {
        attributes[name] = String(attributeValue);
      }
      nodes.push({ name: key, attributes, text: inner.text.trim(), children: inner.nodes });
    }
  }
  return { nodes, text };
}

/**
 * Parses a TwiML document: well-formed XML whose root is `<Response>`.
 * @param twiml the document text
 */
export function safeParseTwiml(
  twiml: string,
): { success: true; data: TwimlNode } | { success: false; error: string } {
  if (twiml.trim() === "") return { success: false, error: "Document is empty" };
  const valid = XMLValidator.validate(twiml);
  if (valid !== true) {
    return { success: false, error: `Document is not well-formed XML: ${valid.err.msg}` };
  }
  let parsed: OrderedXml;
  try {
    parsed = twimlParser.parse(twiml) as OrderedXml;
  } catch (error) {
    return { success: false, error: `Document is not well-formed XML: ${String(error)}` };
  }
  const roots = toTwimlNodes(parsed).nodes;
  if (roots.length !== 1 || roots[0].name !== "Response") {
    return { success: false, error: "Document root must be a single <Response>" };
  }
  return { success: true, data: roots[0] };
}

/** Outcome of checking a server message against Twilio's bidirectional protocol. */
type InboundCheck =
  | { success: true; event: "media"; payload: Uint8Array }
  | { success: true; event: "mark"; name: string }
  | { success: true; event: "clear" }
  | { success: false; code: number; error: string; message: unknown };

function hasOnlyKeys(value: Record<string, unknown>, allowed: string[]): string | null {
  for (const key of Object.keys(value)) if (!allowed.includes(key)) return key;
  return null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks a text frame from the server as Twilio would (warning 31951 on any deviation).
 * @param raw the frame text
 * @param streamSid the stream's SID
 */
export function checkServerMessage(raw: string, streamSid: string): InboundCheck {
  let message: unknown;
  try {
    message = JSON.parse(raw);
  } catch {
    return { success: false, code: 31951, error: "Message is not JSON", message: null };
  }
  const fail = (error: string): InboundCheck => ({ success: false, code: 31951, error, message });
  if (!isPlainObject(message)) return fail("Message is not a JSON object");
  const event = message.event;
  if (typeof event !== "string") return fail("Message has no event");
  if (!SERVER_EVENTS.has(event)) return fail(`Unknown event ${event}`);
  if (message.streamSid === undefined) return fail("Message has no streamSid");
  if (message.streamSid !== streamSid) return fail(`Wrong streamSid ${String(message.streamSid)}`);
  if (event === "clear") {
    const extra = hasOnlyKeys(message, ["event", "streamSid"]);
    return extra === null ? { success: true, event: "clear" } : fail(`Extra field ${extra}`);
  }
  const extra = hasOnlyKeys(message, ["event", "streamSid", event]);
  if (extra !== null) return fail(`Extra field ${extra}`);
  const body = message[event];
  if (!isPlainObject(body)) return fail(`Field ${event} is missing or not an object`);
  if (event === "mark") {
    const extraInMark = hasOnlyKeys(body, ["name"]);
    if (extraInMark !== null) return fail(`Extra field mark.${extraInMark}`);
    if (typeof body.name !== "string" || body.name === "") return fail("Mark has no name");
    return { success: true, event: "mark", name: body.name };
  }
  const extraInMedia = hasOnlyKeys(body, ["payload"]);
  if (extraInMedia !== null) return fail(`Extra field media.${extraInMedia}`);
  if (typeof body.payload !== "string") return fail("Media has no payload");
  if (!BASE64_PATTERN.test(body.payload)) return fail("Media payload is not valid base64");
  const payload = base64ToBytes(body.payload);
  if (payload === null) return fail("Media payload is not valid base64");
  return { success: true, event: "media", payload };
}

/** Per-stream playout queue of a phone line (plain data; times in call-ms). */
interface Playout {
  /** When the queued audio finishes (≤ now when the line is quiet). */
  queueEndMs: number;
  chunks: AgentChunk[];
  pendingMarks: Array<{ name: string; receivedAtMs: number; dueMs: number }>;
}

/**
 * Agent ms of a chunk played by `atMs`.
 * @param chunk the chunk
 * @param atMs call time
 */
export function playedMsOf(chunk: AgentChunk, atMs: number): number {
  const until = chunk.cutAtMs === null ? atMs : Math.min(atMs, chunk.cutAtMs);
  return Math.max(0, Math.min(chunk.durationMs, until - chunk.startMs));
}

function playedInPlayout(playout: Playout, atMs: number): number {
  let total = 0;
  for (const chunk of playout.chunks) total += playedMsOf(chunk, atMs);
  return total;
}

function cutPlayout(playout: Playout, atMs: number): ClearRecord["cutChunks"] {
  const cut: ClearRecord["cutChunks"] = [];
  for (const chunk of playout.chunks) {
    if (chunk.cutAtMs !== null || chunk.startMs + chunk.durationMs <= atMs) continue;
    chunk.cutAtMs = atMs;
    const played = playedMsOf(chunk, atMs);
    cut.push({ index: chunk.index, playedMs: played, droppedMs: chunk.durationMs - played });
  }
  playout.queueEndMs = Math.min(playout.queueEndMs, atMs);
  return cut;
}

function encodeWav(
  record: CallRecord,
  callerFrames: Array<{ atMs: number; bytes: Uint8Array }>,
  recordMedia: boolean,
) {
  if (!recordMedia) throw new Error("Cannot make a WAV: the call ran with recordMedia: false");
  let endMs = 0;
  for (const frame of callerFrames) endMs = Math.max(endMs, frame.atMs + FRAME_MS);
  for (const chunk of record.agentChunks) {
    if (chunk.playedMs > 0) endMs = Math.max(endMs, chunk.startMs + chunk.playedMs);
  }
  const length = Math.ceil(endMs * MULAW_BYTES_PER_MS);
  const left = new Int16Array(length);
  const right = new Int16Array(length);
  const place = (target: Int16Array, atMs: number, bytes: Uint8Array) => {
    const offset = Math.round(atMs * MULAW_BYTES_PER_MS);
    if (offset >= length) return;
    const samples = mulawDecode(bytes.subarray(0, Math.max(0, length - offset)));
    target.set(samples, offset);
  };
  for (const frame of callerFrames) place(left, frame.atMs, frame.bytes);
  for (const chunk of record.agentChunks) {
    const playedBytes = Math.round(chunk.playedMs * MULAW_BYTES_PER_MS);
    if (playedBytes > 0) place(right, chunk.startMs, chunk.bytes.subarray(0, playedBytes));
  }
  return writeStereoWav(left, right, MULAW_BYTES_PER_MS * 1000);
}

function speedOf(pacing: PlaceCallOptions["pacing"]): number {
  if (pacing === "realtime") return 1;
  if (pacing === undefined || pacing === "fast") return FAST_SPEED_FACTOR;
  if (!(pacing > 0)) throw new RangeError(`Cannot pace a call at speed ${pacing}`);
  return pacing;
}

function stepKind(step: CallerStep): string {
  return Object.keys(step).find((key) => key !== "label" && key !== "timeoutMs") ?? "unknown";
}

function resolveUrl(url: string, base: string): string {
  // Absolute URLs stay byte-for-byte as written: they are what Twilio signs.
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) return url;
  return new URL(url, base).href;
}

function sleepReal(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const id = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(id);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// The call
// ---------------------------------------------------------------------------------------------

type Interruption =
  | { kind: "update"; update: TwilioCallUpdate }
  | { kind: "hangup"; reason: "api-hangup" | "test-hangup" | "max-duration" };

type NextStep =
  | {
    kind: "fetch";
    purpose: CallHttpRequest["purpose"];
    url: string;
    method: "GET" | "POST";
    params: Record<string, string>;
    /** The call is over: record the answer, do not execute it. */
    endAfter?: CallEndReason;
  }
  | { kind: "inline"; twiml: string }
  | { kind: "end"; reason: CallEndReason }
  | { kind: "interrupted" };

type StreamOutcome =
  | "server"
  | "handshake-failed"
  | "caller-hangup"
  | "protocol-error"
  | "interrupted";

/**
 * Starts an inbound call against a served frontdoor and returns at once.
 * @param options the call, the caller's script and the pacing
 */
export function startCall(options: PlaceCallOptions): TwilioCallHandle {
  const speed = speedOf(options.pacing);
  const recordMedia = options.recordMedia !== false;
  const callSid = options.callSid ?? twilioSid("CA");
  const publicFrontdoorUrl = options.publicFrontdoorUrl ?? options.frontdoorUrl;
  const mapUrl = options.rewriteUrl ??
    publicToLocalUrlMapper(options.frontdoorUrl, publicFrontdoorUrl);
  const mapStreamUrl = options.rewriteStreamUrl ?? mapUrl;
  const steps = options.audio ?? [];
  const sayMsPerCharacter = options.sayMsPerCharacter ?? DEFAULT_SAY_MS_PER_CHARACTER;
  const startedAtReal = performance.now();
  // Call time is quantised to one sample (1/8 ms, exact in binary floating point), so sums of
  // playout times stay exact.
  const nowMs = () =>
    Math.round((performance.now() - startedAtReal) * speed * MULAW_BYTES_PER_MS) /
    MULAW_BYTES_PER_MS;

  const record: CallRecord = {
    callSid,
    streamSid: null,
    twiml: null,
    customParameters: {},
    finalTwiml: null,
    documents: [],
    streams: [],
    sentEvents: [],
    receivedEvents: [],
    marksEchoed: [],
    clears: [],
    agentChunks: [],
    agentAudioPlayedMs: 0,
    callerAudioSentMs: 0,
    protocolErrors: [],
    requests: [],
    actionRequests: [],
    verbs: [],
    says: [],
    dials: [],
    closeCode: null,
    updates: [],
    scriptLog: [],
    scriptTimeouts: [],
    status: "ringing",
    endReason: null,
    durationMs: null,
  };
  const callerFrames: Array<{ atMs: number; bytes: Uint8Array }> = [];
  /** Agent audio played in streams that already ended. */
  let playedInEndedStreamsMs = 0;
  let currentPlayout: Playout | null = null;

  function agentAudioPlayedMs(atMs = nowMs()): number {
    return playedInEndedStreamsMs +
      (currentPlayout === null ? 0 : playedInPlayout(currentPlayout, atMs));
  }

  function protocolError(code: number, message: string, streamSid: string | null, raw?: string) {
    record.protocolErrors.push({ atMs: nowMs(), code, message, streamSid, raw });
  }

  // --- Call parameters ----------------------------------------------------------------------

  const fromGeo = { city: "", state: "", zip: "", country: "US", ...options.fromGeo };
  const toGeo = { city: "", state: "", zip: "", country: "US", ...options.toGeo };
  function baseParams(): Record<string, string> {
    const params: Record<string, string> = {
      AccountSid: options.accountSid,
      ApiVersion: TWILIO_API_VERSION,
      CallSid: callSid,
      Called: options.to,
      CalledCity: toGeo.city,
      CalledCountry: toGeo.country,
      CalledState: toGeo.state,
      CalledZip: toGeo.zip,
      Caller: options.from,
      CallerCity: fromGeo.city,
      CallerCountry: fromGeo.country,
      CallerState: fromGeo.state,
      CallerZip: fromGeo.zip,
      Direction: "inbound",
      From: options.from,
      FromCity: fromGeo.city,
      FromCountry: fromGeo.country,
      FromState: fromGeo.state,
      FromZip: fromGeo.zip,
      To: options.to,
      ToCity: toGeo.city,
      ToCountry: toGeo.country,
      ToState: toGeo.state,
      ToZip: toGeo.zip,
    };
    if (options.callerName !== undefined) params.CallerName = options.callerName;
    return params;
  }

  // --- Interruptions (REST updates, test hang-ups, max duration) ----------------------------

  let interruption: Interruption | null = null;
  let currentAbort = new AbortController();
  let finished = false;

  function interrupt(next: Interruption): void {
    if (finished) return;
    // A hang-up wins over a pending redirect; a later redirect replaces an earlier one.
    if (interruption?.kind === "hangup" && next.kind === "update") return;
    interruption = next;
    currentAbort.abort();
  }

  const liveCall: TwilioLiveCall = {
    callSid,
    from: options.from,
    to: options.to,
    direction: "inbound",
    callParams: baseParams,
    applyUpdate(update) {
      record.updates.push({ atMs: nowMs(), update });
      if (update.status === "completed") interrupt({ kind: "hangup", reason: "api-hangup" });
      else if (update.status === undefined) interrupt({ kind: "update", update });
    },
  };
  const registration: TwilioCallRegistration | null = options.restDouble?.registerCall(
    liveCall,
    { statusCallbackUrl: options.statusCallbackUrl },
  ) ?? null;

  const maxCallTimer = setTimeout(
    () => interrupt({ kind: "hangup", reason: "max-duration" }),
    (options.maxCallMs ?? DEFAULT_MAX_CALL_MS) / speed,
  );

  // --- HTTP ---------------------------------------------------------------------------------

  async function request(
    purpose: CallHttpRequest["purpose"],
    url: string,
    method: "GET" | "POST",
    params: Record<string, string>,
  ): Promise<CallHttpRequest> {
    const atMs = nowMs();
    const delivery = await sendTwilioWebhook({
      publicUrl: url,
      method,
      params,
      signingToken: options.authToken,
      rewriteUrl: mapUrl,
      idempotencyToken: options.idempotencyTokens === false ? null : undefined,
      signatureOverride: purpose === "webhook" ? options.webhookSignatureOverride : undefined,
    });
    const entry: CallHttpRequest = { atMs, purpose, delivery };
    record.requests.push(entry);
    if (purpose !== "webhook") record.actionRequests.push(entry);
    return entry;
  }

  function documentFrom(entry: CallHttpRequest): TwimlNode | null {
    const { delivery } = entry;
    if (!delivery.ok) {
      protocolError(
        11200,
        `HTTP retrieval failure: ${delivery.status ?? delivery.attempts.at(-1)?.error}`,
        null,
        delivery.body,
      );
      return null;
    }
    const contentType = (delivery.contentType ?? "").split(";")[0].trim().toLowerCase();
    if (!TWIML_CONTENT_TYPES.includes(contentType)) {
      protocolError(12300, `Invalid Content-Type: ${delivery.contentType}`, null, delivery.body);
      return null;
    }
    const parsed = safeParseTwiml(delivery.body);
    if (!parsed.success) {
      protocolError(12100, `Document parse failure: ${parsed.error}`, null, delivery.body);
      return null;
    }
    return parsed.data;
  }

  // --- Caller script ------------------------------------------------------------------------

  const cursor = {
    index: 0,
    sendOffset: 0,
    remainingMs: null as number | null,
    stepStartedAtMs: null as number | null,
    baselinePlayedMs: 0,
  };

  function advanceStep(atMs: number): void {
    const logEntry = record.scriptLog.at(-1);
    if (logEntry !== undefined && logEntry.index === cursor.index) logEntry.endedAtMs = atMs;
    cursor.index++;
    cursor.sendOffset = 0;
    cursor.remainingMs = null;
    cursor.stepStartedAtMs = null;
  }

  const silenceFrame = new Uint8Array(FRAME_BYTES).fill(MULAW_SILENCE);

  /** The caller's next 20 ms at `atMs`: audio, keys pressed before it, or a hang-up. */
  function nextCallerFrame(
    atMs: number,
    playout: Playout,
  ): { payload: Uint8Array; digits: string[]; hangup: boolean } {
    const digits: string[] = [];
    for (;;) {
      const step = steps[cursor.index];
      if (step === undefined) return { payload: silenceFrame, digits, hangup: false };
      if (cursor.stepStartedAtMs === null) {
        cursor.stepStartedAtMs = atMs;
        cursor.baselinePlayedMs = agentAudioPlayedMs(atMs);
        record.scriptLog.push({
          index: cursor.index,
          kind: stepKind(step),
          startedAtMs: atMs,
          endedAtMs: null,
        });
      }
      if ("send" in step) {
        if (cursor.sendOffset >= step.send.length) {
          advanceStep(atMs);
          continue;
        }
        const end = Math.min(cursor.sendOffset + FRAME_BYTES, step.send.length);
        const frame = new Uint8Array(FRAME_BYTES).fill(MULAW_SILENCE);
        frame.set(step.send.subarray(cursor.sendOffset, end));
        cursor.sendOffset = end;
        if (end >= step.send.length) advanceStep(atMs + FRAME_MS);
        return { payload: frame, digits, hangup: false };
      }
      if ("silenceMs" in step || "waitMs" in step) {
        cursor.remainingMs ??= "silenceMs" in step ? step.silenceMs : step.waitMs;
        if (cursor.remainingMs <= 0) {
          advanceStep(atMs);
          continue;
        }
        cursor.remainingMs -= FRAME_MS;
        return { payload: silenceFrame, digits, hangup: false };
      }
      if ("dtmf" in step) {
        digits.push(...step.dtmf.split(""));
        advanceStep(atMs);
        continue;
      }
      if ("hangup" in step) {
        advanceStep(atMs);
        return { payload: silenceFrame, digits, hangup: true };
      }
      const timedOut = step.timeoutMs !== undefined &&
        atMs - cursor.stepStartedAtMs >= step.timeoutMs;
      let satisfied: boolean;
      if ("waitForAgentAudioMs" in step) {
        satisfied = agentAudioPlayedMs(atMs) - cursor.baselinePlayedMs >= step.waitForAgentAudioMs;
      } else {
        const quietSinceMs = Math.max(cursor.stepStartedAtMs, playout.queueEndMs);
        satisfied = playout.queueEndMs <= atMs && atMs - quietSinceMs >= step.waitForAgentSilenceMs;
      }
      if (satisfied || timedOut) {
        if (!satisfied) record.scriptTimeouts.push({ index: cursor.index, atMs });
        advanceStep(atMs);
        continue;
      }
      return { payload: silenceFrame, digits, hangup: false };
    }
  }

  // --- Media stream -------------------------------------------------------------------------

  async function runStream(
    wssUrl: string,
    name: string | null,
    customParameters: Record<string, string>,
    signal: AbortSignal,
  ): Promise<StreamOutcome> {
    const streamSid = twilioSid("MZ");
    const connectUrl = mapStreamUrl(wssUrl);
    const signature = options.streamSignatureOverride ??
      await signTwilioRequest(options.authToken, wssUrl, {});
    const stream: StreamRecord = {
      streamSid,
      url: wssUrl,
      connectUrl,
      name,
      customParameters,
      signature,
      openedAtMs: null,
      endedAtMs: null,
      endedBy: null,
      closeCode: null,
      closeReason: null,
      closeClean: null,
      framesSent: 0,
      callerFrameSentAt: [],
      unechoedMarks: [],
    };
    record.streams.push(stream);
    if (record.streamSid === null) {
      record.streamSid = streamSid;
      record.customParameters = customParameters;
    }

    let socket: WebSocket;
    try {
      const headers = { "x-twilio-signature": signature, "user-agent": "Twilio.TmeWs/1.0" };
      // Deno's WebSocket client has Nagle's algorithm on: a caller frame sent while the previous
      // one is unacknowledged waits for the bridge's delayed ACK (~40 ms). Twilio's media
      // servers do not stall like that; load runs measuring forwarding delay use a no-delay
      // socket.
      socket = options.noDelaySocket
        ? connectNoDelayWebSocket(connectUrl, [], { headers }) as unknown as WebSocket
        : new WebSocket(connectUrl, { headers });
    } catch (error) {
      protocolError(31923, `Stream - WebSocket - Malformed URL: ${String(error)}`, streamSid);
      stream.endedBy = "handshake-failed";
      stream.endedAtMs = nowMs();
      return "handshake-failed";
    }
    let closed = false;
    const closedPromise = new Promise<void>((resolve) => {
      socket.addEventListener("close", (event) => {
        closed = true;
        stream.closeCode = event.code;
        stream.closeReason = event.reason;
        stream.closeClean = event.wasClean;
        record.closeCode = event.code;
        resolve();
      });
    });
    const opened = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), SOCKET_WAIT_REAL_MS);
      socket.addEventListener("open", () => {
        clearTimeout(timer);
        resolve(true);
      });
      closedPromise.then(() => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!opened) {
      protocolError(31920, "Stream - WebSocket - Handshake Error", streamSid);
      stream.endedBy = "handshake-failed";
      stream.endedAtMs = nowMs();
      if (!closed) socket.close();
      await Promise.race([closedPromise, sleepReal(SOCKET_WAIT_REAL_MS)]);
      return "handshake-failed";
    }

    const playout: Playout = { queueEndMs: 0, chunks: [], pendingMarks: [] };
    currentPlayout = playout;
    const streamStartMs = nowMs();
    stream.openedAtMs = streamStartMs;
    let sequenceNumber = 0;
    let outcome: StreamOutcome | null = null;
    let wake: (() => void) | null = null;
    const wakeUp = () => wake?.();

    function send(message: Record<string, unknown>): void {
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify(message));
      if (recordMedia || message.event !== "media") {
        record.sentEvents.push({ atMs: nowMs(), streamSid, message });
      }
    }

    function echoMark(
      mark: Playout["pendingMarks"][number],
      atMs: number,
      cleared: boolean,
    ): void {
      send({
        event: "mark",
        sequenceNumber: String(++sequenceNumber),
        streamSid,
        mark: { name: mark.name },
      });
      record.marksEchoed.push({
        name: mark.name,
        streamSid,
        receivedAtMs: mark.receivedAtMs,
        dueMs: mark.dueMs,
        echoedAtMs: atMs,
        cleared,
      });
    }

    function echoDueMarks(atMs: number): void {
      while (playout.pendingMarks.length > 0 && playout.pendingMarks[0].dueMs <= atMs) {
        echoMark(playout.pendingMarks.shift()!, atMs, false);
      }
    }

    function endStream(by: StreamOutcome, endedBy: StreamRecord["endedBy"]): void {
      if (outcome !== null) return;
      outcome = by;
      stream.endedBy = endedBy;
      wakeUp();
    }

    socket.addEventListener("message", (event: MessageEvent) => {
      const atMs = nowMs();
      if (typeof event.data !== "string") {
        const size = event.data instanceof ArrayBuffer
          ? event.data.byteLength
          : (event.data as Blob).size;
        record.receivedEvents.push({
          atMs,
          streamSid,
          raw: `<binary ${size} bytes>`,
          message: null,
        });
        protocolError(31950, "Stream - Protocol - Malformed Message: binary frame", streamSid);
        if (options.closeOnProtocolError) endStream("protocol-error", "protocol-error");
        return;
      }
      const raw = event.data;
      const check = checkServerMessage(raw, streamSid);
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(raw);
      } catch {
        parsed = null;
      }
      if (recordMedia || !check.success || check.event !== "media") {
        record.receivedEvents.push({ atMs, streamSid, raw, message: parsed });
      }
      if (!check.success) {
        protocolError(
          check.code,
          `Stream - Protocol - Invalid Message: ${check.error}`,
          streamSid,
          raw,
        );
        if (options.closeOnProtocolError) endStream("protocol-error", "protocol-error");
        return;
      }
      // Twilio has stopped the stream: late messages are recorded but go nowhere.
      if (outcome !== null) return;
      echoDueMarks(atMs);
      if (check.event === "media") {
        const durationMs = check.payload.length / MULAW_BYTES_PER_MS;
        const startMs = Math.max(atMs, playout.queueEndMs);
        const chunk: AgentChunk = {
          index: record.agentChunks.length,
          streamSid,
          receivedAtMs: atMs,
          startMs,
          durationMs,
          playedMs: 0,
          cutAtMs: null,
          bytes: recordMedia ? check.payload : NO_BYTES,
        };
        playout.queueEndMs = startMs + durationMs;
        playout.chunks.push(chunk);
        record.agentChunks.push(chunk);
      } else if (check.event === "mark") {
        const mark = {
          name: check.name,
          receivedAtMs: atMs,
          dueMs: Math.max(atMs, playout.queueEndMs),
        };
        if (mark.dueMs <= atMs) echoMark(mark, atMs, false);
        else playout.pendingMarks.push(mark);
      } else {
        const playedMsAtClear = playedInPlayout(playout, atMs);
        const cutChunks = cutPlayout(playout, atMs);
        const returned = playout.pendingMarks.splice(0);
        for (const mark of returned) echoMark(mark, atMs, true);
        record.clears.push({
          atMs,
          streamSid,
          playedMsAtClear,
          droppedMs: cutChunks.reduce((sum, chunk) => sum + chunk.droppedMs, 0),
          marksReturned: returned.map((mark) => mark.name),
          cutChunks,
        });
      }
      wakeUp();
    });
    closedPromise.then(() => endStream("server", "server"));
    const onAbort = () => {
      const reason = interruption;
      endStream(
        "interrupted",
        reason?.kind === "hangup" ? reason.reason : "api-update",
      );
    };
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();

    send({ event: "connected", protocol: "Call", version: "1.0.0" });
    send({
      event: "start",
      sequenceNumber: String(++sequenceNumber),
      start: {
        accountSid: options.accountSid,
        streamSid,
        callSid,
        tracks: ["inbound"],
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
        customParameters,
      },
      streamSid,
    });

    let frameIndex = 0;
    while (outcome === null) {
      const now = nowMs();
      echoDueMarks(now);
      while (outcome === null && streamStartMs + frameIndex * FRAME_MS <= now) {
        const frameAtMs = streamStartMs + frameIndex * FRAME_MS;
        const frame = nextCallerFrame(frameAtMs, playout);
        for (const digit of frame.digits) {
          send({
            event: "dtmf",
            streamSid,
            sequenceNumber: String(++sequenceNumber),
            dtmf: { track: "inbound_track", digit },
          });
        }
        if (frame.hangup) {
          endStream("caller-hangup", "caller-hangup");
          break;
        }
        send({
          event: "media",
          sequenceNumber: String(++sequenceNumber),
          media: {
            track: "inbound",
            chunk: String(frameIndex + 1),
            timestamp: String(frameIndex * FRAME_MS),
            payload: bytesToBase64(frame.payload),
          },
          streamSid,
        });
        if (recordMedia) callerFrames.push({ atMs: frameAtMs, bytes: frame.payload });
        stream.callerFrameSentAt.push(performance.now());
        stream.framesSent++;
        record.callerAudioSentMs += FRAME_MS;
        frameIndex++;
      }
      if (outcome !== null) break;
      const nextFrameMs = streamStartMs + frameIndex * FRAME_MS;
      const nextMarkMs = playout.pendingMarks[0]?.dueMs ?? Infinity;
      const delayRealMs = (Math.min(nextFrameMs, nextMarkMs) - nowMs()) / speed;
      await new Promise<void>((resolve) => {
        const id = setTimeout(
          finish,
          Math.min(MAX_TICK_REAL_MS, Math.max(MIN_TICK_REAL_MS, delayRealMs)),
        );
        function finish() {
          clearTimeout(id);
          wake = null;
          resolve();
        }
        wake = finish;
      });
    }
    signal.removeEventListener("abort", onAbort);

    const endedAtMs = nowMs();
    stream.endedAtMs = endedAtMs;
    if (outcome !== "server") {
      // Twilio ends the stream itself: `stop`, then close.
      send({
        event: "stop",
        sequenceNumber: String(++sequenceNumber),
        streamSid,
        stop: { accountSid: options.accountSid, callSid },
      });
      if (!closed) socket.close(1000);
    }
    await Promise.race([closedPromise, sleepReal(SOCKET_WAIT_REAL_MS)]);
    if (!closed) {
      protocolError(31921, "Stream - WebSocket - Close Error: no close handshake", streamSid);
    }
    // Audio still queued when the stream ends is never heard; its marks never come back.
    cutPlayout(playout, endedAtMs);
    stream.unechoedMarks = playout.pendingMarks.map((mark) => mark.name);
    for (const chunk of playout.chunks) chunk.playedMs = playedMsOf(chunk, endedAtMs);
    playedInEndedStreamsMs += playedInPlayout(playout, endedAtMs);
    currentPlayout = null;
    return outcome!;
  }

  // --- TwiML execution ----------------------------------------------------------------------

  function callParams(status: "in-progress" | "completed"): Record<string, string> {
    return { ...baseParams(), CallStatus: status };
  }

  async function executeDocument(
    document: TwimlNode,
    documentUrl: string,
    signal: AbortSignal,
  ): Promise<NextStep> {
    for (const verb of document.children) {
      if (signal.aborted) return { kind: "interrupted" };
      const atMs = nowMs();
      record.verbs.push({ atMs, verb: verb.name, attributes: verb.attributes, text: verb.text });
      const action = verb.attributes.action;
      const method = verb.attributes.method === "GET" ? "GET" : "POST";
      switch (verb.name) {
        case "Say": {
          record.says.push({
            atMs,
            text: verb.text,
            voice: verb.attributes.voice ?? null,
            language: verb.attributes.language ?? null,
          });
          await sleepReal((verb.text.length * sayMsPerCharacter) / speed, signal);
          break;
        }
        case "Play":
          break;
        case "Pause": {
          const lengthSec = Number(verb.attributes.length ?? "1");
          await sleepReal((lengthSec * 1000) / speed, signal);
          break;
        }
        case "Hangup":
          return { kind: "end", reason: "twiml-hangup" };
        case "Redirect": {
          if (verb.text === "") {
            protocolError(12200, "Schema validation warning: <Redirect> without a URL", null);
            break;
          }
          return {
            kind: "fetch",
            purpose: "redirect",
            url: resolveUrl(verb.text, documentUrl),
            method,
            params: callParams("in-progress"),
          };
        }
        case "Record": {
          // The simulated caller says nothing: the recording ends after `timeout` seconds.
          const timeoutSec = Number(verb.attributes.timeout ?? "5");
          await sleepReal((timeoutSec * 1000) / speed, signal);
          if (signal.aborted) return { kind: "interrupted" };
          if (action === undefined) break;
          const recordingSid = twilioSid("RE");
          return {
            kind: "fetch",
            purpose: "record-action",
            url: resolveUrl(action, documentUrl),
            method,
            params: {
              ...callParams("in-progress"),
              RecordingDuration: String(timeoutSec),
              RecordingSid: recordingSid,
              RecordingUrl:
                `https://api.twilio.com/${TWILIO_API_VERSION}/Accounts/${options.accountSid}/Recordings/${recordingSid}`,
            },
          };
        }
        case "Dial": {
          const targets = verb.children.length > 0
            ? verb.children.map((child) => child.text)
            : [verb.text];
          for (const target of targets) {
            record.dials.push({ atMs, target, attributes: verb.attributes });
          }
          // The dialled party answers and hangs up at once: the caller has been transferred.
          if (action === undefined) break;
          return {
            kind: "fetch",
            purpose: "dial-action",
            url: resolveUrl(action, documentUrl),
            method,
            params: {
              ...callParams("in-progress"),
              DialCallDuration: "0",
              DialCallSid: twilioSid("CA"),
              DialCallStatus: "completed",
            },
          };
        }
        case "Connect": {
          const next = await executeConnect(verb, documentUrl, signal);
          if (next !== null) return next;
          break;
        }
        default:
          protocolError(12200, `Schema validation warning: unsupported verb <${verb.name}>`, null);
      }
    }
    if (signal.aborted) return { kind: "interrupted" };
    return { kind: "end", reason: "end-of-document" };
  }

  async function executeConnect(
    verb: TwimlNode,
    documentUrl: string,
    signal: AbortSignal,
  ): Promise<NextStep | null> {
    const action = verb.attributes.action;
    const method = verb.attributes.method === "GET" ? "GET" : "POST";
    const streamNode = verb.children.find((child) => child.name === "Stream");
    if (streamNode === undefined) {
      protocolError(12200, "Schema validation warning: <Connect> without <Stream>", null);
      return null;
    }
    const url = streamNode.attributes.url ?? "";
    const customParameters: Record<string, string> = {};
    for (const child of streamNode.children) {
      if (child.name === "Parameter" && child.attributes.name !== undefined) {
        customParameters[child.attributes.name] = child.attributes.value ?? "";
      }
    }
    let outcome: StreamOutcome;
    if (!url.startsWith("wss://")) {
      protocolError(31922, `Stream - WebSocket - URL Schema Not Supported: ${url}`, null);
      outcome = "handshake-failed";
    } else if (url.includes("?")) {
      protocolError(31923, `Stream - WebSocket - Malformed URL (query string): ${url}`, null);
      outcome = "handshake-failed";
    } else if (
      streamNode.attributes.track !== undefined && streamNode.attributes.track !== "inbound_track"
    ) {
      protocolError(
        31941,
        `Stream - Invalid Track configuration: ${streamNode.attributes.track}`,
        null,
      );
      outcome = "handshake-failed";
    } else {
      outcome = await runStream(url, streamNode.attributes.name ?? null, customParameters, signal);
    }
    const hungUp = outcome === "caller-hangup" ||
      (outcome === "interrupted" && interruption?.kind === "hangup");
    if (hungUp) {
      const reason: CallEndReason = outcome === "caller-hangup"
        ? "caller-hangup"
        : (interruption as { reason: CallEndReason }).reason;
      if (action === undefined) return { kind: "end", reason };
      return {
        kind: "fetch",
        purpose: "connect-action",
        url: resolveUrl(action, documentUrl),
        method,
        params: callParams("completed"),
        endAfter: reason,
      };
    }
    if (outcome === "interrupted") return { kind: "interrupted" };
    if (action === undefined) return null;
    return {
      kind: "fetch",
      purpose: "connect-action",
      url: resolveUrl(action, documentUrl),
      method,
      params: callParams("in-progress"),
    };
  }

  function fromInterruption(): NextStep {
    const pending = interruption!;
    interruption = null;
    if (pending.kind === "hangup") return { kind: "end", reason: pending.reason };
    const { update } = pending;
    if (update.twiml !== undefined) return { kind: "inline", twiml: update.twiml };
    return {
      kind: "fetch",
      purpose: "rest-update",
      url: update.url!,
      method: update.method ?? "POST",
      params: callParams("in-progress"),
    };
  }

  async function run(): Promise<CallResult> {
    let next: NextStep = {
      kind: "fetch",
      purpose: "webhook",
      url: publicFrontdoorUrl,
      method: "POST",
      params: {
        ...baseParams(),
        CallStatus: "ringing",
        ...(options.stirVerstat === undefined ? {} : { StirVerstat: options.stirVerstat }),
        ...options.extraWebhookParams,
      },
    };
    let lastDocumentUrl = publicFrontdoorUrl;
    let endReason: CallEndReason | null = null;
    while (endReason === null) {
      if (next.kind === "end") {
        endReason = next.reason;
        break;
      }
      if (next.kind === "interrupted") {
        next = fromInterruption();
        continue;
      }
      if (record.documents.length >= MAX_DOCUMENTS_PER_CALL) {
        protocolError(11200, "Too many TwiML documents: redirect loop", null);
        endReason = "application-error";
        break;
      }
      let document: TwimlNode | null;
      let source: string;
      let twiml: string;
      if (next.kind === "fetch") {
        const entry = await request(next.purpose, next.url, next.method, next.params);
        source = entry.delivery.signedUrl;
        twiml = entry.delivery.body;
        if (next.endAfter !== undefined) {
          if (entry.delivery.ok) {
            record.documents.push({ atMs: entry.atMs, source, twiml, executed: false });
            record.finalTwiml = twiml;
          }
          endReason = next.endAfter;
          break;
        }
        document = documentFrom(entry);
        lastDocumentUrl = entry.delivery.signedUrl;
      } else {
        source = "inline";
        twiml = next.twiml;
        const parsed = safeParseTwiml(twiml);
        document = parsed.success ? parsed.data : null;
        if (!parsed.success) {
          protocolError(12100, `Document parse failure: ${parsed.error}`, null, twiml);
        }
      }
      if (document === null) {
        // Twilio says "an application error has occurred" and hangs up.
        endReason = "application-error";
        break;
      }
      record.documents.push({ atMs: nowMs(), source, twiml, executed: true });
      record.twiml ??= twiml;
      record.finalTwiml = twiml;
      record.status = "in-progress";
      if (interruption !== null) {
        next = fromInterruption();
        continue;
      }
      currentAbort = new AbortController();
      next = await executeDocument(document, lastDocumentUrl, currentAbort.signal);
    }
    finished = true;
    clearTimeout(maxCallTimer);
    record.status = "completed";
    record.endReason = endReason;
    record.durationMs = nowMs();
    record.agentAudioPlayedMs = playedInEndedStreamsMs;
    registration?.statusChanged("completed", {
      durationSec: Math.round(record.durationMs / 1000),
    });
    return {
      ...record,
      wav: () => encodeWav(record, callerFrames, recordMedia),
      saveWav: (path: string) => Deno.writeFile(path, encodeWav(record, callerFrames, recordMedia)),
    };
  }

  const result = run().finally(() => clearTimeout(maxCallTimer));

  return {
    callSid,
    result,
    live: record,
    nowMs,
    agentAudioPlayedMs: () => agentAudioPlayedMs(),
    hangup: () => interrupt({ kind: "hangup", reason: "test-hangup" }),
    async waitUntil(predicate, waitOptions) {
      const deadline = performance.now() + (waitOptions?.timeoutMs ?? 10_000);
      while (!predicate()) {
        if (performance.now() > deadline) {
          throw new Error("Cannot wait for the call condition: timed out");
        }
        await sleepReal(5);
      }
    },
  };
}

/**
 * Places an inbound call and resolves when it has ended.
 * @param options the call, the caller's script and the pacing
 */
export function placeCall(options: PlaceCallOptions): Promise<CallResult> {
  return startCall(options).result;
}

/** Re-exported for tests that build webhook expectations. */
export type { TwilioParams };
