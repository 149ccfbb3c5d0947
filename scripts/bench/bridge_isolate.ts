/**
 * One isolate of the bridge under test in `bridge_load.ts`: the local function server
 * (voice-frontdoor, voice-stream and voice-action as `scripts/local_stack.ts` builds them, on the
 * real Postgres store) or the passthrough relay baseline, listening with `SO_REUSEPORT` so that
 * several isolates of one process share the port and the kernel spreads the calls' connections
 * over them, as Supabase's edge runtime spreads requests over its workers.
 *
 * Loaded as a Worker, this module waits for one `start` message (an `IsolateConfig`), answers
 * `listening`, and on `stop` shuts its server down and answers `stopped`.
 * @module
 */
import { createFunctionsRouter, type FunctionHandlers } from "../functions_router.ts";
import { LOCAL_TWILIO_ACCOUNT_SID, LOCAL_TWILIO_AUTH_TOKEN } from "../local_stack.ts";
import { createFrontdoorApp } from "../../supabase/functions/voice-frontdoor/app.ts";
import { createStreamApp } from "../../supabase/functions/voice-stream/app.ts";
import { createVoiceActionApp } from "../../supabase/functions/voice-action/app.ts";
import type { RealtimeConnector } from "../../supabase/functions/voice-stream/bridge.ts";
import {
  connectRealtimeNoDelay,
  connectRealtimeWebSocket,
} from "../../supabase/functions/voice-stream/realtime_connector.ts";
import { createStore } from "../../supabase/functions/_shared/store/create_store.ts";
import { createPassthroughRelayHandler } from "./passthrough_relay.ts";
import { sampleLoopLag } from "./bench_stats.ts";

/**
 * The bridge under test: as shipped (its model socket is the TCP_NODELAY client) or with
 * `REALTIME_SOCKET=websocket` (Deno's WebSocket client); the relay with Deno's client or ours.
 */
export type Variant = "product" | "product-websocket" | "relay" | "relay-nodelay";
export const VARIANTS: readonly Variant[] = [
  "product",
  "product-websocket",
  "relay",
  "relay-nodelay",
];

const MODEL = "gpt-realtime";

/** What an isolate serves. Every isolate of a process gets the same config. */
export interface IsolateConfig {
  variant: Variant;
  port: number;
  databaseUrl: string;
  realtimeUrl: string;
  apiKey: string;
  /** Shared by all isolates: voice-stream's tool calls may reach voice-action in another one. */
  internalSecret: string;
  /** Prints this isolate's event-loop lag every 5 s to stderr, with this label. */
  loopLagLabel?: string;
}

/** The relay's model socket. */
function relayConnector(variant: Variant): RealtimeConnector {
  return variant === "relay-nodelay" ? connectRealtimeNoDelay : connectRealtimeWebSocket;
}

/** Serves one isolate until the returned `stop` is called. */
export function serveBridgeIsolate(config: IsolateConfig): { stop(): Promise<void> } {
  const { variant, port, databaseUrl, realtimeUrl, apiKey } = config;
  const publicBase = `http://127.0.0.1:${port}/functions/v1`;
  // As scripts/local_stack.ts serves the functions: one real Postgres store per isolate, JSON log
  // lines to stdout, the router showing handlers Supabase's internal URL.
  const env: Record<string, string> = {
    PUBLIC_FUNCTIONS_URL: publicBase,
    DATABASE_URL: databaseUrl,
    STORE_ADAPTER: "postgres",
    TWILIO_ACCOUNT_SID: LOCAL_TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: LOCAL_TWILIO_AUTH_TOKEN,
    OPENAI_API_KEY: apiKey,
    OPENAI_REALTIME_URL: realtimeUrl,
    VOICE_INTERNAL_SECRET: config.internalSecret,
    // Nothing answers here: voice-action's Twilio REST calls (none in these calls) fail fast.
    TWILIO_API_BASE_URL: "http://127.0.0.1:9",
    LOG_LEVEL: "info",
    REALTIME_SOCKET: variant === "product-websocket" ? "websocket" : "nodelay",
  };
  const store = createStore({ storeAdapter: "postgres", databaseUrl });
  const handlers: FunctionHandlers = { "voice-frontdoor": createFrontdoorApp(env, { store }) };
  if (variant.startsWith("product")) {
    handlers["voice-stream"] = createStreamApp(env, { store });
    handlers["voice-action"] = createVoiceActionApp(env, { store });
  } else {
    handlers["voice-stream"] = createPassthroughRelayHandler({
      realtimeUrl,
      apiKey,
      model: MODEL,
      connect: relayConnector(variant),
    });
  }
  const server = Deno.serve(
    { port, hostname: "127.0.0.1", reusePort: true, onListen: () => {} },
    createFunctionsRouter(handlers),
  );
  if (config.loopLagLabel !== undefined) sampleLoopLag(config.loopLagLabel);
  return {
    async stop() {
      await server.shutdown();
      await store.close();
    },
  };
}

// As a Worker: serve on `start`, shut down on `stop`.
if ("WorkerGlobalScope" in globalThis) {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent) => void) | null;
    postMessage(message: unknown): void;
  };
  let running: { stop(): Promise<void> } | null = null;
  scope.onmessage = async (event: MessageEvent) => {
    const message = event.data as { type: "start"; config: IsolateConfig } | { type: "stop" };
    if (message.type === "start") {
      running = serveBridgeIsolate(message.config);
      scope.postMessage({ type: "listening" });
    } else if (running) {
      await running.stop();
      scope.postMessage({ type: "stopped" });
    }
  };
}
