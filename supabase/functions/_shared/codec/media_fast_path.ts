/**
 * Speaks both audio-carrying frames of the bridge: Twilio Media Streams `media` and OpenAI Realtime
 * `input_audio_buffer.append` / `response.output_audio.delta`, translated without decoding audio.
 *
 * Why: every forwarded frame costs CPU on an edge function with a 2 s CPU budget per request. The
 * fast path first matches the exact layout each vendor's encoder produces (`startsWith`,
 * `indexOf`, slicing), then tries a small order-free scanner for other key orders and extra
 * fields; neither builds an object per frame, and both check the same rules as the zod schemas. Whatever it cannot settle (escapes, arrays, literals, duplicate keys, invalid frames)
 * falls back to `JSON.parse` plus the validated codecs, so the result is always the one the slow
 * path gives and invalid input never yields output; tests compare the two on thousands of
 * generated frames. Audio stays base64 text end to end: both sides use 8 kHz mu-law
 * (`audio/pcmu`).
 *
 * @module
 */
import {
  decodeBase64Strict,
  isBase64,
  isDigitString,
  safeParseTwilioMessage,
  type SafeParseTwilioResult,
  type TwilioMediaMessage,
} from "./twilio_media.ts";
import {
  type OpenAIOutputAudioDeltaEvent,
  safeParseRealtimeServerEvent,
  type SafeParseRealtimeServerEventResult,
} from "./openai_realtime.ts";

/** The parts of a Twilio `media` frame the bridge forwards. */
export interface TwilioMediaPayload {
  readonly streamSid: string;
  readonly track: string;
  /** Milliseconds since the stream started (Twilio's `media.timestamp`). */
  readonly timestampMs: number;
  /** Base64 8 kHz mu-law, as Twilio sent it. */
  readonly payload: string;
}

/** The parts of an OpenAI `response.output_audio.delta` event the bridge forwards. */
export interface OpenAIAudioDelta {
  readonly responseId: string;
  readonly itemId: string;
  /** Base64 audio in the session's output format. */
  readonly delta: string;
}

// ---------------------------------------------------------------------------------------------
// Order-free scanner for flat frames
// ---------------------------------------------------------------------------------------------

/**
 * The keys of one JSON object the scanner keeps, by slot. Other keys are skipped, but their values
 * must still be strings or numbers.
 */
interface ObjectShape {
  readonly keys: readonly string[];
  /** The slot holding a nested object, and that object's shape. */
  readonly nested?: { readonly slot: number; readonly shape: ObjectShape };
  /**
   * The slot holding audio. The scanner does not look inside this string; the caller must check
   * it with `isBase64`, which also rejects the control characters JSON forbids, before using it.
   */
  readonly audioSlot?: number;
}

/** Scanned values by slot: strings, numbers, or a nested object's slots. */
type Slots = Array<string | number | Slots | undefined>;

const QUOTE = 0x22;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const COLON = 0x3a;
const COMMA = 0x2c;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const FIRST_PRINTABLE = 0x20;
const DECLINED = -1;

function isDigitCode(code: number): boolean {
  return code >= DIGIT_0 && code <= DIGIT_9;
}

function skipWhitespace(text: string, pos: number): number {
  while (true) {
    const code = text.charCodeAt(pos);
    if (code !== 0x20 && code !== 0x0a && code !== 0x0d && code !== 0x09) return pos;
    pos++;
  }
}

/** Tells whether `text[start, end)` holds a raw control character, which JSON strings forbid. */
function hasControl(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    if (text.charCodeAt(i) < FIRST_PRINTABLE) return true;
  }
  return false;
}

/** End of a JSON number at `pos` (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`). */
function numberEnd(text: string, pos: number): number {
  if (text.charCodeAt(pos) === MINUS) pos++;
  const first = text.charCodeAt(pos);
  if (first === DIGIT_0) {
    pos++;
  } else if (isDigitCode(first)) {
    while (isDigitCode(text.charCodeAt(pos))) pos++;
  } else {
    return DECLINED;
  }
  if (text.charCodeAt(pos) === DOT) {
    pos++;
    if (!isDigitCode(text.charCodeAt(pos))) return DECLINED;
    while (isDigitCode(text.charCodeAt(pos))) pos++;
  }
  const e = text.charCodeAt(pos);
  if (e === LOWER_E || e === UPPER_E) {
    pos++;
    const sign = text.charCodeAt(pos);
    if (sign === PLUS || sign === MINUS) pos++;
    if (!isDigitCode(text.charCodeAt(pos))) return DECLINED;
    while (isDigitCode(text.charCodeAt(pos))) pos++;
  }
  return pos;
}

