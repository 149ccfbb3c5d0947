/**
 * The whole call path on loopback for reliability tests, like `e2e_stack.ts` but with the hooks
 * fault tests need: the store the three functions share can be wrapped (outages), the Twilio REST
 * double takes its own options (callback retry pacing), and every request to the functions is
 * counted by status, with anything a handler throws kept (a crashed worker on Supabase).
 * Speaks HTTP and WebSocket to the functions as Supabase's local stack serves them.
 * @module
 */
import { createTestDatabase, type TestDatabase } from "./test_db.ts";
import { createFunctionsRouter, type FunctionHandlers } from "../../scripts/functions_router.ts";
import { createFrontdoorApp } from "../../supabase/functions/voice-frontdoor/app.ts";
import { createStreamApp } from "../../supabase/functions/voice-stream/app.ts";
import { createVoiceActionApp } from "../../supabase/functions/voice-action/app.ts";
import { createStore } from "../../supabase/functions/_shared/store/create_store.ts";
import type { Store } from "../../supabase/functions/_shared/store/types.ts";
import {
  type OpenAIRealtimeDouble,
  type OpenAIRealtimeDoubleOptions,
  startOpenAIRealtimeDouble,
} from "../doubles/openai_realtime_double.ts";
import type { TwilioRestDouble, TwilioRestDoubleOptions } from "../doubles/twilio_rest_double.ts";
import {
  type CallResult,
  type PlaceCallOptions,
  startCall,
  type TwilioCallHandle,
} from "../doubles/twilio_call_double.ts";
import { localCallOptions, localFunctionsEnv, startLocalRestDouble } from "./e2e_stack.ts";

/** Options of `startReliabilityStack`. */
export interface ReliabilityStackOptions {
  openai?: OpenAIRealtimeDoubleOptions;
  /** Function settings over the stack's defaults. */
  env?: Record<string, string>;
  /** Pool size of the shared store. Defaults to 10. */
  maxDbConnections?: number;
  /** Wraps the shared store (e.g. `createFaultyStore`); the wrapper's `close()` runs at stop. */
  wrapStore?: (store: Store) => Store;
  /** REST double options over the stack's defaults. */
  rest?: Partial<TwilioRestDoubleOptions>;
  /** Called with every function log line as it is written. */
  onLog?: (line: string) => void;
}

/** One request a function answered (or threw on). */
export interface FunctionRequestRecord {
  fn: string;
  method: string;
  /** The query string as received (`?route=...`), without the function path. */
  query: string;
  status: number | null;
  /** Set when the handler threw or rejected instead of answering. */
  error: unknown;
}

/** A running reliability stack. */
export interface ReliabilityStack {
  readonly db: TestDatabase;
  readonly openai: OpenAIRealtimeDouble;
  readonly rest: TwilioRestDouble;
  /** `http://127.0.0.1:<port>/functions/v1`, also the functions' public base. */
  readonly functionsUrl: string;
  /** The settings the functions were built from (secrets included, for log scans). */
  readonly env: Readonly<Record<string, string>>;
  /** The store the functions use (the wrapper, when `wrapStore` was given). */
  readonly store: Store;
  /** Every JSON log line of the three functions. */
  readonly logLines: string[];
  /** Every request the functions received. */
  readonly requests: FunctionRequestRecord[];
  /** Parsed log lines, optionally of one event. */
  logs(event?: string): Record<string, unknown>[];
  /** Starts a call from `from` to the demo org, paced in real time unless told otherwise. */
  startCall(options: Partial<PlaceCallOptions> & { from: string }): TwilioCallHandle;
  placeCall(options: Partial<PlaceCallOptions> & { from: string }): Promise<CallResult>;
  stop(): Promise<void>;
}

/** Starts a test database, the three functions and the doubles. */
export async function startReliabilityStack(
  options: ReliabilityStackOptions = {},
): Promise<ReliabilityStack> {
  const db = await createTestDatabase({ seed: true });
  const openai = await startOpenAIRealtimeDouble(options.openai ?? {});
  const baseStore = createStore({
    storeAdapter: "postgres",
    databaseUrl: db.url,
    postgres: { maxConnections: options.maxDbConnections ?? 10 },
  });
  const store = options.wrapStore ? options.wrapStore(baseStore) : baseStore;
  const logLines: string[] = [];
  const requests: FunctionRequestRecord[] = [];
  const handlers: FunctionHandlers = {};
  const router = createFunctionsRouter(handlers);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const record: FunctionRequestRecord = {
      fn: url.pathname.split("/")[3] ?? "",
      method: req.method,
      query: url.search,
      status: null,
      error: null,
    };
    requests.push(record);
    try {
      const response = await router(req);
      record.status = response.status;
      return response;
    } catch (error) {
      record.error = error;
      throw error;
    }
  });
  const functionsUrl = `http://127.0.0.1:${server.addr.port}/functions/v1`;
  const rest = startLocalRestDouble(options.rest);
  const env = localFunctionsEnv({
    functionsUrl,
    databaseUrl: db.url,
    rest,
    openai,
    env: options.env,
  });
  const logSink = (line: string) => {
    logLines.push(line);
    options.onLog?.(line);
  };
  const overrides = { logSink, store };
  handlers["voice-frontdoor"] = createFrontdoorApp(env, overrides);
  handlers["voice-stream"] = createStreamApp(env, overrides);
  handlers["voice-action"] = createVoiceActionApp(env, overrides);

  const callOptions = (overrides: Partial<PlaceCallOptions> & { from: string }) =>
    localCallOptions(functionsUrl, rest, { pacing: "realtime", ...overrides });
  return {
    db,
    openai,
    rest,
    functionsUrl,
    env,
    store,
    logLines,
    requests,
    logs(event) {
      const parsed = logLines.map((line) => JSON.parse(line) as Record<string, unknown>);
      return event ? parsed.filter((entry) => entry.event === event) : parsed;
    },
    startCall: (overrides) => startCall(callOptions(overrides)),
    placeCall: (overrides) => startCall(callOptions(overrides)).result,
    async stop() {
      await rest.settled();
      await openai.close();
      await rest.close();
      await server.shutdown();
      if (store !== baseStore) await store.close();
      await baseStore.close();
      await db.drop();
    },
  };
}
