/**
 * A permissive OpenAI Realtime server side for `frame_delay_bench.ts`: speaks the GA events the
 * three bridges under test read (voice-stream, the passthrough relay, and the official Twilio
 * sample, which sends a GA `session.update` and no `response.create`), accepts whatever they send
 * without validating it, and drives a conversation in turns:
 *
 * - `talk` turns (the delay and CPU windows): one assistant response of `talkResponseMs` of audio
 *   streamed as 100 ms `response.output_audio.delta`s `speedFactor` times faster than real time
 *   (as the OpenAI double does), `response.done`; once it has played, the caller's turn
 *   (`speech_started`, `speech_stopped`), then the next response, `talkTurnMs` after the last.
 * - `barge` turns (the barge-in window): the response is interrupted while its audio plays: the
 *   peer stops streaming, sends `input_audio_buffer.speech_started` (its send time recorded),
 *   `response.done` (cancelled), then `speech_stopped` and the next response. Barge-ins of all
 *   connections are at least `bargeGapMs` apart, so each `clear` the Twilio side receives is
 *   matched to the latest `speech_started` before it without knowing which call is which.
 *
 * The first response starts on the first `session.update` (every bridge sends one). Every caller
 * frame in every append is timed (`onFrame`), not only the last of an append: the bridge forwards
 * audio bytes unchanged and each 160-byte Twilio frame starts with its send stamp
 * (`timing_marker.ts`), so frame k of an append sits at byte k * 160.
 * @module
 */
import { base64DecodedLength } from "../../supabase/functions/_shared/codec/pcm.ts";
import {
  elapsedMs,
  markerBase64,
  markerFromBase64,
  precomputeTails,
  wallClockUs,
} from "./timing_marker.ts";
import { APPEND_PREFIX } from "./realtime_load_peer.ts";
import { FRAME_BYTES } from "./twilio_load_caller.ts";

/** 8 kHz mu-law bytes per ms. */
const MULAW_BYTES_PER_MS = 8;
/** Audio per delta, as OpenAI and the double send it. */
export const DELTA_MS = 100;

/** How the peer drives new turns. */
export type TurnMode = "talk" | "barge";

/** Options of {@link startFrameDelayPeer}. */
export interface FrameDelayPeerOptions {
  port: number;
  /** Assistant audio, 8 kHz mu-law, looped. */
  assistantAudio: Uint8Array;
  /** Deltas are sent this many times faster than real time. */
  speedFactor: number;
  /** Talk turns: audio per response, and response start to the next response's start. */
  talkResponseMs: number;
  talkTurnMs: number;
  /** Barge turns: audio per response (interrupted before its end). */
  bargeResponseMs: number;
  /** Barge turns: a barge-in comes this long after the response started, at the earliest. */
  bargeAfterMs: number;
  /** Least time between two barge-ins of any connections. */
  bargeGapMs: number;
  /** Every caller frame that arrived: ms from its send to the append's arrival. */
  onFrame(delayMs: number): void;
  /** Every append that arrived: its frame count and the last frame's delay (ms). */
  onAppend(frames: number, lastFrameDelayMs: number): void;
}

/** Counters since the last reset. */
export interface FrameDelayPeerCounters {
  appends: number;
  frames: number;
  deltas: number;
  responses: number;
  speechStarted: number;
  bargeIns: number;
  other: number;
}

/** Counters at zero (a peer's start, and a report's before it is filled). */
export function emptyPeerCounters(): FrameDelayPeerCounters {
  return {
    appends: 0,
    frames: 0,
    deltas: 0,
    responses: 0,
    speechStarted: 0,
    bargeIns: 0,
    other: 0,
  };
}

/** A running peer. */
export interface FrameDelayPeer {
  readonly open: number;
  readonly counters: FrameDelayPeerCounters;
  resetCounters(): void;
  /** Turns started from now on follow `mode`. */
  setMode(mode: TurnMode): void;
  /** Send times (wall-clock µs) of the barge-in `speech_started`s since the last call. */
  takeBargeInTimes(): Float64Array;
  tick(nowMs: number): void;
  close(): Promise<void>;
}

interface Connection {
  socket: WebSocket;
  started: boolean;
  mode: TurnMode;
  responseId: string;
  itemId: string;
  responseStartMs: number;
  responseDeltas: number;
  deltasSent: number;
  nextDeltaAtMs: number;
  doneSent: boolean;
  barged: boolean;
  callerTurnAtMs: number;
  callerItemId: string;
  speechStoppedAtMs: number;
  nextResponseAtMs: number;
  chunkIndex: number;
}

