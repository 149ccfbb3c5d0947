/**
 * Speaks Twilio Media Streams on one side and OpenAI Realtime (GA) on the other, as little as a
 * relay can: the baseline of the voice-stream bridge benchmark, shaped like the official
 * Twilio + OpenAI sample server (JSON.parse / JSON.stringify per frame, one append per caller
 * frame, every assistant delta forwarded at once). No signature or token check, no lookup, no
 * marks, no pacing, no coalescing, no barge-in: what it costs is the floor any bridge pays.
 * @module
 */

const OPEN = 1;

/** Where the relay connects. */
export interface PassthroughRelayOptions {
  /** `ws://.../v1/realtime`. */
  realtimeUrl: string;
  apiKey: string;
  model: string;
  /** Opens the model socket; defaults to Deno's `WebSocket` with the Realtime subprotocols. */
  connect?: (options: { url: string; model: string; apiKey: string }) => RelaySocket;
}

/** The socket surface the relay uses on the model side. */
export interface RelaySocket {
  readonly readyState: number;
  send(text: string): void;
  close(code?: number): void;
  addEventListener(type: "open" | "close" | "error", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
}

function connectWebSocket(options: { url: string; model: string; apiKey: string }): RelaySocket {
  const url = new URL(options.url);
  url.searchParams.set("model", options.model);
  return new WebSocket(url.toString(), [
    "realtime",
    `openai-insecure-api-key.${options.apiKey}`,
  ]);
}

/** A voice-stream-shaped handler: upgrades, then relays until either side closes. */
export function createPassthroughRelayHandler(
  options: PassthroughRelayOptions,
): (req: Request) => Response {
  return (req) => {
    if ((req.headers.get("upgrade") ?? "").toLowerCase() !== "websocket") {
      return new Response("Expected a WebSocket upgrade", { status: 426 });
    }
    const { socket: twilio, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
    let model: RelaySocket | null = null;
    let streamSid = "";
    const closeBoth = () => {
      if (model && model.readyState <= OPEN) model.close(1000);
      if (twilio.readyState <= OPEN) twilio.close(1000);
    };
    const openModel = () => {
      const socket = (options.connect ?? connectWebSocket)({
        url: options.realtimeUrl,
        model: options.model,
        apiKey: options.apiKey,
      });
      model = socket;
      socket.addEventListener("open", () => {
        socket.send(JSON.stringify({
          type: "session.update",
          session: {
            type: "realtime",
            model: options.model,
            instructions: "You are a helpful receptionist.",
            output_modalities: ["audio"],
            audio: {
              input: { format: { type: "audio/pcmu" }, turn_detection: { type: "server_vad" } },
              output: { format: { type: "audio/pcmu" }, voice: "marin" },
            },
          },
        }));
        socket.send(JSON.stringify({ type: "response.create" }));
      });
      socket.addEventListener("message", (event) => {
        const message = JSON.parse(event.data as string);
        if (message.type === "response.output_audio.delta") {
          if (twilio.readyState === OPEN) {
            twilio.send(JSON.stringify({
              event: "media",
              streamSid,
              media: { payload: message.delta },
            }));
          }
        }
      });
      socket.addEventListener("close", closeBoth);
      socket.addEventListener("error", () => {});
    };
    twilio.addEventListener("message", (event) => {
      const message = JSON.parse(event.data as string);
      switch (message.event) {
        case "start":
          streamSid = message.start.streamSid;
          openModel();
          break;
        case "media":
          // Like the sample: audio before the model socket is open is dropped.
          if (model && model.readyState === OPEN) {
            model.send(JSON.stringify({
              type: "input_audio_buffer.append",
              audio: message.media.payload,
            }));
          }
          break;
        case "stop":
          closeBoth();
          break;
      }
    });
    twilio.addEventListener("close", closeBoth);
    twilio.addEventListener("error", () => {});
    return response;
  };
}
