/**
 * The audio path between Twilio (8 kHz mu-law) and the model. `passthrough` forwards mu-law both
 * ways untouched (the model speaks `audio/pcmu`); `pcm24k` decodes, resamples 8k <-> 24k and
 * speaks `audio/pcm`, for A/B quality comparison.
 * @module
 */
import { mulawDecode, mulawEncode } from "../_shared/codec/g711.ts";
import { createResampler } from "../_shared/codec/resample.ts";
import {
  base64DecodedLength,
  base64ToBytes,
  bytesToBase64,
  int16ToPcm16le,
  pcm16leToInt16,
} from "../_shared/codec/pcm.ts";
import { MULAW_BYTES_PER_MS } from "./call_session.ts";
import type { OpenAIAudioFormatName } from "../_shared/codec/openai_realtime.ts";

/** One call's audio conversion, both directions. */
export interface AudioPipeline {
  readonly name: "passthrough" | "pcm24k";
  /** The format the model hears and speaks. */
  readonly modelFormat: OpenAIAudioFormatName;
  /** Bytes per ms of model audio (8 for mu-law, 48 for 24 kHz PCM16). */
  readonly modelBytesPerMs: number;
  /** The caller's audio (base64 mu-law) -> base64 audio for one append; null if empty/invalid. */
  inbound(mulaw: string): string | null;
  /** A model audio delta (base64) -> base64 mu-law for Twilio and its duration. */
  outbound(delta: string): { payload: string; durationMs: number } | null;
}

/** Creates the pipeline for a call. */
export function createAudioPipeline(
  name: "passthrough" | "pcm24k",
): AudioPipeline {
  return name === "pcm24k" ? createPcm24kPipeline() : PASSTHROUGH;
}

const PASSTHROUGH: AudioPipeline = {
  name: "passthrough",
  modelFormat: "audio/pcmu",
  modelBytesPerMs: MULAW_BYTES_PER_MS,
  inbound: (mulaw) => mulaw.length > 0 ? mulaw : null,
  outbound: (delta) => {
    const bytes = base64DecodedLength(delta);
    return bytes > 0 ? { payload: delta, durationMs: bytes / MULAW_BYTES_PER_MS } : null;
  },
};

const PCM24K_BYTES_PER_MS = 48;

function createPcm24kPipeline(): AudioPipeline {
  const up = createResampler(8000, 24000);
  const down = createResampler(24000, 8000);
  // A pending odd byte of PCM16 between deltas (deltas may split a sample).
  let carry: Uint8Array | null = null;
  return {
    name: "pcm24k",
    modelFormat: "audio/pcm",
    modelBytesPerMs: PCM24K_BYTES_PER_MS,
    inbound(mulawBase64) {
      const mulaw = base64ToBytes(mulawBase64);
      if (!mulaw || mulaw.length === 0) return null;
      const pcm24k = up.process(mulawDecode(mulaw));
      return bytesToBase64(int16ToPcm16le(pcm24k));
    },
    outbound(delta) {
      let bytes = base64ToBytes(delta);
      if (!bytes || bytes.length === 0) return null;
      if (carry) {
        const merged = new Uint8Array(carry.length + bytes.length);
        merged.set(carry);
        merged.set(bytes, carry.length);
        bytes = merged;
        carry = null;
      }
      if (bytes.length % 2 === 1) {
        carry = bytes.slice(bytes.length - 1);
        bytes = bytes.subarray(0, bytes.length - 1);
      }
      const pcm8k = down.process(pcm16leToInt16(bytes));
      if (pcm8k.length === 0) return null;
      const mulaw = mulawEncode(pcm8k);
      return {
        payload: bytesToBase64(mulaw),
        durationMs: mulaw.length / MULAW_BYTES_PER_MS,
      };
    },
  };
}
