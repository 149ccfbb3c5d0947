/**
 * Tests for the G.711 mu-law codec against an independent transcription of ITU-T G.191's
 * reference `ulaw_compress` / `ulaw_expand` (written from the algorithm, loop by loop, emulating
 * the C `short` arithmetic), not against any npm package.
 * @module
 */
import assert from "node:assert/strict";
import alawmulaw from "alawmulaw";
import { mulawDecode, mulawEncode } from "./g711.ts";

/**
 * G.191 `ulaw_compress` for one sample: the 14 most significant bits, one's complement for
 * negative samples, +33 bias, clip to 0x1FFF, segment found by shifting, inverted nibbles.
 */
function referenceUlawCompress(linear: number): number {
  let absno: number;
  if (linear < 0) absno = ((~linear) >> 2) + 33;
  else absno = (linear >> 2) + 33;
  if (absno > 0x1fff) absno = 0x1fff;

  let i = absno >> 6;
  let segno = 1;
  while (i !== 0) {
    segno++;
    i >>= 1;
  }

  const highNibble = 0x0008 - segno;
  let lowNibble = (absno >> segno) & 0x000f;
  lowNibble = 0x000f - lowNibble;

  let log = (highNibble << 4) | lowNibble;
  if (linear >= 0) log = log | 0x0080;
  return log;
}

/** G.191 `ulaw_expand` for one code: 14-bit left-justified result, so already int16 scale. */
function referenceUlawExpand(log: number): number {
  const sign = log < 0x0080 ? -1 : 1;
  // C: `mantissa = ~logbuf[n]` on a short holding 0..255.
  let mantissa = ~log;
  const exponent = (mantissa >> 4) & 0x0007;
  const segment = exponent + 1;
  mantissa = mantissa & 0x000f;
  const step = 4 << segment;
  // `| 0`: C integers have no -0 (sign * 0 would be -0 in JavaScript).
  return (sign * ((0x0080 << exponent) + step * mantissa + Math.trunc(step / 2) - 4 * 33)) | 0;
}

function allInt16(): Int16Array {
  const samples = new Int16Array(65536);
  for (let i = 0; i < 65536; i++) samples[i] = i - 32768;
  return samples;
}

function allCodes(): Uint8Array {
  const codes = new Uint8Array(256);
  for (let i = 0; i < 256; i++) codes[i] = i;
  return codes;
}

Deno.test("mulawEncode() matches G.191 ulaw_compress on all 65,536 int16 inputs", () => {
  const samples = allInt16();
  const encoded = mulawEncode(samples);
  assert.equal(encoded.length, 65536);
  let mismatches = 0;
  for (let i = 0; i < samples.length; i++) {
    if (encoded[i] !== referenceUlawCompress(samples[i])) mismatches++;
  }
  assert.equal(mismatches, 0);
});

Deno.test("mulawDecode() matches G.191 ulaw_expand on all 256 codes", () => {
  const decoded = mulawDecode(allCodes());
  for (let code = 0; code < 256; code++) {
    assert.equal(decoded[code], referenceUlawExpand(code), `code 0x${code.toString(16)}`);
  }
});

Deno.test("mulawDecode() maps both zero codes to 0 and spans +/-32124", () => {
  const decoded = mulawDecode(allCodes());
  assert.equal(decoded[0x7f], 0);
  assert.equal(decoded[0xff], 0);
  assert.equal(Math.max(...decoded), 32124);
  assert.equal(Math.min(...decoded), -32124);
  assert.equal(decoded[0x80], 32124);
  assert.equal(decoded[0x00], -32124);
});

Deno.test("mulawEncode() reproduces every code from its decoded value", () => {
  const codes = allCodes();
  const reencoded = mulawEncode(mulawDecode(codes));
  for (let code = 0; code < 256; code++) {
    // 0x7F ("negative zero") decodes to 0, which G.191 encodes as 0xFF.
    assert.equal(reencoded[code], code === 0x7f ? 0xff : code, `code 0x${code.toString(16)}`);
  }
});

Deno.test("mulawEncode() clips the extremes and keeps the sign of -1", () => {
  const encoded = mulawEncode(Int16Array.of(32767, -32768, 0, -1, 1, 32124, -32124));
  assert.deepEqual([...encoded], [0x80, 0x00, 0xff, 0x7f, 0xff, 0x80, 0x00]);
});

Deno.test("mulawDecode() and mulawEncode() fill and return an exact-size dst", () => {
  const codes = Uint8Array.of(0x00, 0x7f, 0x80, 0xff, 0x42);
  const samples = new Int16Array(codes.length);
  assert.equal(mulawDecode(codes, samples), samples);
  assert.deepEqual([...samples], [...mulawDecode(codes)]);

  const bytes = new Uint8Array(samples.length);
  assert.equal(mulawEncode(samples, bytes), bytes);
  assert.deepEqual([...bytes], [0x00, 0xff, 0x80, 0xff, 0x42]);
});

Deno.test("mulawDecode() and mulawEncode() use the start of a longer dst and ignore a short one", () => {
  const codes = Uint8Array.of(0x10, 0x90, 0x20);
  const longSamples = new Int16Array(8).fill(7);
  const decoded = mulawDecode(codes, longSamples);
  assert.equal(decoded.length, 3);
  assert.equal(decoded.buffer, longSamples.buffer);
  assert.deepEqual([...longSamples.subarray(0, 3)], [...mulawDecode(codes)]);
  assert.equal(longSamples[3], 7);

  const shortSamples = new Int16Array(2);
  const fresh = mulawDecode(codes, shortSamples);
  assert.equal(fresh.length, 3);
  assert.notEqual(fresh.buffer, shortSamples.buffer);
  assert.deepEqual([...shortSamples], [0, 0]);

  const longBytes = new Uint8Array(8);
  const encoded = mulawEncode(fresh, longBytes);
  assert.equal(encoded.buffer, longBytes.buffer);
  assert.deepEqual([...encoded], [0x10, 0x90, 0x20]);
  assert.equal(mulawEncode(fresh, new Uint8Array(1)).length, 3);
});

Deno.test("mulawDecode() and mulawEncode() accept empty input", () => {
  assert.equal(mulawDecode(new Uint8Array(0)).length, 0);
  assert.equal(mulawEncode(new Int16Array(0)).length, 0);
});

/**
 * The `alawmulaw` package (6.0.0) rounds the 16-bit input with a +132 bias and so lands on the
 * other side of G.191's decision values for 127 inputs (the count protocols.md §5 reports). It
 * agrees on decoding. A reference that matched such a package would not be independent.
 */
const ALAWMULAW_ENCODE_MISMATCHES = 127;

Deno.test("mulawEncode() reference differs from the alawmulaw package on 127 inputs", () => {
  const samples = allInt16();
  const ours = mulawEncode(samples);
  let referenceVsPackage = 0;
  let oursVsPackage = 0;
  for (let i = 0; i < samples.length; i++) {
    const packaged = alawmulaw.mulaw.encodeSample(samples[i]) & 0xff;
    if (packaged !== referenceUlawCompress(samples[i])) referenceVsPackage++;
    if (packaged !== ours[i]) oursVsPackage++;
  }
  assert.equal(referenceVsPackage, ALAWMULAW_ENCODE_MISMATCHES);
  assert.equal(oursVsPackage, ALAWMULAW_ENCODE_MISMATCHES);

  const codes = allCodes();
  const decoded = mulawDecode(codes);
  for (let code = 0; code < 256; code++) {
    assert.equal(alawmulaw.mulaw.decodeSample(code) | 0, decoded[code]);
  }
});
