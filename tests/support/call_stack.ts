/**
 * The whole call path on loopback, for end-to-end and reliability tests, the demo and the
 * benchmarks: a seeded database, the three functions served as Supabase's local stack serves them
 * (`scripts/local_stack.ts`, in this process or on the local edge runtime), the OpenAI Realtime
 * and Twilio REST doubles, and calls placed through the Twilio call double. One builder, so every
 * test drives the same stack; fault tests add their hooks through options (a wrapped store, REST
 * double pacing) and read every request the functions answered.
 * @module
 */
import { createTestDatabase, type TestDatabase } from "./test_db.ts";
import {
  LOCAL_TWILIO_ACCOUNT_SID,
  LOCAL_TWILIO_AUTH_TOKEN,
  type LocalStack,
  startLocalStack,
} from "../../scripts/local_stack.ts";
import type { EdgeLimits } from "../../scripts/edge_runtime/limits.ts";
import type { Store } from "../../supabase/functions/_shared/store/types.ts";
import type { Handler } from "../../supabase/functions/_shared/runtime.ts";
import {
  type OpenAIRealtimeDouble,
  type OpenAIRealtimeDoubleOptions,
  startOpenAIRealtimeDouble,
} from "../doubles/openai_realtime_double.ts";
import {
  startTwilioRestDouble,
  type TwilioRestDouble,
  type TwilioRestDoubleOptions,
} from "../doubles/twilio_rest_double.ts";
import {
  type CallResult,
  type PlaceCallOptions,
  startCall,
  type TwilioCallHandle,
} from "../doubles/twilio_call_double.ts";

/** The seed's demo org number and its known client (supabase/seed.sql). */
export const DEMO_ORG_NUMBER = "+15550100000";
export const JANE_DOE_NUMBER = "+15551230001";
export const DEMO_TRANSFER_NUMBER = "+15550100999";

/** Options of `startCallStack`. */
export interface CallStackOptions {
  openai?: OpenAIRealtimeDoubleOptions;
  /** Function settings over the stack's defaults. */
  env?: Record<string, string>;
  /** Pool size of the functions' shared store. Defaults to 10. */
  maxDbConnections?: number;
  /** Wraps the shared store (e.g. `createFaultyStore`); the wrapper's `close()` runs at stop. */
  wrapStore?: (store: Store) => Store;
  /** REST double options over the stack's defaults. */
  rest?: Partial<TwilioRestDoubleOptions>;
  /** Serve each function request in a worker under these limits (`scripts/edge_runtime/`). */
  edgeRuntime?: EdgeLimits;
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

/** A running call stack; `db` is null when the stack runs on a given `databaseUrl`. */
export interface CallStack<Db extends TestDatabase | null = TestDatabase> extends LocalStack {
  readonly db: Db;
  readonly openai: OpenAIRealtimeDouble;
  readonly rest: TwilioRestDouble;
  /** Every JSON log line: the functions' and, under `edgeRuntime`, the runtime's. */
  readonly logLines: string[];
  /** Every request the functions received (not under `edgeRuntime`, where reading it throws). */
  readonly requests: FunctionRequestRecord[];
  /** Parsed log lines, optionally of one event and of one `fn` (`"edge-runtime"` included). */
  logs(event?: string, fn?: string): Record<string, unknown>[];
  /** Starts a call from `from` to the demo org through the Twilio call double. */
  startCall(options: Partial<PlaceCallOptions> & { from: string }): TwilioCallHandle;
  placeCall(options: Partial<PlaceCallOptions> & { from: string }): Promise<CallResult>;
  stop(): Promise<void>;
}

/** The Twilio REST double as the local stacks use it: our account, quick SMS status callbacks. */
export function startLocalRestDouble(
  overrides: Partial<TwilioRestDoubleOptions> = {},
): TwilioRestDouble {
  return startTwilioRestDouble({
    accountSid: LOCAL_TWILIO_ACCOUNT_SID,
    authToken: LOCAL_TWILIO_AUTH_TOKEN,
    statusCallbackEvents: ["completed"],
    smsSentDelayMs: 5,
    smsDeliveredDelayMs: 5,
    ...overrides,
  });
}

/** Settings that point the functions at the doubles. */
export function doublesEnv(
  rest: TwilioRestDouble,
  openai: OpenAIRealtimeDouble,
): Record<string, string> {
  return {
    TWILIO_API_BASE_URL: rest.baseUrl,
    // The double accepts only its own key.
    OPENAI_API_KEY: openai.apiKey,
    OPENAI_REALTIME_URL: openai.url,
  };
}

/**
 * A call from the Twilio call double to the demo org through functions served at
 * `functionsUrl` (`.../functions/v1`), with the REST double's status callbacks.
 */
export function localCallOptions(
  functionsUrl: string,
  rest: TwilioRestDouble,
  overrides: Partial<PlaceCallOptions> & { from: string },
): PlaceCallOptions {
  return {
    frontdoorUrl: `${functionsUrl}/voice-frontdoor`,
    authToken: LOCAL_TWILIO_AUTH_TOKEN,
    accountSid: LOCAL_TWILIO_ACCOUNT_SID,
    to: DEMO_ORG_NUMBER,
    pacing: "fast",
    rewriteStreamUrl: (url) => url.replace(/^wss:/, "ws:"),
    restDouble: rest,
    statusCallbackUrl: `${functionsUrl}/voice-action?route=call-status#rc=3&rp=all`,
    ...overrides,
  };
}

/** Records each request `handler` answers (or throws on) in `requests`. */
function recordingRequests(handler: Handler, requests: FunctionRequestRecord[]): Handler {
  return async (req) => {
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
      const response = await handler(req);
      record.status = response.status;
      return response;
    } catch (error) {
      record.error = error;
      throw error;
    }
  };
}

