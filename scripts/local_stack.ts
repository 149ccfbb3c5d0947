/**
 * The whole product on one machine: PostgreSQL (DATABASE_URL or embedded PGlite) prepared with
 * the real migrations and seed, and the three functions served as Supabase's local stack serves
 * them. Used by `deno task serve`, the demo and the end-to-end tests.
 * @module
 */
import { prepareDatabase } from "./db/prepare.ts";
import { startEmbeddedPostgres } from "./db/embedded.ts";
import {
  createFunctionsRouter,
  DEFAULT_FUNCTIONS_PORT,
  type FunctionHandlers,
} from "./functions_router.ts";
import { createFrontdoorApp } from "../supabase/functions/voice-frontdoor/app.ts";
import { createStreamApp } from "../supabase/functions/voice-stream/app.ts";
import { createVoiceActionApp } from "../supabase/functions/voice-action/app.ts";
import type { LogSink } from "../supabase/functions/_shared/log.ts";
import { createStore } from "../supabase/functions/_shared/store/create_store.ts";
import type { Store } from "../supabase/functions/_shared/store/types.ts";
import type { Handler } from "../supabase/functions/_shared/runtime.ts";
import type { EdgeLimits } from "./edge_runtime/limits.ts";
import { startEdgeFunctions } from "./edge_runtime/functions.ts";
import type { EdgeSupervisor } from "./edge_runtime/supervisor.ts";

/** Demo credentials of the local stack: not secrets, nothing real accepts them. */
export const LOCAL_TWILIO_ACCOUNT_SID = "AC" + "0123456789abcdef".repeat(2);
export const LOCAL_TWILIO_AUTH_TOKEN = "local-twilio-auth-token-0000000000";
export const LOCAL_OPENAI_API_KEY = "sk-local-realtime-double";

/** Settings `useEnvironment` reads from the environment. */
const PASSED_SETTINGS = [
  "TWILIO_AUTH_TOKEN",
  "TWILIO_ACCOUNT_SID",
  "TWILIO_API_BASE_URL",
  "OPENAI_API_KEY",
  "OPENAI_REALTIME_URL",
  "OPENAI_REALTIME_MODEL",
  "OPENAI_VOICE",
  "OPENAI_TRANSCRIPTION_MODEL",
  "VOICE_INTERNAL_SECRET",
  "PUBLIC_FUNCTIONS_URL",
  "AUDIO_PIPELINE",
  "REALTIME_SOCKET",
  "LOOKUP_BUDGET_MS",
  "TOOL_TIMEOUT_MS",
  "STREAM_TOKEN_TTL_SECONDS",
  "MAX_CALL_SECONDS",
  "STREAM_WALL_CLOCK_SECONDS",
  "STREAM_CPU_BUDGET_MS",
  "LOG_LEVEL",
];

/** Options of `startLocalStack`. */
export interface LocalStackOptions {
  /** A PostgreSQL server URL; defaults to DATABASE_URL, else an embedded PGlite. */
  databaseUrl?: string;
  /** Skip bootstrap, migrations and seed (the database is ready). */
  skipPrepare?: boolean;
  /** Functions port; 0 picks a free one. Defaults to 54321. */
  port?: number;
  /** Settings passed to the functions, over the local defaults. */
  env?: Record<string, string>;
  /** Where the functions' log lines go; defaults to stdout. */
  logSink?: LogSink;
  /** Connections of the store the three functions share. Defaults to 10. */
  maxDbConnections?: number;
  /** Take the product's settings from this process's environment (`npm run serve`). */
  useEnvironment?: boolean;
  /** Progress lines of the stack itself. */
  progress?: (line: string) => void;
  /**
   * Serve each function request in its own worker under these limits (scripts/edge_runtime/).
   * Workers build their own store; `logSink` gets their lines and the runtime's.
   */
  edgeRuntime?: EdgeLimits;
  /**
   * Wraps the store the three functions share (fault tests take the database down with it); the
   * wrapper is closed before the store. Not with `edgeRuntime`: each worker builds its own store.
   */
  wrapStore?: (store: Store) => Store;
  /**
   * Wraps the functions' router (tests record every request and its answer). Not with
   * `edgeRuntime`: its supervisor proxies bytes and sees no requests.
   */
  wrapHandler?: (handler: Handler) => Handler;
}

