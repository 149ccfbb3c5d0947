/**
 * Timing probes for the load benchmarks: the first 6 bytes of a caller frame's or an assistant
 * delta's mu-law audio carry the time it was sent (wall-clock µs), so whichever thread or process
 * receives the audio at the other end of the bridge can time the hop by itself. The bridge
 * forwards audio bytes unchanged (passthrough), so the stamp arrives intact; in an append that
 * joins several frames, each frame's stamp sits at its own offset.
 *
 * Clock: `performance.timeOrigin + performance.now()`, the same clock in every Deno thread and
 * process of one machine (checked: a Worker reads it within 10-20 µs of the main thread).
 * Base64 goes through the codec's helpers (`_shared/codec/pcm.ts`).
 * @module
 */
import { base64ToBytes, bytesToBase64 } from "../../supabase/functions/_shared/codec/pcm.ts";

/** Stamp length: a multiple of 3, so its base64 prefixes the base64 of the rest of the audio. */
export const MARKER_BYTES = 6;
/** Send times are kept modulo 2^48 µs (8.9 years): 6 bytes. */
const TIME_MODULUS_US = 2 ** 48;

/** Wall-clock µs, comparable across the threads and processes of this machine. */
export function wallClockUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** ms from a stamp (µs modulo 2^48) to `nowUs` (wall-clock µs). */
export function elapsedMs(sentUs: number, nowUs: number): number {
  const us = (nowUs % TIME_MODULUS_US) - sentUs;
  return (us < 0 ? us + TIME_MODULUS_US : us) / 1000;
}

/** Writes `sentUs` modulo 2^48 at `offset`, big-endian. */
export function writeMarker(bytes: Uint8Array, offset: number, sentUs: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, MARKER_BYTES);
  const sent = sentUs % TIME_MODULUS_US;
  view.setUint16(0, Math.floor(sent / 2 ** 32));
  view.setUint32(2, sent % 2 ** 32);
}

/** Reads a stamp written by `writeMarker`. */
export function readMarker(bytes: Uint8Array, offset: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, MARKER_BYTES);
  return view.getUint16(0) * 2 ** 32 + view.getUint32(2);
}

/** The stamp is written here before encoding (one per thread; encoding copies it out). */
const stamp = new Uint8Array(MARKER_BYTES);

/** Base64 of a stamp of now (6 bytes are whole base64 groups: 8 characters). */
export function markerBase64(): string {
  writeMarker(stamp, 0, wallClockUs());
  return bytesToBase64(stamp);
}

/** Reads the stamp at `byteOffset` of base64 audio, decoding only the characters around it. */
export function markerFromBase64(text: string, byteOffset: number): number {
  const start = Math.floor(byteOffset / 3) * 4;
  // The stamp and the group it starts in: at most MARKER_BYTES + 2 bytes, 12 characters.
  const bytes = base64ToBytes(text.slice(start, start + 12));
  if (bytes === null) throw new Error("audio without a timing marker");
  return readMarker(bytes, byteOffset % 3);
}

/** Base64 of each `chunkBytes` chunk of looped audio after its stamp (padded with silence). */
export function precomputeTails(audio: Uint8Array, chunkBytes: number): string[] {
  const chunks = Math.ceil(audio.length / chunkBytes);
  const padded = new Uint8Array(chunks * chunkBytes).fill(0xff);
  padded.set(audio);
  const tails: string[] = [];
  for (let i = 0; i < chunks; i++) {
    tails.push(
      bytesToBase64(padded.subarray(i * chunkBytes + MARKER_BYTES, (i + 1) * chunkBytes)),
    );
  }
  return tails;
}
