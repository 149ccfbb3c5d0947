/**
 * Speaks the server side of OpenAI Realtime (GA WebSocket events) as cheaply as possible, for
 * load benchmarks of the voice-stream bridge: `session.created` on connect, `session.updated`
 * for each `session.update`, and on `response.create` one endless assistant response streamed in
 * real time (one `response.output_audio.delta` of `chunkMs` every `chunkMs`) until the socket
 * closes. It validates nothing and keeps no history: the strict double
 * (`tests/doubles/openai_realtime_double.ts`) runs zod and a VAD on every append and records
 * every event, which at hundreds of calls would load the benchmark's own process more than the
 * bridge under test.
 *
 * Timing probes (`timing_marker.ts`): each assistant delta's audio starts with a marker stamped
 * when it was sent, so the Twilio side measures the outbound hop by itself; each append's audio
 * is handed to `onAppend` with its arrival time, for the inbound hop.
 * @module
 */
import { base64DecodedLength } from "../../supabase/functions/_shared/codec/pcm.ts";
import { markerBase64, precomputeTails, wallClockUs } from "./timing_marker.ts";

/** Bytes of 8 kHz mu-law per ms. */
const MULAW_BYTES_PER_MS = 8;
export const APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"';

/** Options of `startRealtimeLoadPeer`. */
export interface RealtimeLoadPeerOptions {
  /** Assistant audio, 8 kHz mu-law, looped. */
  assistantAudio: Uint8Array;
  /** Audio per delta. Defaults to 100 ms (800 bytes). */
  chunkMs?: number;
  /** Called for every append: when it arrived (wall-clock µs) and its base64 audio. */
  onAppend(arrivedAtUs: number, audioBase64: string): void;
  /** Port to listen on; defaults to a free one. */
  port?: number;
  /** SO_REUSEPORT (needs `--unstable-net`): several peers share `port`. */
  reusePort?: boolean;
}

/** A running peer. */
export interface RealtimeLoadPeer {
  /** `ws://127.0.0.1:<port>/v1/realtime`. */
  readonly url: string;
  /** Connections open now. */
  readonly open: number;
  /** Counters since start (or the last `resetCounters`). */
  readonly counters: { appends: number; appendedBytes: number; deltas: number; other: number };
  resetCounters(): void;
  /** Sends due deltas; call every few ms (the load process's ticker drives everything). */
  tick(nowMs: number): void;
  close(): Promise<void>;
}

interface PeerConnection {
  socket: WebSocket;
  streaming: boolean;
  responseId: string;
  itemId: string;
  nextDeltaAtMs: number;
  chunkIndex: number;
}

let idCounter = 0;
function newId(prefix: string): string {
  return `${prefix}_bench${(++idCounter).toString(36).padStart(12, "0")}`;
}

/** Starts the peer on a free loopback port. */
export function startRealtimeLoadPeer(options: RealtimeLoadPeerOptions): RealtimeLoadPeer {
  const chunkMs = options.chunkMs ?? 100;
  const chunkBytes = chunkMs * MULAW_BYTES_PER_MS;
  const audio = options.assistantAudio;
  const connections = new Set<PeerConnection>();
  const counters = { appends: 0, appendedBytes: 0, deltas: 0, other: 0 };

  const send = (conn: PeerConnection, event: Record<string, unknown>) => {
    if (conn.socket.readyState === WebSocket.OPEN) conn.socket.send(JSON.stringify(event));
  };

  const onMessage = (conn: PeerConnection, text: string) => {
    if (text.startsWith(APPEND_PREFIX)) {
      const arrivedAtUs = wallClockUs();
      const audioText = text.slice(APPEND_PREFIX.length, text.indexOf('"', APPEND_PREFIX.length));
      counters.appends++;
      counters.appendedBytes += base64DecodedLength(audioText);
      options.onAppend(arrivedAtUs, audioText);
      return;
    }
    counters.other++;
    let event: { type?: string };
    try {
      event = JSON.parse(text);
    } catch {
      return;
    }
    switch (event.type) {
      case "input_audio_buffer.append": {
        // Another key order than the fast prefix: same handling.
        const arrivedAtUs = wallClockUs();
        const audioText = (event as { audio: string }).audio;
        counters.appends++;
        counters.appendedBytes += base64DecodedLength(audioText);
        options.onAppend(arrivedAtUs, audioText);
        break;
      }
      case "session.update":
        send(conn, {
          type: "session.updated",
          event_id: newId("event"),
          session: { type: "realtime", object: "realtime.session", id: newId("sess") },
        });
        break;
      case "response.create":
        if (conn.streaming) break;
        conn.streaming = true;
        conn.responseId = newId("resp");
        conn.itemId = newId("item");
        conn.nextDeltaAtMs = performance.now();
        send(conn, {
          type: "response.created",
          event_id: newId("event"),
          response: {
            object: "realtime.response",
            id: conn.responseId,
            status: "in_progress",
            output: [],
          },
        });
        break;
      default:
        break;
    }
  };

  const listen = {
    port: options.port ?? 0,
    hostname: "127.0.0.1",
    onListen: () => {},
    ...(options.reusePort ? { reusePort: true } : {}),
  };
  const server = Deno.serve(listen, (req) => {
    if (new URL(req.url).pathname !== "/v1/realtime") {
      return new Response("Not found", { status: 404 });
    }
    const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",").map((p) =>
      p.trim()
    );
    const { socket, response } = Deno.upgradeWebSocket(req, {
      protocol: offered.includes("realtime") ? "realtime" : undefined,
      idleTimeout: 0,
    });
    const conn: PeerConnection = {
      socket,
      streaming: false,
      responseId: "",
      itemId: "",
      nextDeltaAtMs: 0,
      chunkIndex: 0,
    };
    socket.addEventListener("open", () => {
      connections.add(conn);
      send(conn, {
        type: "session.created",
        event_id: newId("event"),
        session: { type: "realtime", object: "realtime.session", id: newId("sess") },
      });
    });
    socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") onMessage(conn, event.data);
    });
    socket.addEventListener("close", () => {
      connections.delete(conn);
      conn.streaming = false;
    });
    socket.addEventListener("error", () => {});
    return response;
  });

  // Deltas are marker + precomputed base64 of the rest: the peer must stay cheap at 500 calls.
  const tails = precomputeTails(audio, chunkBytes);
  return {
    url: `ws://127.0.0.1:${server.addr.port}/v1/realtime`,
    get open() {
      return connections.size;
    },
    counters,
    resetCounters() {
      counters.appends = 0;
      counters.appendedBytes = 0;
      counters.deltas = 0;
      counters.other = 0;
    },
    tick(nowMs) {
      for (const conn of connections) {
        if (!conn.streaming) continue;
        while (conn.nextDeltaAtMs <= nowMs && conn.socket.readyState === WebSocket.OPEN) {
          const tail = tails[conn.chunkIndex];
          conn.chunkIndex = (conn.chunkIndex + 1) % tails.length;
          // The GA reference layout (the bridge's exact-layout fast path expects it).
          const text = '{"type":"response.output_audio.delta","event_id":"' + newId("event") +
            '","response_id":"' + conn.responseId + '","item_id":"' + conn.itemId +
            '","output_index":0,"content_index":0,"delta":"' + markerBase64() +
            tail + '"}';
          conn.socket.send(text);
          counters.deltas++;
          conn.nextDeltaAtMs += chunkMs;
        }
      }
    },
    async close() {
      for (const conn of connections) conn.socket.close(1000, "bench over");
      await server.shutdown();
    },
  };
}
