/**
 * Builds voice-stream's handler from the environment: config, logger, store, Realtime connector,
 * voice-action client and the tool catalog. `index.ts` serves it on Supabase; `scripts/local_stack.ts`
 * serves the same handler locally.
 * @module
 */
import { type Env, functionUrl, loadConfig } from "../_shared/config.ts";
import { createLogger, type LogSink } from "../_shared/log.ts";
import { bootHandler, createWaitUntil, type Handler, lazy } from "../_shared/runtime.ts";
import { createStore } from "../_shared/store/create_store.ts";
import type { Store } from "../_shared/store/types.ts";
import { toolDefinitionsForRealtime } from "../_shared/tools/catalog.ts";
import type { RealtimeConnector } from "./bridge_deps.ts";
import { createStreamHandler } from "./handler.ts";
import { realtimeConnectorFor } from "./realtime_connector.ts";
import { createVoiceActionClient } from "./voice_action_client.ts";

/** Replaceable pieces for local runs (the demo captures logs). */
export interface StreamAppOverrides {
  logSink?: LogSink;
  /** A store shared with other functions (the local stack closes it). */
  store?: Store;
  connectRealtime?: RealtimeConnector;
  fetch?: typeof fetch;
}

/** voice-stream's handler for this environment. */
export function createStreamApp(
  env: Env,
  overrides: StreamAppOverrides = {},
): Handler {
  return bootHandler("voice-stream", () => {
    const config = loadConfig(env, { require: ["OPENAI_API_KEY"] });
    const log = createLogger("voice-stream", {
      level: config.logLevel,
      sink: overrides.logSink,
    });
    const store = lazy(() => overrides.store ?? createStore(config));
    const tools = toolDefinitionsForRealtime();
    return createStreamHandler({
      config,
      log,
      clock: Date.now,
      now: () => performance.now(),
      timers: {
        setTimeout: (callback, ms) => setTimeout(callback, ms),
        clearTimeout: (id) => clearTimeout(id as number),
      },
      store: {
        lookupCaller: (to, from) => store().lookupCaller(to, from),
        appendCallTurns: (callSid, turns) => store().appendCallTurns(callSid, turns),
        recordCallMetrics: (callSid, metrics) => store().recordCallMetrics(callSid, metrics),
        saveCallContinuation: (callSid, traceId, state) =>
          store().saveCallContinuation(callSid, traceId, state),
        saveCallCheckpoint: (callSid, traceId, state) =>
          store().saveCallCheckpoint(callSid, traceId, state),
        claimCallContinuation: (continuationId, callSid) =>
          store().claimCallContinuation(continuationId, callSid),
      },
      connectRealtime: overrides.connectRealtime ?? realtimeConnectorFor(config.realtimeSocket),
      voiceAction: createVoiceActionClient({
        url: functionUrl(config, "voice-action"),
        secret: config.internalSecret,
        timeoutMs: config.toolTimeoutMs,
        clock: Date.now,
        fetch: overrides.fetch,
      }),
      tools,
      waitUntil: createWaitUntil(log),
    });
  });
}