/**
 * Scans the object opening at `text[start]` into `out`; returns the position after its `}`, or
 * `DECLINED` for anything this scanner leaves to `JSON.parse`: arrays, literals, unknown nested
 * objects, duplicate known keys (JSON.parse keeps the last) and invalid JSON.
 */
function scanObject(text: string, start: number, shape: ObjectShape, out: Slots): number {
  let pos = skipWhitespace(text, start + 1);
  if (text.charCodeAt(pos) === CLOSE_BRACE) return pos + 1;
  while (true) {
    if (text.charCodeAt(pos) !== QUOTE) return DECLINED;
    const keyEnd = text.indexOf('"', pos + 1);
    if (keyEnd < 0 || hasControl(text, pos + 1, keyEnd)) return DECLINED;
    const slot = shape.keys.indexOf(text.slice(pos + 1, keyEnd));
    if (slot >= 0 && out[slot] !== undefined) return DECLINED;
    pos = skipWhitespace(text, keyEnd + 1);
    if (text.charCodeAt(pos) !== COLON) return DECLINED;
    pos = skipWhitespace(text, pos + 1);
    const code = text.charCodeAt(pos);
    if (code === QUOTE) {
      const end = text.indexOf('"', pos + 1);
      if (end < 0) return DECLINED;
      if (slot !== shape.audioSlot && hasControl(text, pos + 1, end)) return DECLINED;
      if (slot >= 0) out[slot] = text.slice(pos + 1, end);
      pos = end + 1;
    } else if (code === OPEN_BRACE && slot >= 0 && shape.nested?.slot === slot) {
      const inner: Slots = [];
      pos = scanObject(text, pos, shape.nested.shape, inner);
      if (pos === DECLINED) return DECLINED;
      out[slot] = inner;
    } else if (code === MINUS || isDigitCode(code)) {
      const end = numberEnd(text, pos);
      if (end === DECLINED) return DECLINED;
      if (slot >= 0) out[slot] = Number(text.slice(pos, end));
      pos = end;
    } else {
      return DECLINED;
    }
    pos = skipWhitespace(text, pos);
    const next = text.charCodeAt(pos);
    if (next === CLOSE_BRACE) return pos + 1;
    if (next !== COMMA) return DECLINED;
    pos = skipWhitespace(text, pos + 1);
  }
}

/**
 * Scans a whole frame: one object and nothing but whitespace after it. `undefined` means "leave it
 * to JSON.parse". A frame with a backslash anywhere is left too: escapes are rare on these
 * sockets, and one native search lets the scanner treat every string as raw text.
 */
function scanFrame(text: string, shape: ObjectShape): Slots | undefined {
  if (text.indexOf("\\") !== -1) return undefined;
  const start = skipWhitespace(text, 0);
  if (text.charCodeAt(start) !== OPEN_BRACE) return undefined;
  const out: Slots = [];
  const end = scanObject(text, start, shape, out);
  if (end === DECLINED || skipWhitespace(text, end) !== text.length) return undefined;
  return out;
}

function isNonEmptyBase64(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && isBase64(value);
}

function isDigits(value: unknown): value is string {
  return typeof value === "string" && isDigitString(value);
}

// ---------------------------------------------------------------------------------------------
// Exact layouts: the byte order each vendor's encoder actually uses
// ---------------------------------------------------------------------------------------------

const BACKSLASH = 0x5c;

/**
 * Tells whether a value cut out of a layout is a whole JSON string body as is: no quote, no
 * escape and no raw control character.
 */
function isRawJsonString(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < FIRST_PRINTABLE || code === QUOTE || code === BACKSLASH) return false;
  }
  return true;
}

/** Tells whether `text` is exactly one JSON number. */
function isJsonNumber(text: string): boolean {
  return text.length > 0 && numberEnd(text, 0) === text.length;
}

/**
 * Matches `text` against `layout`: the literal pieces of a frame with the values left out. Fills
 * `values` and returns true when the text is exactly the pieces with values between them. The
 * caller must then check every value with a test that rejects quotes, backslashes and control
 * characters ({@link isRawJsonString}, digits, base64, {@link isJsonNumber}); once they pass, the
 * text is known to be valid JSON with exactly these keys in this order.
 */
