/**
 * Builds voice-frontdoor's handler from the environment: config, logger, store, clock.
 * `index.ts` serves it on Supabase; `scripts/local_stack.ts` serves the same handler locally.
 * @module
 */
import { type Env, loadConfig } from "../_shared/config.ts";
import { createLogger, type LogSink } from "../_shared/log.ts";
import { bootHandler, createWaitUntil, type Handler, lazy } from "../_shared/runtime.ts";
import { createStore } from "../_shared/store/create_store.ts";
import type { Store } from "../_shared/store/types.ts";
import { APOLOGY_TWIML, createFrontdoorHandler } from "./handler.ts";

/** Replaceable pieces for local runs (the demo captures logs). */
export interface FrontdoorAppOverrides {
  logSink?: LogSink;
  /** A store shared with other functions (the local stack closes it). */
  store?: Store;
}

/** voice-frontdoor's handler for this environment. */
export function createFrontdoorApp(
  env: Env,
  overrides: FrontdoorAppOverrides = {},
): Handler {
  return bootHandler(
    "voice-frontdoor",
    () => {
      const config = loadConfig(env);
      const log = createLogger("voice-frontdoor", {
        level: config.logLevel,
        sink: overrides.logSink,
      });
      const store = lazy(() => overrides.store ?? createStore(config));
      return createFrontdoorHandler({
        config,
        log,
        clock: Date.now,
        newTraceId: () => crypto.randomUUID(),
        recordCallEvent: (event) => store().recordCallEvent(event),
        waitUntil: createWaitUntil(log),
      });
    },
    () =>
      new Response(APOLOGY_TWIML, {
        status: 200,
        headers: { "content-type": "text/xml; charset=utf-8" },
      }),
  );
}
