/**
 * The caller audio a stream sent to the model lately (base64 mu-law, one entry per append), kept
 * for a final handover that cuts the caller off mid-sentence (`unfinishedCallerAudio` in the
 * bridge carries it to the next stream).
 *
 * Kept outside the JS heap, in one byte ring per stream holding the base64 characters: each
 * append's string would otherwise live for the whole window (8 s), survive young-generation
 * collections, be promoted to the old generation and die there. At 500 calls in one isolate that
 * was ~5 MB/s of promoted strings: longer scavenges and a full mark-compact every few seconds,
 * the main source of the bridge's forwarding-delay tail (docs/benchmarks.md).
 * @module
 */
import { concatBase64 } from "../_shared/codec/media_fast_path.ts";
import { MAX_CARRIED_CALLER_AUDIO_CHARS, MAX_CARRIED_CALLER_AUDIO_MS } from "./handover.ts";

/** Ring size: the window's audio plus the padding of its entries (3 characters at most each). */
const DEFAULT_CAPACITY_CHARS = MAX_CARRIED_CALLER_AUDIO_CHARS + 4096;
/** Entries kept at most: an 8 s window of 20 ms appends is 400. */
const DEFAULT_MAX_ENTRIES = 512;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Limits of a `RecentCallerAudio`; the defaults are the handover's. */
export interface RecentCallerAudioLimits {
  /** Entries older than this (relative to the newest `keep`) are dropped. */
  windowMs?: number;
  /** Characters of base64 kept at most; the oldest entries make room. */
  capacityChars?: number;
  maxEntries?: number;
  /** `since` returns at most this many characters (the newest). */
  maxResultChars?: number;
}

/** A ring of recent base64 audio entries, each with the time it was sent. */
export class RecentCallerAudio {
  readonly #windowMs: number;
  readonly #capacity: number;
  readonly #maxEntries: number;
  readonly #maxResultChars: number;
  /** Allocated on the first `keep`: streams that never hand over never pay for it. */
  #chars: Uint8Array | null = null;
  #atMs: Float64Array | null = null;
  #start: Int32Array | null = null;
  #length: Int32Array | null = null;
  /** Oldest entry's slot, entries held, characters held, next character position. */
  #head = 0;
  #count = 0;
  #usedChars = 0;
  #writeAt = 0;

  constructor(limits: RecentCallerAudioLimits = {}) {
    this.#windowMs = limits.windowMs ?? MAX_CARRIED_CALLER_AUDIO_MS;
    this.#capacity = limits.capacityChars ?? DEFAULT_CAPACITY_CHARS;
    this.#maxEntries = limits.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#maxResultChars = limits.maxResultChars ?? MAX_CARRIED_CALLER_AUDIO_CHARS;
  }

  /** Entries held now. */
  get size(): number {
    return this.#count;
  }

  /** Keeps `base64` (valid, padded base64 of mu-law) sent at `atMs`. */
  keep(atMs: number, base64: string): void {
    if (base64.length === 0) return;
    if (this.#chars === null) {
      this.#chars = new Uint8Array(this.#capacity);
      this.#atMs = new Float64Array(this.#maxEntries);
      this.#start = new Int32Array(this.#maxEntries);
      this.#length = new Int32Array(this.#maxEntries);
    }
    // More than the ring holds: only its newest whole base64 groups can ever be returned.
    const limit = Math.floor(Math.min(this.#capacity, this.#maxResultChars) / 4) * 4;
    const text = base64.length > limit ? base64.slice(base64.length - limit) : base64;
    while (this.#count > 0 && this.#atMs![this.#head] < atMs - this.#windowMs) this.#dropOldest();
    while (
      this.#count > 0 &&
      (this.#usedChars + text.length > this.#capacity || this.#count === this.#maxEntries)
    ) {
      this.#dropOldest();
    }
    const slot = (this.#head + this.#count) % this.#maxEntries;
    this.#atMs![slot] = atMs;
    this.#start![slot] = this.#writeAt;
    this.#length![slot] = text.length;
    const firstPart = Math.min(text.length, this.#capacity - this.#writeAt);
    if (firstPart === text.length) {
      encoder.encodeInto(text, this.#chars.subarray(this.#writeAt));
    } else {
      // Wraps around the ring's end: two parts.
      encoder.encodeInto(text.slice(0, firstPart), this.#chars.subarray(this.#writeAt));
      encoder.encodeInto(text.slice(firstPart), this.#chars);
    }
    this.#writeAt = (this.#writeAt + text.length) % this.#capacity;
    this.#usedChars += text.length;
    this.#count++;
  }

  /**
   * The audio of the entries sent at or after `fromMs`, joined into one base64 string (at most
   * the newest `maxResultChars` characters, whole groups); null if there are none.
   */
  since(fromMs: number): string | null {
    const entries: string[] = [];
    for (let i = 0; i < this.#count; i++) {
      const slot = (this.#head + i) % this.#maxEntries;
      if (this.#atMs![slot] >= fromMs) entries.push(this.#entryText(slot));
    }
    const audio = entries.length === 0 ? null : concatBase64(entries);
    return audio === null || audio.length <= this.#maxResultChars
      ? audio
      : audio.slice(audio.length - this.#maxResultChars);
  }

  #entryText(slot: number): string {
    const start = this.#start![slot];
    const end = start + this.#length![slot];
    const chars = this.#chars!;
    if (end <= this.#capacity) return decoder.decode(chars.subarray(start, end));
    return decoder.decode(chars.subarray(start)) +
      decoder.decode(chars.subarray(0, end - this.#capacity));
  }

  #dropOldest(): void {
    this.#usedChars -= this.#length![this.#head];
    this.#head = (this.#head + 1) % this.#maxEntries;
    this.#count--;
  }
}
