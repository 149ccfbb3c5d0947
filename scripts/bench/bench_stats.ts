/**
 * Small statistics helpers shared by the scripts under `scripts/bench/` (percentiles, medians,
 * CPU time of a process from Linux's `/proc/<pid>/stat`, fixed-width tables). No protocol.
 * @module
 */

/** The value at `fraction` (0..1) of an ascending array (nearest rank); NaN when empty. */
export function percentile(sorted: ArrayLike<number>, fraction: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[index];
}

/** Sorts a copy ascending (numeric). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(values as ArrayLike<number>);
  out.sort();
  return out;
}

/** The median of some numbers; NaN when empty. */
export function median(values: readonly number[]): number {
  const sorted = [...values].filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Summary of a sample of durations (ms). */
export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Summarizes durations in ms. */
export function summarize(samplesMs: ArrayLike<number>): LatencySummary {
  const sorted = sortedCopy(samplesMs);
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i];
  return {
    count: sorted.length,
    meanMs: sorted.length === 0 ? NaN : sum / sorted.length,
    p50Ms: percentile(sorted, 0.5),
    p95Ms: percentile(sorted, 0.95),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length === 0 ? NaN : sorted[sorted.length - 1],
  };
}

/** Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system, all threads) a process has used so far, in ms, from
 * `/proc/<pid>/stat` (10 ms resolution). Linux only.
 */
export function processCpuMs(pid: number | "self"): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The command name (field 2) may contain spaces; fields after its closing ")" are fixed.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 (utime) and 15 (stime), counted from 1, are at 11 and 12 after the name.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** The 1-minute load average, for the record. */
export function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/** Formats a number with `digits` decimals. */
export function fixed(value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

/** A Markdown table from rows of cells (first row is the header). */
export function markdownTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const line = (row: readonly string[]) =>
    `| ${row.map((cell, column) => cell.padEnd(widths[column])).join(" | ")} |`;
  return [
    line(rows[0]),
    `| ${widths.map((width) => "-".repeat(width)).join(" | ")} |`,
    ...rows.slice(1).map(line),
  ].join("\n");
}

/** Prints how late a 1 ms timer fires (the event loop's stalls) every 5 s, to stderr. */
export function sampleLoopLag(prefix: string): void {
  let lags: number[] = [];
  let expected = performance.now() + 1;
  // Unreferenced: the samplers never keep a process alive.
  Deno.unrefTimer(setInterval(() => {
    const now = performance.now();
    lags.push(now - expected);
    expected = now + 1;
  }, 1));
  Deno.unrefTimer(setInterval(() => {
    const sorted = lags.sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    console.error(
      `${prefix}loop lag ms: p50 ${at(0.5).toFixed(2)} p99 ${at(0.99).toFixed(2)} p999 ${
        at(0.999).toFixed(2)
      } max ${sorted.at(-1)!.toFixed(2)} over ${sorted.length}`,
    );
    lags = [];
  }, 5_000));
}

/** A growable Float64Array: windows hold tens of thousands of samples without boxing them. */
export class SampleBuffer {
  #values = new Float64Array(16_384);
  #length = 0;
  push(value: number): void {
    if (this.#length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#length++] = value;
  }
  clear(): void {
    this.#length = 0;
  }
  take(): Float64Array {
    return this.#values.slice(0, this.#length);
  }
}

/** Joins sample arrays (e.g. several threads'). */
export function concatSamples(arrays: Float64Array[]): Float64Array {
  const out = new Float64Array(arrays.reduce((sum, array) => sum + array.length, 0));
  let offset = 0;
  for (const array of arrays) {
    out.set(array, offset);
    offset += array.length;
  }
  return out;
}
