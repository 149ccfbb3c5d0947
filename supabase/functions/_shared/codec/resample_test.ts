/**
 * Tests for the streaming resampler: framing independence, and its frequency response measured
 * with sine tones (passband flatness, image and alias rejection, constant group delay).
 *
 * Tones are at multiples of 10 Hz and measured by a least-squares fit over 0.1 s windows, so
 * every tone in a window has a whole number of cycles and the fits of different frequencies do
 * not leak into each other: a -70 dB image next to a 0 dB tone is measured as such.
 * @module
 */
import assert from "node:assert/strict";
import { createResampler, type SampleRateHz } from "./resample.ts";

const RATES: SampleRateHz[] = [8000, 16000, 24000];
const PAIRS: [SampleRateHz, SampleRateHz][] = RATES.flatMap((from) =>
  RATES.filter((to) => to !== from).map((to): [SampleRateHz, SampleRateHz] => [from, to])
);

/** Requirement: flat within +/-0.5 dB from 100 Hz to the passband edge. */
const PASSBAND_TOLERANCE_DB = 0.5;
/** Requirement: images and aliases at least 70 dB below the tone. */
const REJECTION_DB = 70;
/** Amplitude of test tones: -6 dBFS, so -70 dB is still 5 LSB, far above rounding noise. */
const TONE_AMPLITUDE = 16384;
const MEASURE_START_S = 0.05;
const MEASURE_LENGTH_S = 0.1;

/** Upper end of the tested passband: the telephone band, or up to 6 kHz between 16 and 24 kHz. */
function passbandEdgeHz(from: number, to: number): number {
  return Math.min(from, to) === 16000 ? 6000 : 3400;
}

/** Lower end of the stopband: where images or aliases of the passband start. */
function stopbandEdgeHz(from: number, to: number): number {
  return Math.min(from, to) - passbandEdgeHz(from, to);
}

function tone(rateHz: number, frequencyHz: number, length: number): Int16Array {
  const samples = new Int16Array(length);
  for (let n = 0; n < length; n++) {
    samples[n] = Math.round(TONE_AMPLITUDE * Math.sin((2 * Math.PI * frequencyHz * n) / rateHz));
  }
  return samples;
}

/** Runs a 0.2 s tone through a fresh resampler and returns the output. */
function resampleTone(from: SampleRateHz, to: SampleRateHz, frequencyHz: number): Int16Array {
  const input = tone(from, frequencyHz, from / 5);
  return createResampler(from, to).process(input).slice();
}

/**
 * Least-squares fit of `amplitude * sin(2 pi f n / rate - phase)` over the measuring window
 * (after the filter's transient), `n` counted from the start of the signal.
 */
function fitTone(
  signal: Int16Array,
  rateHz: number,
  frequencyHz: number,
): { amplitude: number; phase: number } {
  const start = Math.round(MEASURE_START_S * rateHz);
  const length = Math.round(MEASURE_LENGTH_S * rateHz);
  assert.ok(start + length <= signal.length, "signal too short to measure");
  let sinSum = 0;
  let cosSum = 0;
  const omega = (2 * Math.PI * frequencyHz) / rateHz;
  for (let n = start; n < start + length; n++) {
    sinSum += signal[n] * Math.sin(omega * n);
    cosSum += signal[n] * Math.cos(omega * n);
  }
  const sinPart = (2 * sinSum) / length;
  const cosPart = (2 * cosSum) / length;
  return { amplitude: Math.hypot(sinPart, cosPart), phase: Math.atan2(-cosPart, sinPart) };
}

function decibels(amplitude: number): number {
  return 20 * Math.log10(amplitude / TONE_AMPLITUDE);
}

/** Where a component at `frequencyHz` shows up in a signal sampled at `rateHz`. */
function foldHz(frequencyHz: number, rateHz: number): number {
  const wrapped = ((frequencyHz % rateHz) + rateHz) % rateHz;
  return wrapped > rateHz / 2 ? rateHz - wrapped : wrapped;
}

function frequenciesHz(fromHz: number, toHz: number, stepHz: number): number[] {
  const list: number[] = [];
  for (let f = fromHz; f <= toHz; f += stepHz) list.push(f);
  return list;
}

