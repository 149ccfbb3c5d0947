/**
 * The CPU a stream's handover budget is checked against: the CPU the platform counts. Supabase's
 * edge runtime charges a worker for its thread's whole CPU time (a per-thread timer,
 * `CLOCK_THREAD_CPUTIME_ID`), waking up for every socket message included, not only our handlers.
 *
 * - `thread`: the worker thread's own CPU time from `/proc/thread-self/stat` (Linux), read at most
 *   every few messages. Used when the code runs in a worker (as on the edge runtime, one worker
 *   per request) and the file is readable; that is the platform's own count.
 * - `estimate`: handler time plus a calibrated cost per message received, for runtimes where the
 *   thread's CPU cannot be read (or a process shared by many calls, where the thread's time is
 *   everyone's). The constant is measured on these machines so that it never undercounts
 *   (docs/benchmarks.md, "Stream CPU").
 * @module
 */

/** How a stream measures its CPU. */
export type CpuMeterKind = "thread" | "estimate";

/** `STREAM_CPU_METER`: `auto` picks `thread` inside a worker when it is readable. */
export type CpuMeterMode = "auto" | CpuMeterKind;

/**
 * CPU charged per message received, on top of the handlers' own time: waking the event loop for
 * one message costs 150-190 µs of thread CPU when messages arrive one at a time (one call per
 * worker), measured on these machines; 0.5 ms keeps the estimate above the measured thread time.
 */
export const ESTIMATED_WAKE_MS_PER_MESSAGE = 0.5;

/** The thread meter rereads `/proc` once per this many messages (about twice a second). */
export const THREAD_READ_EVERY_MESSAGES = 25;

/** Linux reports `/proc` CPU times in USER_HZ ticks, fixed at 100 per second. */
const PROC_TICKS_PER_SECOND = 100;

/** What a stream's budget is checked against. */
export interface CpuMeter {
  readonly kind: CpuMeterKind;
  /** One message handled, and its handler's time in ms. */
  charge(handlerMs: number): void;
  /** The CPU the platform counts so far, ms: the worker thread's, or the estimate of it. */
  usedMs(): number;
  /** The estimate, whatever the kind (logged beside the thread's time to check the constant). */
  estimatedMs(): number;
}

/** Reads a thread's CPU time in ms, or null when it cannot be read. */
export type ThreadCpuReader = () => number | null;

/**
 * The calling thread's CPU time (user + system) in ms from `/proc/thread-self/stat`; null where
 * there is no such file or no permission to read it (hosted runtimes may refuse). Never throws.
 */
export function readThreadCpuMs(): number | null {
  try {
    return parseProcStatCpuMs(Deno.readTextFileSync("/proc/thread-self/stat"));
  } catch {
    return null;
  }
}

/**
 * utime + stime of a `/proc/<pid>/task/<tid>/stat` line, in ms; null when it is not one. The
 * command name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
 */
export function parseProcStatCpuMs(stat: string): number | null {
  const close = stat.lastIndexOf(")");
  if (close === -1) return null;
  // After ") ": field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
  const fields = stat.slice(close + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
  return ((utime + stime) * 1000) / PROC_TICKS_PER_SECOND;
}

/** True where this code runs in a worker (a Web Worker, or the edge runtime's user worker). */
export function runsInWorker(): boolean {
  const scope = (globalThis as { WorkerGlobalScope?: abstract new () => unknown })
    .WorkerGlobalScope;
  return typeof scope === "function" && globalThis instanceof scope ||
    typeof (globalThis as { EdgeRuntime?: unknown }).EdgeRuntime !== "undefined";
}

/** Options of `createCpuMeter`. */
export interface CpuMeterOptions {
  mode?: CpuMeterMode;
  /** Defaults to `readThreadCpuMs`; tests pass their own. */
  readThreadCpu?: ThreadCpuReader;
  /** Defaults to `runsInWorker()`. */
  inWorker?: boolean;
}

/** The meter a stream uses: see the module doc for the choice. */
export function createCpuMeter(options: CpuMeterOptions = {}): CpuMeter {
  const mode = options.mode ?? "auto";
  const read = options.readThreadCpu ?? readThreadCpuMs;
  const wantsThread = mode === "thread" ||
    (mode === "auto" && (options.inWorker ?? runsInWorker()));
  const first = wantsThread ? read() : null;
  let messages = 0;
  let handlerMs = 0;
  const estimatedMs = () => handlerMs + messages * ESTIMATED_WAKE_MS_PER_MESSAGE;
  if (first === null) {
    return {
      kind: "estimate",
      charge(ms) {
        messages++;
        handlerMs += ms;
      },
      usedMs: estimatedMs,
      estimatedMs,
    };
  }
  let threadMs = first;
  return {
    kind: "thread",
    charge(ms) {
      messages++;
      handlerMs += ms;
      if (messages % THREAD_READ_EVERY_MESSAGES === 0) threadMs = read() ?? threadMs;
    },
    usedMs: () => threadMs,
    estimatedMs,
  };
}
