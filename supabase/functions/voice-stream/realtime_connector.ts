/**
 * Opens the OpenAI Realtime (GA) WebSocket: `<OPENAI_REALTIME_URL>?model=<model>`, authenticated
 * with the `realtime` + `openai-insecure-api-key.<key>` subprotocols, which every WebSocket
 * implementation can send (custom headers are not portable across runtimes).
 * @module
 */
import type { BridgeSocket, RealtimeConnector } from "./bridge_deps.ts";
import { connectNoDelayWebSocket } from "./nodelay_websocket.ts";

/** The Realtime URL for a model. */
export function realtimeUrl(baseUrl: string, model: string): string {
  const url = new URL(baseUrl);
  url.searchParams.set("model", model);
  return url.toString();
}

function subprotocols(apiKey: string): string[] {
  return ["realtime", `openai-insecure-api-key.${apiKey}`];
}

/** Connects with the platform's `WebSocket` (`REALTIME_SOCKET=websocket`). */
export const connectRealtimeWebSocket: RealtimeConnector = (
  { url, model, apiKey },
) => new WebSocket(realtimeUrl(url, model), subprotocols(apiKey)) as unknown as BridgeSocket;

/** Connects with the TCP_NODELAY client (`REALTIME_SOCKET=nodelay`, the default). */
export const connectRealtimeNoDelay: RealtimeConnector = ({ url, model, apiKey }) =>
  connectNoDelayWebSocket(realtimeUrl(url, model), subprotocols(apiKey));

/** The connector `REALTIME_SOCKET` names. */
export function realtimeConnectorFor(socket: "nodelay" | "websocket"): RealtimeConnector {
  return socket === "websocket" ? connectRealtimeWebSocket : connectRealtimeNoDelay;
}
