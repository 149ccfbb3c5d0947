/**
 * One load thread of `frame_delay_bench.ts`: the model side (`frame_delay_peer.ts`) or the Twilio
 * callers (`twilio_load_caller.ts`'s fleet, plus the arrival time of every `clear`), each with its
 * own 1 ms ticker, as `load_worker.ts` runs `bridge_load.ts`'s load. The main thread sends
 * numbered commands; each reply carries the same `id`.
 * @module
 */
import { SampleBuffer } from "./bench_stats.ts";
import {
  emptyPeerCounters,
  type FrameDelayPeerCounters,
  type FrameDelayPeerOptions,
  startFrameDelayPeer,
  type TurnMode,
} from "./frame_delay_peer.ts";
import { wallClockUs } from "./timing_marker.ts";
import {
  awaitFirstAudio,
  type CallerFleetOptions,
  createCallerFleet,
  emptyFleetCounters,
  type FleetCounters,
} from "./twilio_load_caller.ts";
import { serveThread, spawnThread, type ThreadHandle } from "./thread_rpc.ts";
import type { BridgeSocket } from "../../supabase/functions/voice-stream/bridge_deps.ts";

/** How a thread starts. */
export type FrameDelayWorkerStart =
  | { role: "peer"; peer: Omit<FrameDelayPeerOptions, "onFrame" | "onAppend"> }
  | { role: "callers"; fleet: Omit<CallerFleetOptions, "onMedia"> };

/** Commands of the main thread. */
export type FrameDelayCommand =
  | { type: "start"; start: FrameDelayWorkerStart }
  /** Callers: place calls until `target` are open (`perSecond` a second), then await audio. */
  | { type: "ramp"; target: number; perSecond: number }
  | { type: "mode"; mode: TurnMode }
  | { type: "window_start" }
  | { type: "window_end" }
  | { type: "close" };

/** What one thread measured in a window: the peer's or the callers' counters, and samples. */
export interface FrameDelayReport extends FleetCounters, FrameDelayPeerCounters {
  /** Peer: every caller frame, send -> arrival at the model side (ms). */
  frameDelays: Float64Array;
  /** Peer: per append, its last frame's delay (the figure `bridge_load.ts` reports). */
  lastFrameDelays: Float64Array;
  /** Peer: wall-clock µs of each barge-in `speech_started` sent. */
  bargeInTimesUs: Float64Array;
  /** Callers: wall-clock µs of each `clear` received. */
  clearTimesUs: Float64Array;
}

/** Replies. */
export type FrameDelayReply =
  & { id: number }
  & (
    | { type: "ok" }
    | { type: "ramped"; open: number; failed: number; withoutAudio: number }
    | { type: "window"; report: FrameDelayReport }
  );

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function emptyReport(): FrameDelayReport {
  return {
    ...emptyPeerCounters(),
    ...emptyFleetCounters(),
    frameDelays: new Float64Array(0),
    lastFrameDelays: new Float64Array(0),
    bargeInTimesUs: new Float64Array(0),
    clearTimesUs: new Float64Array(0),
  };
}

type Handler = (command: FrameDelayCommand & { id: number }) => Promise<FrameDelayReply>;

function runPeer(start: Extract<FrameDelayWorkerStart, { role: "peer" }>): Handler {
  let measuring = false;
  const frames = new SampleBuffer();
  const lastFrames = new SampleBuffer();
  const peer = startFrameDelayPeer({
    ...start.peer,
    onFrame(delayMs) {
      if (measuring) frames.push(delayMs);
    },
    onAppend(_frames, lastFrameDelayMs) {
      if (measuring && Number.isFinite(lastFrameDelayMs)) lastFrames.push(lastFrameDelayMs);
    },
  });
  const ticker = setInterval(() => peer.tick(performance.now()), 1);
  return async (command) => {
    switch (command.type) {
      case "mode":
        peer.setMode(command.mode);
        return { id: command.id, type: "ok" };
      case "window_start":
        peer.resetCounters();
        peer.takeBargeInTimes();
        frames.clear();
        lastFrames.clear();
        measuring = true;
        return { id: command.id, type: "ok" };
      case "window_end": {
        measuring = false;
        const report = emptyReport();
        Object.assign(report, peer.counters);
        report.frameDelays = frames.take();
        report.lastFrameDelays = lastFrames.take();
        report.bargeInTimesUs = peer.takeBargeInTimes();
        return { id: command.id, type: "window", report };
      }
      case "close":
        clearInterval(ticker);
        await peer.close();
        return { id: command.id, type: "ok" };
      default:
        throw new Error(`the peer does not handle ${command.type}`);
    }
  };
}

function runCallers(start: Extract<FrameDelayWorkerStart, { role: "callers" }>): Handler {
  let measuring = false;
  const clears = new SampleBuffer();
  const fleet = createCallerFleet(start.fleet);
  const ticker = setInterval(() => fleet.tick(performance.now()), 1);
  /** The fleet keeps each call's socket; a second listener times the `clear`s on it. */
  const watchClears = (call: unknown) => {
    const socket = (call as { socket: BridgeSocket | null }).socket;
    socket?.addEventListener("message", (event: { data: unknown }) => {
      if (
        measuring && typeof event.data === "string" && event.data.startsWith('{"event":"clear"')
      ) {
        clears.push(wallClockUs());
      }
    });
  };
  return async (command) => {
    switch (command.type) {
      case "ramp": {
        for (let started = fleet.calls.length; started < command.target; started++) {
          watchClears(await fleet.startCall());
          await sleep(1000 / command.perSecond);
        }
        return { id: command.id, type: "ramped", ...(await awaitFirstAudio(fleet)) };
      }
      case "window_start":
        fleet.resetCounters();
        clears.clear();
        measuring = true;
        return { id: command.id, type: "ok" };
      case "window_end": {
        measuring = false;
        const report = { ...emptyReport(), ...fleet.counters };
        report.clearTimesUs = clears.take();
        return { id: command.id, type: "window", report };
      }
      case "close":
        await fleet.hangupAll();
        clearInterval(ticker);
        return { id: command.id, type: "ok" };
      default:
        throw new Error(`callers do not handle ${command.type}`);
    }
  };
}

/** A load thread seen from the main thread. */
export type FrameDelayWorker = ThreadHandle<FrameDelayCommand, FrameDelayReply>;

/** Starts a load thread in `start`'s role. */
export function spawnFrameDelayWorker(start: FrameDelayWorkerStart): Promise<FrameDelayWorker> {
  return spawnThread(new URL(import.meta.url).href, start.role, { type: "start", start });
}

if ("WorkerGlobalScope" in globalThis) {
  let handle: Handler | null = null;
  serveThread<FrameDelayCommand, FrameDelayReply>(
    (command) => {
      if (command.type !== "start") return handle!(command);
      handle = command.start.role === "peer" ? runPeer(command.start) : runCallers(command.start);
      return Promise.resolve({ id: command.id, type: "ok" });
    },
    (reply) =>
      reply.type === "window"
        ? [
          reply.report.frameDelays.buffer as ArrayBuffer,
          reply.report.lastFrameDelays.buffer as ArrayBuffer,
          reply.report.bargeInTimesUs.buffer as ArrayBuffer,
          reply.report.clearTimesUs.buffer as ArrayBuffer,
        ]
        : [],
  );
}