/** A running local stack. */
export interface LocalStack {
  /** `http://127.0.0.1:<port>/functions/v1`, also the functions' public base. */
  readonly functionsUrl: string;
  readonly databaseUrl: string;
  readonly embedded: boolean;
  /** The environment the functions were built from. */
  readonly env: Record<string, string>;
  /** The local edge runtime serving the functions, when `edgeRuntime` was given. */
  readonly edgeRuntime: EdgeSupervisor | null;
  stop(): Promise<void>;
}

/**
 * The functions' settings on this machine: the stack's URL and database, the local Twilio
 * credentials and a fresh internal secret; `env` overrides them.
 */
export function localFunctionsEnv(options: {
  functionsUrl: string;
  databaseUrl: string;
  env?: Record<string, string>;
}): Record<string, string> {
  return {
    PUBLIC_FUNCTIONS_URL: options.functionsUrl,
    DATABASE_URL: options.databaseUrl,
    STORE_ADAPTER: "postgres",
    TWILIO_ACCOUNT_SID: LOCAL_TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: LOCAL_TWILIO_AUTH_TOKEN,
    OPENAI_API_KEY: LOCAL_OPENAI_API_KEY,
    VOICE_INTERNAL_SECRET: crypto.randomUUID() + crypto.randomUUID(),
    ...options.env,
  };
}

/** Starts the database and the functions. */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  if (options.edgeRuntime && (options.wrapStore || options.wrapHandler)) {
    throw new Error("Cannot wrap the store or the router of functions served by the edge runtime");
  }
  const progress = options.progress ?? (() => {});
  let databaseUrl = options.databaseUrl ?? Deno.env.get("DATABASE_URL") ?? "";
  let stopDatabase: (() => Promise<void>) | null = null;
  if (!databaseUrl) {
    const started = performance.now();
    const embedded = await startEmbeddedPostgres();
    databaseUrl = embedded.url;
    stopDatabase = embedded.stop;
    progress(
      `embedded PostgreSQL (PGlite) started in ${Math.round(performance.now() - started)} ms`,
    );
  }
  if (!options.skipPrepare) {
    const started = performance.now();
    await prepareDatabase(databaseUrl, { seed: true });
    progress(
      `database prepared (bootstrap, migrations, seed) in ${
        Math.round(performance.now() - started)
      } ms`,
    );
  }
  const handlers: FunctionHandlers = {};
  let env: Record<string, string> = {};
  const server = options.edgeRuntime
    ? startEdgeFunctions({
      limits: options.edgeRuntime,
      port: options.port ?? DEFAULT_FUNCTIONS_PORT,
      env: () => env,
      logSink: options.logSink,
    })
    : Deno.serve({
      port: options.port ?? DEFAULT_FUNCTIONS_PORT,
      hostname: "127.0.0.1",
      onListen: () => {},
    }, (options.wrapHandler ?? ((handler) => handler))(createFunctionsRouter(handlers)));
  const port = "addr" in server ? server.addr.port : server.port;
  const functionsUrl = `http://127.0.0.1:${port}/functions/v1`;
  // Settings already in the environment win over the local defaults, explicit options over both.
  const fromEnvironment: Record<string, string> = {};
  for (const name of PASSED_SETTINGS) {
    const value = Deno.env.get(name);
    if (value) fromEnvironment[name] = value;
  }
  env = localFunctionsEnv({
    functionsUrl,
    databaseUrl,
    env: { ...(options.useEnvironment ? fromEnvironment : {}), ...options.env },
  });
  // One store for the three functions, closed with the stack.
  const baseStore = createStore({
    storeAdapter: "postgres",
    databaseUrl,
    postgres: { maxConnections: options.maxDbConnections ?? 10 },
  });
  const store = options.wrapStore?.(baseStore) ?? baseStore;
  const overrides = { logSink: options.logSink, store };
  handlers["voice-frontdoor"] = createFrontdoorApp(env, overrides);
  handlers["voice-stream"] = createStreamApp(env, overrides);
  handlers["voice-action"] = createVoiceActionApp(env, overrides);
  progress(`functions served at ${functionsUrl}/{voice-frontdoor,voice-stream,voice-action}`);
  return {
    functionsUrl,
    databaseUrl,
    embedded: stopDatabase !== null,
    env,
    edgeRuntime: "addr" in server ? null : server,
    async stop() {
      await ("shutdown" in server ? server.shutdown() : server.close());
      if (store !== baseStore) await store.close();
      await baseStore.close();
      await stopDatabase?.();
    },
  };
}
