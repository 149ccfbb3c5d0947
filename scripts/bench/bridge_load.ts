/**
 * Benchmarks the voice-stream bridge (Twilio Media Streams <-> OpenAI Realtime over WebSockets)
 * with real-time calls on loopback, against a minimal passthrough relay measured in the same run.
 *
 * Two processes: the bridge under test (the local function server: voice-frontdoor,
 * voice-stream and voice-action, as `scripts/local_stack.ts` serves them, on the real Postgres
 * store; `--isolates N` serves them from N isolates sharing the port, `bridge_isolate.ts`), and
 * this process, the load: the Twilio-side callers in `--caller-threads` Worker threads and the
 * model side in `--peer-threads` threads (`load_worker.ts`), the main thread only orchestrating.
 * Each hop is timed by the thread receiving the audio from the timing marker in it
 * (`timing_marker.ts`). The bridge process's CPU (all threads, user + system) is read from
 * `/proc/<pid>/stat`.
 *
 * Phases:
 * 1. first audio: sequential calls against the strict OpenAI Realtime double answering
 *    instantly (speedFactor Infinity): time from Twilio's `start` to `session.update` at the model
 *    and to the first assistant audio at Twilio.
 * 2. load sweep: real-time calls in both directions (caller frames every 20 ms, assistant audio
 *    streamed at 1x by `realtime_load_peer.ts`), concurrency stepped up; per step, the bridge's
 *    CPU per forwarded frame and per call-second, and the forwarding delay of caller audio.
 *
 * Run by hand (about 5-10 minutes; needs a PostgreSQL server, DATABASE_URL or
 * postgres://postgres@127.0.0.1:5432/postgres, where a fresh database is created and dropped):
 *   deno run -A [--unstable-net] scripts/bench/bridge_load.ts [--steps 50,100,200,300,500]
 *     [--seconds 20] [--rounds 1] [--first-audio-calls 50] [--skip-first-audio] [--skip-load]
 *     [--variants product,product-websocket,relay,relay-nodelay] [--caller-socket nodelay|deno]
 *     [--isolates 1[,2,3]] [--caller-threads 2] [--peer-threads 1 (more need --unstable-net)]
 *     [--pin-cpus]
 * BENCH_BRIDGE_LOOP_LAG=1 prints every thread's event-loop lag (a 1 ms timer's lateness) every 5 s.
 * Results: docs/benchmarks.md, "voice-stream bridge".
 * @module
 */
import {
  LOCAL_OPENAI_API_KEY,
  LOCAL_TWILIO_ACCOUNT_SID,
  LOCAL_TWILIO_AUTH_TOKEN,
} from "../local_stack.ts";
import { createTestDatabase } from "../../tests/support/test_db.ts";
import { startOpenAIRealtimeDouble } from "../../tests/doubles/openai_realtime_double.ts";
import { loadFixture } from "../../tests/support/audio_fixtures.ts";
import {
  type IsolateConfig,
  type IsolateMessage,
  serveBridgeIsolate,
  type Variant,
  VARIANTS,
} from "./bridge_isolate.ts";
import { createCallerFleet, FRAME_BYTES } from "./twilio_load_caller.ts";
import {
  type LoadWorkerHandle,
  type LoadWorkerReply,
  spawnLoadWorker,
  type WindowReport,
} from "./load_worker.ts";
import {
  concatSamples,
  fixed,
  loadAverage,
  markdownTable,
  median,
  processCpuMs,
  sampleLoopLag,
  summarize,
} from "./bench_stats.ts";

const DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const SCRIPT = new URL(import.meta.url).pathname;
const DENO = Deno.execPath();
/** The seed's demo org and its known client (supabase/seed.sql). */
const DEMO_ORG_NUMBER = "+15550100000";
const JANE_DOE_NUMBER = "+15551230001";
/** New calls per second while ramping up. */
const RAMP_CALLS_PER_SECOND = 50;
/** Calls being set up at once while ramping up. */
const RAMP_IN_FLIGHT = 10;
/** Time after the last new call has audio before a window opens. */
const SETTLE_MS = 3_000;
/** The p99 forwarding delay a step should stay under (reported per step). */
const DELAY_LIMIT_MS = 5;
/** A bridge using this much of a core is saturated: the sweep stops there. */
const SATURATED_CPU_FRACTION = 0.95;