let idCounter = 0;
function newId(prefix: string): string {
  return `${prefix}_fd${(++idCounter).toString(36).padStart(12, "0")}`;
}

/** Starts the peer on `options.port` (loopback). */
export function startFrameDelayPeer(options: FrameDelayPeerOptions): FrameDelayPeer {
  const connections = new Set<Connection>();
  const counters = emptyPeerCounters();
  let mode: TurnMode = "talk";
  let lastBargeInMs = -Infinity;
  let bargeInTimes: number[] = [];
  const deltaIntervalMs = DELTA_MS / options.speedFactor;
  const tails = precomputeTails(options.assistantAudio, DELTA_MS * MULAW_BYTES_PER_MS);

  const send = (conn: Connection, text: string) => {
    if (conn.socket.readyState === WebSocket.OPEN) conn.socket.send(text);
  };

  const onAudio = (arrivedAtUs: number, audio: string) => {
    const frames = Math.floor(base64DecodedLength(audio) / FRAME_BYTES);
    counters.appends++;
    counters.frames += frames;
    let delay = NaN;
    for (let k = 0; k < frames; k++) {
      delay = elapsedMs(markerFromBase64(audio, k * FRAME_BYTES), arrivedAtUs);
      options.onFrame(delay);
    }
    options.onAppend(frames, delay);
  };

  const startResponse = (conn: Connection, nowMs: number) => {
    conn.mode = mode;
    conn.responseId = newId("resp");
    conn.itemId = newId("item");
    conn.responseStartMs = nowMs;
    conn.responseDeltas = Math.ceil(
      (mode === "talk" ? options.talkResponseMs : options.bargeResponseMs) / DELTA_MS,
    );
    conn.deltasSent = 0;
    conn.nextDeltaAtMs = nowMs;
    conn.doneSent = false;
    conn.barged = false;
    conn.callerTurnAtMs = mode === "talk" ? nowMs + options.talkResponseMs + 200 : Infinity;
    conn.speechStoppedAtMs = Infinity;
    conn.nextResponseAtMs = mode === "talk" ? nowMs + options.talkTurnMs : Infinity;
    counters.responses++;
    send(
      conn,
      JSON.stringify({
        type: "response.created",
        event_id: newId("event"),
        response: {
          object: "realtime.response",
          id: conn.responseId,
          status: "in_progress",
          output: [],
        },
      }),
    );
  };

  const responseDone = (conn: Connection, status: "completed" | "cancelled") => {
    conn.doneSent = true;
    send(
      conn,
      JSON.stringify({
        type: "response.done",
        event_id: newId("event"),
        response: {
          object: "realtime.response",
          id: conn.responseId,
          status,
          status_details: status === "cancelled"
            ? { type: "cancelled", reason: "turn_detected" }
            : null,
          output: [],
          usage: { total_tokens: 0, input_tokens: 0, output_tokens: 0 },
        },
      }),
    );
  };

  const speechStarted = (conn: Connection, nowMs: number) => {
    conn.callerItemId = newId("item");
    counters.speechStarted++;
    send(
      conn,
      `{"type":"input_audio_buffer.speech_started","event_id":"${
        newId("event")
      }","audio_start_ms":${Math.round(nowMs)},"item_id":"${conn.callerItemId}"}`,
    );
  };

  const speechStopped = (conn: Connection, nowMs: number) => {
    send(
      conn,
      JSON.stringify({
        type: "input_audio_buffer.speech_stopped",
        event_id: newId("event"),
        audio_end_ms: Math.round(nowMs),
        item_id: conn.callerItemId,
      }),
    );
  };

  const onMessage = (conn: Connection, text: string) => {
    if (text.startsWith(APPEND_PREFIX)) {
      const arrivedAtUs = wallClockUs();
      onAudio(
        arrivedAtUs,
        text.slice(APPEND_PREFIX.length, text.indexOf('"', APPEND_PREFIX.length)),
      );
      return;
    }
    let event: { type?: string; audio?: string };
    try {
      event = JSON.parse(text);
    } catch {
      return;
    }
    if (event.type === "input_audio_buffer.append" && typeof event.audio === "string") {
      onAudio(wallClockUs(), event.audio);
      return;
    }
    counters.other++;
    if (event.type === "session.update") {
      send(
        conn,
        JSON.stringify({
          type: "session.updated",
          event_id: newId("event"),
          session: { type: "realtime", object: "realtime.session", id: newId("sess") },
        }),
      );
      if (!conn.started) {
        conn.started = true;
        startResponse(conn, performance.now());
      }
    }
    // response.create, response.cancel, conversation.item.truncate and the rest: accepted.
  };

  const server = Deno.serve(
    { port: options.port, hostname: "127.0.0.1", onListen: () => {} },
    (req) => {
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
      const conn: Connection = {
        socket,
        started: false,
        mode,
        responseId: "",
        itemId: "",
        responseStartMs: 0,
        responseDeltas: 0,
        deltasSent: 0,
        nextDeltaAtMs: Infinity,
        doneSent: true,
        barged: false,
        callerTurnAtMs: Infinity,
        callerItemId: "",
        speechStoppedAtMs: Infinity,
        nextResponseAtMs: Infinity,
        chunkIndex: Math.floor(Math.random() * tails.length),
      };
      socket.addEventListener("open", () => {
        connections.add(conn);
        send(
          conn,
          JSON.stringify({
            type: "session.created",
            event_id: newId("event"),
            session: { type: "realtime", object: "realtime.session", id: newId("sess") },
          }),
        );
      });
      socket.addEventListener("message", (event) => {
        if (typeof event.data === "string") onMessage(conn, event.data);
      });
      socket.addEventListener("close", () => connections.delete(conn));
      socket.addEventListener("error", () => {});
      return response;
    },
  );

  const tickConnection = (conn: Connection, nowMs: number) => {
    if (!conn.started || conn.socket.readyState !== WebSocket.OPEN) return;
    while (!conn.barged && conn.deltasSent < conn.responseDeltas && conn.nextDeltaAtMs <= nowMs) {
      const tail = tails[conn.chunkIndex];
      conn.chunkIndex = (conn.chunkIndex + 1) % tails.length;
      // The GA reference layout (voice-stream's exact-layout fast path expects it).
      conn.socket.send(
        '{"type":"response.output_audio.delta","event_id":"' + newId("event") +
          '","response_id":"' + conn.responseId + '","item_id":"' + conn.itemId +
          '","output_index":0,"content_index":0,"delta":"' + markerBase64() + tail + '"}',
      );
      counters.deltas++;
      conn.deltasSent++;
      conn.nextDeltaAtMs += deltaIntervalMs;
    }
    if (!conn.barged && !conn.doneSent && conn.deltasSent === conn.responseDeltas) {
      responseDone(conn, "completed");
    }
    if (conn.mode === "barge" && !conn.barged) {
      // While the response's audio plays at Twilio (it started at responseStartMs).
      const playEndMs = conn.responseStartMs + conn.responseDeltas * DELTA_MS;
      if (
        nowMs >= conn.responseStartMs + options.bargeAfterMs && nowMs < playEndMs - 500 &&
        nowMs - lastBargeInMs >= options.bargeGapMs
      ) {
        lastBargeInMs = nowMs;
        conn.barged = true;
        counters.bargeIns++;
        speechStarted(conn, nowMs);
        bargeInTimes.push(wallClockUs());
        if (!conn.doneSent) responseDone(conn, "cancelled");
        conn.speechStoppedAtMs = nowMs + 500;
        conn.nextResponseAtMs = nowMs + 800;
      } else if (nowMs >= playEndMs) {
        // No slot while it played: go on without a barge-in.
        conn.nextResponseAtMs = nowMs;
      }
    }
    if (conn.callerTurnAtMs <= nowMs) {
      conn.callerTurnAtMs = Infinity;
      speechStarted(conn, nowMs);
      conn.speechStoppedAtMs = nowMs +
        Math.max(100, options.talkTurnMs - options.talkResponseMs - 600);
    }
    if (conn.speechStoppedAtMs <= nowMs) {
      conn.speechStoppedAtMs = Infinity;
      speechStopped(conn, nowMs);
    }
    if (conn.nextResponseAtMs <= nowMs) startResponse(conn, nowMs);
  };

  return {
    get open() {
      return connections.size;
    },
    counters,
    resetCounters() {
      for (const key of Object.keys(counters) as (keyof FrameDelayPeerCounters)[]) {
        counters[key] = 0;
      }
    },
    setMode(next) {
      mode = next;
    },
    takeBargeInTimes() {
      const times = Float64Array.from(bargeInTimes);
      bargeInTimes = [];
      return times;
    },
    tick(nowMs) {
      for (const conn of connections) tickConnection(conn, nowMs);
    },
    async close() {
      for (const conn of connections) conn.socket.close(1000, "bench over");
      await server.shutdown();
    },
  };
}
