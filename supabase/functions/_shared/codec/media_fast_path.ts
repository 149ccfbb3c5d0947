/**
 * Speaks both audio-carrying frames of the bridge: Twilio Media Streams `media` and OpenAI Realtime
 * `input_audio_buffer.append` / `response.output_audio.delta`, translated without decoding audio.
 *
 * Why: every forwarded frame costs CPU on an edge function with a 2 s CPU budget per request. The
 * fast path reads frames with a small scanner that accepts only a strict subset of JSON (objects,
 * escape-free strings, numbers) and checks the same rules as the zod schemas. Anything outside that
 * subset (escapes, arrays, literals, duplicate keys) falls back to `JSON.parse` plus the validated
 * codecs, so the result is always the one the slow path gives, and invalid input never yields
 * output. Audio stays base64 text end to end: both sides use 8 kHz mu-law (`audio/pcmu`).
 *
 * @module
 */
import { isBase64, isDigitString, safeParseTwilioValue } from "./twilio_media.ts";
import { safeParseRealtimeServerValue } from "./openai_realtime.ts";

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
// Restricted JSON scanner
// ---------------------------------------------------------------------------------------------

type ScannedValue = string | number | ScannedObject;
interface ScannedObject {
  [key: string]: ScannedValue;
}

/**
 * Paths (key, then nested key) of strings the caller validates itself with a check that rejects
 * control characters, such as {@link isBase64}; the scanner does not look inside them, so long
 * audio strings are read once, not twice.
 */
export interface ScanCheckedLater {
  readonly [key: string]: true | ScanCheckedLater;
}

// Deeper objects are legal JSON but never part of the shapes we translate; leave them to JSON.parse.
const MAX_SCAN_DEPTH = 4;

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

function isJsonWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

function isDigitCode(code: number): boolean {
  return code >= DIGIT_0 && code <= DIGIT_9;
}

/**
 * Scans one JSON object restricted to objects, strings and numbers. Returns `undefined` whenever
 * the text steps outside that subset or is not valid JSON, and the caller must then ask
 * `JSON.parse`. The text has no backslash (checked before), so strings hold no escapes.
 */
class RestrictedScanner {
  pos = 0;
  constructor(readonly text: string) {}

  skipWhitespace(): void {
    const text = this.text;
    while (this.pos < text.length && isJsonWhitespace(text.charCodeAt(this.pos))) this.pos++;
  }

  /** Reads a string at its opening quote; `undefined` if checked and it holds a raw control. */
  readString(checkContent: boolean): string | undefined {
    const text = this.text;
    const start = this.pos + 1;
    const end = text.indexOf('"', start);
    if (end < 0) return undefined;
    if (checkContent) {
      for (let i = start; i < end; i++) {
        if (text.charCodeAt(i) < FIRST_PRINTABLE) return undefined;
      }
    }
    this.pos = end + 1;
    return text.slice(start, end);
  }