interface Options {
  steps: number[];
  seconds: number;
  rounds: number;
  firstAudioCalls: number;
  skipFirstAudio: boolean;
  skipLoad: boolean;
  variants: Variant[];
  callerSocket: "nodelay" | "deno";
  /** Isolates of the bridge process sharing its port (SO_REUSEPORT); each count is a sweep. */
  isolates: number[];
  /** Load threads: the Twilio callers' and the model peers'. */
  callerThreads: number;
  peerThreads: number;
}

function flag(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index === -1 ? undefined : args[index + 1];
}

function parseOptions(args: string[]): Options {
  const steps = (flag(args, "--steps") ?? "50,100,200,300,500").split(",").map(Number);
  if (steps.some((step) => !Number.isInteger(step) || step <= 0)) {
    throw new Error("--steps must be counts, e.g. 50,100,200");
  }
  const variants = (flag(args, "--variants") ?? VARIANTS.join(",")).split(",") as Variant[];
  if (variants.some((variant) => !VARIANTS.includes(variant))) {
    throw new Error(`--variants must be some of ${VARIANTS.join(",")}`);
  }
  return {
    steps,
    seconds: Number(flag(args, "--seconds") ?? 20),
    rounds: Number(flag(args, "--rounds") ?? 1),
    firstAudioCalls: Number(flag(args, "--first-audio-calls") ?? 50),
    skipFirstAudio: args.includes("--skip-first-audio"),
    skipLoad: args.includes("--skip-load"),
    variants,
    callerSocket: flag(args, "--caller-socket") === "deno" ? "deno" : "nodelay",
    isolates: (flag(args, "--isolates") ?? "1").split(",").map(Number),
    callerThreads: Number(flag(args, "--caller-threads") ?? 2),
    peerThreads: Number(flag(args, "--peer-threads") ?? 1),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The bridge process

/**
 * Child role: serve the functions (product) or the relay baseline until SIGTERM, in
 * `--isolates` isolates (this thread and Workers) sharing the port through `SO_REUSEPORT`.
 */
async function bridgeRole(args: string[]): Promise<void> {
  const isolates = Number(flag(args, "--isolates") ?? 1);
  const lagging = Boolean(Deno.env.get("BENCH_BRIDGE_LOOP_LAG"));
  const config = (index: number): IsolateConfig => ({
    variant: flag(args, "--variant") as Variant,
    port: Number(flag(args, "--port")),
    databaseUrl: flag(args, "--database-url")!,
    realtimeUrl: flag(args, "--realtime-url")!,
    apiKey: flag(args, "--api-key")!,
    internalSecret: flag(args, "--internal-secret")!,
    loopLagLabel: lagging ? (isolates > 1 ? `isolate ${index} ` : "") : undefined,
  });
  const workers: Worker[] = [];
  // One message at a time per worker: each answers in order.
  const ask = <T>(worker: Worker, message: IsolateMessage): Promise<T> =>
    new Promise((resolve) => {
      worker.onmessage = (event) => resolve(event.data as T);
      worker.postMessage(message);
    });
  // An isolate that throws ends the bridge process: the bench sees it exit, not a hang.
  const failed = (event: ErrorEvent) => {
    console.error(`bridge isolate failed: ${event.message}`);
    Deno.exit(1);
  };
  for (let index = 1; index < isolates; index++) {
    const worker = new Worker(new URL("./bridge_isolate.ts", import.meta.url).href, {
      type: "module",
    });
    worker.onerror = failed;
    await ask(worker, { type: "start", config: config(index) });
    workers.push(worker);
  }
  const main = serveBridgeIsolate(config(0));
  // The bench's control port: open and close a timing window in every isolate.
  const control = Deno.serve(
    { port: Number(flag(args, "--control-port")), hostname: "127.0.0.1", onListen: () => {} },
    async (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/window_start") {
        main.windowStart();
        await Promise.all(workers.map((worker) => ask(worker, { type: "window_start" })));
        return new Response("started");
      }
      if (path === "/window_end") {
        const replies = await Promise.all(
          workers.map((worker) => ask<{ samples: Float64Array }>(worker, { type: "window_end" })),
        );
        const samples = concatSamples([main.windowEnd(), ...replies.map((reply) => reply.samples)]);
        return new Response(samples.buffer as ArrayBuffer);
      }
      return new Response("not found", { status: 404 });
    },
  );
  console.error("listening");
  Deno.addSignalListener("SIGTERM", async () => {
    const stopped = Promise.all([
      control.shutdown(),
      main.stop(),
      ...workers.map((worker) => ask(worker, { type: "stop" })),
    ]);
    await Promise.race([stopped, sleep(3_000)]);
    Deno.exit(0);
  });
  await new Promise(() => {});
}

/** A bridge process `startBridge` started. */
export interface BridgeProcess {
  pid: number;
  frontdoorUrl: string;
  /** Starts timing appends at the bridge (caller frame sent -> append sent), in every isolate. */
  windowStart(): Promise<void>;
  /** Ends the timing window: the appends' delays at the bridge, ms. */
  windowEnd(): Promise<Float64Array>;
  stop(): Promise<void>;
}

/**
 * Waits until a child's stderr shows `text` (it listens), then forwards the rest of its stderr
 * prefixed with `[bridge]`.
 */
export async function waitForLine(child: Deno.ChildProcess, text: string): Promise<void> {
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes(text)) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`child exited before "${text}": ${seen}`);
    seen += value;
  }
  (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.trim()) console.error(`[bridge] ${value.trim()}`);
    }
  })();
}

