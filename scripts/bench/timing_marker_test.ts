import assert from "node:assert/strict";
import { base64ToBytes, bytesToBase64 } from "../../supabase/functions/_shared/codec/pcm.ts";
import {
  elapsedMs,
  MARKER_BYTES,
  markerBase64,
  markerFromBase64,
  precomputeTails,
  readMarker,
  wallClockUs,
  writeMarker,
} from "./timing_marker.ts";

Deno.test("timing marker: written and read back at every byte offset of joined audio", () => {
  for (const sentUs of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 48 - 7]) {
    for (let offset = 0; offset < 6; offset++) {
      const bytes = new Uint8Array(40).fill(0xff);
      writeMarker(bytes, offset, sentUs);
      assert.equal(readMarker(bytes, offset), sentUs);
      // As the receiving side sees it: inside base64 of a longer buffer.
      assert.equal(markerFromBase64(bytesToBase64(bytes), offset), sentUs);
    }
  }
});

Deno.test("timing marker: a frame is the stamp's base64 followed by its precomputed tail", () => {
  const audio = new Uint8Array(480).map((_, i) => i & 0xff);
  const tails = precomputeTails(audio, 160);
  assert.equal(tails.length, 3);
  const before = wallClockUs() % 2 ** 48;
  const frame = base64ToBytes(markerBase64() + tails[1])!;
  const after = wallClockUs() % 2 ** 48;
  assert.equal(frame.length, 160);
  assert.deepEqual(frame.subarray(MARKER_BYTES), audio.subarray(160 + MARKER_BYTES, 320));
  const sentUs = readMarker(frame, 0);
  assert.ok(
    sentUs >= before && sentUs <= after,
    `${sentUs} stamped between ${before} and ${after}`,
  );
});

Deno.test("timing marker: elapsed time from the stamp, across the 2^48 µs wrap", () => {
  const elapsed = elapsedMs(markerFromBase64(markerBase64(), 0), wallClockUs());
  assert.ok(elapsed >= 0 && elapsed < 1000, `elapsed ${elapsed} ms`);
  // Sent 1.5 ms before the modulus wrapped, read 2.5 ms after it.
  assert.equal(elapsedMs(2 ** 48 - 1500, 2 ** 48 * 7 + 2500), 4);
});