function matchLayout(text: string, layout: readonly string[], values: string[]): boolean {
  const head = layout[0];
  if (!text.startsWith(head)) return false;
  let pos = head.length;
  for (let i = 1; i < layout.length; i++) {
    const piece = layout[i];
    const end = text.indexOf(piece, pos);
    if (end < 0) return false;
    values[i - 1] = text.slice(pos, end);
    pos = end + piece.length;
  }
  return pos === text.length;
}

// ---------------------------------------------------------------------------------------------
// Twilio media -> OpenAI append
// ---------------------------------------------------------------------------------------------

const TWILIO_MEDIA_SHAPE: ObjectShape = {
  keys: ["track", "chunk", "timestamp", "payload"],
  audioSlot: 3,
};
const TWILIO_FRAME_SHAPE: ObjectShape = {
  keys: ["event", "sequenceNumber", "streamSid", "media"],
  nested: { slot: 3, shape: TWILIO_MEDIA_SHAPE },
};

// Twilio's layout of a media frame, as its documentation and live streams show it.
const TWILIO_MEDIA_LAYOUT = [
  '{"event":"media","sequenceNumber":"',
  '","media":{"track":"',
  '","chunk":"',
  '","timestamp":"',
  '","payload":"',
  '"},"streamSid":"',
  '"}',
] as const;

function matchTwilioMediaLayout(text: string): TwilioMediaPayload | undefined {
  const values: string[] = [];
  if (!matchLayout(text, TWILIO_MEDIA_LAYOUT, values)) return undefined;
  const [sequenceNumber, track, chunk, timestamp, payload, streamSid] = values;
  if (
    !isDigitString(sequenceNumber) || !isRawJsonString(track) || !isDigitString(chunk) ||
    !isDigitString(timestamp) || !isNonEmptyBase64(payload) || !isRawJsonString(streamSid)
  ) {
    return undefined;
  }
  return { streamSid, track, timestampMs: Number(timestamp), payload };
}

/**
 * The fast half of {@link extractTwilioMediaPayload}: the payload of a valid `media` frame, `null`
 * for a well-formed frame of another event, or `undefined` when only the validated path can tell
 * (other spellings, invalid frames). Tries Twilio's exact layout, then the order-free scanner.
 * Exported for tests.
 */
export function fastExtractTwilioMediaPayload(text: string): TwilioMediaPayload | null | undefined {
  const exact = matchTwilioMediaLayout(text);
  if (exact !== undefined) return exact;
  const slots = scanFrame(text, TWILIO_FRAME_SHAPE);
  if (slots === undefined) return undefined;
  const [event, sequenceNumber, streamSid, media] = slots;
  if (typeof event === "string" && event !== "media") return null;
  if (event !== "media" || !isDigits(sequenceNumber) || typeof streamSid !== "string") {
    return undefined;
  }
  if (!Array.isArray(media)) return undefined;
  const [track, chunk, timestamp, payload] = media;
  if (
    typeof track !== "string" || !isDigits(chunk) || !isDigits(timestamp) ||
    !isNonEmptyBase64(payload)
  ) {
    return undefined;
  }
  return { streamSid, track, timestampMs: Number(timestamp), payload };
}

function mediaPayloadOf(message: TwilioMediaMessage): TwilioMediaPayload {
  const { streamSid, media } = message;
  return {
    streamSid,
    track: media.track,
    timestampMs: Number(media.timestamp),
    payload: media.payload,
  };
}

/**
 * The validated half of {@link extractTwilioMediaPayload}: `JSON.parse` and the zod schema.
 * Exported so tests can compare both halves.
 */
export function slowExtractTwilioMediaPayload(text: string): TwilioMediaPayload | null {
  const result = safeParseTwilioMessage(text);
  return result.success && result.data.event === "media" ? mediaPayloadOf(result.data) : null;
}

/**
 * Reads a Twilio `media` frame's audio without decoding it; `null` for any other event and for
 * invalid frames. Never throws. To handle every frame with one parse, use {@link readTwilioFrame}.
 * @param text the Media Streams text frame as received
 */
export function extractTwilioMediaPayload(text: string): TwilioMediaPayload | null {
  const fast = fastExtractTwilioMediaPayload(text);
  return fast === undefined ? slowExtractTwilioMediaPayload(text) : fast;
}

