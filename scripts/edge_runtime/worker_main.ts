/**
 * A user worker of the local edge runtime (a Deno `Worker`, its own thread): reports its thread id,
 * builds one function handler from the spec the supervisor sends, serves it with `Deno.serve` on
 * an ephemeral loopback port, and dispatches `beforeunload` (`CustomEvent`, `ev.detail.reason`) on
 * `globalThis` when the supervisor says so, as Supabase's edge runtime does.
 *
 * It also defines `EdgeRuntime.waitUntil`, which the hosted runtime provides: the supervisor keeps
 * the worker until every promise passed to it settles (then drops it early).
 * @module
 */
import { currentThreadId } from "./thread_stat.ts";
import type { FromWorkerMessage, ToWorkerMessage, WorkerSpec } from "./worker_protocol.ts";

interface WorkerScope {
  postMessage(message: FromWorkerMessage): void;
  onmessage: ((event: MessageEvent<ToWorkerMessage>) => void) | null;
}

const scope = globalThis as unknown as WorkerScope;

// A sync read runs on this thread, so `thread-self` is the worker's own.
scope.postMessage({ type: "thread", tid: currentThreadId() });

let pendingBackground = 0;
(globalThis as { EdgeRuntime?: unknown }).EdgeRuntime = {
  waitUntil(promise: Promise<unknown>): void {
    pendingBackground += 1;
    scope.postMessage({ type: "background", pending: pendingBackground });
    const settle = () => {
      pendingBackground -= 1;
      scope.postMessage({ type: "background", pending: pendingBackground });
    };
    Promise.resolve(promise).then(settle, settle);
  },
};

async function boot(spec: WorkerSpec): Promise<void> {
  try {
    const module = await import(spec.moduleUrl) as Record<string, unknown>;
    const factory = module[spec.exportName];
    if (typeof factory !== "function") {
      throw new Error(`Cannot boot worker: ${spec.moduleUrl} has no function ${spec.exportName}`);
    }
    // The function's log lines reach the supervisor's sink, as the platform collects them.
    const logSink = (line: string) => scope.postMessage({ type: "log", line });
    const handler = await factory(spec.env, spec.args, { logSink }) as Deno.ServeHandler;
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, handler);
    scope.postMessage({ type: "ready", port: server.addr.port });
  } catch (error) {
    scope.postMessage({
      type: "boot_failed",
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
  }
}

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.type) {
    case "start":
      void boot(message.spec);
      break;
    case "beforeunload":
      globalThis.dispatchEvent(
        new CustomEvent("beforeunload", { detail: { reason: message.reason } }),
      );
      scope.postMessage({ type: "beforeunload_done", reason: message.reason });
      break;
    case "background_query":
      scope.postMessage({ type: "background", pending: pendingBackground });
      break;
  }
};
