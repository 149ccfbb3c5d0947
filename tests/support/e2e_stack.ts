/**
 * The whole call path on loopback for end-to-end tests and the demo: a prepared database, the
 * three functions served like Supabase's local stack, the OpenAI Realtime double and the Twilio
 * REST double, plus `placeCall` through the Twilio call double.
 * @module
 */
import { createTestDatabase, type TestDatabase } from "./test_db.ts";
import {
  LOCAL_TWILIO_ACCOUNT_SID,
  LOCAL_TWILIO_AUTH_TOKEN,
  type LocalStack,
  startLocalStack,
} from "../../scripts/local_stack.ts";
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

/** Options of `startE2EStack`. */
export interface E2EStackOptions {
  openai?: OpenAIRealtimeDoubleOptions;
  /** Extra function settings. */
  env?: Record<string, string>;
  /** Use this database instead of creating one (the demo). */
  databaseUrl?: string;
  /** Connections of the functions' shared store (see `startLocalStack`). */
  maxDbConnections?: number;
  /** Also print function log lines as they come. */
  echoLogs?: (line: string) => void;
}

/** A running end-to-end stack. */
export interface E2EStack {
  readonly stack: LocalStack;
  readonly openai: OpenAIRealtimeDouble;
  readonly rest: TwilioRestDouble;
  readonly db: TestDatabase | null;
  /** Every JSON log line of the three functions. */
  readonly logLines: string[];
  /** Parsed log lines, optionally of one event. */
  logs(event?: string): Record<string, unknown>[];
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

/**
 * Settings of the three functions served in-process at `functionsUrl` against the doubles, with a
 * fresh internal secret; `env` overrides them.
 */
export function localFunctionsEnv(options: {
  functionsUrl: string;
  databaseUrl: string;
  rest: TwilioRestDouble;
  openai: OpenAIRealtimeDouble;
  env?: Record<string, string>;
}): Record<string, string> {
  return {
    PUBLIC_FUNCTIONS_URL: options.functionsUrl,
    DATABASE_URL: options.databaseUrl,
    STORE_ADAPTER: "postgres",
    TWILIO_ACCOUNT_SID: LOCAL_TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: LOCAL_TWILIO_AUTH_TOKEN,
    TWILIO_API_BASE_URL: options.rest.baseUrl,
    // The double accepts only its own key.
    OPENAI_API_KEY: options.openai.apiKey,
    OPENAI_REALTIME_URL: options.openai.url,
    VOICE_INTERNAL_SECRET: crypto.randomUUID() + crypto.randomUUID(),
    LOG_LEVEL: "debug",
    ...options.env,
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

/** Starts database, functions and doubles. */
export async function startE2EStack(options: E2EStackOptions = {}): Promise<E2EStack> {
  const db = options.databaseUrl ? null : await createTestDatabase({ seed: true });
  const databaseUrl = options.databaseUrl ?? db!.url;
  const openai = await startOpenAIRealtimeDouble(options.openai ?? {});
  const logLines: string[] = [];
  let stack: LocalStack | null = null;
  let rest: TwilioRestDouble | null = null;
  try {
    // The REST double needs the functions' URL for status callbacks; the stack needs the
    // double's URL: start the stack on a free port with a placeholder, then point it at the double.
    rest = startLocalRestDouble();
    stack = await startLocalStack({
      databaseUrl,
      skipPrepare: db !== null,
      maxDbConnections: options.maxDbConnections,
      port: 0,
      env: {
        OPENAI_REALTIME_URL: `${openai.url}`,
        OPENAI_API_KEY: openai.apiKey,
        TWILIO_API_BASE_URL: rest.baseUrl,
        LOG_LEVEL: "debug",
        // The embedded PGlite answers its first queries slowly on a busy machine; the budget's
        // own behaviour is tested separately with a store that never answers.
        LOOKUP_BUDGET_MS: "2000",
        ...options.env,
      },
      logSink: (line) => {
        logLines.push(line);
        options.echoLogs?.(line);
      },
    });
  } catch (error) {
    await rest?.close();
    await openai.close();
    await db?.drop();
    throw error;
  }
  const functionsUrl = stack.functionsUrl;
  const liveStack = stack;
  const liveRest = rest;
  const callOptions = (overrides: Partial<PlaceCallOptions> & { from: string }) =>
    localCallOptions(functionsUrl, liveRest, overrides);
  return {
    stack: liveStack,
    openai,
    rest: liveRest,
    db,
    logLines,
    logs(event) {
      const parsed = logLines.map((line) => JSON.parse(line) as Record<string, unknown>);
      return event ? parsed.filter((entry) => entry.event === event) : parsed;
    },
    startCall: (overrides) => startCall(callOptions(overrides)),
    placeCall: (overrides) => startCall(callOptions(overrides)).result,
    async stop() {
      await liveRest.settled?.();
      await openai.close();
      await liveRest.close();
      await liveStack.stop();
      await db?.drop();
    },
  };
}