/** A Twilio frame as the bridge reads it: audio from the fast path, anything else fully parsed. */
export type TwilioFrame =
  | { readonly kind: "media"; readonly media: TwilioMediaPayload }
  | { readonly kind: "message"; readonly result: SafeParseTwilioResult };

/**
 * Reads any Media Streams frame, parsing it once: a valid `media` frame gives `kind: "media"`
 * (fast path when possible), every other frame, valid or not, gives `safeParseTwilioMessage`'s
 * result. Never throws.
 * @param text the Media Streams text frame as received
 */
export function readTwilioFrame(text: string): TwilioFrame {
  const fast = fastExtractTwilioMediaPayload(text);
  if (fast) return { kind: "media", media: fast };
  const result = safeParseTwilioMessage(text);
  if (result.success && result.data.event === "media") {
    return { kind: "media", media: mediaPayloadOf(result.data) };
  }
  return { kind: "message", result };
}

const APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"';
const APPEND_SUFFIX = '"}';

/**
 * Builds `input_audio_buffer.append` JSON from base64 that is already known to be valid (base64
 * needs no JSON escaping). Same text as `buildInputAudioBufferAppend`.
 */
function appendFromValidBase64(audioBase64: string): string {
  return APPEND_PREFIX + audioBase64 + APPEND_SUFFIX;
}

/**
 * Turns a Twilio `media` frame into OpenAI `input_audio_buffer.append` JSON; `null` when the frame
 * is not a valid `media` frame. The session must use `audio/pcmu` input.
 * @param text the Media Streams text frame as received
 */
export function twilioMediaToOpenAIAppend(text: string): string | null {
  const media = extractTwilioMediaPayload(text);
  return media === null ? null : appendFromValidBase64(media.payload);
}

/**
 * Joins base64 chunks into the base64 of their concatenated bytes. Chunks that encode a multiple
 * of 3 bytes (no `=` padding) are joined as text; otherwise the bytes are decoded and re-encoded
 * (a 160-byte Twilio frame is not a multiple of 3). `null` if a chunk is not valid base64.
 * @param chunks padded standard base64 strings, in order
 */
export function concatBase64(chunks: readonly string[]): string | null {
  let aligned = true;
  for (let i = 0; i < chunks.length - 1; i++) {
    if (chunks[i].endsWith("=")) aligned = false;
  }
  if (aligned) {
    for (const chunk of chunks) if (!isBase64(chunk)) return null;
    return chunks.join("");
  }
  let bytes = "";
  for (const chunk of chunks) {
    const decoded = decodeBase64Strict(chunk);
    if (decoded === null) return null;
    bytes += decoded;
  }
  return btoa(bytes);
}

/**
 * Builds one `input_audio_buffer.append` from the payloads of several Twilio `media` frames, to
 * send fewer WebSocket messages per second. `null` if a payload is not valid base64 or all are
 * empty.
 * @param payloads base64 mu-law payloads, oldest first (e.g. from `extractTwilioMediaPayload`)
 */
export function coalesceTwilioPayloadsToAppend(payloads: readonly string[]): string | null {
  const audio = concatBase64(payloads);
  return audio === null || audio.length === 0 ? null : appendFromValidBase64(audio);
}

// ---------------------------------------------------------------------------------------------
// OpenAI audio delta -> Twilio media
// ---------------------------------------------------------------------------------------------

const OPENAI_DELTA_SHAPE: ObjectShape = {
  keys: ["type", "event_id", "response_id", "item_id", "delta"],
  audioSlot: 4,
};

// The layout of an audio delta as the Realtime API reference shows it.
const OPENAI_DELTA_LAYOUT = [
  '{"type":"response.output_audio.delta","event_id":"',
  '","response_id":"',
  '","item_id":"',
  '","output_index":',
  ',"content_index":',
  ',"delta":"',
  '"}',
] as const;

function matchOpenAIDeltaLayout(text: string): OpenAIAudioDelta | undefined {
  const values: string[] = [];
  if (!matchLayout(text, OPENAI_DELTA_LAYOUT, values)) return undefined;
  const [eventId, responseId, itemId, outputIndex, contentIndex, delta] = values;
  if (
    !isRawJsonString(eventId) || !isRawJsonString(responseId) || !isRawJsonString(itemId) ||
    !isJsonNumber(outputIndex) || !isJsonNumber(contentIndex) || !isNonEmptyBase64(delta)
  ) {
    return undefined;
  }
  return { responseId, itemId, delta };
}