function v8FlagsArgs(flags: string | undefined): string[] {
  return flags ? [`--v8-flags=${flags}`] : [];
}

/** Starts the bridge (`--role bridge`) in a process of its own; resolves once it listens. */
export async function startBridge(
  variant: Variant,
  databaseUrl: string,
  realtimeUrl: string,
  apiKey: string,
  isolates: number,
): Promise<BridgeProcess> {
  const port = 20_000 + Math.floor(Math.random() * 5_000);
  // --pin-cpus: the bridge on CPU 0, this (load) process on CPU 1, so neither preempts the other.
  const pinned = Deno.args.includes("--pin-cpus");
  const child = new Deno.Command(pinned ? "taskset" : DENO, {
    args: [
      ...(pinned ? ["-c", "0", DENO] : []),
      "run",
      "-A",
      // SO_REUSEPORT (Deno.serve's reusePort), for the isolates sharing the port.
      "--unstable-net",
      // BENCH_BRIDGE_V8_FLAGS, e.g. --perf-basic-prof, for profiling the bridge process with perf.
      ...v8FlagsArgs(Deno.env.get("BENCH_BRIDGE_V8_FLAGS")),
      SCRIPT,
      "--role",
      "bridge",
      "--variant",
      variant,
      "--port",
      String(port),
      "--database-url",
      databaseUrl,
      "--realtime-url",
      realtimeUrl,
      "--api-key",
      apiKey,
      "--internal-secret",
      crypto.randomUUID() + crypto.randomUUID(),
      "--isolates",
      String(isolates),
      "--control-port",
      String(port + 1),
    ],
    // The functions' JSON log lines go to stdout, as on Supabase: discarded unless
    // BENCH_BRIDGE_LOG names a file to append them to.
    stdout: Deno.env.get("BENCH_BRIDGE_LOG") ? "piped" : "null",
    stderr: "piped",
  }).spawn();
  await waitForLine(child, "listening");
  const logPath = Deno.env.get("BENCH_BRIDGE_LOG");
  if (logPath) {
    const file = await Deno.open(logPath, { create: true, append: true });
    void child.stdout.pipeTo(file.writable);
  }
  return {
    pid: child.pid,
    frontdoorUrl: `http://127.0.0.1:${port}/functions/v1/voice-frontdoor`,
    async windowStart() {
      await (await fetch(`http://127.0.0.1:${port + 1}/window_start`)).text();
    },
    async windowEnd() {
      return new Float64Array(
        await (await fetch(`http://127.0.0.1:${port + 1}/window_end`)).arrayBuffer(),
      );
    },
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}

// ---------------------------------------------------------------------------------------------
// Phase 1: start -> session.update and start -> first assistant audio, instant model

interface FirstAudioResult {
  variant: Variant;
  sessionUpdateMs: number[];
  firstAudioMs: number[];
  failures: number;
}

async function firstAudioPhase(
  variant: Variant,
  databaseUrl: string,
  calls: number,
  callerSocket: "nodelay" | "deno",
  isolates: number,
): Promise<FirstAudioResult> {
  const double = await startOpenAIRealtimeDouble({
    apiKey: LOCAL_OPENAI_API_KEY,
    speedFactor: Infinity,
    scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_jane" }, { kind: "end" }],
  });
  const bridge = await startBridge(variant, databaseUrl, double.url, double.apiKey, isolates);
  const result: FirstAudioResult = { variant, sessionUpdateMs: [], firstAudioMs: [], failures: 0 };
  const fleet = createCallerFleet({
    frontdoorUrl: bridge.frontdoorUrl,
    authToken: LOCAL_TWILIO_AUTH_TOKEN,
    accountSid: LOCAL_TWILIO_ACCOUNT_SID,
    from: JANE_DOE_NUMBER,
    to: DEMO_ORG_NUMBER,
    callerAudio: new Uint8Array(8000).fill(0xff),
    socket: callerSocket,
  });
  const ticker = setInterval(() => fleet.tick(performance.now()), 1);
  try {
    const warmUp = 5;
    for (let i = 0; i < warmUp + calls; i++) {
      const sessionIndex = double.sessions.length;
      let sessionUpdateAtMs = NaN;
      // Re-checked synchronously whenever the double records an event.
      const sessionUpdate = double.waitFor(
        () => {
          const found = double.sessions[sessionIndex]?.clientEvents.some((event) =>
            event.type === "session.update"
          );
          if (found && Number.isNaN(sessionUpdateAtMs)) sessionUpdateAtMs = performance.now();
          return found;
        },
        10_000,
        "session.update",
      ).catch(() => null);
      const call = await fleet.startCall();
      await sessionUpdate;
      const deadline = performance.now() + 10_000;
      while (Number.isNaN(call.firstMediaAtMs) && !call.closed && performance.now() < deadline) {
        await sleep(1);
      }
      if (Number.isNaN(call.firstMediaAtMs) || Number.isNaN(sessionUpdateAtMs)) {
        result.failures++;
      } else if (i >= warmUp) {
        result.sessionUpdateMs.push(sessionUpdateAtMs - call.startSentAtMs);
        result.firstAudioMs.push(call.firstMediaAtMs - call.startSentAtMs);
      }
      await fleet.hangupAll();
    }
  } finally {
    clearInterval(ticker);
    await bridge.stop();
    await double.close();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Phase 2: real-time load, stepped concurrency

interface StepResult {
  variant: Variant;
  isolates: number;
  calls: number;
  windowSeconds: number;
  bridgeCpuMs: number;
  loadCpuMs: number;
  /** Caller frames that reached the model (inside appends). */
  framesIn: number;
  appends: number;
  mediaOut: number;
  /** Assistant audio sent to Twilio, ms. */
  mediaOutMs: number;
  marksOut: number;
  marksEchoed: number;
  deltas: number;
  /** Caller frame sent -> its append arrived at the model side (the load's peer thread). */
  inboundDelay: ReturnType<typeof summarize>;
  /** Caller frame sent -> its append handed to the bridge's model socket. */
  atBridgeDelay: ReturnType<typeof summarize>;
  outboundDelay: ReturnType<typeof summarize>;
  coalescingWaitMedianMs: number;
  sendLagMeanMs: number;
  sendLagMaxMs: number;
  failedCalls: number;
  bridgeRssMb: number;
  loadAverage: number;
}

/**
 * µs of bridge CPU (marks, pacing and everything else included) per forwarded 20 ms audio frame,
 * both directions: caller frames to the model plus assistant audio to Twilio in 20 ms frames.
 * A call-second in which both speak is 100 frames, so 20 µs per frame is 2 ms per call-second,
 * 0.8 s of CPU for a 400 s call (the arithmetic). Counting frames, not messages, keeps
 * the figure independent of how the bridge packs audio into messages.
 */
function usPerFrame(step: StepResult): number {
  return (step.bridgeCpuMs * 1000) / (step.framesIn + step.mediaOutMs / 20);
}

/** WebSocket messages through the bridge: both sockets, both directions. */
function messages(step: StepResult): number {
  // Twilio -> bridge: caller frames (each one a message) and mark echoes; bridge -> OpenAI:
  // appends; OpenAI -> bridge: deltas; bridge -> Twilio: media and marks.
  return step.framesIn + step.marksEchoed + step.appends + step.deltas + step.mediaOut +
    step.marksOut;
}

function msPerCallSecond(step: StepResult): number {
  return step.bridgeCpuMs / (step.calls * step.windowSeconds);
}

/** Splits `total` calls over `shares` workers as evenly as possible. */
function share(total: number, shares: number, index: number): number {
  return Math.floor(total / shares) + (index < total % shares ? 1 : 0);
}

async function loadSweep(
  variant: Variant,
  isolates: number,
  databaseUrl: string,
  options: Options,
  log: (line: string) => void,
): Promise<StepResult[]> {
  const lagging = Boolean(Deno.env.get("BENCH_BRIDGE_LOOP_LAG"));
  // The caller speaks, then pauses: fixture speech and 2 s of line silence, looped.
  const speech = loadFixture("caller_book_cleaning");
  const callerAudio = new Uint8Array(speech.length + 16_000).fill(0xff);
  callerAudio.set(speech);
  // The model side: `--peer-threads` peers sharing one port (SO_REUSEPORT when several).
  const peerPort = 25_000 + Math.floor(Math.random() * 5_000);
  const peers: LoadWorkerHandle[] = [];
  for (let index = 0; index < options.peerThreads; index++) {
    peers.push(
      await spawnLoadWorker({
        role: "peer",
        port: peerPort,
        reusePort: options.peerThreads > 1,
        assistantAudio: loadFixture("agent_greeting_jane"),
        chunkMs: 100,
        loopLagLabel: lagging ? `[peer ${index}] ` : undefined,
      }),
    );
  }
  const bridge = await startBridge(
    variant,
    databaseUrl,
    `ws://127.0.0.1:${peerPort}/v1/realtime`,
    LOCAL_OPENAI_API_KEY,
    isolates,
  );
  const callers: LoadWorkerHandle[] = [];
  for (let index = 0; index < options.callerThreads; index++) {
    callers.push(
      await spawnLoadWorker({
        role: "callers",
        fleet: {
          frontdoorUrl: bridge.frontdoorUrl,
          authToken: LOCAL_TWILIO_AUTH_TOKEN,
          accountSid: LOCAL_TWILIO_ACCOUNT_SID,
          from: JANE_DOE_NUMBER,
          to: DEMO_ORG_NUMBER,
          callerAudio,
          socket: options.callerSocket,
        },
        loopLagLabel: lagging ? `[callers ${index}] ` : undefined,
      }),
    );
  }
  const workers = [...peers, ...callers];
  const results: StepResult[] = [];
  try {
    for (const target of options.steps) {
      // Ramp up to `target` calls at RAMP_CALLS_PER_SECOND in all, a few set up at a time.
      const ramped = await Promise.all(callers.map((worker, index) =>
        worker.ask({
          type: "ramp",
          target: share(target, callers.length, index),
          callsPerSecond: RAMP_CALLS_PER_SECOND / callers.length,
          inFlight: Math.max(1, Math.ceil(RAMP_IN_FLIGHT / callers.length)),
        })
      ));
      await sleep(SETTLE_MS);
      // Window.
      await Promise.all([
        bridge.windowStart(),
        ...workers.map((worker) => worker.ask({ type: "window_start" })),
      ]);
      const cpuStart = processCpuMs(bridge.pid);
      const loadCpuStart = processCpuMs("self");
      const windowStart = performance.now();
      await sleep(options.seconds * 1000);
      const bridgeCpuMs = processCpuMs(bridge.pid) - cpuStart;
      const loadCpuMs = processCpuMs("self") - loadCpuStart;
      const windowSeconds = (performance.now() - windowStart) / 1000;
      const atBridge = await bridge.windowEnd();
      const reports = (await Promise.all(workers.map((worker) =>
        worker.ask({ type: "window_end" })
      ))).map((reply) =>
        (reply as Extract<LoadWorkerReply, { type: "window" }>).report
      );
      const sum = (key: keyof WindowReport) =>
        reports.reduce((total, report) => total + (report[key] as number), 0);
      const open = ramped.reduce(
        (total, reply) => total + (reply as Extract<LoadWorkerReply, { type: "ramped" }>).open,
        0,
      );
      const failed = ramped.reduce(
        (total, reply) => total + (reply as Extract<LoadWorkerReply, { type: "ramped" }>).failed,
        0,
      );
      const step: StepResult = {
        variant,
        isolates,
        calls: open,
        windowSeconds,
        bridgeCpuMs,
        loadCpuMs,
        framesIn: sum("appendedBytes") / FRAME_BYTES,
        appends: sum("appends"),
        mediaOut: sum("mediaReceived"),
        mediaOutMs: sum("mediaReceivedMs"),
        marksOut: sum("marksReceived"),
        marksEchoed: sum("marksEchoed"),
        deltas: sum("deltas"),
        inboundDelay: summarize(concatSamples(reports.map((report) => report.inboundDelays))),
        atBridgeDelay: summarize(atBridge),
        outboundDelay: summarize(concatSamples(reports.map((report) => report.outboundDelays))),
        coalescingWaitMedianMs: median([...concatSamples(reports.map((r) => r.coalescingWaits))]),
        sendLagMeanMs: sum("sendLagSumMs") / Math.max(1, sum("framesSent")),
        sendLagMaxMs: Math.max(...reports.map((report) => report.sendLagMaxMs)),
        failedCalls: failed,
        bridgeRssMb: rssMb(bridge.pid),
        loadAverage: loadAverage(),
      };
      results.push(step);
      log(
        `${variant} x${isolates} ${step.calls} calls: bridge CPU ${
          fixed((step.bridgeCpuMs / (windowSeconds * 1000)) * 100, 0)
        }% (${fixed(msPerCallSecond(step))} ms/call-s, ${
          fixed(usPerFrame(step), 1)
        } µs/20ms-frame, ${
          fixed((step.bridgeCpuMs * 1000) / messages(step), 1)
        } µs/msg), inbound delay p50 ${fixed(step.inboundDelay.p50Ms)} p99 ${
          fixed(step.inboundDelay.p99Ms)
        } ms (at the bridge p50 ${fixed(step.atBridgeDelay.p50Ms)} p99 ${
          fixed(step.atBridgeDelay.p99Ms)
        } ms), outbound p50 ${fixed(step.outboundDelay.p50Ms)} p99 ${
          fixed(step.outboundDelay.p99Ms)
        } ms, load CPU ${
          fixed((step.loadCpuMs / (windowSeconds * 1000)) * 100, 0)
        }%, send lag mean ${fixed(step.sendLagMeanMs)} max ${
          fixed(step.sendLagMaxMs, 0)
        } ms, failed ${step.failedCalls}, rss ${
          fixed(step.bridgeRssMb, 0)
        } MB, load ${step.loadAverage}`,
      );
      // Past a saturated bridge or failing calls, nothing is learnt.
      const bridgeBusy = step.bridgeCpuMs / (windowSeconds * 1000);
      if (step.failedCalls > 0 || bridgeBusy > SATURATED_CPU_FRACTION * isolates) break;
    }
  } finally {
    await Promise.all(callers.map((worker) => worker.ask({ type: "close" })));
    await sleep(500);
    await bridge.stop();
    await Promise.all(peers.map((worker) => worker.ask({ type: "close" })));
    for (const worker of workers) worker.terminate();
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Report

function variantLabel(variant: Variant): string {
  const bridge = variant.startsWith("product") ? "voice-stream" : "passthrough relay";
  if (variant === "product-websocket") return `${bridge}, REALTIME_SOCKET=websocket`;
  return variant === "relay-nodelay" ? `${bridge}, NODELAY model socket` : bridge;
}

function reportFirstAudio(results: FirstAudioResult[]): void {
  const table = [[
    "bridge",
    "calls",
    "start -> session.update p50",
    "p95",
    "start -> first audio p50",
    "p95",
    "failures",
  ]];
  for (const variant of VARIANTS) {
    const rounds = results.filter((result) => result.variant === variant);
    if (rounds.length === 0) continue;
    const su = rounds.map((result) => summarize(result.sessionUpdateMs));
    const fa = rounds.map((result) => summarize(result.firstAudioMs));
    table.push([
      variantLabel(variant),
      String(rounds.reduce((sum, result) => sum + result.firstAudioMs.length, 0)),
      `${fixed(median(su.map((s) => s.p50Ms)))} ms`,
      `${fixed(median(su.map((s) => s.p95Ms)))} ms`,
      `${fixed(median(fa.map((s) => s.p50Ms)))} ms`,
      `${fixed(median(fa.map((s) => s.p95Ms)))} ms`,
      String(rounds.reduce((sum, result) => sum + result.failures, 0)),
    ]);
  }
  console.log(`\nfirst audio (medians over rounds):\n${markdownTable(table)}`);
}

function reportLoad(results: StepResult[]): void {
  const table = [[
    "bridge",
    "isolates",
    "calls",
    "CPU ms per call-s",
    "µs per 20 ms frame",
    "µs per msg",
    "400 s call CPU",
    "bridge CPU",
    "inbound p50",
    "inbound p95",
    "inbound p99",
    `p99 < ${DELAY_LIMIT_MS} ms`,
    "at bridge p99",
    "outbound p50",
    "outbound p99",
    "load CPU",
  ]];
  const byKey = new Map<string, StepResult[]>();
  for (const step of results) {
    const key = `${step.variant}:${step.isolates}:${step.calls}`;
    byKey.set(key, [...(byKey.get(key) ?? []), step]);
  }
  for (const [key, steps] of byKey) {
    const [variant, isolates, calls] = key.split(":");
    const perCallSecond = median(steps.map(msPerCallSecond));
    table.push([
      variantLabel(variant as Variant),
      isolates,
      calls,
      fixed(perCallSecond),
      fixed(median(steps.map(usPerFrame)), 1),
      fixed(median(steps.map((step) => (step.bridgeCpuMs * 1000) / messages(step))), 1),
      `${fixed((perCallSecond * 400) / 1000)} s`,
      `${fixed(median(steps.map((step) => step.bridgeCpuMs / step.windowSeconds / 10)), 0)}%`,
      `${fixed(median(steps.map((step) => step.inboundDelay.p50Ms)))} ms`,
      `${fixed(median(steps.map((step) => step.inboundDelay.p95Ms)))} ms`,
      `${fixed(median(steps.map((step) => step.inboundDelay.p99Ms)))} ms`,
      median(steps.map((step) => step.inboundDelay.p99Ms)) < DELAY_LIMIT_MS ? "yes" : "no",
      `${fixed(median(steps.map((step) => step.atBridgeDelay.p99Ms)))} ms`,
      `${fixed(median(steps.map((step) => step.outboundDelay.p50Ms)))} ms`,
      `${fixed(median(steps.map((step) => step.outboundDelay.p99Ms)))} ms`,
      `${fixed(median(steps.map((step) => (step.loadCpuMs / step.windowSeconds) / 10)), 0)}%`,
    ]);
  }
  console.log(`\nload (medians over rounds):\n${markdownTable(table)}`);
  const perSecond = results.map((step) => {
    const callSeconds = step.calls * step.windowSeconds;
    return `${step.variant} x${step.isolates} ${step.calls}: per call-second ${
      fixed(step.framesIn / callSeconds, 1)
    } frames in, ${fixed(step.appends / callSeconds, 1)} appends, ${
      fixed(step.deltas / callSeconds, 1)
    } deltas, ${fixed(step.mediaOut / callSeconds, 1)} media out, ${
      fixed(step.marksOut / callSeconds, 1)
    } marks out, ${fixed(step.marksEchoed / callSeconds, 1)} mark echoes; coalescing wait median ${
      fixed(step.coalescingWaitMedianMs)
    } ms`;
  });
  console.log(`\nmessage mix:\n${perSecond.join("\n")}`);
}

if (import.meta.main) {
  const args = Deno.args;
  if (flag(args, "--role") === "bridge") {
    await bridgeRole(args);
  } else {
    const options = parseOptions(args);
    if (args.includes("--pin-cpus")) {
      // Every thread of this process (the load side) on CPU 1; the bridge gets CPU 0.
      await new Deno.Command("taskset", { args: ["-apc", "1", String(Deno.pid)], stdout: "null" })
        .output();
    }
    const log = (line: string) =>
      console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
    // BENCH_BRIDGE_LOOP_LAG: the bridge's and this (load) process's event-loop stalls.
    if (Deno.env.get("BENCH_BRIDGE_LOOP_LAG")) sampleLoopLag("[load] ");
    log(
      `voice-stream bridge bench, Deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores, load ${loadAverage()}`,
    );
    const db = await createTestDatabase({
      seed: true,
      serverUrl: Deno.env.get("DATABASE_URL") ?? DEFAULT_SERVER_URL,
    });
    try {
      const firstAudio: FirstAudioResult[] = [];
      const load: StepResult[] = [];
      for (let round = 1; round <= options.rounds; round++) {
        for (const variant of options.variants) {
          if (!options.skipFirstAudio) {
            const result = await firstAudioPhase(
              variant,
              db.url,
              options.firstAudioCalls,
              options.callerSocket,
              options.isolates[0],
            );
            firstAudio.push(result);
            const su = summarize(result.sessionUpdateMs);
            const fa = summarize(result.firstAudioMs);
            log(
              `round ${round} ${variant} first audio: start->session.update p50 ${
                fixed(su.p50Ms)
              } p95 ${fixed(su.p95Ms)} ms; start->first audio p50 ${fixed(fa.p50Ms)} p95 ${
                fixed(fa.p95Ms)
              } ms; failures ${result.failures}`,
            );
          }
        }
        for (const variant of options.variants) {
          for (const isolates of options.isolates) {
            if (options.skipLoad) continue;
            load.push(...await loadSweep(variant, isolates, db.url, options, log));
          }
        }
      }
      if (firstAudio.length > 0) reportFirstAudio(firstAudio);
      if (load.length > 0) reportLoad(load);
    } finally {
      await db.drop();
    }
  }
}
