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
 * Timing probes: each assistant delta carries a marker in its first 6 bytes (connection id and
 * delta sequence) and its send time is kept, so the Twilio side can measure the outbound hop;
 * each append's audio is decoded and the marker of the last caller frame in it is handed to
 * `onAppend`, so the caller side can measure the inbound hop.
 * @module
 */

/** Bytes of 8 kHz mu-law per ms. */
const MULAW_BYTES_PER_MS = 8;
/** Sent-time history kept per connection (deltas), as a ring: 102 s at 10 deltas/s. */
const DELTA_RING = 1024;
const APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"';

/** Options of `startRealtimeLoadPeer`. */
export interface RealtimeLoadPeerOptions {
  /** Assistant audio, 8 kHz mu-law, looped. */
  assistantAudio: Uint8Array;
  /** Audio per delta. Defaults to 100 ms (800 bytes). */
  chunkMs?: number;
  /** Called for every append: when it arrived and its base64 audio. */
  onAppend(arrivedAtMs: number, audioBase64: string): void;
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
  /** When delta `sequence` of connection `connectionId` was sent, or NaN. */
  deltaSentAt(connectionId: number, sequence: number): number;
  close(): Promise<void>;
}

interface PeerConnection {
  id: number;
  socket: WebSocket;
  streaming: boolean;
  responseId: string;
  itemId: string;
  nextDeltaAtMs: number;
  sequence: number;
  chunkIndex: number;
  sentAt: Float64Array;
}

/** Writes the marker: connection id (uint16) and sequence (uint32), big-endian. */
export function writeMarker(bytes: Uint8Array, offset: number, id: number, sequence: number): void {
  bytes[offset] = (id >>> 8) & 0xff;
  bytes[offset + 1] = id & 0xff;
  bytes[offset + 2] = (sequence >>> 24) & 0xff;
  bytes[offset + 3] = (sequence >>> 16) & 0xff;
  bytes[offset + 4] = (sequence >>> 8) & 0xff;
  bytes[offset + 5] = sequence & 0xff;
}

/** Bytes encoded by standard padded base64. */
export function base64ByteLength(text: string): number {
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

/** Reads the marker at `byteOffset` of base64 audio, decoding only the 12 characters around it. */
export function markerFromBase64(
  text: string,
  byteOffset: number,
): { id: number; sequence: number } {
  const start = Math.floor(byteOffset / 3) * 4;
  const bytes = base64ToBytes(text.slice(start, start + 12));
  return readMarker(bytes, byteOffset % 3);
}

/** Base64 of `bytes[6..]` for each `chunkBytes` chunk of looped audio (padded with silence). */
export function precomputeTails(audio: Uint8Array, chunkBytes: number): string[] {
  const chunks = Math.ceil(audio.length / chunkBytes);
  const padded = new Uint8Array(chunks * chunkBytes).fill(0xff);
  padded.set(audio);
  const tails: string[] = [];
  for (let i = 0; i < chunks; i++) {
    tails.push(bytesToBase64(padded.subarray(i * chunkBytes + 6, (i + 1) * chunkBytes)));
  }
  return tails;
}

/** Base64 of a 6-byte marker (6 bytes are whole base64 groups, so it prefixes a tail). */
export function markerBase64(id: number, sequence: number): string {
  const bytes = new Uint8Array(6);
  writeMarker(bytes, 0, id, sequence);
  return bytesToBase64(bytes);
}

/** Reads a marker written by `writeMarker`. */
export function readMarker(bytes: Uint8Array, offset: number): { id: number; sequence: number } {
  return {
    id: (bytes[offset] << 8) | bytes[offset + 1],
    sequence: ((bytes[offset + 2] << 24) | (bytes[offset + 3] << 16) |
      (bytes[offset + 4] << 8) | bytes[offset + 5]) >>> 0,
  };
}

/** Standard base64 of bytes. */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

/** Bytes of standard base64 (no validation: the peers trust each other). */
export function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
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
  const byId = new Map<number, PeerConnection>();
  const counters = { appends: 0, appendedBytes: 0, deltas: 0, other: 0 };
  let nextConnectionId = 0;

  const send = (conn: PeerConnection, event: Record<string, unknown>) => {
    if (conn.socket.readyState === WebSocket.OPEN) conn.socket.send(JSON.stringify(event));
  };

  const onMessage = (conn: PeerConnection, text: string) => {
    if (text.startsWith(APPEND_PREFIX)) {
      const arrivedAtMs = performance.now();
      const audioText = text.slice(APPEND_PREFIX.length, text.indexOf('"', APPEND_PREFIX.length));
      counters.appends++;
      counters.appendedBytes += base64ByteLength(audioText);
      options.onAppend(arrivedAtMs, audioText);
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
        const arrivedAtMs = performance.now();
        const audioText = (event as { audio: string }).audio;
        counters.appends++;
        counters.appendedBytes += base64ByteLength(audioText);
        options.onAppend(arrivedAtMs, audioText);
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

  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, (req) => {
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
      id: nextConnectionId++ & 0xffff,
      socket,
      streaming: false,
      responseId: "",
      itemId: "",
      nextDeltaAtMs: 0,
      sequence: 0,
      chunkIndex: 0,
      sentAt: new Float64Array(DELTA_RING).fill(NaN),
    };
    socket.addEventListener("open", () => {
      connections.add(conn);
      byId.set(conn.id, conn);
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
          const sequence = conn.sequence++;
          // The GA reference layout (the bridge's exact-layout fast path expects it).
          const text = '{"type":"response.output_audio.delta","event_id":"' + newId("event") +
            '","response_id":"' + conn.responseId + '","item_id":"' + conn.itemId +
            '","output_index":0,"content_index":0,"delta":"' + markerBase64(conn.id, sequence) +
            tail + '"}';
          conn.sentAt[sequence % DELTA_RING] = performance.now();
          conn.socket.send(text);
          counters.deltas++;
          conn.nextDeltaAtMs += chunkMs;
        }
      }
    },
    deltaSentAt(connectionId, sequence) {
      const conn = byId.get(connectionId);
      return conn ? conn.sentAt[sequence % DELTA_RING] : NaN;
    },
    async close() {
      for (const conn of connections) conn.socket.close(1000, "bench over");
      await server.shutdown();
    },
  };
}
