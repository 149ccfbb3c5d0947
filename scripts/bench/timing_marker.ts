/**
 * Timing probes for the load benchmarks: the first 12 bytes of a caller frame's or an assistant
 * delta's mu-law audio carry who sent it (connection id, sequence) and when (wall-clock µs), so
 * whichever thread or process receives the audio at the other end of the bridge can measure the
 * hop by itself. The bridge forwards audio bytes unchanged (passthrough), so the marker arrives
 * intact; in an append that joins several frames, each frame's marker sits at its own offset.
 *
 * Clock: `performance.timeOrigin + performance.now()`, the same clock in every Deno thread and
 * process of one machine (checked: a Worker reads it within 10-20 µs of the main thread).
 * Also the base64 helpers the load peers share (standard padded base64, no validation).
 * @module
 */

/** Marker length: a multiple of 3, so its base64 prefixes the base64 of the rest of the audio. */
export const MARKER_BYTES = 12;
/** Send times are kept modulo 2^48 µs (8.9 years): 6 bytes. */
const TIME_MODULUS_US = 2 ** 48;

/** A marker's contents. */
export interface Marker {
  /** Connection (call or model session) id, 0..65535. */
  id: number;
  /** Frame or delta sequence within the connection. */
  sequence: number;
  /** Wall-clock µs modulo 2^48 when it was sent. */
  sentUs: number;
}

/** Wall-clock µs, comparable across the threads and processes of this machine. */
export function wallClockUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** ms from a marker's send time to `nowUs` (wall-clock µs). */
export function elapsedMs(marker: Marker, nowUs: number): number {
  const us = (nowUs % TIME_MODULUS_US) - marker.sentUs;
  return (us < 0 ? us + TIME_MODULUS_US : us) / 1000;
}

/** Writes a marker at `offset`: id (uint16), sequence (uint32), sent µs (uint48), big-endian. */
export function writeMarker(bytes: Uint8Array, offset: number, marker: Marker): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, MARKER_BYTES);
  view.setUint16(0, marker.id & 0xffff);
  view.setUint32(2, marker.sequence >>> 0);
  const sent = marker.sentUs % TIME_MODULUS_US;
  view.setUint16(6, Math.floor(sent / 2 ** 32));
  view.setUint32(8, sent % 2 ** 32);
}

/** Reads a marker written by `writeMarker`. */
export function readMarker(bytes: Uint8Array, offset: number): Marker {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, MARKER_BYTES);
  return {
    id: view.getUint16(0),
    sequence: view.getUint32(2),
    sentUs: view.getUint16(6) * 2 ** 32 + view.getUint32(8),
  };
}

const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Base64 of one 24-bit group. */
function group(value: number): string {
  return BASE64_ALPHABET[(value >>> 18) & 63] + BASE64_ALPHABET[(value >>> 12) & 63] +
    BASE64_ALPHABET[(value >>> 6) & 63] + BASE64_ALPHABET[value & 63];
}

/**
 * Base64 of a marker stamped now (12 bytes are whole base64 groups: 16 characters), computed
 * from the numbers directly: the callers stamp 25,000 frames a second at 500 calls.
 */
export function markerBase64(id: number, sequence: number): string {
  const sent = wallClockUs() % TIME_MODULUS_US;
  const sentHigh = Math.floor(sent / 2 ** 32); // bytes 6-7
  const sentLow = sent % 2 ** 32; // bytes 8-11
  const seq = sequence >>> 0; // bytes 2-5
  // Groups of 3 bytes: [id id seq] [seq seq seq] [sentHigh sentHigh sentLow] [sentLow x3].
  return group(((id & 0xffff) << 8) | (seq >>> 24)) + group(seq & 0xffffff) +
    group((sentHigh << 8) | (sentLow >>> 24)) + group(sentLow & 0xffffff);
}

/** Reads the marker at `byteOffset` of base64 audio, decoding only the characters around it. */
export function markerFromBase64(text: string, byteOffset: number): Marker {
  const start = Math.floor(byteOffset / 3) * 4;
  // The marker and the group it starts in: at most MARKER_BYTES + 2 bytes, 20 characters.
  const bytes = base64ToBytes(text.slice(start, start + 20));
  return readMarker(bytes, byteOffset % 3);
}

/** Base64 of each `chunkBytes` chunk of looped audio after its marker (padded with silence). */
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

/** Bytes encoded by standard padded base64. */
export function base64ByteLength(text: string): number {
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

/** Standard base64 of bytes. */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

/** Bytes of standard base64 (no validation: the peers trust each other). */
export function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
