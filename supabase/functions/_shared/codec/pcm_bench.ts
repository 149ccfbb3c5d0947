/**
 * Benchmarks of the base64 and PCM16 helpers. Baselines: `btoa` over a chunked
 * `String.fromCharCode` string, and `atob` plus a copy loop. The `Portable` variants are what
 * runs where `Uint8Array.prototype.toBase64` / `setFromBase64` are missing.
 * Sizes: 160 bytes (20 ms of Twilio mu-law), 960 bytes (20 ms of 24 kHz PCM16) and 48,000
 * bytes (1 s of 24 kHz PCM16, a large OpenAI delta).
 * Run: `deno bench -A supabase/functions/_shared/codec/pcm_bench.ts`
 * @module
 */
import {
  base64ToBytes,
  base64ToBytesPortable,
  bytesToBase64,
  bytesToBase64Portable,
  int16ToPcm16le,
  pcm16leToInt16,
} from "./pcm.ts";

/**
 * The usual snippet: `String.fromCharCode.apply` in chunks (engines limit the argument count),
 * then `btoa`. (Spreading the chunk instead is several times slower still.)
 */
function btoaChunked(bytes: Uint8Array): string {
  const chunkBytes = 0x2000;
  let binary = "";
  for (let i = 0; i < bytes.length; i += chunkBytes) {
    const chunk = bytes.subarray(i, i + chunkBytes) as unknown as number[];
    binary += String.fromCharCode.apply(null, chunk);
  }
  return btoa(binary);
}

function atobCopy(b64: string): Uint8Array {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 7919 + (i >> 3)) & 0xff;
  return bytes;
}

for (const size of [160, 960, 48000]) {
  const bytes = randomBytes(size);
  const b64 = btoaChunked(bytes);
  const dst = new Uint8Array(size);

  const encodeGroup = `bytesToBase64 ${size} bytes`;
  Deno.bench("btoa(String.fromCharCode chunks)", { group: encodeGroup, baseline: true }, () => {
    btoaChunked(bytes);
  });
  Deno.bench("bytesToBase64", { group: encodeGroup }, () => {
    bytesToBase64(bytes);
  });
  Deno.bench("bytesToBase64Portable", { group: encodeGroup }, () => {
    bytesToBase64Portable(bytes);
  });

  const decodeGroup = `base64ToBytes ${size} bytes`;
  Deno.bench("atob + copy loop", { group: decodeGroup, baseline: true }, () => {
    atobCopy(b64);
  });
  Deno.bench("base64ToBytes into dst", { group: decodeGroup }, () => {
    base64ToBytes(b64, dst);
  });
  Deno.bench("base64ToBytesPortable into dst", { group: decodeGroup }, () => {
    base64ToBytesPortable(b64, dst);
  });
}

const frameBytes = randomBytes(960);
const frameSamples = new Int16Array(480);
const frameOut = new Uint8Array(960);
const view = new DataView(frameBytes.buffer);

Deno.bench("DataView getInt16 loop", { group: "PCM16 LE 20 ms at 24 kHz", baseline: true }, () => {
  const samples = new Int16Array(480);
  for (let i = 0; i < 480; i++) samples[i] = view.getInt16(i * 2, true);
});
Deno.bench("pcm16leToInt16 into dst", { group: "PCM16 LE 20 ms at 24 kHz" }, () => {
  pcm16leToInt16(frameBytes, frameSamples);
});
Deno.bench("int16ToPcm16le into dst", { group: "PCM16 LE 20 ms at 24 kHz" }, () => {
  int16ToPcm16le(frameSamples, frameOut);
});
