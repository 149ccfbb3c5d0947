/**
 * Benchmarks of the G.711 mu-law codec against the `alawmulaw` npm package (the baseline of
 * each group), per 20 ms Twilio frame (160 samples) and per minute of 8 kHz audio.
 * Run: `deno bench -A supabase/functions/_shared/codec/g711_bench.ts`
 * @module
 */
import alawmulaw from "alawmulaw";
import { mulawDecode, mulawEncode } from "./g711.ts";

const SAMPLE_RATE_HZ = 8000;
const FRAME_SAMPLES = (SAMPLE_RATE_HZ * 20) / 1000;
const MINUTE_SAMPLES = SAMPLE_RATE_HZ * 60;

/** Speech-like test audio: a few tones and noise at varying loudness, all int16 values. */
function speechLike(length: number): Int16Array {
  const samples = new Int16Array(length);
  let state = 7;
  for (let n = 0; n < length; n++) {
    state = (state * 1103515245 + 12345) >>> 0;
    const envelope = 0.5 + 0.5 * Math.sin((2 * Math.PI * n) / 4000);
    const value = envelope *
      (9000 * Math.sin(n * 0.19) + 5000 * Math.sin(n * 0.77) + ((state >>> 16) - 32768) / 8);
    samples[n] = Math.round(value);
  }
  return samples;
}

const frameSamples = speechLike(FRAME_SAMPLES);
const frameCodes = mulawEncode(frameSamples);
const minuteSamples = speechLike(MINUTE_SAMPLES);
const minuteCodes = mulawEncode(minuteSamples);
const codesOut = new Uint8Array(FRAME_SAMPLES);
const samplesOut = new Int16Array(FRAME_SAMPLES);
const minuteCodesOut = new Uint8Array(MINUTE_SAMPLES);
const minuteSamplesOut = new Int16Array(MINUTE_SAMPLES);

Deno.bench("alawmulaw mulaw.encode", {
  group: "encode 20 ms (160 samples)",
  baseline: true,
}, () => {
  alawmulaw.mulaw.encode(frameSamples);
});
Deno.bench("mulawEncode into dst", { group: "encode 20 ms (160 samples)" }, () => {
  mulawEncode(frameSamples, codesOut);
});
Deno.bench("mulawEncode new array", { group: "encode 20 ms (160 samples)" }, () => {
  mulawEncode(frameSamples);
});

Deno.bench("alawmulaw mulaw.decode", {
  group: "decode 20 ms (160 samples)",
  baseline: true,
}, () => {
  alawmulaw.mulaw.decode(frameCodes);
});
Deno.bench("mulawDecode into dst", { group: "decode 20 ms (160 samples)" }, () => {
  mulawDecode(frameCodes, samplesOut);
});
Deno.bench("mulawDecode new array", { group: "decode 20 ms (160 samples)" }, () => {
  mulawDecode(frameCodes);
});

Deno.bench("alawmulaw mulaw.encode", { group: "encode 1 min", baseline: true }, () => {
  alawmulaw.mulaw.encode(minuteSamples);
});
Deno.bench("mulawEncode into dst", { group: "encode 1 min" }, () => {
  mulawEncode(minuteSamples, minuteCodesOut);
});

Deno.bench("alawmulaw mulaw.decode", { group: "decode 1 min", baseline: true }, () => {
  alawmulaw.mulaw.decode(minuteCodes);
});
Deno.bench("mulawDecode into dst", { group: "decode 1 min" }, () => {
  mulawDecode(minuteCodes, minuteSamplesOut);
});