/**
 * Starts a seeded test database, the functions and the doubles; with `databaseUrl` (the demo),
 * the functions use that database instead, prepared by the stack and kept at stop, and `db` is
 * null.
 */
export function startCallStack(
  options: CallStackOptions & { databaseUrl: string | undefined },
): Promise<CallStack<TestDatabase | null>>;
export function startCallStack(options?: CallStackOptions): Promise<CallStack>;
export async function startCallStack(
  options: CallStackOptions & { databaseUrl?: string } = {},
): Promise<CallStack<TestDatabase | null>> {
  const db = options.databaseUrl ? null : await createTestDatabase({ seed: true });
  const openai = await startOpenAIRealtimeDouble(options.openai ?? {});
  const rest = startLocalRestDouble(options.rest);
  const logLines: string[] = [];
  const requests: FunctionRequestRecord[] = [];
  let stack: LocalStack;
  try {
    stack = await startLocalStack({
      databaseUrl: options.databaseUrl ?? db!.url,
      skipPrepare: db !== null,
      maxDbConnections: options.maxDbConnections,
      port: 0,
      edgeRuntime: options.edgeRuntime,
      wrapStore: options.wrapStore,
      wrapHandler: options.edgeRuntime
        ? undefined
        : (handler) => recordingRequests(handler, requests),
      env: {
        ...doublesEnv(rest, openai),
        // Workers pay for log lines out of the CPU their limits count; in one process the debug
        // events are part of what tests read.
        LOG_LEVEL: options.edgeRuntime ? "info" : "debug",
        // The embedded PGlite answers its first queries slowly on a busy machine, and a worker's
        // boot is part of each request on the edge runtime: the lookup must not miss the greeting.
        // The budget's own behaviour is tested with it set low and a store that never answers.
        LOOKUP_BUDGET_MS: "2000",
        ...options.env,
      },
      logSink: (line) => logLines.push(line),
    });
  } catch (error) {
    await rest.close();
    await openai.close();
    await db?.drop();
    throw error;
  }
  const callOptions = (overrides: Partial<PlaceCallOptions> & { from: string }) =>
    localCallOptions(stack.functionsUrl, rest, overrides);
  return {
    functionsUrl: stack.functionsUrl,
    databaseUrl: stack.databaseUrl,
    embedded: stack.embedded,
    env: stack.env,
    edgeRuntime: stack.edgeRuntime,
    db,
    openai,
    rest,
    logLines,
    get requests() {
      if (options.edgeRuntime) {
        throw new Error("Cannot list requests on the edge runtime: its proxy sees only bytes");
      }
      return requests;
    },
    logs(event, fn) {
      return logLines.map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((entry) =>
          (event === undefined || entry.event === event) && (fn === undefined || entry.fn === fn)
        );
    },
    startCall: (overrides) => startCall(callOptions(overrides)),
    placeCall: (overrides) => startCall(callOptions(overrides)).result,
    async stop() {
      await rest.settled();
      await openai.close();
      await rest.close();
      await stack.stop();
      await db?.drop();
    },
  };
}
