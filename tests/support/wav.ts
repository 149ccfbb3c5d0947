/**
 * RIFF/WAVE files (PCM 16-bit and G.711 mu-law, format tags 1 and 7), for test fixtures and call
 * recordings: just enough of the format to read what espeak-ng writes and to write files any
 * audio player opens.
 * @module
 */

import { mulawDecode } from "../../supabase/functions/_shared/codec/g711.ts";

/** WAVE format tag of linear PCM. */
const WAVE_FORMAT_PCM = 1;
/** WAVE format tag of ITU-T G.711 mu-law. */
const WAVE_FORMAT_MULAW = 7;
/** WAVE format tag saying the real format is in the extension's sub-format GUID. */
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
/** Bytes of the RIFF header ("RIFF", size, "WAVE"). */
const RIFF_HEADER_BYTES = 12;
/** Bytes of a chunk header (four-character id, little-endian size). */
const CHUNK_HEADER_BYTES = 8;

/** Sample encodings this module reads and writes. */
export type WavFormat = "pcm16" | "mulaw";

/** A decoded WAV file. */
export interface WavAudio {
  /** Samples per second per channel. */
  sampleRate: number;
  /** Number of interleaved channels in the file. */
  channels: number;
  /** Encoding of the file's `data` chunk. */
  format: WavFormat;
  /** One int16 array per channel (mu-law is decoded with G.191's expansion). */
  samples: Int16Array[];
  /** The `data` chunk as stored (interleaved), e.g. the raw mu-law bytes. */
  data: Uint8Array;
}

/** Audio to write: `data` is interleaved int16 samples for `pcm16`, mu-law bytes for `mulaw`. */
export interface WavInput {
  /** Samples per second per channel. */
  sampleRate: number;
  /** Number of interleaved channels in `data`. */
  channels: number;
  /** Encoding of `data`. */
  format: WavFormat;
  /** Interleaved samples: `Int16Array` for `pcm16`, `Uint8Array` of mu-law codes for `mulaw`. */
  data: Int16Array | Uint8Array;
}

function fourCc(bytes: Uint8Array, offset: number): string {
  return String.fromCharCode(
    bytes[offset],
    bytes[offset + 1],
    bytes[offset + 2],
    bytes[offset + 3],
  );
}

/**
 * Reads a WAV file holding PCM 16-bit or mu-law audio, any channel count.
 *
 * Tolerates what streaming writers leave behind: a RIFF or `data` size larger than the file
 * (espeak-ng writing to a pipe) is clamped to the bytes present. Throws on anything else it
 * cannot read (test helper: a broken fixture should fail loudly).
 * @param bytes the whole file
 */
export function readWav(bytes: Uint8Array): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    bytes.length < RIFF_HEADER_BYTES || fourCc(bytes, 0) !== "RIFF" || fourCc(bytes, 8) !== "WAVE"
  ) {
    throw new Error("Cannot read WAV: missing RIFF/WAVE header");
  }
  let offset = RIFF_HEADER_BYTES;
  let formatTag = -1;
  let channels = 0;
  let sampleRate = 0;
  let bitsPerSample = 0;
  let data: Uint8Array | null = null;
  while (offset + CHUNK_HEADER_BYTES <= bytes.length) {
    const id = fourCc(bytes, offset);
    const declared = view.getUint32(offset + 4, true);
    const bodyStart = offset + CHUNK_HEADER_BYTES;
    const size = Math.min(declared, bytes.length - bodyStart);
    if (id === "fmt ") {
      formatTag = view.getUint16(bodyStart, true);
      channels = view.getUint16(bodyStart + 2, true);
      sampleRate = view.getUint32(bodyStart + 4, true);
      bitsPerSample = view.getUint16(bodyStart + 14, true);
      if (formatTag === WAVE_FORMAT_EXTENSIBLE && size >= 26) {
        // The first two bytes of the sub-format GUID carry the plain format tag.
        formatTag = view.getUint16(bodyStart + 24, true);
      }
    } else if (id === "data") {
      data = bytes.subarray(bodyStart, bodyStart + size);
    }
    // Chunks are padded to an even size.
    offset = bodyStart + size + (size % 2);
  }
  if (formatTag === -1) throw new Error("Cannot read WAV: no fmt chunk");
  if (data === null) throw new Error("Cannot read WAV: no data chunk");
  if (channels < 1) throw new Error("Cannot read WAV: zero channels");
  let format: WavFormat;
  let interleaved: Int16Array;
  if (formatTag === WAVE_FORMAT_PCM && bitsPerSample === 16) {
    format = "pcm16";
    const count = Math.floor(data.length / 2);
    interleaved = new Int16Array(count);
    const dataView = new DataView(data.buffer, data.byteOffset, count * 2);
    for (let i = 0; i < count; i++) interleaved[i] = dataView.getInt16(i * 2, true);
  } else if (formatTag === WAVE_FORMAT_MULAW && bitsPerSample === 8) {
    format = "mulaw";
    interleaved = mulawDecode(data);
  } else {
    throw new Error(
      `Cannot read WAV: unsupported format tag ${formatTag} with ${bitsPerSample} bits`,
    );
  }
  const frames = Math.floor(interleaved.length / channels);
  const samples: Int16Array[] = [];
  for (let channel = 0; channel < channels; channel++) {
    const out = new Int16Array(frames);
    for (let i = 0; i < frames; i++) out[i] = interleaved[i * channels + channel];
    samples.push(out);
  }
  return { sampleRate, channels, format, samples, data };
}