  /** Reads a number with JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. */
  readNumber(): number | undefined {
    const text = this.text;
    const start = this.pos;
    let i = start;
    if (text.charCodeAt(i) === MINUS) i++;
    const first = text.charCodeAt(i);
    if (first === DIGIT_0) {
      i++;
    } else if (isDigitCode(first)) {
      while (isDigitCode(text.charCodeAt(i))) i++;
    } else {
      return undefined;
    }
    if (text.charCodeAt(i) === DOT) {
      i++;
      if (!isDigitCode(text.charCodeAt(i))) return undefined;
      while (isDigitCode(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === LOWER_E || e === UPPER_E) {
      i++;
      const sign = text.charCodeAt(i);
      if (sign === PLUS || sign === MINUS) i++;
      if (!isDigitCode(text.charCodeAt(i))) return undefined;
      while (isDigitCode(text.charCodeAt(i))) i++;
    }
    this.pos = i;
    return Number(text.slice(start, i));
  }

  readValue(depth: number, later: true | ScanCheckedLater | undefined): ScannedValue | undefined {
    const code = this.text.charCodeAt(this.pos);
    if (code === QUOTE) return this.readString(later !== true);
    if (code === OPEN_BRACE) {
      if (depth >= MAX_SCAN_DEPTH) return undefined;
      return this.readObject(depth + 1, typeof later === "object" ? later : undefined);
    }
    if (code === MINUS || isDigitCode(code)) return this.readNumber();
    return undefined; // arrays, true, false, null, or invalid JSON
  }

  /** Reads an object starting at `{`. */
  readObject(depth: number, later: ScanCheckedLater | undefined): ScannedObject | undefined {
    const text = this.text;
    const result: ScannedObject = {};
    this.pos++;
    this.skipWhitespace();
    if (text.charCodeAt(this.pos) === CLOSE_BRACE) {
      this.pos++;
      return result;
    }
    while (true) {
      if (text.charCodeAt(this.pos) !== QUOTE) return undefined;
      const key = this.readString(true);
      // JSON.parse keeps the last of duplicate keys and makes `__proto__` an own property;
      // rather than mirror either, let it decide.
      if (key === undefined || key === "__proto__" || Object.hasOwn(result, key)) return undefined;
      this.skipWhitespace();
      if (text.charCodeAt(this.pos) !== COLON) return undefined;
      this.pos++;
      this.skipWhitespace();
      const keyLater = later !== undefined && Object.hasOwn(later, key) ? later[key] : undefined;
      const value = this.readValue(depth, keyLater);
      if (value === undefined) return undefined;
      result[key] = value;
      this.skipWhitespace();
      const next = text.charCodeAt(this.pos);
      this.pos++;
      if (next === CLOSE_BRACE) return result;
      if (next !== COMMA) return undefined;
      this.skipWhitespace();
    }
  }

  /** Reads the whole text as one object followed only by whitespace. */
  readDocument(later: ScanCheckedLater | undefined): ScannedObject | undefined {
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) !== OPEN_BRACE) return undefined;
    const value = this.readObject(1, later);
    if (value === undefined) return undefined;
    this.skipWhitespace();
    return this.pos === this.text.length ? value : undefined;
  }
}

/**
 * Reads `text` with the restricted scanner; `undefined` means "not decided here, use JSON.parse".
 * When it returns an object, `JSON.parse(text)` gives an equal value, provided the strings at the
 * `checkedLater` paths pass the caller's check. Exported for tests.
 * @param text one JSON document
 * @param checkedLater strings the caller validates itself (see {@link ScanCheckedLater})
 */
export function scanRestrictedJson(
  text: string,
  checkedLater?: ScanCheckedLater,
): Readonly<ScannedObject> | undefined {
  // Escapes are rare on these sockets; one native search lets the scanner ignore them entirely.
  if (text.indexOf("\\") !== -1) return undefined;
  return new RestrictedScanner(text).readDocument(checkedLater);
}

function isScannedObject(value: ScannedValue | undefined): value is ScannedObject {
  return typeof value === "object";
}

function isNonEmptyBase64(text: string): boolean {
  return text.length > 0 && isBase64(text);
}

// ---------------------------------------------------------------------------------------------
// Twilio media -> OpenAI append
// ---------------------------------------------------------------------------------------------

// `media.payload` is checked with isBase64, which rejects control characters.
const TWILIO_CHECKED_LATER: ScanCheckedLater = { media: { payload: true } };

/**
 * The fast half of {@link extractTwilioMediaPayload}: the payload, `null` when the frame is surely
 * not a valid `media` frame, or `undefined` when only the validated path can tell. Exported for
 * tests.
 */
