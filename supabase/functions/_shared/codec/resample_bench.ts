/**
 * Benchmarks of the streaming resampler, one 20 ms frame per iteration: x real time is
 * 20 ms / (time per frame). The baseline of each group is the cheap conversion protocols.md §5
 * warns about (linear interpolation up, dropping samples down), to show what quality costs.
 * Run: `deno bench -A supabase/functions/_shared/codec/resample_bench.ts`
 * @module
 */
import { createResampler, type SampleRateHz } from "./resample.ts";

const FRAME_MS = 20;
const PAIRS: [SampleRateHz, SampleRateHz][] = [
  [8000, 24000],
  [24000, 8000],
  [8000, 16000],
  [16000, 8000],
  [16000, 24000],
  [24000, 16000],
];

function frameOf(rateHz: number): Int16Array {
  const samples = new Int16Array((rateHz * FRAME_MS) / 1000);
  for (let n = 0; n < samples.length; n++) {
    samples[n] = Math.round(12000 * Math.sin(n * 0.21) + 6000 * Math.sin(n * 1.3));
  }
  return samples;
}

/** Linear interpolation between neighbours, or nearest sample when downsampling: poor quality. */
function createNaiveConverter(fromRate: number, toRate: number): (input: Int16Array) => Int16Array {
  const ratio = fromRate / toRate;
  let previous = 0;
  let output = new Int16Array(0);
  return (input) => {
    const length = Math.floor((input.length * toRate) / fromRate);
    if (output.length !== length) output = new Int16Array(length);
    for (let k = 0; k < length; k++) {
      const position = k * ratio;
      const index = Math.floor(position);
      const fraction = position - index;
      const before = index === 0 ? previous : input[index - 1];
      const after = input[index];
      output[k] = fraction === 0 ? after : Math.round(before + (after - before) * fraction);
    }
    previous = input[input.length - 1];
    return output;
  };
}

for (const [from, to] of PAIRS) {
  const group = `${from / 1000}k -> ${to / 1000}k, 20 ms frame`;
  const frame = frameOf(from);
  const naive = createNaiveConverter(from, to);
  Deno.bench("linear interpolation / drop", { group, baseline: true }, () => {
    naive(frame);
  });
  const resampler = createResampler(from, to);
  Deno.bench("createResampler().process", { group }, () => {
    resampler.process(frame);
  });
}
