/**
 * Base64 (RFC 4648, standard alphabet) and 16-bit little-endian PCM, the two wrappings audio has
 * in Twilio Media Streams `payload` fields and OpenAI Realtime `audio` / `delta` fields
 * (`audio/pcm` is 24 kHz PCM16 LE). Every helper can write into a caller's buffer so a stream
 * converts its frames without allocating; none of them throws on bad input. Also `concatBytes`,
 * for byte chunks (audio, socket reads and writes).
 * @module
 */

/** The subset of the TC39 `Uint8Array` base64 methods this module uses (present in Deno 2.9). */
interface NativeBase64Bytes {
  setFromBase64(b64: string): { read: number; written: number };
  toBase64(): string;
}

/**
 * Whether the runtime has `Uint8Array.prototype.setFromBase64` / `toBase64`. They are 3-70x
 * faster than anything written in JavaScript (see docs/benchmarks.md), but Supabase's hosted
 * edge runtime may run an older V8 without them, hence the portable fallbacks below.
 */
const HAS_NATIVE_BASE64 = typeof (Uint8Array.prototype as Partial<NativeBase64Bytes>)
      .setFromBase64 === "function" &&
  typeof (Uint8Array.prototype as Partial<NativeBase64Bytes>).toBase64 === "function";

const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_PAD = 0x3d; // "="

/** ASCII code of each 6-bit value, for the portable encoder. */
const ENCODE_ASCII = new Uint8Array(64);
for (let i = 0; i < 64; i++) ENCODE_ASCII[i] = BASE64_ALPHABET.charCodeAt(i);

/** The portable encoder writes ASCII here and lets the native `TextDecoder` build the string. */
let encodeScratch = new Uint8Array(4096);
const asciiDecoder = new TextDecoder();

/**
 * Number of bytes a base64 string decodes to, assuming no embedded whitespace (with whitespace
 * the result is an upper bound). Use it to size a `dst` for `base64ToBytes`.
 * @param b64 base64 text, padded or not
 */
export function base64DecodedLength(b64: string): number {
  let length = b64.length;
  if (length > 0 && b64.charCodeAt(length - 1) === BASE64_PAD) length--;
  if (length > 0 && b64.charCodeAt(length - 1) === BASE64_PAD) length--;
  return Math.floor((length * 3) / 4);
}

/** `dst` when it can hold `length` bytes, else a new array: the helpers never fail on size. */
function bytesTarget(length: number, dst: Uint8Array | undefined): Uint8Array {
  return dst !== undefined && dst.length >= length ? dst : new Uint8Array(length);
}

/**
 * Decodes base64 to bytes, or returns `null` when the text is not valid base64 (forgiving
 * syntax as in `atob`: padding optional, ASCII whitespace ignored).
 *
 * When `dst` is given and large enough (`base64DecodedLength(b64)` bytes) the bytes are written
 * to its start and a view of them is returned; otherwise a new array is returned. After a
 * `null` result the content of `dst` is unspecified.
 * @param b64 base64 text
 * @param dst optional buffer to decode into
 */
export function base64ToBytes(b64: string, dst?: Uint8Array): Uint8Array | null {
  if (!HAS_NATIVE_BASE64) return base64ToBytesPortable(b64, dst);
  if (typeof b64 !== "string") return null;
  const target = bytesTarget(base64DecodedLength(b64), dst);
  let result: { read: number; written: number };
  try {
    result = (target as unknown as NativeBase64Bytes).setFromBase64(b64);
  } catch {
    return null;
  }
  // `setFromBase64` stops silently once the target is full. The target holds every byte valid
  // text can decode to, so anything left unread that is not whitespace makes the text invalid
  // (e.g. the lone "Y" of "Zm9vY").
  if (result.read !== b64.length && !isAsciiWhitespace(b64, result.read)) return null;
  const written = result.written;
  return written === target.length ? target : target.subarray(0, written);
}

/** Whether `text` holds only ASCII whitespace (as the base64 decoders define it) from `start`. */
function isAsciiWhitespace(text: string, start: number): boolean {
  for (let i = start; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code !== 0x20 && code !== 0x09 && code !== 0x0a && code !== 0x0c && code !== 0x0d) {
      return false;
    }
  }
  return true;
}

/**
 * `base64ToBytes` without the native `Uint8Array` base64 methods (`atob` and a copy loop): what
 * runs on runtimes that lack them. Exported for tests and benchmarks; prefer `base64ToBytes`.
 * @param b64 base64 text
 * @param dst optional buffer to decode into
 */
