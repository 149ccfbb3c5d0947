/**
 * Streaming sample-rate conversion of int16 PCM between the rates of the call path: 8 kHz
 * (Twilio Media Streams mu-law), 16 kHz and 24 kHz (OpenAI Realtime `audio/pcm`). A polyphase
 * FIR with a Kaiser-windowed sinc: linear phase, flat passband, images and aliases >= 70 dB
 * down (protocols.md §5 explains why linear interpolation is not good enough).
 * @module
 */

/** Sample rates `createResampler` converts between. */
export type SampleRateHz = 8000 | 16000 | 24000;

/** A stateful converter for one audio stream; see `createResampler`. */
export interface Resampler {
  /**
   * Converts the next chunk of the stream. Any chunk length works, and the output does not
   * depend on how the stream is cut into chunks.
   *
   * The returned array is a view over a buffer owned by the resampler: it stays valid until the
   * next `process()` or `reset()` call, so copy (or encode) it before then. A steady frame size
   * gets the same view back each call, so the hot path allocates nothing.
   * @param input int16 samples at the source rate
   */
  process(input: Int16Array): Int16Array;
  /** Forgets the stream: the next `process()` starts from silence, as a new resampler would. */
  reset(): void;
  /**
   * Group delay in output samples (the same at every frequency: the filter is symmetric). Input
   * sample `i` comes out around output sample `i * toRate / fromRate + delaySamples`.
   */
  readonly delaySamples: number;
}

/**
 * A lowpass prototype, in units of the intermediate rate `fromRate * upFactor`. The cutoff is
 * always the Nyquist frequency of the lower of the two rates, so the sinc has a zero every
 * `max(upFactor, downFactor)` taps (a Nyquist filter): the kernels skip those taps, and when
 * upsampling the branch holding the centre tap is a pure delay.
 */
interface FilterSpec {
  /** Taps on each side of the centre tap; the filter has `2 * halfLength + 1` taps. */
  halfLength: number;
  /** Kaiser design attenuation in dB; sets the window's beta. */
  attenuationDb: number;
}

/**
 * 8 kHz <-> 24 kHz (cutoff 4 kHz at 24 kHz): passband to 3.4 kHz, stopband from 4.6 kHz, where
 * images and aliases of the passband would land in the passband. Designed -76.8 dB, 97 taps
 * (32 per branch by 3, plus the centre tap). `halfLength` is a multiple of 3 so that
 * `delaySamples` is a whole number of output samples both ways.
 */
const TELEPHONE_THIRD_BAND: FilterSpec = { halfLength: 48, attenuationDb: 77 };

/**
 * 8 kHz <-> 16 kHz (cutoff 4 kHz at 16 kHz): passband to 3.4 kHz, stopband from 4.6 kHz,
 * designed -76.6 dB, 65 taps.
 */
const TELEPHONE_HALF_BAND: FilterSpec = { halfLength: 32, attenuationDb: 77 };

/**
 * 16 kHz <-> 24 kHz (cutoff 8 kHz at the intermediate 48 kHz): passband to 6 kHz, stopband
 * from 10 kHz, designed -79.4 dB, 61 taps. A passband to 7 kHz would need 121 taps and twice
 * the time. `halfLength` is a multiple of 6 (both directions' delays whole).
 */
const WIDEBAND_THIRD_BAND: FilterSpec = { halfLength: 30, attenuationDb: 80 };

