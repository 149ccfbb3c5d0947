/**
 * One thread of `bridge_load.ts`'s load side: either a share of the Twilio callers
 * (`twilio_load_caller.ts`) or a model peer (`realtime_load_peer.ts`), each with its own 1 ms
 * ticker. Spreading the load over threads keeps any one load event loop from stalling hundreds of
 * calls at once (one busy load loop's scavenges and marking pauses were most of the measured
 * forwarding tail), as Twilio's and OpenAI's servers are many machines, not one event loop.
 *
 * Every hop is timed by whoever receives the audio, from the marker in it (`timing_marker.ts`),
 * so no thread needs another's clock table. The main thread talks to a worker with
 * `LoadWorkerRequest`s; each is answered by a `LoadWorkerReply` with the same `id`.
 * @module
 */
import { SampleBuffer, sampleLoopLag } from "./bench_stats.ts";
import { serveThread, spawnThread, type ThreadHandle } from "./thread_rpc.ts";
import { startRealtimeLoadPeer } from "./realtime_load_peer.ts";
import { base64DecodedLength } from "../../supabase/functions/_shared/codec/pcm.ts";
import { elapsedMs, markerFromBase64 } from "./timing_marker.ts";
import {
  awaitFirstAudio,
  type CallerFleetOptions,
  createCallerFleet,
  emptyFleetCounters,
  type FleetCounters,
  FRAME_BYTES,
} from "./twilio_load_caller.ts";

/** How a worker starts. */
export type LoadWorkerStart =
  | {
    role: "peer";
    port: number;
    reusePort: boolean;
    assistantAudio: Uint8Array;
    chunkMs: number;
    loopLagLabel?: string;
  }
  | {
    role: "callers";
    fleet: Omit<CallerFleetOptions, "onMedia">;
    loopLagLabel?: string;
  };

/** What the main thread asks of a worker. */
export type LoadWorkerCommand =
  | { type: "start"; start: LoadWorkerStart }
  /** Callers: place calls until this worker has `target`, then wait for their first audio. */
  | { type: "ramp"; target: number; callsPerSecond: number; inFlight: number }
  | { type: "window_start" }
  | { type: "window_end" }
  /** Callers: hang up every call. Peer: close the server. */
  | { type: "close" };

/** A command as sent, numbered for its reply. */
export type LoadWorkerRequest = LoadWorkerCommand & { id: number };

/** What a window measured in one worker. */
export interface WindowReport extends FleetCounters {
  /** Peer: appends and the caller audio in them, deltas sent. */
  appends: number;
  appendedBytes: number;
  deltas: number;
  /** Peer: per append, frame sent -> append arrived for its last frame (ms). */
  inboundDelays: Float64Array;
  /** Peer: per append of several frames, first frame sent -> last frame sent (ms). */
  coalescingWaits: Float64Array;
  /** Callers: per assistant media message, delta sent -> media arrived (ms). */
  outboundDelays: Float64Array;
}

/** Replies to the main thread. */
export type LoadWorkerReply =
  & { id: number }
  & (
    | { type: "started" }
    | { type: "ramped"; open: number; failed: number; withoutAudio: number }
    | { type: "window_started" }
    | { type: "window"; report: WindowReport }
    | { type: "closed" }
  );

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function emptyReport(): WindowReport {
  return {
    ...emptyFleetCounters(),
    appends: 0,
    appendedBytes: 0,
    deltas: 0,
    inboundDelays: new Float64Array(0),
    coalescingWaits: new Float64Array(0),
    outboundDelays: new Float64Array(0),
  };
}

