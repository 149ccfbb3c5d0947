/**
 * The three functions under the local edge runtime: `/functions/v1/<name>` (the local stack's
 * paths), each request in its own worker that imports the function's `app.ts` and builds the
 * handler from the stack's environment, behind the local stack's router (internal URL).
 * @module
 */
import { createFunctionsRouter, type FunctionHandlers } from "../functions_router.ts";
import type { LogSink } from "../../supabase/functions/_shared/log.ts";
import type { Handler } from "../../supabase/functions/_shared/runtime.ts";
import type { EdgeLimits } from "./limits.ts";
import { type EdgeSupervisor, startEdgeSupervisor } from "./supervisor.ts";

/** The functions served, and the builder each `app.ts` exports. */
const FUNCTION_APPS = {
  "voice-frontdoor": {
    url: new URL("../../supabase/functions/voice-frontdoor/app.ts", import.meta.url).href,
    exportName: "createFrontdoorApp",
  },
  "voice-stream": {
    url: new URL("../../supabase/functions/voice-stream/app.ts", import.meta.url).href,
    exportName: "createStreamApp",
  },
  "voice-action": {
    url: new URL("../../supabase/functions/voice-action/app.ts", import.meta.url).href,
    exportName: "createVoiceActionApp",
  },
} as const;

/** A function served under the edge runtime. */
export type EdgeFunctionName = keyof typeof FUNCTION_APPS;

/**
 * Runs in a worker: imports the function's `app.ts` and builds its handler from `env`, behind the
 * local stack's router so that the handler sees hosted Supabase's internal URL.
 * @param env the function's environment
 * @param args which function
 */
export async function createFunctionHandler(
  env: Record<string, string>,
  args: { name: EdgeFunctionName },
  overrides: { logSink?: LogSink } = {},
): Promise<Handler> {
  const app = FUNCTION_APPS[args.name];
  const module = await import(app.url) as Record<
    string,
    (env: Record<string, string>, overrides: { logSink?: LogSink }) => Handler
  >;
  const handlers: FunctionHandlers = { [args.name]: module[app.exportName](env, overrides) };
  return createFunctionsRouter(handlers);
}

/** Options of {@link startEdgeFunctions}. */
export interface EdgeFunctionsOptions {
  limits: EdgeLimits;
  /** Defaults to 0: a free port. */
  port?: number;
  hostname?: string;
  /** The functions' environment, read at each request (the stack sets it after listening). */
  env: () => Record<string, string>;
  /** Where the supervisor's log lines go. */
  logSink?: LogSink;
}

/**
 * Serves the three functions under the local edge runtime.
 * @param options limits, port and the functions' environment
 */
export function startEdgeFunctions(options: EdgeFunctionsOptions): EdgeSupervisor {
  return startEdgeSupervisor({
    limits: options.limits,
    port: options.port,
    hostname: options.hostname,
    logSink: options.logSink,
    route: (pathname) => {
      const name = /^\/functions\/v1\/([a-z0-9-]+)(\/.*)?$/.exec(pathname)?.[1];
      if (!name || !Object.hasOwn(FUNCTION_APPS, name)) return null;
      return {
        name,
        moduleUrl: new URL(import.meta.url).href,
        exportName: "createFunctionHandler",
        env: options.env(),
        args: { name },
      };
    },
  });
}
