import assert from "node:assert/strict";

/** The reference encoding: writeMarker, then standard base64. */
function markerBase64WithTime(id: number, sequence: number, sentUs: number): string {
  const bytes = new Uint8Array(MARKER_BYTES);
  writeMarker(bytes, 0, { id, sequence, sentUs });
  return bytesToBase64(bytes);
}
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

Deno.test("timing marker: markerBase64 encodes what writeMarker writes", () => {
  for (const [id, sequence] of [[0, 0], [1, 2], [0xffff, 0xffffffff], [0x1234, 0x89abcdef]]) {
    const before = wallClockUs() % 2 ** 48;
    const marker = readMarker(base64ToBytes(markerBase64(id, sequence)), 0);
    const after = wallClockUs() % 2 ** 48;
    assert.equal(marker.id, id);
    assert.equal(marker.sequence, sequence);
    assert.ok(marker.sentUs >= before && marker.sentUs <= after, `${marker.sentUs} in time`);
    const bytes = new Uint8Array(MARKER_BYTES);
    writeMarker(bytes, 0, marker);
    assert.equal(bytesToBase64(bytes), markerBase64WithTime(id, sequence, marker.sentUs));
  }
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
