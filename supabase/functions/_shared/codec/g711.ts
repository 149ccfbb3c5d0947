/**
 * ITU-T G.711 mu-law, the audio encoding of Twilio Media Streams (`audio/x-mulaw`, 8 kHz) and of
 * OpenAI Realtime's `audio/pcmu`. Bit-exact with ITU-T G.191's reference `ulaw_compress` and
 * `ulaw_expand` over every int16 input and every code (see `g711_test.ts`); popular packages are
 * not (they round differently on the decision values).
 * @module
 */

/** Entries in the encode table: G.191 looks only at the 14 most significant bits of a sample. */
const ENCODE_TABLE_SIZE = 1 << 14;

/** Bias G.191 adds to the 14-bit magnitude so that mu-law segments line up like A-law's. */
const MULAW_BIAS = 33;

/** Largest biased 14-bit magnitude G.191 encodes; larger inputs clip to the last code. */
const MULAW_MAX_BIASED_MAGNITUDE = 0x1fff;

/** mu-law code for a 14-bit two's-complement sample, by G.191's `ulaw_compress` rules. */
function compress14(sample14: number): number {
  // G.191 takes the one's complement of negative samples (not the negation), which is why
  // -1 encodes to 0x7F ("negative zero") rather than to the code of +1.
  const negative = sample14 < 0;
  let magnitude = (negative ? ~sample14 : sample14) + MULAW_BIAS;
  if (magnitude > MULAW_MAX_BIASED_MAGNITUDE) magnitude = MULAW_MAX_BIASED_MAGNITUDE;
  // Segment 1..8: one more than the bit length of the magnitude above its 6 low bits.
  const segment = 33 - Math.clz32(magnitude >> 6);
  const mantissa = (magnitude >> segment) & 0x0f;
  const code = ((8 - segment) << 4) | (0x0f - mantissa);
  return negative ? code : code | 0x80;
}

/** int16 value of a mu-law code, by G.191's `ulaw_expand` rules (14-bit result scaled by 4). */
function expand(code: number): number {
  const inverted = ~code & 0xff;
  const exponent = (inverted >> 4) & 0x07;
  const mantissa = inverted & 0x0f;
  const stepSize = 4 << (exponent + 1);
  const magnitude = (0x80 << exponent) + stepSize * mantissa + stepSize / 2 - 4 * MULAW_BIAS;
  return code & 0x80 ? magnitude : -magnitude;
}

function buildEncodeTable(): Uint8Array {
  const table = new Uint8Array(ENCODE_TABLE_SIZE);
  for (let index = 0; index < ENCODE_TABLE_SIZE; index++) {
    // Index = (x >> 2) & 0x3FFF: undo the mask to get the signed 14-bit sample back.
    const sample14 = index >= ENCODE_TABLE_SIZE / 2 ? index - ENCODE_TABLE_SIZE : index;
    table[index] = compress14(sample14);
  }
  return table;
}

function buildDecodeTable(): Int16Array {
  const table = new Int16Array(256);
  for (let code = 0; code < 256; code++) table[code] = expand(code);
  return table;
}

const ENCODE_TABLE = buildEncodeTable();
const DECODE_TABLE = buildDecodeTable();

/**
 * Decodes mu-law bytes to int16 samples (range +/-32124; 0x7F and 0xFF both decode to 0).
 *
 * When `dst` is given and has exactly `src.length` samples it is filled and returned, so a
 * stream can decode every frame into one buffer without allocating. A longer `dst` is filled
 * from the start and a view of the first `src.length` samples is returned; a shorter one is
 * ignored and a new array is returned.
 * @param src mu-law codes, one byte per sample
 * @param dst optional buffer to decode into
 */
export function mulawDecode(src: Uint8Array, dst?: Int16Array): Int16Array {
  const length = src.length;
  let out: Int16Array;
  if (dst === undefined || dst.length < length) out = new Int16Array(length);
  else if (dst.length === length) out = dst;
  else out = dst.subarray(0, length);
  for (let i = 0; i < length; i++) out[i] = DECODE_TABLE[src[i]];
  return out;
}

/**
 * Encodes int16 samples to mu-law bytes, bit-exact with G.191's `ulaw_compress`.
 *
 * `dst` follows the same rules as in `mulawDecode`: exactly `src.length` bytes are filled and
 * returned as is, a longer buffer yields a view of its start, a shorter one is ignored.
 * @param src int16 samples
 * @param dst optional buffer to encode into
 */
export function mulawEncode(src: Int16Array, dst?: Uint8Array): Uint8Array {
  const length = src.length;
  let out: Uint8Array;
  if (dst === undefined || dst.length < length) out = new Uint8Array(length);
  else if (dst.length === length) out = dst;
  else out = dst.subarray(0, length);
  for (let i = 0; i < length; i++) out[i] = ENCODE_TABLE[(src[i] >> 2) & 0x3fff];
  return out;
}