/** Deterministic test signal: two tones plus pseudo-random noise, up to full scale. */
function testSignal(rateHz: number, length: number): Int16Array {
  const samples = new Int16Array(length);
  let state = 12345;
  for (let n = 0; n < length; n++) {
    state = (state * 1103515245 + 12345) >>> 0;
    const noise = ((state >>> 8) / 2 ** 24 - 0.5) * 12000;
    const value = 14000 * Math.sin((2 * Math.PI * 440 * n) / rateHz) +
      9000 * Math.sin((2 * Math.PI * 3100 * n) / rateHz) + noise;
    samples[n] = Math.max(-32768, Math.min(32767, Math.round(value)));
  }
  return samples;
}

function concat(chunks: Int16Array[]): Int16Array {
  const all = new Int16Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return all;
}

/** Feeds `input` in chunks of the given sizes (cycled), copying each output before the next. */
function processInChunks(
  from: SampleRateHz,
  to: SampleRateHz,
  input: Int16Array,
  sizes: number[],
): Int16Array {
  const resampler = createResampler(from, to);
  const chunks: Int16Array[] = [];
  for (let offset = 0, i = 0; offset < input.length; i++) {
    const size = sizes[i % sizes.length];
    chunks.push(resampler.process(input.subarray(offset, offset + size)).slice());
    offset += size;
  }
  return concat(chunks);
}

Deno.test("createResampler() copies at equal rates", () => {
  for (const rate of RATES) {
    const resampler = createResampler(rate, rate);
    assert.equal(resampler.delaySamples, 0);
    const input = testSignal(rate, 333);
    assert.deepEqual(resampler.process(input), input);
    assert.deepEqual(processInChunks(rate, rate, input, [160, 7]), input);
  }
});

Deno.test("createResampler() throws a RangeError for unsupported rates", () => {
  assert.throws(() => createResampler(44100 as SampleRateHz, 8000), RangeError);
  assert.throws(() => createResampler(8000, 0 as SampleRateHz), RangeError);
});

Deno.test("createResampler() reports a whole-sample delay: 2 ms, or 0.625 ms at 16 <-> 24 kHz", () => {
  const expected: Record<string, number> = {
    "8000->24000": 48,
    "24000->8000": 16,
    "8000->16000": 32,
    "16000->8000": 16,
    "16000->24000": 15,
    "24000->16000": 10,
  };
  for (const [from, to] of PAIRS) {
    const { delaySamples } = createResampler(from, to);
    assert.equal(delaySamples, expected[`${from}->${to}`], `${from}->${to}`);
    const delayMs = (delaySamples / to) * 1000;
    assert.equal(delayMs, Math.min(from, to) === 16000 ? 0.625 : 2);
  }
});

Deno.test("process() gives the same samples whatever the frame sizes", () => {
  const framings = [[160], [1], [7], [33, 1, 0, 99], [161], [479, 2], [3, 1000, 11]];
  for (const [from, to] of PAIRS) {
    const input = testSignal(from, 2400);
    const whole = createResampler(from, to).process(input).slice();
    assert.equal(whole.length, (input.length * to) / from);
    for (const sizes of framings) {
      // 20 ms frames at the source rate, whatever the rate.
      const scaled = sizes.length === 1 && sizes[0] === 160 ? [from / 50] : sizes;
      assert.deepEqual(processInChunks(from, to, input, scaled), whole, `${from}->${to} ${sizes}`);
    }
  }
});

Deno.test("process() returns as many samples as the ratio allows, carrying the remainder", () => {
  // 24 kHz -> 16 kHz: 3 inputs make 2 outputs; single samples alternate 1, 1, 0 outputs.
  const resampler = createResampler(24000, 16000);
  const counts = [];
  for (let i = 0; i < 6; i++) counts.push(resampler.process(Int16Array.of(100)).length);
  assert.deepEqual(counts, [1, 1, 0, 1, 1, 0]);
  assert.equal(createResampler(8000, 24000).process(new Int16Array(160)).length, 480);
  assert.equal(createResampler(24000, 8000).process(new Int16Array(0)).length, 0);
});

