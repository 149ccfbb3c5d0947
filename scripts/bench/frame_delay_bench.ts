/**
 * Per-frame delay and CPU per call-second of the voice-stream bridge, beside the official Twilio
 * sample server (twilio-samples/speech-assistant-openai-realtime-api-node, Node + Fastify + `ws`,
 * run from a copy outside this repository) and the passthrough relay, measured in one run:
 *
 * 1. **Per-frame inbound delay, every frame**: each caller frame's first 6 bytes carry its send
 *    time (`timing_marker.ts`); the model side (`frame_delay_peer.ts`) reads the stamp of every
 *    frame inside every append, at byte k * 160, and times it against the append's arrival.
 * 2. **`clear` latency**: the model side sends `input_audio_buffer.speech_started` while the
 *    assistant's audio plays; the Twilio side stamps each `clear` it receives; barge-ins of all
 *    calls are at least 50 ms apart, so each `clear` belongs to the latest `speech_started` before
 *    it.
 * 3. **Main-thread CPU per call-second**: the bridge's main thread (`/proc/<pid>/task/<pid>/
 *    schedstat`, ns) with 1 and 20 calls in one process; for voice-stream also under the local
 *    edge runtime (`scripts/edge_runtime/`), each call in its own worker, the voice-stream worker
 *    threads' CPU (what the platform counts).
 *
 * The model side streams 100 ms deltas 4x faster than real time (the OpenAI double's default
 * speedFactor), 3 s of audio per response, a new response every 5 s (the caller's turn in
 * between: `speech_started`, `speech_stopped`); the callers send a 20 ms frame every 20 ms on
 * their own clocks over TCP_NODELAY sockets (`twilio_load_caller.ts`). Load threads: one model
 * thread, one caller thread (`frame_delay_worker.ts`), in this process; each bridge in its own.
 *
 * Variants (`--variants`):
 * - `product`: voice-stream as shipped, in a process of its own (`bridge_load.ts --role bridge`:
 *   the local function server, real Postgres store, one isolate);
 * - `product-websocket`: the same with `REALTIME_SOCKET=websocket` (Deno's WebSocket client for
 *   the model socket instead of the TCP_NODELAY client): 1 and 20 calls, no barge-in window;
 * - `product-edge`: voice-stream under the local edge runtime (one worker thread per request);
 *   `product-edge-80` the same with `CALLER_AUDIO_APPEND_MS=80` (caller frames joined by 4);
 * - `sample`: the official Twilio sample (`--sample-dir`, default /tmp/twilio-sample; its OpenAI
 *   URL read from `OPENAI_REALTIME_URL`, the one change made to the copy);
 * - `relay` / `relay-nodelay`: `passthrough_relay.ts` with Deno's WebSocket client / the
 *   TCP_NODELAY client for the model.
 *
 * Phases, each on fresh calls (ramped at 50 a second, 3 s to settle, then a `--seconds` window):
 * 1 call, 20 calls, and for `product` and `sample` (the bridges that send `clear`) 20 calls with
 * barge-ins. Each call lives under half a minute, inside voice-stream's handover budgets.
 * `--rounds` repeats the whole sequence (the variants alternate); delays are pooled over the
 * rounds, CPU figures are the rounds' median (the machine is shared: rounds differ by up to 25%).
 *
 * Run (needs PostgreSQL: DATABASE_URL or postgres://postgres@127.0.0.1:5432/postgres, where a fresh
 * seeded database is created and dropped; node and `npm install` in the sample's copy):
 *   deno run -A --unstable-net scripts/bench/frame_delay_bench.ts [--seconds 10] [--rounds 2]
 *     [--variants product,product-websocket,product-edge,sample,relay,relay-nodelay]
 *     [--sample-dir /tmp/twilio-sample] [--json /tmp/frame_delay.json]
 *     [--phases "1 call,20 calls,barge-in"]
 * BENCH_BRIDGE_V8_FLAGS (e.g. --perf-basic-prof) goes to the Deno bridge processes; each one's pid
 * is logged, for `perf record -p <pid>`.
 * Results: docs/benchmarks.md, "Per-frame delay and CPU per call-second".
 * @module
 */