/** Runs a peer; returns its request handler. */
function runPeer(start: Extract<LoadWorkerStart, { role: "peer" }>) {
  let measuring = false;
  const inbound = new SampleBuffer();
  const coalescing = new SampleBuffer();
  const peer = startRealtimeLoadPeer({
    assistantAudio: start.assistantAudio,
    chunkMs: start.chunkMs,
    port: start.port,
    reusePort: start.reusePort,
    onAppend(arrivedAtUs, audioBase64) {
      if (!measuring) return;
      const bytes = base64DecodedLength(audioBase64);
      if (bytes < FRAME_BYTES) return;
      const last = markerFromBase64(audioBase64, bytes - FRAME_BYTES);
      inbound.push(elapsedMs(last, arrivedAtUs));
      if (bytes > FRAME_BYTES) {
        const first = markerFromBase64(audioBase64, 0);
        coalescing.push((last - first) / 1000);
      }
    },
  });
  const ticker = setInterval(() => peer.tick(performance.now()), 1);
  return async (request: LoadWorkerRequest): Promise<LoadWorkerReply> => {
    switch (request.type) {
      case "window_start":
        peer.resetCounters();
        inbound.clear();
        coalescing.clear();
        measuring = true;
        return { id: request.id, type: "window_started" };
      case "window_end": {
        measuring = false;
        const report = emptyReport();
        report.appends = peer.counters.appends;
        report.appendedBytes = peer.counters.appendedBytes;
        report.deltas = peer.counters.deltas;
        report.inboundDelays = inbound.take();
        report.coalescingWaits = coalescing.take();
        return { id: request.id, type: "window", report };
      }
      case "close":
        clearInterval(ticker);
        await peer.close();
        return { id: request.id, type: "closed" };
      default:
        throw new Error(`a peer does not handle ${request.type}`);
    }
  };
}

/** Runs a share of the callers; returns its request handler. */
function runCallers(start: Extract<LoadWorkerStart, { role: "callers" }>) {
  let measuring = false;
  const outbound = new SampleBuffer();
  const fleet = createCallerFleet({
    ...start.fleet,
    onMedia(arrivedAtUs, audioBase64) {
      if (!measuring || audioBase64.length < 20) return;
      outbound.push(elapsedMs(markerFromBase64(audioBase64, 0), arrivedAtUs));
    },
  });
  const ticker = setInterval(() => fleet.tick(performance.now()), 1);
  return async (request: LoadWorkerRequest): Promise<LoadWorkerReply> => {
    switch (request.type) {
      case "ramp": {
        const inFlight = new Set<Promise<unknown>>();
        for (let started = fleet.calls.length; started < request.target; started++) {
          if (inFlight.size >= request.inFlight) await Promise.race(inFlight);
          const promise = fleet.startCall().finally(() => inFlight.delete(promise));
          inFlight.add(promise);
          await sleep(1000 / request.callsPerSecond);
        }
        await Promise.all(inFlight);
        return { id: request.id, type: "ramped", ...(await awaitFirstAudio(fleet)) };
      }
      case "window_start":
        fleet.resetCounters();
        outbound.clear();
        measuring = true;
        return { id: request.id, type: "window_started" };
      case "window_end": {
        measuring = false;
        const report = { ...emptyReport(), ...fleet.counters };
        report.outboundDelays = outbound.take();
        return { id: request.id, type: "window", report };
      }
      case "close":
        await fleet.hangupAll();
        clearInterval(ticker);
        return { id: request.id, type: "closed" };
      default:
        throw new Error(`callers do not handle ${request.type}`);
    }
  };
}

/** A load worker seen from the main thread. */
export type LoadWorkerHandle = ThreadHandle<LoadWorkerCommand, LoadWorkerReply>;

/** Starts a load worker thread. */
export function spawnLoadWorker(start: LoadWorkerStart): Promise<LoadWorkerHandle> {
  return spawnThread(new URL(import.meta.url).href, start.role, { type: "start", start });
}

// As a Worker: the first request says which role this thread plays.
if ("WorkerGlobalScope" in globalThis) {
  let handle: ((request: LoadWorkerRequest) => Promise<LoadWorkerReply>) | null = null;
  serveThread<LoadWorkerCommand, LoadWorkerReply>(
    (request) => {
      if (request.type !== "start") return handle!(request);
      const start = request.start;
      handle = start.role === "peer" ? runPeer(start) : runCallers(start);
      if (start.loopLagLabel !== undefined) sampleLoopLag(start.loopLagLabel);
      return Promise.resolve({ id: request.id, type: "started" });
    },
    (reply) =>
      reply.type === "window"
        ? [
          reply.report.inboundDelays.buffer as ArrayBuffer,
          reply.report.coalescingWaits.buffer as ArrayBuffer,
          reply.report.outboundDelays.buffer as ArrayBuffer,
        ]
        : [],
  );
}
