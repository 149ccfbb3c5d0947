/**
 * Tests for the base64 and PCM16 LE helpers. Both base64 paths (native `Uint8Array` methods and
 * the portable fallback for older runtimes) run the same cases.
 * @module
 */
import assert from "node:assert/strict";
import {
  base64DecodedLength,
  base64ToBytes,
  base64ToBytesPortable,
  bytesToBase64,
  bytesToBase64Portable,
  concatBytes,
  int16ToPcm16le,
  pcm16leToInt16,
} from "./pcm.ts";

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
function randomBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed | 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state;
  }
  return bytes;
}

/** Base64 the slow, obviously correct way, as the oracle. */
function referenceBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

const DECODERS = [
  { name: "base64ToBytes", decode: base64ToBytes },
  { name: "base64ToBytesPortable", decode: base64ToBytesPortable },
];
const ENCODERS = [
  { name: "bytesToBase64", encode: bytesToBase64 },
  { name: "bytesToBase64Portable", encode: bytesToBase64Portable },
];

for (const { name, encode } of ENCODERS) {
  Deno.test(`${name}() matches btoa on the RFC 4648 vectors and random lengths`, () => {
    const vectors: [string, string][] = [
      ["", ""],
      ["f", "Zg=="],
      ["fo", "Zm8="],
      ["foo", "Zm9v"],
      ["foob", "Zm9vYg=="],
      ["fooba", "Zm9vYmE="],
      ["foobar", "Zm9vYmFy"],
    ];
    for (const [text, b64] of vectors) assert.equal(encode(new TextEncoder().encode(text)), b64);
    for (let seed = 1; seed <= 200; seed++) {
      const bytes = randomBytes((seed * 37) % 1500, seed);
      assert.equal(encode(bytes), referenceBase64(bytes), `length ${bytes.length}`);
    }
    const large = randomBytes(100_000, 7);
    assert.equal(encode(large), referenceBase64(large));
    assert.equal(
      encode(new Uint8Array(256).map((_, i) => i)),
      referenceBase64(
        new Uint8Array(256).map((_, i) => i),
      ),
    );
  });

  Deno.test(`${name}() encodes a subarray, not its whole buffer`, () => {
    const bytes = randomBytes(64, 3);
    const view = bytes.subarray(5, 22);
    assert.equal(encode(view), referenceBase64(view));
  });
}

for (const { name, decode } of DECODERS) {
  Deno.test(`${name}() round-trips random lengths`, () => {
    for (let seed = 1; seed <= 200; seed++) {
      const bytes = randomBytes((seed * 53) % 2000, seed);
      const decoded = decode(referenceBase64(bytes));
      assert.ok(decoded !== null);
      assert.deepEqual(decoded, bytes);
    }
  });

  Deno.test(`${name}() writes into dst and returns a view of it`, () => {
    const bytes = randomBytes(160, 11); // one 20 ms Twilio frame
    const b64 = referenceBase64(bytes);
    assert.equal(base64DecodedLength(b64), 160);

    const exact = new Uint8Array(160);
    assert.equal(decode(b64, exact), exact);
    assert.deepEqual(exact, bytes);

    const large = new Uint8Array(1024);
    const view = decode(b64, large);
    assert.ok(view !== null);
    assert.equal(view.buffer, large.buffer);
    assert.equal(view.byteOffset, 0);
    assert.deepEqual(view, bytes);

    const small = new Uint8Array(10);
    const fresh = decode(b64, small);
    assert.ok(fresh !== null);
    assert.notEqual(fresh.buffer, small.buffer);
    assert.deepEqual(fresh, bytes);
  });

  Deno.test(`${name}() accepts unpadded text and ASCII whitespace`, () => {
    assert.deepEqual(decode("Zm9vYg"), new TextEncoder().encode("foob"));
    assert.deepEqual(decode("Zm9vYmE"), new TextEncoder().encode("fooba"));
    assert.deepEqual(decode("Zm9v\nYmFy"), new TextEncoder().encode("foobar"));
    assert.deepEqual(decode(""), new Uint8Array(0));
    // Trailing whitespace after the last byte still fits an exact-size dst.
    assert.deepEqual(decode("Zm9v\r\n ", new Uint8Array(3)), new TextEncoder().encode("foo"));
  });

  Deno.test(`${name}() returns null for invalid base64 instead of throwing`, () => {
    const invalid = [
      "Z", // a lone 6-bit group cannot make a byte
      "Zm9vY",
      "Zm9v!mFy", // not in the alphabet
      "Zm9v-_Fy", // base64url, not base64
      "Zm=9v",
      "Zg=",
      "Zg===",
      "Zm9v=",
      "Zm9vYmFy====",
      "é",
    ];
    for (const text of invalid) assert.equal(decode(text), null, JSON.stringify(text));
    assert.equal(decode(42 as unknown as string), null);
    assert.equal(decode(undefined as unknown as string), null);
  });
}

