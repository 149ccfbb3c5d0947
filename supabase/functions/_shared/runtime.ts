/**
 * Edge-runtime glue shared by the three functions: `EdgeRuntime.waitUntil` where it exists, and
 * the boot guard that turns a bad configuration into a logged, explained failure per request.
 * @module
 */
import { ConfigError } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";

/** A fetch-style request handler, as `Deno.serve` takes it. */
export type Handler = (req: Request) => Response | Promise<Response>;

interface EdgeRuntimeGlobal {
  waitUntil(promise: Promise<unknown>): void;
}

/**
 * Keeps the worker alive until `promise` settles: `EdgeRuntime.waitUntil` on Supabase, a tracked
 * promise elsewhere. Rejections are logged, never thrown.
 */
export function createWaitUntil(log: Logger): (promise: Promise<unknown>) => void {
  const edge = (globalThis as { EdgeRuntime?: EdgeRuntimeGlobal }).EdgeRuntime;
  return (promise) => {
    const guarded = promise.catch((error) => log.error("background_task_failed", { error }));
    if (edge && typeof edge.waitUntil === "function") edge.waitUntil(guarded);
  };
}

/**
 * Builds a handler, or, when the configuration is invalid, a handler that logs the one clear
 * configuration error on every request and answers with `onConfigError` (503 by default).
 */
export function bootHandler(
  fn: string,
  build: () => Handler,
  onConfigError: () => Response = () => new Response("Service misconfigured", { status: 503 }),
): Handler {
  try {
    return build();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    const log = createLogger(fn);
    log.error("config_invalid", { msg: error.message, variables: error.variables });
    return () => {
      log.error("config_invalid", { msg: error.message, variables: error.variables });
      return onConfigError();
    };
  }
}

/**
 * A value built on first use: functions boot without touching the network, and a store that
 * fails to connect fails the request that needed it, not the worker's boot.
 */
export function lazy<T>(build: () => T): () => T {
  let value: { built: T } | null = null;
  return () => {
    if (!value) value = { built: build() };
    return value.built;
  };
}
