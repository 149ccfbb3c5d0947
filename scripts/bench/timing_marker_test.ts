import assert from "node:assert/strict";
import {
  base64ToBytes,
  bytesToBase64,
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
  const marker = { id: 0xbeef, sequence: 0xdeadbeef, sentUs: 2 ** 48 - 7 };
  for (let offset = 0; offset < 6; offset++) {
    const bytes = new Uint8Array(40).fill(0xff);
    writeMarker(bytes, offset, marker);
    assert.deepEqual(readMarker(bytes, offset), marker);
    // As the model side sees it: inside base64 of a longer buffer.
    assert.deepEqual(markerFromBase64(bytesToBase64(bytes), offset), marker);
  }
});

Deno.test("timing marker: a frame is the marker's base64 followed by its precomputed tail", () => {
  const audio = new Uint8Array(480).map((_, i) => i & 0xff);
  const tails = precomputeTails(audio, 160);
  assert.equal(tails.length, 3);
  const frame = base64ToBytes(markerBase64(3, 9) + tails[1]);
  assert.equal(frame.length, 160);
  assert.deepEqual(frame.subarray(MARKER_BYTES), audio.subarray(160 + MARKER_BYTES, 320));
  assert.deepEqual(
    { id: readMarker(frame, 0).id, sequence: readMarker(frame, 0).sequence },
    { id: 3, sequence: 9 },
  );
});

Deno.test("timing marker: elapsed time from the stamp, across the 2^48 µs wrap", () => {
  const now = wallClockUs();
  const stamped = markerFromBase64(markerBase64(1, 1), 0);
  const elapsed = elapsedMs(stamped, wallClockUs());
  assert.ok(elapsed >= 0 && elapsed < 1000, `elapsed ${elapsed} ms`);
  assert.ok(stamped.sentUs >= (now % 2 ** 48) || stamped.sentUs < 1_000_000);
  // Sent 1.5 ms before the modulus wrapped, read 2.5 ms after it.
  const marker = { id: 0, sequence: 0, sentUs: 2 ** 48 - 1500 };
  assert.equal(elapsedMs(marker, 2 ** 48 * 7 + 2500), 4);
});