import {
  LOCAL_OPENAI_API_KEY,
  LOCAL_TWILIO_ACCOUNT_SID,
  LOCAL_TWILIO_AUTH_TOKEN,
  startLocalStack,
} from "../local_stack.ts";
import { createTestDatabase } from "../../tests/support/test_db.ts";
import { loadFixture } from "../../tests/support/audio_fixtures.ts";
import {
  concatSamples,
  fixed,
  type LatencySummary,
  loadAverage,
  markdownTable,
  median,
  processCpuMs,
  summarize,
} from "./bench_stats.ts";
import {
  type FrameDelayReport,
  type FrameDelayWorker,
  spawnFrameDelayWorker,
} from "./frame_delay_worker.ts";
import type { TurnMode } from "./frame_delay_peer.ts";
import { startBridge, waitForLine } from "./bridge_load.ts";

const DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const DENO = Deno.execPath();
const SCRIPT = new URL(import.meta.url).pathname;
/** The seed's demo org and its known client (supabase/seed.sql). */
const DEMO_ORG_NUMBER = "+15550100000";
const JANE_DOE_NUMBER = "+15551230001";
/** The model side's turns (see the module doc). */
const PEER_TURNS = {
  speedFactor: 4,
  talkResponseMs: 3_000,
  talkTurnMs: 5_000,
  bargeResponseMs: 4_000,
  bargeAfterMs: 800,
  bargeGapMs: 50,
};
const SETTLE_MS = 3_000;
const RAMP_PER_SECOND = 50;

type Variant =
  | "product"
  | "product-websocket"
  | "product-edge"
  | "product-edge-80"
  | "sample"
  | "relay"
  | "relay-nodelay";
const VARIANTS: readonly Variant[] = [
  "product",
  "product-websocket",
  "product-edge",
  "product-edge-80",
  "sample",
  "relay",
  "relay-nodelay",
];

const LABELS: Record<Variant, string> = {
  product: "voice-stream (as shipped), own process",
  "product-websocket": "voice-stream, REALTIME_SOCKET=websocket, own process",
  "product-edge": "voice-stream under the local edge runtime",
  "product-edge-80": "voice-stream under the edge runtime, CALLER_AUDIO_APPEND_MS=80",
  sample: "official Twilio sample (Node, Fastify, ws)",
  relay: "passthrough relay (Deno WebSocket client)",
  "relay-nodelay": "passthrough relay (TCP_NODELAY client)",
};

function flag(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index === -1 ? undefined : args[index + 1];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A thread's voluntary context switches so far (its event loop's sleeps); null once gone. */
function threadWakeups(pid: number, tid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/status`);
    return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  } catch {
    return null;
  }
}

/** A thread's CPU so far (user + system, ns resolution), ms; null once it is gone. */
function threadCpuMs(pid: number, tid: number): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/schedstat`);
    return Number(text.slice(0, text.indexOf(" "))) / 1e6;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The bridges under test

interface Target {
  variant: Variant;
  pid: number;
  frontdoorUrl: string;
  /** Threads whose CPU is the bridge's: the main thread, or the voice-stream workers. */
  measuredThreads(): Promise<number[]>;
  stop(): Promise<void>;
}

function randomPort(): number {
  return 30_000 + Math.floor(Math.random() * 10_000);
}

async function startBridgeLoadTarget(
  variant: "product" | "product-websocket" | "relay" | "relay-nodelay",
  databaseUrl: string,
  realtimeUrl: string,
): Promise<Target> {
  const bridge = await startBridge(variant, databaseUrl, realtimeUrl, LOCAL_OPENAI_API_KEY, 1);
  return {
    variant,
    pid: bridge.pid,
    frontdoorUrl: bridge.frontdoorUrl,
    measuredThreads: () => Promise.resolve([bridge.pid]),
    stop: () => bridge.stop(),
  };
}

