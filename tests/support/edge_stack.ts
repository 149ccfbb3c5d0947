/**
 * The whole product on the local edge runtime (scripts/edge_runtime/: each function request in
 * its own worker thread, ended at its limits) with the strict Twilio and OpenAI Realtime doubles
 * and a database of its own: for tests of what the platform's limits do to calls.
 * @module
 */
import { type LocalStack, startLocalStack } from "../../scripts/local_stack.ts";
import type { EdgeLimits } from "../../scripts/edge_runtime/limits.ts";
import {
  type OpenAIRealtimeDouble,
  type OpenAIRealtimeDoubleOptions,
  startOpenAIRealtimeDouble,
} from "../doubles/openai_realtime_double.ts";
import type { PlaceCallOptions } from "../doubles/twilio_call_double.ts";
import type { TwilioRestDouble } from "../doubles/twilio_rest_double.ts";
import { localCallOptions, startLocalRestDouble } from "./e2e_stack.ts";
import { createTestDatabase, type TestDatabase } from "./test_db.ts";

/** A running stack on the local edge runtime. */
export interface EdgeE2EStack {
  stack: LocalStack;
  db: TestDatabase;
  openai: OpenAIRealtimeDouble;
  rest: TwilioRestDouble;
  /** Every JSON log line, the runtime's (`fn: "edge-runtime"`) and the functions'. */
  entries(fn?: string, event?: string): Record<string, unknown>[];
  /** Options of a call to the stack's number, over `overrides`. */
  callOptions(overrides: Partial<PlaceCallOptions> & { from: string }): PlaceCallOptions;
  stop(): Promise<void>;
}

/**
 * Starts a seeded database, the doubles and the functions under `limits`.
 * @param options the model's scenario, the runtime's limits and settings for the functions
 */
export async function startEdgeE2EStack(options: {
  openai: OpenAIRealtimeDoubleOptions;
  limits: EdgeLimits;
  env?: Record<string, string>;
}): Promise<EdgeE2EStack> {
  const db = await createTestDatabase({ seed: true });
  const openai = await startOpenAIRealtimeDouble(options.openai);
  const rest = startLocalRestDouble();
  const lines: string[] = [];
  const stack = await startLocalStack({
    databaseUrl: db.url,
    skipPrepare: true,
    port: 0,
    edgeRuntime: options.limits,
    env: {
      OPENAI_REALTIME_URL: openai.url,
      OPENAI_API_KEY: openai.apiKey,
      TWILIO_API_BASE_URL: rest.baseUrl,
      // Worker boot is part of each request here: the lookup must not miss the greeting.
      LOOKUP_BUDGET_MS: "2000",
      ...options.env,
    },
    logSink: (line) => lines.push(line),
  });
  return {
    stack,
    db,
    openai,
    rest,
    entries(fn, event) {
      return lines.map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((entry) =>
          (fn === undefined || entry.fn === fn) && (event === undefined || entry.event === event)
        );
    },
    callOptions: (overrides) => localCallOptions(stack.functionsUrl, rest, overrides),
    async stop() {
      await stack.stop();
      await rest.close();
      await openai.close();
      await db.drop();
    },
  };
}