Deno.test("base64DecodedLength() counts bytes with and without padding", () => {
  assert.equal(base64DecodedLength(""), 0);
  assert.equal(base64DecodedLength("Zg=="), 1);
  assert.equal(base64DecodedLength("Zg"), 1);
  assert.equal(base64DecodedLength("Zm8="), 2);
  assert.equal(base64DecodedLength("Zm9v"), 3);
  assert.equal(base64DecodedLength("Zm9vYmFy"), 6);
});

Deno.test("pcm16leToInt16() reads little-endian samples and ignores an odd trailing byte", () => {
  const bytes = Uint8Array.of(0x01, 0x00, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f, 0x34, 0x12, 0x99);
  assert.deepEqual([...pcm16leToInt16(bytes)], [1, -1, -32768, 32767, 0x1234]);
  assert.equal(pcm16leToInt16(new Uint8Array(0)).length, 0);
  assert.equal(pcm16leToInt16(Uint8Array.of(7)).length, 0);
});

Deno.test("int16ToPcm16le() writes little-endian bytes", () => {
  const bytes = int16ToPcm16le(Int16Array.of(1, -1, -32768, 32767, 0x1234));
  assert.deepEqual(
    [...bytes],
    [0x01, 0x00, 0xff, 0xff, 0x00, 0x80, 0xff, 0x7f, 0x34, 0x12],
  );
  // Same bytes as a little-endian DataView would write.
  const view = new DataView(bytes.buffer);
  assert.equal(view.getInt16(8, true), 0x1234);
});

Deno.test("pcm16leToInt16() and int16ToPcm16le() round-trip random lengths and odd offsets", () => {
  for (let seed = 1; seed <= 100; seed++) {
    const raw = randomBytes(((seed * 31) % 1000) * 2 + 1, seed);
    // Offset 1: an Int16Array view could not even be created on this.
    const bytes = raw.subarray(1);
    const samples = pcm16leToInt16(bytes);
    assert.equal(samples.length, bytes.length / 2);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < samples.length; i++) assert.equal(samples[i], view.getInt16(i * 2, true));
    assert.deepEqual(int16ToPcm16le(samples), bytes.slice());
  }
});

Deno.test("pcm16leToInt16() and int16ToPcm16le() fill exact, reuse long and ignore short dst", () => {
  const samples = Int16Array.of(-2, 300, 32767, -32768);
  const exactBytes = new Uint8Array(8);
  assert.equal(int16ToPcm16le(samples, exactBytes), exactBytes);
  const exactSamples = new Int16Array(4);
  assert.equal(pcm16leToInt16(exactBytes, exactSamples), exactSamples);
  assert.deepEqual(exactSamples, samples);

  const longBytes = new Uint8Array(20);
  const bytesView = int16ToPcm16le(samples, longBytes);
  assert.equal(bytesView.buffer, longBytes.buffer);
  assert.equal(bytesView.length, 8);
  const longSamples = new Int16Array(9);
  const samplesView = pcm16leToInt16(bytesView, longSamples);
  assert.equal(samplesView.buffer, longSamples.buffer);
  assert.deepEqual(samplesView, samples);

  assert.deepEqual(int16ToPcm16le(samples, new Uint8Array(3)), exactBytes);
  assert.deepEqual(pcm16leToInt16(exactBytes, new Int16Array(1)), samples);
});

Deno.test("concatBytes() joins chunks in order into a new array", () => {
  assert.deepEqual(concatBytes([]), new Uint8Array(0));
  const one = Uint8Array.of(1, 2, 3);
  const joined = concatBytes([one.subarray(1), new Uint8Array(0), Uint8Array.of(9)]);
  assert.deepEqual(joined, Uint8Array.of(2, 3, 9));
  const copy = concatBytes([one]);
  assert.deepEqual(copy, one);
  assert.notEqual(copy.buffer, one.buffer, "a new array, not a view of the input");
});