async function startSampleTarget(sampleDir: string, realtimeUrl: string): Promise<Target> {
  const port = randomPort();
  const child = new Deno.Command("node", {
    args: ["index.js"],
    cwd: sampleDir,
    env: {
      PORT: String(port),
      OPENAI_API_KEY: LOCAL_OPENAI_API_KEY,
      // The one change made to the sample's copy: its OpenAI URL from the environment.
      OPENAI_REALTIME_URL: realtimeUrl,
    },
    // Its console.log lines (a few per call and per barge-in) are written, to nowhere.
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const deadline = performance.now() + 15_000;
  for (;;) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/`);
      await response.body?.cancel();
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (performance.now() > deadline) throw new Error("the Twilio sample did not start");
    await sleep(100);
  }
  return {
    variant: "sample",
    pid: child.pid,
    frontdoorUrl: `http://127.0.0.1:${port}/incoming-call`,
    measuredThreads: () => Promise.resolve([child.pid]),
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

async function startEdgeTarget(
  variant: "product-edge" | "product-edge-80",
  databaseUrl: string,
  realtimeUrl: string,
): Promise<Target> {
  const port = randomPort();
  const child = new Deno.Command(DENO, {
    args: [
      "run",
      "-A",
      SCRIPT,
      "--role",
      "edge",
      "--port",
      String(port),
      "--database-url",
      databaseUrl,
      "--realtime-url",
      realtimeUrl,
      "--append-ms",
      variant === "product-edge-80" ? "80" : "20",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  await waitForLine(child, "listening");
  return {
    variant,
    pid: child.pid,
    frontdoorUrl: `http://127.0.0.1:${port}/functions/v1/voice-frontdoor`,
    async measuredThreads() {
      const workers = await (await fetch(`http://127.0.0.1:${port + 1}/workers`)).json() as {
        name: string;
        tid: number | null;
      }[];
      return workers.filter((w) => w.name === "voice-stream" && w.tid !== null).map((w) => w.tid!);
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** Child role: the three functions under the local edge runtime, no CPU or wall-clock limit. */
async function edgeRole(args: string[]): Promise<void> {
  const port = Number(flag(args, "--port"));
  const stack = await startLocalStack({
    databaseUrl: flag(args, "--database-url"),
    skipPrepare: true,
    port,
    env: {
      OPENAI_REALTIME_URL: flag(args, "--realtime-url")!,
      OPENAI_API_KEY: LOCAL_OPENAI_API_KEY,
      CALLER_AUDIO_APPEND_MS: flag(args, "--append-ms") ?? "20",
      LOG_LEVEL: "info",
    },
    // Limits off (0): the windows measure, nothing is retired or killed.
    edgeRuntime: {
      wallClockMs: 0,
      cpuSoftMs: 0,
      cpuHardMs: 0,
      beforeunloadWallClockPct: null,
      beforeunloadCpuPct: null,
      pollIntervalMs: 50,
    },
    logSink: () => {},
  });
  const control = Deno.serve(
    { port: port + 1, hostname: "127.0.0.1", onListen: () => {} },
    () => Response.json(stack.edgeRuntime!.workers().map((w) => ({ name: w.name, tid: w.tid }))),
  );
  console.error("listening");
  Deno.addSignalListener("SIGTERM", async () => {
    await Promise.race([Promise.all([control.shutdown(), stack.stop()]), sleep(3_000)]);
    Deno.exit(0);
  });
  await new Promise(() => {});
}

// ---------------------------------------------------------------------------------------------
// Phases

interface Phase {
  name: string;
  calls: number;
  mode: TurnMode;
}

interface PhaseResult {
  variant: Variant;
  phase: string;
  calls: number;
  windowSeconds: number;
  frames: LatencySummary;
  lastFrames: LatencySummary;
  framesPerAppend: number;
  clear: LatencySummary;
  bargeIns: number;
  clearsReceived: number;
  /** CPU of the measured threads (main thread, or voice-stream workers), ms per call-second. */
  threadMsPerCallSecond: number;
  /** The whole process's CPU (all threads, 10 ms ticks), ms per call-second. */
  processMsPerCallSecond: number;
  /** Messages, wake-ups and (edge runtime) the supervisor's main thread's CPU, per call-second. */
  perCallSecond: Record<string, number>;
  failed: number;
  round: number;
  /** Raw samples (ms), pooled over rounds in the report. */
  frameDelays: Float64Array;
  lastFrameDelays: Float64Array;
  clearLatencies: Float64Array;
}

/** ms from each `clear` to the latest barge-in `speech_started` before it (both wall-clock µs). */
export function matchClears(bargeInsUs: Float64Array, clearsUs: Float64Array): Float64Array {
  const starts = Float64Array.from(bargeInsUs).sort();
  const out: number[] = [];
  for (const clear of Float64Array.from(clearsUs).sort()) {
    let lo = 0;
    let hi = starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= clear) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found >= 0) out.push((clear - starts[found]) / 1000);
  }
  return Float64Array.from(out);
}

/**
 * The phases of a variant: 1 call and 20 calls; a barge-in window (20 calls) for the two bridges
 * that send `clear` (the relays have no barge-in: no `clear` to time).
 */
const PHASES: readonly Phase[] = [
  { name: "1 call", calls: 1, mode: "talk" },
  { name: "20 calls", calls: 20, mode: "talk" },
  { name: "barge-in", calls: 20, mode: "barge" },
];
function phasesOf(variant: Variant): readonly Phase[] {
  return variant === "product" || variant === "sample" ? PHASES : PHASES.slice(0, 2);
}

/** Starts a variant's bridge, talking to the model side at `realtimeUrl`. */
function startTarget(
  variant: Variant,
  options: { databaseUrl: string; sampleDir: string },
  realtimeUrl: string,
): Promise<Target> {
  if (variant === "sample") return startSampleTarget(options.sampleDir, realtimeUrl);
  if (variant === "product-edge" || variant === "product-edge-80") {
    return startEdgeTarget(variant, options.databaseUrl, realtimeUrl);
  }
  return startBridgeLoadTarget(variant, options.databaseUrl, realtimeUrl);
}

/**
 * One phase on one bridge: fresh calls (each lives under half a minute, inside voice-stream's
 * handover budgets), settle, one window, hang up.
 */
async function runPhase(
  target: Target,
  peer: FrameDelayWorker,
  phase: Phase,
  options: { seconds: number; round: number },
  log: (line: string) => void,
): Promise<PhaseResult> {
  const variant = target.variant;
  const speech = loadFixture("caller_book_cleaning");
  const callerAudio = new Uint8Array(speech.length + 16_000).fill(0xff);
  callerAudio.set(speech);
  let callers: FrameDelayWorker | null = null;
  try {
    callers = await spawnFrameDelayWorker({
      role: "callers",
      fleet: {
        frontdoorUrl: target.frontdoorUrl,
        authToken: LOCAL_TWILIO_AUTH_TOKEN,
        accountSid: LOCAL_TWILIO_ACCOUNT_SID,
        from: JANE_DOE_NUMBER,
        to: DEMO_ORG_NUMBER,
        callerAudio,
        socket: "nodelay",
      },
    });
    await peer.ask({ type: "mode", mode: phase.mode });
    const ramped = await callers.ask({
      type: "ramp",
      target: phase.calls,
      perSecond: RAMP_PER_SECOND,
    });
    if (ramped.type !== "ramped") throw new Error("ramp failed");
    await sleep(SETTLE_MS);
    await Promise.all([
      peer.ask({ type: "window_start" }),
      callers.ask({ type: "window_start" }),
    ]);
    const threads = await target.measuredThreads();
    const threadStart = threads.map((tid) => threadCpuMs(target.pid, tid));
    const wakeupsStart = threads.map((tid) => threadWakeups(target.pid, tid));
    const processStart = processCpuMs(target.pid);
    const edgeMainStart = threadCpuMs(target.pid, target.pid);
    const started = performance.now();
    await sleep(options.seconds * 1000);
    const threadEnd = threads.map((tid) => threadCpuMs(target.pid, tid));
    const wakeupsEnd = threads.map((tid) => threadWakeups(target.pid, tid));
    const processEnd = processCpuMs(target.pid);
    const edgeMainEnd = threadCpuMs(target.pid, target.pid);
    const windowSeconds = (performance.now() - started) / 1000;
    const [peerReply, callerReply] = await Promise.all([
      peer.ask({ type: "window_end" }),
      callers.ask({ type: "window_end" }),
    ]);
    if (peerReply.type !== "window" || callerReply.type !== "window") {
      throw new Error("window failed");
    }
    const model: FrameDelayReport = peerReply.report;
    const twilio: FrameDelayReport = callerReply.report;
    let threadMs = 0;
    let wakeups = 0;
    for (let i = 0; i < threads.length; i++) {
      if (threadStart[i] !== null && threadEnd[i] !== null) {
        threadMs += threadEnd[i]! - threadStart[i]!;
        wakeups += wakeupsEnd[i]! - wakeupsStart[i]!;
      }
    }
    const callSeconds = ramped.open * windowSeconds;
    const clearLatencies = matchClears(model.bargeInTimesUs, twilio.clearTimesUs);
    const result: PhaseResult = {
      variant,
      phase: phase.name,
      calls: ramped.open,
      windowSeconds,
      frames: summarize(model.frameDelays),
      lastFrames: summarize(model.lastFrameDelays),
      framesPerAppend: model.frames / Math.max(1, model.appends),
      clear: summarize(clearLatencies),
      bargeIns: model.bargeIns,
      clearsReceived: twilio.clearsReceived,
      threadMsPerCallSecond: threadMs / callSeconds,
      processMsPerCallSecond: (processEnd - processStart) / callSeconds,
      perCallSecond: {
        framesSent: twilio.framesSent / callSeconds,
        appends: model.appends / callSeconds,
        deltas: model.deltas / callSeconds,
        media: twilio.mediaReceived / callSeconds,
        marks: twilio.marksReceived / callSeconds,
        markEchoes: twilio.marksEchoed / callSeconds,
        // Times the measured thread(s) went to sleep and were woken (voluntary switches).
        threadWakeups: wakeups / callSeconds,
        // Edge runtime: the supervisor's main thread (the TCP proxy in front of the workers).
        supervisorMainThreadMs: variant.startsWith("product-edge") && edgeMainStart !== null &&
            edgeMainEnd !== null
          ? (edgeMainEnd - edgeMainStart) / callSeconds
          : NaN,
        measuredThreads: threads.length,
      },
      failed: ramped.failed,
      round: options.round,
      frameDelays: model.frameDelays,
      lastFrameDelays: model.lastFrameDelays,
      clearLatencies,
    };
    log(
      `round ${options.round} ${variant} ${phase.name}: ${result.calls} calls (failed ${result.failed}), frames ${result.frames.count} ` +
        `(${fixed(result.framesPerAppend)} per append): p50 ${fixed(result.frames.p50Ms)} p95 ${
          fixed(result.frames.p95Ms)
        } p99 ${fixed(result.frames.p99Ms)} max ${fixed(result.frames.maxMs)} ms; ` +
        `clear ${result.clear.count}/${result.bargeIns} p50 ${fixed(result.clear.p50Ms)} p99 ${
          fixed(result.clear.p99Ms)
        } max ${fixed(result.clear.maxMs)} ms; ` +
        `CPU ${
          fixed(result.threadMsPerCallSecond)
        } ms/call-s on ${threads.length} measured thread(s), process ${
          fixed(result.processMsPerCallSecond)
        }; per call-s ${
          Object.entries(result.perCallSecond).map(([k, v]) => `${k} ${fixed(v, 2)}`).join(", ")
        }; load ${loadAverage()}`,
    );
    return result;
  } finally {
    if (callers) {
      await callers.ask({ type: "close" }).catch(() => {});
      callers.terminate();
    }
    // The bridge's model sockets close behind the calls before the next phase.
    await sleep(1_000);
  }
}

/** The median of one figure over the rounds of a variant's phase, each round's in brackets. */
function overRounds(values: number[], digits = 2): string {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return "n/a";
  if (finite.length === 1) return fixed(finite[0], digits);
  return `${fixed(median(finite), digits)} (${finite.map((v) => fixed(v, digits)).join(", ")})`;
}

/** Prints the tables: delays pooled over the rounds, CPU as the median of the rounds. */
function report(results: PhaseResult[]): void {
  const groups = new Map<string, PhaseResult[]>();
  for (const r of results) {
    const key = `${r.variant} ${r.phase}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const ms = (value: number) => fixed(value);
  const delay = [[
    "bridge",
    "phase",
    "calls",
    "frames timed",
    "frames per append",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "last frame of each append: p50 / p99 ms",
  ]];
  const clear = [[
    "bridge",
    "calls",
    "barge-ins",
    "clears",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
  ]];
  const cpu = [[
    "bridge",
    "phase",
    "calls",
    "measured thread(s)",
    "ms CPU per call-s, thread(s)",
    "ms CPU per call-s, process",
    "thread wake-ups per call-s",
    "per call-s: frames in / appends / deltas / media / marks / echoes",
  ]];
  for (const rounds of groups.values()) {
    const r = rounds[0];
    const frames = summarize(concatSamples(rounds.map((x) => x.frameDelays)));
    const lastFrames = summarize(concatSamples(rounds.map((x) => x.lastFrameDelays)));
    delay.push([
      LABELS[r.variant],
      r.phase,
      String(r.calls),
      String(frames.count),
      fixed(median(rounds.map((x) => x.framesPerAppend))),
      ms(frames.p50Ms),
      ms(frames.p95Ms),
      ms(frames.p99Ms),
      ms(frames.maxMs),
      `${ms(lastFrames.p50Ms)} / ${ms(lastFrames.p99Ms)}`,
    ]);
    if (r.phase === "barge-in") {
      const latency = summarize(concatSamples(rounds.map((x) => x.clearLatencies)));
      clear.push([
        LABELS[r.variant],
        String(r.calls),
        String(rounds.reduce((sum, x) => sum + x.bargeIns, 0)),
        String(rounds.reduce((sum, x) => sum + x.clearsReceived, 0)),
        ms(latency.p50Ms),
        ms(latency.p95Ms),
        ms(latency.p99Ms),
        ms(latency.maxMs),
      ]);
    }
    const per = (key: string) => median(rounds.map((x) => x.perCallSecond[key]));
    const supervisor = rounds.map((x) => x.perCallSecond.supervisorMainThreadMs);
    cpu.push([
      LABELS[r.variant],
      r.phase,
      String(r.calls),
      r.variant.startsWith("product-edge")
        ? `${r.perCallSecond.measuredThreads} voice-stream worker(s); supervisor main thread ` +
          `(the proxy, not counted) ${overRounds(supervisor)}`
        : "main",
      overRounds(rounds.map((x) => x.threadMsPerCallSecond)),
      overRounds(rounds.map((x) => x.processMsPerCallSecond)),
      overRounds(rounds.map((x) => x.perCallSecond.threadWakeups), 1),
      ["framesSent", "appends", "deltas", "media", "marks", "markEchoes"].map((key) =>
        fixed(per(key), 1)
      ).join(" / "),
    ]);
  }
  console.log(
    `\nPer-frame inbound delay (Twilio frame sent -> its bytes at the model side), pooled over rounds:\n${
      markdownTable(delay)
    }`,
  );
  console.log(
    `\nclear latency (speech_started sent -> clear received), pooled over rounds:\n${
      markdownTable(clear)
    }`,
  );
  console.log(
    `\nCPU per call-second (median of the rounds, each round in brackets):\n${markdownTable(cpu)}`,
  );
}

if (import.meta.main) {
  const args = Deno.args;
  if (flag(args, "--role") === "edge") {
    await edgeRole(args);
  } else {
    const seconds = Number(flag(args, "--seconds") ?? 10);
    const rounds = Number(flag(args, "--rounds") ?? 2);
    // e.g. --phases "1 call" for the one-call CPU figures alone.
    const phaseNames = (flag(args, "--phases") ?? PHASES.map((p) => p.name).join(",")).split(",");
    const variants = (flag(args, "--variants") ??
      VARIANTS.join(",")).split(",") as Variant[];
    if (variants.some((v) => !VARIANTS.includes(v))) {
      throw new Error(`--variants must be some of ${VARIANTS.join(",")}`);
    }
    const sampleDir = flag(args, "--sample-dir") ?? "/tmp/twilio-sample";
    const log = (line: string) =>
      console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
    log(
      `per-frame delay bench, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, load ${loadAverage()}`,
    );
    const git = (...gitArgs: string[]) =>
      new TextDecoder().decode(new Deno.Command("git", { args: gitArgs }).outputSync().stdout)
        .trim();
    const dirty = git("status", "--porcelain", "--", "supabase/");
    log(
      `HEAD ${git("rev-parse", "--short", "HEAD")}; supabase/ ${
        dirty ? `differs from HEAD: ${dirty.replaceAll("\n", ", ")}` : "as committed"
      }`,
    );
    const db = await createTestDatabase({
      seed: true,
      serverUrl: Deno.env.get("DATABASE_URL") ?? DEFAULT_SERVER_URL,
    });
    const results: PhaseResult[] = [];
    // One model side for every bridge; every bridge started once and idle between its phases
    // (an idle bridge uses no CPU). Each phase runs on every bridge in turn, the order reversed
    // every other round, so that what the shared machine does meanwhile falls on all alike.
    const peerPort = randomPort();
    const peer = await spawnFrameDelayWorker({
      role: "peer",
      peer: { port: peerPort, assistantAudio: loadFixture("agent_greeting_jane"), ...PEER_TURNS },
    });
    const targets: Target[] = [];
    try {
      for (const variant of variants) {
        const target = await startTarget(
          variant,
          { databaseUrl: db.url, sampleDir },
          `ws://127.0.0.1:${peerPort}/v1/realtime`,
        );
        log(`${variant}: bridge pid ${target.pid}`);
        targets.push(target);
      }
      for (let round = 1; round <= rounds; round++) {
        const order = round % 2 === 1 ? targets : [...targets].reverse();
        for (const phase of PHASES) {
          if (!phaseNames.includes(phase.name)) continue;
          for (const target of order) {
            if (!phasesOf(target.variant).includes(phase)) continue;
            results.push(await runPhase(target, peer, phase, { seconds, round }, log));
          }
        }
      }
    } finally {
      await Promise.all(targets.map((target) => target.stop()));
      await peer.ask({ type: "close" }).catch(() => {});
      peer.terminate();
      await db.drop();
    }
    report(results);
    const jsonPath = flag(args, "--json");
    if (jsonPath) {
      // Summaries only: the raw samples are tens of thousands of numbers per phase.
      const summaries = results.map((
        { frameDelays, lastFrameDelays, clearLatencies, ...rest },
      ) => ({
        ...rest,
        framesTimed: frameDelays.length,
        appendsTimed: lastFrameDelays.length,
        clearsMatched: clearLatencies.length,
      }));
      await Deno.writeTextFile(jsonPath, JSON.stringify(summaries, null, 2));
    }
  }
}
