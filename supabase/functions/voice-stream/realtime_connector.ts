/**
 * Opens the OpenAI Realtime (GA) WebSocket: `<OPENAI_REALTIME_URL>?model=<model>`, authenticated
 * with the `realtime` + `openai-insecure-api-key.<key>` subprotocols, which every WebSocket
 * implementation can send (custom headers are not portable across runtimes).
 * @module
 */
import type { BridgeSocket, RealtimeConnector } from "./bridge.ts";

/** The Realtime URL for a model. */
export function realtimeUrl(baseUrl: string, model: string): string {
  const url = new URL(baseUrl);
  url.searchParams.set("model", model);
  return url.toString();
}

/** Connects with the platform's `WebSocket`. */
export const connectRealtimeWebSocket: RealtimeConnector = (
  { url, model, apiKey },
) =>
  new WebSocket(realtimeUrl(url, model), [
    "realtime",
    `openai-insecure-api-key.${apiKey}`,
  ]) as unknown as BridgeSocket;
