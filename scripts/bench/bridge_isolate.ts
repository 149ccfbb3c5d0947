/**
 * One isolate of the bridge under test in `bridge_load.ts`: the local function server
 * (voice-frontdoor, voice-stream and voice-action as `scripts/local_stack.ts` builds them, on the
 * real Postgres store) or the passthrough relay baseline, listening with `SO_REUSEPORT` so that
 * several isolates of one process share the port and the kernel spreads the calls' connections
 * over them, as Supabase's edge runtime spreads requests over its workers.
 *
 * Timing at the bridge: the isolate's model connector is wrapped so that every append the
 * bridge hands to its model socket is timed from the send stamp of the last caller frame in it
 * (`timing_marker.ts`): caller frame sent -> append sent, the bridge's part of the forwarding
 * delay without the model side's receive (on this machine, a load thread's event loop).
 *
 * Loaded as a Worker, this module answers `IsolateMessage`s in order: `start` (-> `listening`),
 * `window_start`, `window_end` (-> the appends' delays) and `stop` (-> `stopped`).
 * @module
 */
import { createFunctionsRouter, type FunctionHandlers } from "../functions_router.ts";
import { LOCAL_TWILIO_ACCOUNT_SID, LOCAL_TWILIO_AUTH_TOKEN } from "../local_stack.ts";
import { createFrontdoorApp } from "../../supabase/functions/voice-frontdoor/app.ts";
import { createStreamApp } from "../../supabase/functions/voice-stream/app.ts";
import { createVoiceActionApp } from "../../supabase/functions/voice-action/app.ts";
import type { RealtimeConnector } from "../../supabase/functions/voice-stream/bridge_deps.ts";
import { realtimeConnectorFor } from "../../supabase/functions/voice-stream/realtime_connector.ts";
import { createStore } from "../../supabase/functions/_shared/store/create_store.ts";
import { createPassthroughRelayHandler } from "./passthrough_relay.ts";
import { SampleBuffer, sampleLoopLag } from "./bench_stats.ts";
import { APPEND_PREFIX } from "./realtime_load_peer.ts";
import { base64DecodedLength } from "../../supabase/functions/_shared/codec/pcm.ts";
import { elapsedMs, markerFromBase64, wallClockUs } from "./timing_marker.ts";
import { FRAME_BYTES } from "./twilio_load_caller.ts";

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

/** What the main thread of the bridge process asks of an isolate Worker. */
export type IsolateMessage =
  | { type: "start"; config: IsolateConfig }
  | { type: "window_start" }
  | { type: "window_end" }
  | { type: "stop" };

/** A served isolate. */
export interface BridgeIsolate {
  /** Starts timing appends (clearing earlier samples). */
  windowStart(): void;
  /** Stops timing; per append, ms from its last caller frame's send to the append's send. */
  windowEnd(): Float64Array;
  stop(): Promise<void>;
}

/** Wraps a connector so that appends sent while `timing.on` are timed into `timing.samples`. */
function timedConnector(
  connect: RealtimeConnector,
  timing: { on: boolean; samples: SampleBuffer },
): RealtimeConnector {
  return (options) => {
    const socket = connect(options);
    const send = socket.send.bind(socket);
    socket.send = (text: string) => {
      if (timing.on && text.startsWith(APPEND_PREFIX)) {
        const sentAtUs = wallClockUs();
        const audio = text.slice(APPEND_PREFIX.length, text.indexOf('"', APPEND_PREFIX.length));
        const bytes = base64DecodedLength(audio);
        if (bytes >= FRAME_BYTES) {
          timing.samples.push(elapsedMs(markerFromBase64(audio, bytes - FRAME_BYTES), sentAtUs));
        }
      }
      send(text);
    };
    return socket;
  };
}

/** The model socket a variant uses (`REALTIME_SOCKET`'s values). */
function modelSocketOf(variant: Variant): "nodelay" | "websocket" {
  return variant === "product" || variant === "relay-nodelay" ? "nodelay" : "websocket";
}

/** Serves one isolate until the returned `stop` is called. */
export function serveBridgeIsolate(config: IsolateConfig): BridgeIsolate {
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
  };
  const store = createStore({ storeAdapter: "postgres", databaseUrl });
  const timing = { on: false, samples: new SampleBuffer() };
  // Both bridges get the connector REALTIME_SOCKET would pick, wrapped to time the appends.
  const connect = timedConnector(realtimeConnectorFor(modelSocketOf(variant)), timing);
  const handlers: FunctionHandlers = { "voice-frontdoor": createFrontdoorApp(env, { store }) };
  if (variant.startsWith("product")) {
    handlers["voice-stream"] = createStreamApp(env, {
      store,
      connectRealtime: connect,
    });
    handlers["voice-action"] = createVoiceActionApp(env, { store });
  } else {
    handlers["voice-stream"] = createPassthroughRelayHandler({
      realtimeUrl,
      apiKey,
      model: MODEL,
      connect,
    });
  }
  const server = Deno.serve(
    { port, hostname: "127.0.0.1", reusePort: true, onListen: () => {} },
    createFunctionsRouter(handlers),
  );
  if (config.loopLagLabel !== undefined) sampleLoopLag(config.loopLagLabel);
  return {
    windowStart() {
      timing.samples.clear();
      timing.on = true;
    },
    windowEnd() {
      timing.on = false;
      return timing.samples.take();
    },
    async stop() {
      await server.shutdown();
      await store.close();
    },
  };
}

// As a Worker: serve on `start`, then answer the main thread's messages in order.
if ("WorkerGlobalScope" in globalThis) {
  const scope = globalThis as unknown as {
    onmessage: ((event: MessageEvent<IsolateMessage>) => void) | null;
    postMessage(message: unknown, transfer?: Transferable[]): void;
  };
  let isolate: BridgeIsolate | null = null;
  scope.onmessage = async (event) => {
    const message = event.data;
    switch (message.type) {
      case "start":
        isolate = serveBridgeIsolate(message.config);
        scope.postMessage({ type: "listening" });
        break;
      case "window_start":
        isolate?.windowStart();
        scope.postMessage({ type: "window_started" });
        break;
      case "window_end": {
        const samples = isolate?.windowEnd() ?? new Float64Array(0);
        scope.postMessage({ type: "window", samples }, [samples.buffer as ArrayBuffer]);
        break;
      }
      case "stop":
        await isolate?.stop();
        scope.postMessage({ type: "stopped" });
        break;
    }
  };
}