Deno.test("process() reuses its output buffer for a steady frame size", () => {
  for (const [from, to] of [...PAIRS, [8000, 8000] as [SampleRateHz, SampleRateHz]]) {
    const resampler = createResampler(from, to);
    const frame = testSignal(from, from / 50);
    const first = resampler.process(frame);
    const second = resampler.process(frame);
    assert.equal(second, first, `${from}->${to}`);
    assert.equal(second.length, to / 50);
  }
});

Deno.test("reset() makes the resampler start over from silence", () => {
  for (const [from, to] of PAIRS) {
    const input = testSignal(from, 500);
    const resampler = createResampler(from, to);
    const first = resampler.process(input.subarray(0, 37)).slice();
    resampler.process(input);
    resampler.reset();
    assert.deepEqual(resampler.process(input.subarray(0, 37)), first, `${from}->${to}`);
  }
});

Deno.test("process() keeps every input sample exactly when upsampling", () => {
  // The cutoff is the input's Nyquist frequency, so one polyphase branch is a pure delay.
  for (const [from, to] of [[8000, 24000], [8000, 16000], [16000, 24000]] as const) {
    const input = testSignal(from, 800);
    const output = createResampler(from, to).process(input);
    const { delaySamples } = createResampler(from, to);
    // Input n sits at output n * to / from + delay whenever that is a whole number.
    for (let n = 0; n < input.length; n++) {
      const position = (n * to) / from + delaySamples;
      if (Number.isInteger(position) && position < output.length) {
        assert.equal(output[position], input[n], `${from}->${to} n=${n}`);
      }
    }
  }
});

Deno.test("process() keeps a constant level constant and saturates instead of wrapping", () => {
  for (const [from, to] of PAIRS) {
    const level = createResampler(from, to).process(new Int16Array(from / 10).fill(-12345));
    const settled = level.subarray(level.length / 2);
    assert.ok(settled.every((sample) => Math.abs(sample + 12345) <= 1), `${from}->${to}`);

    // A full-scale step overshoots by about 9% (Gibbs): the overshoot must clip at the int16
    // limit. Wrapping would turn it into a large value of the opposite sign.
    for (const high of [32767, -32768]) {
      const step = new Int16Array(from / 10);
      step.fill(high, step.length / 2);
      const output = createResampler(from, to).process(step);
      const peak = high > 0 ? Math.max(...output) : Math.min(...output);
      const opposite = high > 0 ? Math.min(...output) : Math.max(...output);
      assert.equal(peak, high, `${from}->${to} clips at ${high}`);
      assert.ok(Math.abs(opposite) < 0.15 * 32768, `${from}->${to} wrapped: ${opposite}`);
    }
  }
});

Deno.test("process() is flat within 0.5 dB from 100 Hz to the passband edge", () => {
  for (const [from, to] of PAIRS) {
    let worstDb = 0;
    for (const frequency of frequenciesHz(100, passbandEdgeHz(from, to), 100)) {
      const gainDb = decibels(fitTone(resampleTone(from, to, frequency), to, frequency).amplitude);
      if (Math.abs(gainDb) > Math.abs(worstDb)) worstDb = gainDb;
    }
    // The design ripple is about 0.002 dB; what is left is the rounding of the int16 samples.
    assert.ok(Math.abs(worstDb) <= PASSBAND_TOLERANCE_DB, `${from}->${to}: ${worstDb} dB`);
    assert.ok(Math.abs(worstDb) <= 0.01, `${from}->${to}: ${worstDb} dB (designed 0.002 dB)`);
  }
});

Deno.test("process() keeps images at least 70 dB down when upsampling", () => {
  for (const [from, to] of PAIRS.filter(([from, to]) => to > from)) {
    let worstDb = -Infinity;
    let worstAt = "";
    for (const frequency of frequenciesHz(100, passbandEdgeHz(from, to), 100)) {
      const output = resampleTone(from, to, frequency);
      // Images of f sit at k * from +/- f, folded into the output band.
      const images = new Set<number>();
      for (let k = 1; k * from <= to; k++) {
        for (const image of [k * from - frequency, k * from + frequency]) {
          const folded = foldHz(image, to);
          if (folded !== frequency) images.add(folded);
        }
      }
      assert.ok(images.size > 0);
      for (const image of images) {
        const levelDb = decibels(fitTone(output, to, image).amplitude);
        if (levelDb > worstDb) [worstDb, worstAt] = [levelDb, `${frequency} Hz -> ${image} Hz`];
      }
    }
    assert.ok(worstDb <= -REJECTION_DB, `${from}->${to}: ${worstAt} at ${worstDb} dB`);
  }
});