/**
 * The fast half of {@link extractOpenAIAudioDelta}: the delta of a valid
 * `response.output_audio.delta`, `null` for a well-formed event of another type, or `undefined`
 * when only the validated path can tell. Tries the reference layout, then the order-free
 * scanner. Exported for tests.
 */
export function fastExtractOpenAIAudioDelta(text: string): OpenAIAudioDelta | null | undefined {
  const exact = matchOpenAIDeltaLayout(text);
  if (exact !== undefined) return exact;
  const slots = scanFrame(text, OPENAI_DELTA_SHAPE);
  if (slots === undefined) return undefined;
  const [type, eventId, responseId, itemId, delta] = slots;
  if (typeof type === "string" && type !== "response.output_audio.delta") return null;
  if (
    type !== "response.output_audio.delta" ||
    (eventId !== undefined && typeof eventId !== "string") ||
    typeof responseId !== "string" || typeof itemId !== "string" || !isNonEmptyBase64(delta)
  ) {
    return undefined;
  }
  return { responseId, itemId, delta };
}

function audioDeltaOf(event: OpenAIOutputAudioDeltaEvent): OpenAIAudioDelta {
  return { responseId: event.response_id, itemId: event.item_id, delta: event.delta };
}

/**
 * The validated half of {@link extractOpenAIAudioDelta}: `JSON.parse` and the zod schema.
 * Exported so tests can compare both halves.
 */
export function slowExtractOpenAIAudioDelta(text: string): OpenAIAudioDelta | null {
  const result = safeParseRealtimeServerEvent(text);
  return result.success && result.data.type === "response.output_audio.delta"
    ? audioDeltaOf(result.data)
    : null;
}

/**
 * Reads an OpenAI `response.output_audio.delta` event without decoding its audio; `null` for any
 * other event and for invalid ones. Never throws. To handle every event with one parse, use
 * {@link readRealtimeFrame}.
 * @param text the Realtime text frame as received
 */
export function extractOpenAIAudioDelta(text: string): OpenAIAudioDelta | null {
  const fast = fastExtractOpenAIAudioDelta(text);
  return fast === undefined ? slowExtractOpenAIAudioDelta(text) : fast;
}

/** A Realtime server frame as the bridge reads it: audio from the fast path, the rest parsed. */
export type RealtimeFrame =
  | { readonly kind: "audio_delta"; readonly delta: OpenAIAudioDelta }
  | { readonly kind: "event"; readonly result: SafeParseRealtimeServerEventResult };

/**
 * Reads any Realtime server frame, parsing it once: a valid `response.output_audio.delta` gives
 * `kind: "audio_delta"` (fast path when possible), every other frame, valid or not, gives
 * `safeParseRealtimeServerEvent`'s result. Never throws.
 * @param text the Realtime text frame as received
 */
export function readRealtimeFrame(text: string): RealtimeFrame {
  const fast = fastExtractOpenAIAudioDelta(text);
  if (fast) return { kind: "audio_delta", delta: fast };
  const result = safeParseRealtimeServerEvent(text);
  if (result.success && result.data.type === "response.output_audio.delta") {
    return { kind: "audio_delta", delta: audioDeltaOf(result.data) };
  }
  return { kind: "event", result };
}

/**
 * Builds a Twilio outbound `media` frame from base64 already known to be valid. Same text as
 * `buildTwilioMedia`.
 * @param streamSid the `streamSid` from the `start` frame (JSON-escaped here)
 * @param payloadBase64 valid base64 mu-law, e.g. `OpenAIAudioDelta.delta`
 */
export function twilioMediaFromValidBase64(streamSid: string, payloadBase64: string): string {
  return '{"event":"media","streamSid":' + JSON.stringify(streamSid) + ',"media":{"payload":"' +
    payloadBase64 + '"}}';
}

/**
 * Turns an OpenAI `response.output_audio.delta` event into a Twilio `media` frame; `null` when the
 * event is not a valid audio delta. The session must use `audio/pcmu` output. Callers that drop
 * deltas of interrupted responses should use {@link extractOpenAIAudioDelta} and
 * {@link twilioMediaFromValidBase64} instead, to see the ids first.
 * @param text the Realtime text frame as received
 * @param streamSid the `streamSid` from Twilio's `start` frame
 */
export function openAIAudioDeltaToTwilioMedia(text: string, streamSid: string): string | null {
  const delta = extractOpenAIAudioDelta(text);
  return delta === null ? null : twilioMediaFromValidBase64(streamSid, delta.delta);
}