/** Zeroth-order modified Bessel function of the first kind, by its power series. */
function besselI0(x: number): number {
  const quarterXSquared = (x * x) / 4;
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 100; k++) {
    term *= quarterXSquared / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

/**
 * Kaiser-windowed sinc lowpass with cutoff `1 / (2 * zeroSpacing)` of the sample rate and unit
 * DC gain. Taps at multiples of `zeroSpacing` from the centre are set to exactly 0 so the
 * polyphase branches can skip them.
 */
function designLowpass(spec: FilterSpec, zeroSpacing: number): Float64Array {
  const { halfLength, attenuationDb } = spec;
  // Kaiser's empirical beta for attenuations above 50 dB.
  const beta = 0.1102 * (attenuationDb - 8.7);
  const windowNorm = besselI0(beta);
  const taps = new Float64Array(2 * halfLength + 1);
  for (let n = 0; n < taps.length; n++) {
    const offset = n - halfLength;
    let sinc: number;
    if (offset === 0) sinc = 1;
    else if (offset % zeroSpacing === 0) sinc = 0;
    else {
      const x = (Math.PI * offset) / zeroSpacing;
      sinc = Math.sin(x) / x;
    }
    const r = offset / halfLength;
    const window = besselI0(beta * Math.sqrt(1 - r * r)) / windowNorm;
    taps[n] = (sinc * window) / zeroSpacing;
  }
  return taps;
}

function greatestCommonDivisor(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * The arithmetic of one rate pair. `run` computes `outputCount` outputs from `samples`, where
 * `samples[historyLength + i]` is input sample `i` of the current call (earlier indices hold the
 * end of the previous calls) and the first output sits at intermediate time `firstTime`
 * (`fromRate * upFactor` units, 0 = the current call's first input sample). Output `k` sits at
 * `firstTime + k * downFactor`; its newest input is `floor(t / upFactor)` and it uses filter
 * branch `t % upFactor`, tap `q` of which multiplies the input `q` samples older than that.
 */
interface Kernel {
  readonly upFactor: number;
  readonly downFactor: number;
  readonly historyLength: number;
  run(samples: Float64Array, out: Int16Array, outputCount: number, firstTime: number): void;
}

/** Taps of branch `branch`: `upFactor * h[branch + q * upFactor]`, newest input first. */
function branchTaps(prototype: Float64Array, upFactor: number, branch: number): Float64Array {
  const count = Math.floor((prototype.length - 1 - branch) / upFactor) + 1;
  const taps = new Float64Array(count);
  // The gain restores the level that the upFactor - 1 inserted zeros took away.
  for (let q = 0; q < count; q++) taps[q] = prototype[branch + q * upFactor] * upFactor;
  return taps;
}

/** Rounds to the nearest int16, saturating: loud input must clip, not wrap around. */
function toInt16(value: number): number {
  const rounded = Math.round(value);
  return rounded > 32767 ? 32767 : rounded < -32768 ? -32768 : rounded;
}

/**
 * Upsampling by 2 or 3 (8 kHz -> 16 kHz, 8 kHz -> 24 kHz). Branch 0 holds the centre tap alone
 * (exactly 1), so every `upFactor`-th output is a copy of an input. The other branches use the
 * same window of inputs, and (the prototype being symmetric about a multiple of `upFactor`)
 * branch `upFactor - p` is branch `p` reversed. So with `u` and `v` the inputs at mirrored
 * window positions, one pass over half the window gives both branches by 3:
 * `out1 = sum(s * (u + v) + d * (u - v))` and `out2 = sum(s * (u + v) - d * (u - v))`; by 2,
 * branch 1 is its own mirror and `d` is 0.
 */
function createUpsamplingKernel(prototype: Float64Array, upFactor: 2 | 3): Kernel {
  const first = branchTaps(prototype, upFactor, 1);
  const tapCount = first.length;
  const halfCount = tapCount >> 1;
  const sumCoefficients = new Float64Array(halfCount);
  const differenceCoefficients = new Float64Array(halfCount);
  for (let q = 0; q < halfCount; q++) {
    const mirrored = tapCount - 1 - q;
    sumCoefficients[q] = (first[q] + first[mirrored]) / 2;
    differenceCoefficients[q] = (first[q] - first[mirrored]) / 2;
  }
  const historyLength = tapCount - 1;
  // Branch 0's only tap: `(prototype.length - 1) / 2 / upFactor` inputs back from the newest.
  const copyOffset = historyLength - (prototype.length - 1) / 2 / upFactor;

  return {
    upFactor,
    downFactor: 1,
    historyLength,
    run(samples: Float64Array, out: Int16Array, outputCount: number): void {
      // With downFactor 1 every call starts at time 0 and yields upFactor outputs per input;
      // `newest` is also the index of the window's oldest sample in `samples`.
      if (upFactor === 2) {
        for (let newest = 0, k = 0; k < outputCount; newest++, k += 2) {
          let sum0 = 0;
          let sum1 = 0;
          // Two accumulators: with one, every step waits for the previous addition.
          let q = 0;
          for (; q + 1 < halfCount; q += 2) {
            sum0 += sumCoefficients[q] *
              (samples[newest + historyLength - q] + samples[newest + q]);
            sum1 += sumCoefficients[q + 1] *
              (samples[newest + historyLength - q - 1] + samples[newest + q + 1]);
          }
          if (q < halfCount) {
            sum0 += sumCoefficients[q] *
              (samples[newest + historyLength - q] + samples[newest + q]);
          }
          out[k] = samples[newest + copyOffset];
          out[k + 1] = toInt16(sum0 + sum1);
        }
        return;
      }
      for (let newest = 0, k = 0; k < outputCount; newest++, k += 3) {
        let sum = 0;
        let difference = 0;
        for (let q = 0; q < halfCount; q++) {
          const newer = samples[newest + historyLength - q];
          const older = samples[newest + q];
          sum += sumCoefficients[q] * (newer + older);
          difference += differenceCoefficients[q] * (newer - older);
        }
        out[k] = samples[newest + copyOffset];
        out[k + 1] = toInt16(sum + difference);
        out[k + 2] = toInt16(sum - difference);
      }
    },
  };
}

/**
 * Downsampling by 2 or 3 (16 kHz -> 8 kHz, 24 kHz -> 8 kHz). The prototype is symmetric, so
 * the two inputs at distance `d` either side of the centre share a multiplication, and its taps
 * at multiples of `downFactor` from the centre are zero and skipped: 24 kHz -> 8 kHz needs 32
 * multiplications per output instead of 97.
 */
function createDownsamplingKernel(prototype: Float64Array, downFactor: 2 | 3): Kernel {
  const halfLength = (prototype.length - 1) / 2;
  const centreCoefficient = prototype[halfLength];
  // Coefficient at distance d = j * downFactor + r from the centre, r = 1 .. downFactor - 1.
  // halfLength is a multiple of downFactor (whole delays), so the last group's distances stay
  // inside the window.
  const groupCount = Math.ceil(halfLength / downFactor);
  const coefficients = new Float64Array(groupCount * (downFactor - 1));
  const coefficientCount = coefficients.length;
  for (let j = 0; j < groupCount; j++) {
    for (let r = 1; r < downFactor; r++) {
      const distance = j * downFactor + r;
      coefficients[j * (downFactor - 1) + r - 1] = distance <= halfLength
        ? prototype[halfLength + distance]
        : 0;
    }
  }

  return {
    upFactor: 1,
    downFactor,
    historyLength: prototype.length - 1,
    run(samples: Float64Array, out: Int16Array, outputCount: number, firstTime: number): void {
      // The window of output k ends at input firstTime + k * downFactor, which sits at index
      // `historyLength + that` in `samples`; its centre is halfLength earlier.
      let centre = halfLength + firstTime;
      if (downFactor === 2) {
        for (let k = 0; k < outputCount; k++, centre += 2) {
          let acc0 = centreCoefficient * samples[centre];
          let acc1 = 0;
          let j = 0;
          let d = 1;
          for (; j + 1 < groupCount; j += 2, d += 4) {
            acc0 += coefficients[j] * (samples[centre - d] + samples[centre + d]);
            acc1 += coefficients[j + 1] * (samples[centre - d - 2] + samples[centre + d + 2]);
          }
          if (j < groupCount) acc0 += coefficients[j] * (samples[centre - d] + samples[centre + d]);
          out[k] = toInt16(acc0 + acc1);
        }
        return;
      }
      // Two outputs per pass: they share the coefficient loads and keep four sums in flight.
      let k = 0;
      for (; k + 1 < outputCount; k += 2, centre += 6) {
        const next = centre + 3;
        let acc0 = centreCoefficient * samples[centre];
        let acc1 = 0;
        let acc2 = centreCoefficient * samples[next];
        let acc3 = 0;
        for (let c = 0, d = 1; c < coefficientCount; c += 2, d += 3) {
          const near = coefficients[c];
          const far = coefficients[c + 1];
          acc0 += near * (samples[centre - d] + samples[centre + d]);
          acc1 += far * (samples[centre - d - 1] + samples[centre + d + 1]);
          acc2 += near * (samples[next - d] + samples[next + d]);
          acc3 += far * (samples[next - d - 1] + samples[next + d + 1]);
        }
        out[k] = toInt16(acc0 + acc1);
        out[k + 1] = toInt16(acc2 + acc3);
      }
      if (k < outputCount) {
        let acc0 = centreCoefficient * samples[centre];
        let acc1 = 0;
        for (let c = 0, d = 1; c < coefficientCount; c += 2, d += 3) {
          acc0 += coefficients[c] * (samples[centre - d] + samples[centre + d]);
          acc1 += coefficients[c + 1] * (samples[centre - d - 1] + samples[centre + d + 1]);
        }
        out[k] = toInt16(acc0 + acc1);
      }
    },
  };
}

/**
 * 24 kHz -> 16 kHz: up by 2, down by 3 through 48 kHz, outputs alternating between the two
 * branches. Each branch is symmetric in itself (branch 0 about its centre tap, branch 1 about
 * the gap between its two middle taps), so mirrored inputs share a multiplication, and one tap
 * in three sits on a zero of the sinc: 10 multiplications per output instead of 30.
 */
function createTwoThirdsKernel(prototype: Float64Array): Kernel {
  const halfLength = (prototype.length - 1) / 2;
  // halfLength is a multiple of 6, so both branches' zero taps fall every third pair.
  const branchHalf = halfLength / 2;
  const groupCount = halfLength / 6;
  // Gain 2 (upFactor) as in branchTaps. Branch 0 taps: 2 h[2q], centre 2 h[halfLength], pairs at
  // distance e = 3j + 1 and 3j + 2 (e = 3j + 3 is a zero). Branch 1 taps: 2 h[2q + 1], pairs
  // straddling the middle at e = 3j and 3j + 2 (e = 3j + 1 is a zero).
  const centre0 = 2 * prototype[halfLength];
  const near0 = new Float64Array(groupCount);
  const far0 = new Float64Array(groupCount);
  const near1 = new Float64Array(groupCount);
  const far1 = new Float64Array(groupCount);
  for (let j = 0; j < groupCount; j++) {
    near0[j] = 2 * prototype[halfLength + 6 * j + 2];
    far0[j] = 2 * prototype[halfLength + 6 * j + 4];
    near1[j] = 2 * prototype[halfLength - 1 - 6 * j];
    far1[j] = 2 * prototype[halfLength - 5 - 6 * j];
  }

  return {
    upFactor: 2,
    downFactor: 3,
    historyLength: halfLength,
    run(samples: Float64Array, out: Int16Array, outputCount: number, firstTime: number): void {
      for (let k = 0, time = firstTime; k < outputCount; k++, time += 3) {
        // Index in `samples` of the input branchHalf older than the newest one.
        const middle = (time >> 1) + halfLength - branchHalf;
        let acc0 = 0;
        let acc1 = 0;
        if ((time & 1) === 0) {
          acc0 = centre0 * samples[middle];
          for (let j = 0, d = 1; j < groupCount; j++, d += 3) {
            acc0 += near0[j] * (samples[middle - d] + samples[middle + d]);
            acc1 += far0[j] * (samples[middle - d - 1] + samples[middle + d + 1]);
          }
        } else {
          for (let j = 0, d = 0; j < groupCount; j++, d += 3) {
            acc0 += near1[j] * (samples[middle - d] + samples[middle + 1 + d]);
            acc1 += far1[j] * (samples[middle - 2 - d] + samples[middle + 3 + d]);
          }
        }
        out[k] = toInt16(acc0 + acc1);
      }
    },
  };
}

/**
 * Any ratio, one multiplication per tap (used for 16 kHz -> 24 kHz). When upsampling, the
 * branch holding the prototype's centre tap has no other non-zero tap and is a copy. The other
 * branches are zero-padded to one even length, so the inner loop has a fixed trip count.
 */
function createDirectKernel(prototype: Float64Array, upFactor: number, downFactor: number): Kernel {
  const halfLength = (prototype.length - 1) / 2;
  const branches = Array.from(
    { length: upFactor },
    (_, branch) => branchTaps(prototype, upFactor, branch),
  );
  const centreBranch = halfLength % upFactor;
  const copyDistance = (halfLength - centreBranch) / upFactor;
  const centreAlone = branches[centreBranch].every((tap, q) => tap === 0 || q === copyDistance);
  // -1: no branch is a copy (the sinc's zeros are spaced by downFactor, not upFactor).
  const copyBranch = centreAlone ? centreBranch : -1;
  const longest = Math.max(...branches.filter((_, b) => b !== copyBranch).map((t) => t.length));
  const tapCount = longest + (longest % 2);
  const historyLength = Math.max(tapCount - 1, copyDistance);
  // Branch b's taps, oldest input first, at b * tapCount: the window of `tapCount` inputs ends
  // at the newest input, `historyLength + newest` in `samples`.
  const coefficients = new Float64Array(upFactor * tapCount);
  branches.forEach((taps, branch) => {
    if (branch === copyBranch) return;
    for (let q = 0; q < taps.length; q++) {
      coefficients[branch * tapCount + tapCount - 1 - q] = taps[q];
    }
  });
  const windowStart = historyLength - (tapCount - 1);
  const copyOffset = historyLength - copyDistance;

  return {
    upFactor,
    downFactor,
    historyLength,
    run(samples: Float64Array, out: Int16Array, outputCount: number, firstTime: number): void {
      let newest = Math.floor(firstTime / upFactor);
      let branch = firstTime - newest * upFactor;
      for (let k = 0; k < outputCount; k++) {
        if (branch === copyBranch) out[k] = samples[newest + copyOffset];
        else {
          const base = branch * tapCount;
          const start = newest + windowStart;
          let acc0 = 0;
          let acc1 = 0;
          // Two accumulators: with one, every step waits for the previous addition.
          for (let q = 0; q < tapCount; q += 2) {
            acc0 += coefficients[base + q] * samples[start + q];
            acc1 += coefficients[base + q + 1] * samples[start + q + 1];
          }
          out[k] = toInt16(acc0 + acc1);
        }
        branch += downFactor;
        while (branch >= upFactor) {
          branch -= upFactor;
          newest++;
        }
      }
    },
  };
}

/** The streaming part shared by all ratios: history, time keeping, reused buffers. */
function createStreamingResampler(kernel: Kernel, delaySamples: number): Resampler {
  const { upFactor, downFactor, historyLength } = kernel;
  // 20 ms at 24 kHz: the largest frame the call path uses; larger frames grow the buffers once.
  let samples = new Float64Array(historyLength + 480);
  let output = new Int16Array(480);
  let outputView = output.subarray(0, 0);
  // Intermediate time of the next output, relative to the first input sample of the next call.
  let nextTime = 0;

  return {
    delaySamples,
    process(input: Int16Array): Int16Array {
      const inputLength = input.length;
      const endTime = inputLength * upFactor;
      const outputCount = nextTime < endTime ? Math.ceil((endTime - nextTime) / downFactor) : 0;
      if (samples.length < historyLength + inputLength) {
        const grown = new Float64Array(historyLength + 2 * inputLength);
        grown.set(samples.subarray(0, historyLength));
        samples = grown;
      }
      if (output.length < outputCount) {
        output = new Int16Array(2 * outputCount);
        outputView = output.subarray(0, 0);
      }
      if (outputView.length !== outputCount) outputView = output.subarray(0, outputCount);

      for (let i = 0; i < inputLength; i++) samples[historyLength + i] = input[i];
      kernel.run(samples, output, outputCount, nextTime);
      nextTime += outputCount * downFactor - endTime;
      samples.copyWithin(0, inputLength, inputLength + historyLength);
      return outputView;
    },
    reset(): void {
      samples.fill(0);
      nextTime = 0;
    },
  };
}

/** Copies the input into a reused buffer: equal rates, kept so callers need no special case. */
function createCopier(): Resampler {
  let buffer = new Int16Array(0);
  let view = buffer;
  return {
    delaySamples: 0,
    process(input: Int16Array): Int16Array {
      const length = input.length;
      if (buffer.length < length) {
        buffer = new Int16Array(length);
        view = buffer;
      }
      if (view.length !== length) view = buffer.subarray(0, length);
      view.set(input);
      return view;
    },
    reset(): void {},
  };
}

/**
 * Creates a streaming resampler from `fromRate` to `toRate` (8000, 16000 or 24000 Hz; equal
 * rates copy). Passband flat within 0.01 dB to 3.4 kHz (6 kHz between 16 and 24 kHz); images
 * and aliases of the passband at least 70 dB down (input from 4 to 4.6 kHz, in the transition
 * band, folds into 3.4 to 4 kHz less attenuated when downsampling to 8 kHz); linear phase with
 * a delay of `delaySamples`: 2 ms (0.625 ms between 16 and 24 kHz). When upsampling, every
 * input sample reappears exactly in the output.
 *
 * Throws a `RangeError` for other rates: a configuration mistake, not bad input.
 * @param fromRate sample rate of the input, in Hz
 * @param toRate sample rate of the output, in Hz
 */
export function createResampler(fromRate: SampleRateHz, toRate: SampleRateHz): Resampler {
  for (const rate of [fromRate, toRate]) {
    if (rate !== 8000 && rate !== 16000 && rate !== 24000) {
      throw new RangeError(
        `Cannot create resampler: unsupported rate ${rate} Hz (use 8000, 16000 or 24000)`,
      );
    }
  }
  if (fromRate === toRate) return createCopier();
  const divisor = greatestCommonDivisor(fromRate, toRate);
  const upFactor = toRate / divisor;
  const downFactor = fromRate / divisor;
  const zeroSpacing = Math.max(upFactor, downFactor);
  const spec = Math.min(fromRate, toRate) === 16000
    ? WIDEBAND_THIRD_BAND
    : zeroSpacing === 2
    ? TELEPHONE_HALF_BAND
    : TELEPHONE_THIRD_BAND;
  const prototype = designLowpass(spec, zeroSpacing);
  let kernel: Kernel;
  if (downFactor === 1) kernel = createUpsamplingKernel(prototype, upFactor as 2 | 3);
  else if (upFactor === 1) kernel = createDownsamplingKernel(prototype, downFactor as 2 | 3);
  else if (upFactor === 2) kernel = createTwoThirdsKernel(prototype);
  else kernel = createDirectKernel(prototype, upFactor, downFactor);
  // The prototype's centre tap, converted from intermediate to output samples.
  return createStreamingResampler(kernel, spec.halfLength / downFactor);
}
