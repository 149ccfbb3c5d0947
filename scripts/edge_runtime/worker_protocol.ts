/**
 * Messages between the edge-runtime supervisor (main thread) and a user worker
 * (`worker_main.ts`, its own thread), sent with `postMessage`.
 * @module
 */
import type { BeforeunloadReason } from "./limits.ts";

/** What a worker runs: a module exporting a handler factory, and what to build it from. */
export interface WorkerSpec {
  /** A name for logs, e.g. `voice-stream`. */
  readonly name: string;
  /** Absolute URL of the module (e.g. `new URL("./app.ts", import.meta.url).href`). */
  readonly moduleUrl: string;
  /**
   * The export called as `factory(env, args, { logSink })`; it returns a `Deno.serve` handler
   * whose log lines go to `logSink`.
   */
  readonly exportName: string;
  /** The environment the handler is built from. */
  readonly env: Record<string, string>;
  /** Extra structured-clonable arguments of the factory. */
  readonly args?: unknown;
}

/** Supervisor to worker. */
export type ToWorkerMessage =
  | { readonly type: "start"; readonly spec: WorkerSpec }
  | { readonly type: "beforeunload"; readonly reason: BeforeunloadReason }
  /** Asks for the number of pending `EdgeRuntime.waitUntil` promises. */
  | { readonly type: "background_query" };

/** Worker to supervisor. */
export type FromWorkerMessage =
  /** First message: the worker's thread id (`/proc/thread-self/stat` field 1). */
  | { readonly type: "thread"; readonly tid: number }
  /** The handler is built and served on `port` (loopback). */
  | { readonly type: "ready"; readonly port: number }
  | { readonly type: "boot_failed"; readonly error: string }
  /** Pending `EdgeRuntime.waitUntil` promises, on every change and on `background_query`. */
  | { readonly type: "background"; readonly pending: number }
  /** The `beforeunload` listeners ran. */
  | { readonly type: "beforeunload_done"; readonly reason: BeforeunloadReason }
  /** A log line of the function, for the supervisor's log sink (one JSON object). */
  | { readonly type: "log"; readonly line: string };