/**
 * Writes a WAV file. `pcm16` uses format tag 1; `mulaw` uses tag 7 with the `cbSize` field and
 * `fact` chunk that non-PCM formats require.
 * @param input sample rate, channel count, format and interleaved data
 */
export function writeWav(input: WavInput): Uint8Array {
  const { sampleRate, channels, format } = input;
  if (channels < 1) throw new Error("Cannot write WAV: zero channels");
  const bytesPerSample = format === "pcm16" ? 2 : 1;
  let dataBytes: Uint8Array;
  if (format === "pcm16") {
    if (!(input.data instanceof Int16Array)) {
      throw new Error("Cannot write WAV: pcm16 data must be an Int16Array");
    }
    const samples = input.data;
    dataBytes = new Uint8Array(samples.length * 2);
    const dataView = new DataView(dataBytes.buffer);
    for (let i = 0; i < samples.length; i++) dataView.setInt16(i * 2, samples[i], true);
  } else {
    if (!(input.data instanceof Uint8Array)) {
      throw new Error("Cannot write WAV: mulaw data must be a Uint8Array");
    }
    dataBytes = input.data;
  }
  const fmtBytes = format === "pcm16" ? 16 : 18;
  const factBytes = format === "pcm16" ? 0 : CHUNK_HEADER_BYTES + 4;
  const padding = dataBytes.length % 2;
  const total = RIFF_HEADER_BYTES + CHUNK_HEADER_BYTES + fmtBytes + factBytes +
    CHUNK_HEADER_BYTES + dataBytes.length + padding;
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  const ascii = (offset: number, text: string) => {
    for (let i = 0; i < 4; i++) out[offset + i] = text.charCodeAt(i);
  };
  ascii(0, "RIFF");
  view.setUint32(4, total - 8, true);
  ascii(8, "WAVE");
  let offset = RIFF_HEADER_BYTES;
  ascii(offset, "fmt ");
  view.setUint32(offset + 4, fmtBytes, true);
  offset += CHUNK_HEADER_BYTES;
  view.setUint16(offset, format === "pcm16" ? WAVE_FORMAT_PCM : WAVE_FORMAT_MULAW, true);
  view.setUint16(offset + 2, channels, true);
  view.setUint32(offset + 4, sampleRate, true);
  view.setUint32(offset + 8, sampleRate * channels * bytesPerSample, true);
  view.setUint16(offset + 12, channels * bytesPerSample, true);
  view.setUint16(offset + 14, bytesPerSample * 8, true);
  if (format === "mulaw") view.setUint16(offset + 16, 0, true);
  offset += fmtBytes;
  if (format === "mulaw") {
    ascii(offset, "fact");
    view.setUint32(offset + 4, 4, true);
    view.setUint32(offset + 8, dataBytes.length / channels, true);
    offset += factBytes;
  }
  ascii(offset, "data");
  view.setUint32(offset + 4, dataBytes.length, true);
  out.set(dataBytes, offset + CHUNK_HEADER_BYTES);
  return out;
}

/**
 * Writes a 16-bit PCM stereo WAV, e.g. a call recording with the caller left and the assistant
 * right. The shorter channel is padded with silence.
 * @param left samples of the left channel
 * @param right samples of the right channel
 * @param sampleRate samples per second per channel
 */
export function writeStereoWav(
  left: Int16Array,
  right: Int16Array,
  sampleRate: number,
): Uint8Array {
  const frames = Math.max(left.length, right.length);
  const interleaved = new Int16Array(frames * 2);
  for (let i = 0; i < left.length; i++) interleaved[i * 2] = left[i];
  for (let i = 0; i < right.length; i++) interleaved[i * 2 + 1] = right[i];
  return writeWav({ sampleRate, channels: 2, format: "pcm16", data: interleaved });
}
