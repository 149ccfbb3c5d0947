/**
 * voice-stream: accepts Twilio's Media Streams WebSocket (signed upgrade), then runs the call's
 * bridge to OpenAI Realtime. The stream token is checked on `start`, before any model session.
 * @module
 */
import { type Config, streamUrl } from "../_shared/config.ts";
import { validateTwilioSignature } from "../_shared/twilio/signature.ts";
import { runCallBridge } from "./bridge.ts";
import type { BridgeDeps, BridgeSocket } from "./bridge_deps.ts";

/** What the stream endpoint needs; tests pass their own. */
export interface StreamDeps extends BridgeDeps {
  config:
    & BridgeDeps["config"]
    & Pick<Config, "twilioAuthToken" | "publicFunctionsUrl">;
  waitUntil: (promise: Promise<unknown>) => void;
  /** `Deno.upgradeWebSocket`, injectable for tests. */
  upgradeWebSocket?: (
    req: Request,
  ) => { socket: WebSocket; response: Response };
}

/** Creates the handler. */
export function createStreamHandler(
  deps: StreamDeps,
): (req: Request) => Promise<Response> {
  const publicStreamUrl = streamUrl(deps.config);
  const upgrade = deps.upgradeWebSocket ??
    ((req: Request) => Deno.upgradeWebSocket(req, { idleTimeout: 0 }));

  return async (req) => {
    if ((req.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
      deps.log.warn("request_rejected", {
        reason: "not_websocket",
        method: req.method,
      });
      return new Response("Expected a WebSocket upgrade", {
        status: 426,
        headers: { upgrade: "websocket" },
      });
    }
    // Twilio signs the upgrade over the wss:// URL exactly as written in <Stream url>, no params.
    const signature = req.headers.get("x-twilio-signature");
    if (!signature) {
      deps.log.warn("security_rejected", {
        reason: "signature_missing",
        path: "voice-stream",
      });
      return new Response(null, { status: 403 });
    }
    const valid = await validateTwilioSignature(
      deps.config.twilioAuthToken,
      signature,
      publicStreamUrl,
      {},
    );
    if (!valid) {
      deps.log.warn("security_rejected", {
        reason: "signature_mismatch",
        path: "voice-stream",
      });
      return new Response(null, { status: 403 });
    }
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = upgrade(req);
    } catch (error) {
      deps.log.warn("request_rejected", { reason: "upgrade_failed", error });
      return new Response("WebSocket upgrade failed", { status: 400 });
    }
    // Keeps the worker alive until the call ends (EarlyDrop otherwise, protocols.md §1).
    deps.waitUntil(
      runCallBridge(upgraded.socket as unknown as BridgeSocket, deps),
    );
    return upgraded.response;
  };
}