Deno.test("process() puts the images of a 1 kHz tone at 7 and 9 kHz >= 70 dB down (8k->24k)", () => {
  const output = resampleTone(8000, 24000, 1000);
  assert.ok(decibels(fitTone(output, 24000, 1000).amplitude) > -0.01);
  assert.ok(decibels(fitTone(output, 24000, 7000).amplitude) <= -REJECTION_DB);
  assert.ok(decibels(fitTone(output, 24000, 9000).amplitude) <= -REJECTION_DB);
});

Deno.test("process() keeps aliases at least 70 dB down when downsampling", () => {
  for (const [from, to] of PAIRS.filter(([from, to]) => to < from)) {
    let worstDb = -Infinity;
    let worstAt = "";
    // Every tone from the stopband edge (where aliases of it reach the passband) to the input's
    // Nyquist frequency. A tone at a multiple of `to` folds to 0 Hz, measured as twice its level.
    for (const frequency of frequenciesHz(stopbandEdgeHz(from, to), from / 2 - 100, 100)) {
      const output = resampleTone(from, to, frequency);
      const alias = foldHz(frequency, to);
      const levelDb = decibels(fitTone(output, to, alias).amplitude);
      if (levelDb > worstDb) [worstDb, worstAt] = [levelDb, `${frequency} Hz -> ${alias} Hz`];
    }
    assert.ok(worstDb <= -REJECTION_DB, `${from}->${to}: ${worstAt} at ${worstDb} dB`);
  }
});

Deno.test("process() folds a 5 kHz tone into 3 kHz >= 70 dB down (24k->8k)", () => {
  const output = resampleTone(24000, 8000, 5000);
  assert.ok(decibels(fitTone(output, 8000, 3000).amplitude) <= -REJECTION_DB);
});

Deno.test("process() rolls off between 3.4 and 4.6 kHz (24k->8k)", () => {
  // The transition band: from 0 dB at 3.4 kHz through -6 dB at the 4 kHz cutoff to below
  // -70 dB at 4.6 kHz. Tones from 4 to 4.6 kHz fold into 3.4 to 4 kHz, above the telephone
  // band, attenuated as measured here (-9.7, -21.8, -45.3 dB at 4.1, 4.3, 4.5 kHz).
  const levelDb = (frequency: number) =>
    decibels(
      fitTone(resampleTone(24000, 8000, frequency), 8000, foldHz(frequency, 8000)).amplitude,
    );
  assert.ok(levelDb(3600) > -0.5);
  assert.ok(levelDb(3900) < -3);
  assert.ok(levelDb(4100) < -9);
  assert.ok(levelDb(4300) < -21);
  assert.ok(levelDb(4500) < -44);
  assert.ok(levelDb(4600) < -REJECTION_DB);
});

Deno.test("process() has a constant group delay of delaySamples at every passband frequency", () => {
  for (const [from, to] of PAIRS) {
    const { delaySamples } = createResampler(from, to);
    let worstErrorRad = 0;
    for (const frequency of frequenciesHz(100, passbandEdgeHz(from, to), 100)) {
      const { phase } = fitTone(resampleTone(from, to, frequency), to, frequency);
      // A pure delay of D output samples turns sin(w n) into sin(w n - w D).
      const expected = (2 * Math.PI * frequency * delaySamples) / to;
      const error = Math.atan2(Math.sin(phase - expected), Math.cos(phase - expected));
      worstErrorRad = Math.max(worstErrorRad, Math.abs(error));
    }
    // 0.001 rad is a delay error of 0.1 us at 1.6 kHz: phase is linear in frequency.
    assert.ok(worstErrorRad < 0.001, `${from}->${to}: ${worstErrorRad} rad`);
  }
});
