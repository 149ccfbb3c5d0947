/**
 * Linux `/proc` thread statistics: a thread's id and its CPU time, as the edge runtime's
 * per-thread CPU timer (`CLOCK_THREAD_CPUTIME_ID`) counts it.
 * @module
 */
import { parseProcStatCpuMs } from "../../supabase/functions/voice-stream/cpu_meter.ts";

/**
 * CPU time (user + system) of one thread of this process, ms, or `null` once it has exited. Parsed
 * as voice-stream's CPU meter parses its own thread's line.
 * @param tid the thread's id
 */
export function readThreadCpuMs(tid: number): number | null {
  try {
    return parseProcStatCpuMs(Deno.readTextFileSync(`/proc/self/task/${tid}/stat`));
  } catch {
    return null;
  }
}

/** The calling thread's id (`/proc/thread-self/stat` field 1). */
export function currentThreadId(): number {
  const stat = Deno.readTextFileSync("/proc/thread-self/stat");
  return Number(stat.slice(0, stat.indexOf(" ")));
}