export function fastExtractTwilioMediaPayload(text: string): TwilioMediaPayload | null | undefined {
  const frame = scanRestrictedJson(text, TWILIO_CHECKED_LATER);
  if (frame === undefined) return undefined;
  if (frame.event !== "media") return null;
  const media = frame.media;
  const sequenceNumber = frame.sequenceNumber;
  const streamSid = frame.streamSid;
  if (
    typeof sequenceNumber !== "string" || !isDigitString(sequenceNumber) ||
    typeof streamSid !== "string" || !isScannedObject(media)
  ) {
    return null;
  }
  const { track, chunk, timestamp, payload } = media;
  if (
    typeof track !== "string" || typeof chunk !== "string" || !isDigitString(chunk) ||
    typeof timestamp !== "string" || !isDigitString(timestamp) ||
    typeof payload !== "string" || !isNonEmptyBase64(payload)
  ) {
    return null;
  }
  return { streamSid, track, timestampMs: Number(timestamp), payload };
}

/**
 * The validated half of {@link extractTwilioMediaPayload}: `JSON.parse` and the zod schema.
 * Exported so tests can compare both halves.
 */
export function slowExtractTwilioMediaPayload(text: string): TwilioMediaPayload | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const result = safeParseTwilioValue(value);
  if (!result.success || result.data.event !== "media") return null;
  const { streamSid, media } = result.data;
  return {
    streamSid,
    track: media.track,
    timestampMs: Number(media.timestamp),
    payload: media.payload,
  };
}

/**
 * Reads a Twilio `media` frame's audio without decoding it; `null` for any other event and for
 * invalid frames (use `safeParseTwilioMessage` on those). Never throws.
 * @param text the Media Streams text frame as received
 */
export function extractTwilioMediaPayload(text: string): TwilioMediaPayload | null {
  const fast = fastExtractTwilioMediaPayload(text);
  return fast === undefined ? slowExtractTwilioMediaPayload(text) : fast;
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
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i];
    if (!isBase64(chunk)) return null;
    if (i < chunks.length - 1 && chunk.endsWith("=")) aligned = false;
  }
  if (aligned) return chunks.join("");
  let bytes = "";
  for (const chunk of chunks) bytes += atob(chunk);
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

// `delta` is checked with isBase64, which rejects control characters.
const OPENAI_CHECKED_LATER: ScanCheckedLater = { delta: true };

/**
 * The fast half of {@link extractOpenAIAudioDelta}: the delta, `null` when the event is surely not
 * a valid `response.output_audio.delta`, or `undefined` when only the validated path can tell.
 * Exported for tests.
 */
export function fastExtractOpenAIAudioDelta(text: string): OpenAIAudioDelta | null | undefined {
  const event = scanRestrictedJson(text, OPENAI_CHECKED_LATER);
  if (event === undefined) return undefined;
  if (event.type !== "response.output_audio.delta") return null;
  const { response_id: responseId, item_id: itemId, delta } = event;
  const eventId = event.event_id;
  if (
    typeof responseId !== "string" || typeof itemId !== "string" ||
    typeof delta !== "string" || !isNonEmptyBase64(delta) ||
    (eventId !== undefined && typeof eventId !== "string")
  ) {
    return null;
  }
  return { responseId, itemId, delta };
}

/**
 * The validated half of {@link extractOpenAIAudioDelta}: `JSON.parse` and the zod schema.
 * Exported so tests can compare both halves.
 */
export function slowExtractOpenAIAudioDelta(text: string): OpenAIAudioDelta | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const result = safeParseRealtimeServerValue(value);
  if (!result.success || result.data.type !== "response.output_audio.delta") return null;
  const { response_id: responseId, item_id: itemId, delta } = result.data;
  return { responseId, itemId, delta };
}

/**
 * Reads an OpenAI `response.output_audio.delta` event without decoding its audio; `null` for any
 * other event and for invalid ones (use `safeParseRealtimeServerEvent` on those). Never throws.
 * @param text the Realtime text frame as received
 */
export function extractOpenAIAudioDelta(text: string): OpenAIAudioDelta | null {
  const fast = fastExtractOpenAIAudioDelta(text);
  return fast === undefined ? slowExtractOpenAIAudioDelta(text) : fast;
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