export function base64ToBytesPortable(b64: string, dst?: Uint8Array): Uint8Array | null {
  if (typeof b64 !== "string") return null;
  let binary: string;
  try {
    binary = atob(b64);
  } catch {
    return null;
  }
  const length = binary.length;
  const target = bytesTarget(length, dst);
  for (let i = 0; i < length; i++) target[i] = binary.charCodeAt(i);
  return length === target.length ? target : target.subarray(0, length);
}

/**
 * Joins byte chunks, in order, into one new array.
 * @param parts the chunks
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Encodes bytes as padded base64 with the standard alphabet.
 * @param bytes the bytes to encode
 */
export function bytesToBase64(bytes: Uint8Array): string {
  if (!HAS_NATIVE_BASE64) return bytesToBase64Portable(bytes);
  return (bytes as unknown as NativeBase64Bytes).toBase64();
}

/**
 * `bytesToBase64` without the native `Uint8Array` base64 methods: a table-driven encoder into a
 * reused ASCII buffer, 2-3x faster than chunked `String.fromCharCode` + `btoa` (see
 * docs/benchmarks.md). Exported for tests and benchmarks; prefer `bytesToBase64`.
 * @param bytes the bytes to encode
 */
export function bytesToBase64Portable(bytes: Uint8Array): string {
  const length = bytes.length;
  const outputLength = Math.ceil(length / 3) * 4;
  if (encodeScratch.length < outputLength) encodeScratch = new Uint8Array(outputLength * 2);
  const out = encodeScratch;
  const fullLength = length - (length % 3);
  let o = 0;
  let i = 0;
  for (; i < fullLength; i += 3) {
    const triple = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out[o++] = ENCODE_ASCII[triple >> 18];
    out[o++] = ENCODE_ASCII[(triple >> 12) & 0x3f];
    out[o++] = ENCODE_ASCII[(triple >> 6) & 0x3f];
    out[o++] = ENCODE_ASCII[triple & 0x3f];
  }
  const remainder = length - fullLength;
  if (remainder > 0) {
    const triple = (bytes[i] << 16) | (remainder === 2 ? bytes[i + 1] << 8 : 0);
    out[o++] = ENCODE_ASCII[triple >> 18];
    out[o++] = ENCODE_ASCII[(triple >> 12) & 0x3f];
    out[o++] = remainder === 2 ? ENCODE_ASCII[(triple >> 6) & 0x3f] : BASE64_PAD;
    out[o++] = BASE64_PAD;
  }
  return asciiDecoder.decode(out.subarray(0, o));
}

/**
 * Reads 16-bit little-endian PCM bytes as int16 samples. An odd trailing byte (half a sample)
 * is ignored. `dst` follows the rules of `mulawDecode`: exactly `bytes.length >> 1` samples
 * are filled and returned as is, a longer buffer yields a view of its start, a shorter one is
 * ignored and a new array is returned.
 * @param bytes PCM16 LE bytes
 * @param dst optional buffer to read into
 */
export function pcm16leToInt16(bytes: Uint8Array, dst?: Int16Array): Int16Array {
  const sampleCount = bytes.length >> 1;
  let out: Int16Array;
  if (dst === undefined || dst.length < sampleCount) out = new Int16Array(sampleCount);
  else if (dst.length === sampleCount) out = dst;
  else out = dst.subarray(0, sampleCount);
  // Byte arithmetic rather than an Int16Array view: independent of the platform's byte order
  // and of the alignment of `bytes.byteOffset` (a view needs an even offset).
  for (let i = 0, b = 0; i < sampleCount; i++, b += 2) {
    out[i] = bytes[b] | (bytes[b + 1] << 8);
  }
  return out;
}

/**
 * Writes int16 samples as 16-bit little-endian PCM bytes. `dst` follows the rules of
 * `pcm16leToInt16`, for `2 * samples.length` bytes.
 * @param samples int16 samples
 * @param dst optional buffer to write into
 */
export function int16ToPcm16le(samples: Int16Array, dst?: Uint8Array): Uint8Array {
  const byteCount = samples.length * 2;
  let out: Uint8Array;
  if (dst === undefined || dst.length < byteCount) out = new Uint8Array(byteCount);
  else if (dst.length === byteCount) out = dst;
  else out = dst.subarray(0, byteCount);
  for (let i = 0, b = 0; i < samples.length; i++, b += 2) {
    const sample = samples[i];
    out[b] = sample;
    out[b + 1] = sample >> 8;
  }
  return out;
}
