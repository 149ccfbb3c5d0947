/**
 * Benchmarks the voice-stream bridge (Twilio Media Streams <-> OpenAI Realtime over WebSockets)
 * with real-time calls on loopback, against a minimal passthrough relay measured in the same run.
 *
 * Two processes: the bridge under test (the local function server: voice-frontdoor,
 * voice-stream and voice-action, as `scripts/local_stack.ts` serves them, on the real Postgres
 * store), and this process, which runs the Twilio-side callers and the model side. The bridge
 * process's CPU (all threads, user + system) is read from `/proc/<pid>/stat`.
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
 *   deno run -A scripts/bench/bridge_load.ts [--steps 50,100,200,300,500] [--seconds 20]
 *     [--rounds 1] [--first-audio-calls 50] [--skip-first-audio] [--skip-load]
 *     [--variants product,product-websocket,relay,relay-nodelay] [--caller-socket nodelay|deno]
 *     [--pin-cpus]
 * BENCH_BRIDGE_LOOP_LAG=1 prints both processes' event-loop lag (a 1 ms timer's lateness) every 5 s.
 * Results: docs/benchmarks.md, "voice-stream bridge".
 * @module
 */
import { createFunctionsRouter, type FunctionHandlers } from "../functions_router.ts";
import {
  LOCAL_OPENAI_API_KEY,
  LOCAL_TWILIO_ACCOUNT_SID,
  LOCAL_TWILIO_AUTH_TOKEN,
} from "../local_stack.ts";
import { createFrontdoorApp } from "../../supabase/functions/voice-frontdoor/app.ts";
import { createStreamApp } from "../../supabase/functions/voice-stream/app.ts";
import { createVoiceActionApp } from "../../supabase/functions/voice-action/app.ts";
import type { RealtimeConnector } from "../../supabase/functions/voice-stream/bridge.ts";
import {
  connectRealtimeNoDelay,
  connectRealtimeWebSocket,
} from "../../supabase/functions/voice-stream/realtime_connector.ts";
import { createStore } from "../../supabase/functions/_shared/store/create_store.ts";
import { createTestDatabase } from "../../tests/support/test_db.ts";
import { startOpenAIRealtimeDouble } from "../../tests/doubles/openai_realtime_double.ts";
import { loadFixture } from "../../tests/support/audio_fixtures.ts";
import { createPassthroughRelayHandler } from "./passthrough_relay.ts";
import { base64ByteLength, markerFromBase64, startRealtimeLoadPeer } from "./realtime_load_peer.ts";
import { createCallerFleet, FRAME_BYTES } from "./twilio_load_caller.ts";
import {
  fixed,
  loadAverage,
  markdownTable,
  median,
  processCpuMs,
  summarize,
} from "./bench_stats.ts";

const DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const SCRIPT = new URL(import.meta.url).pathname;
const DENO = Deno.execPath();
/** The seed's demo org and its known client (supabase/seed.sql). */
const DEMO_ORG_NUMBER = "+15550100000";
const JANE_DOE_NUMBER = "+15551230001";
const MODEL = "gpt-realtime";
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

/**
 * The bridge under test: as shipped (its model socket is the TCP_NODELAY client) or with
 * `REALTIME_SOCKET=websocket` (Deno's WebSocket client); the relay with Deno's client or ours.
 */
type Variant = "product" | "product-websocket" | "relay" | "relay-nodelay";
const VARIANTS: readonly Variant[] = ["product", "product-websocket", "relay", "relay-nodelay"];

interface Options {
  steps: number[];
  seconds: number;
  rounds: number;
  firstAudioCalls: number;
  skipFirstAudio: boolean;
  skipLoad: boolean;
  variants: Variant[];
  callerSocket: "nodelay" | "deno";
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
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The bridge process

/** The model socket of a variant: Deno's `WebSocket` (as shipped) or a TCP_NODELAY client. */
/** The relay's model socket. */
function relayConnector(variant: Variant): RealtimeConnector {
  return variant === "relay-nodelay" ? connectRealtimeNoDelay : connectRealtimeWebSocket;
}

/** Child role: serve the functions (product) or the relay baseline until SIGTERM. */
async function bridgeRole(args: string[]): Promise<void> {
  const variant = flag(args, "--variant") as Variant;
  const port = Number(flag(args, "--port"));
  const databaseUrl = flag(args, "--database-url")!;
  const realtimeBaseUrl = flag(args, "--realtime-url")!;
  const apiKey = flag(args, "--api-key")!;
  const publicBase = `http://127.0.0.1:${port}/functions/v1`;
  // As scripts/local_stack.ts serves the functions: one real Postgres store, JSON log lines to
  // stdout, the router showing handlers Supabase's internal URL.
  const env: Record<string, string> = {
    PUBLIC_FUNCTIONS_URL: publicBase,
    DATABASE_URL: databaseUrl,
    STORE_ADAPTER: "postgres",
    TWILIO_ACCOUNT_SID: LOCAL_TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: LOCAL_TWILIO_AUTH_TOKEN,
    OPENAI_API_KEY: apiKey,
    OPENAI_REALTIME_URL: realtimeBaseUrl,
    VOICE_INTERNAL_SECRET: crypto.randomUUID() + crypto.randomUUID(),
    // Nothing answers here: voice-action's Twilio REST calls (none in these calls) fail fast.
    TWILIO_API_BASE_URL: "http://127.0.0.1:9",
    LOG_LEVEL: "info",
    REALTIME_SOCKET: variant === "product-websocket" ? "websocket" : "nodelay",
  };
  const store = createStore({ storeAdapter: "postgres", databaseUrl });
  const handlers: FunctionHandlers = { "voice-frontdoor": createFrontdoorApp(env, { store }) };
  if (variant.startsWith("product")) {
    handlers["voice-stream"] = createStreamApp(env, { store });
    handlers["voice-action"] = createVoiceActionApp(env, { store });
  } else {
    handlers["voice-stream"] = createPassthroughRelayHandler({
      realtimeUrl: realtimeBaseUrl,
      apiKey,
      model: MODEL,
      connect: relayConnector(variant),
    });
  }
  const server = Deno.serve(
    { port, hostname: "127.0.0.1", onListen: () => {} },
    createFunctionsRouter(handlers),
  );
  console.error("listening");
  if (Deno.env.get("BENCH_BRIDGE_LOOP_LAG")) sampleLoopLag("");
  Deno.addSignalListener("SIGTERM", async () => {
    await Promise.race([server.shutdown().then(() => store.close()), sleep(3_000)]);
    Deno.exit(0);
  });
  await server.finished;
}

/** Prints how late a 1 ms timer fires (the event loop's stalls) every 5 s, to stderr. */
function sampleLoopLag(prefix: string): void {
  let lags: number[] = [];
  let expected = performance.now() + 1;
  // Unreferenced: the samplers never keep a process alive.
  Deno.unrefTimer(setInterval(() => {
    const now = performance.now();
    lags.push(now - expected);
    expected = now + 1;
  }, 1));
  Deno.unrefTimer(setInterval(() => {
    const sorted = lags.sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    console.error(
      `${prefix}loop lag ms: p50 ${at(0.5).toFixed(2)} p99 ${at(0.99).toFixed(2)} p999 ${
        at(0.999).toFixed(2)
      } max ${sorted.at(-1)!.toFixed(2)} over ${sorted.length}`,
    );
    lags = [];
  }, 5_000));
}

interface BridgeProcess {
  pid: number;
  frontdoorUrl: string;
  stop(): Promise<void>;
}

function v8FlagsArgs(flags: string | undefined): string[] {
  return flags ? [`--v8-flags=${flags}`] : [];
}

async function startBridge(
  variant: Variant,
  databaseUrl: string,
  realtimeUrl: string,
  apiKey: string,
): Promise<BridgeProcess> {
  const port = 20_000 + Math.floor(Math.random() * 5_000);
  // --pin-cpus: the bridge on CPU 0, this (load) process on CPU 1, so neither preempts the other.
  const pinned = Deno.args.includes("--pin-cpus");
  const child = new Deno.Command(pinned ? "taskset" : DENO, {
    args: [
      ...(pinned ? ["-c", "0", DENO] : []),
      "run",
      "-A",
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
    ],
    // The functions' JSON log lines go to stdout, as on Supabase: discarded unless
    // BENCH_BRIDGE_LOG names a file to append them to.
    stdout: Deno.env.get("BENCH_BRIDGE_LOG") ? "piped" : "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes("listening")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`Cannot start the ${variant} bridge: ${seen}`);
    seen += value;
  }
  const logPath = Deno.env.get("BENCH_BRIDGE_LOG");
  if (logPath) {
    const file = await Deno.open(logPath, { create: true, append: true });
    void child.stdout.pipeTo(file.writable);
  }
  (async () => {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.trim()) console.error(`[bridge] ${value.trim()}`);
    }
  })();
  return {
    pid: child.pid,
    frontdoorUrl: `http://127.0.0.1:${port}/functions/v1/voice-frontdoor`,
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
): Promise<FirstAudioResult> {
  const double = await startOpenAIRealtimeDouble({
    apiKey: LOCAL_OPENAI_API_KEY,
    speedFactor: Infinity,
    scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_jane" }, { kind: "end" }],
  });
  const bridge = await startBridge(variant, databaseUrl, double.url, double.apiKey);
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
  inboundDelay: ReturnType<typeof summarize>;
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

async function loadSweep(
  variant: Variant,
  databaseUrl: string,
  options: Options,
  log: (line: string) => void,
): Promise<StepResult[]> {
  let measuring = false;
  let inboundDelays: number[] = [];
  let outboundDelays: number[] = [];
  let coalescingWaits: number[] = [];
  const assistantAudio = loadFixture("agent_greeting_jane");
  // The caller speaks, then pauses: fixture speech and 2 s of line silence, looped.
  const speech = loadFixture("caller_book_cleaning");
  const callerAudio = new Uint8Array(speech.length + 16_000).fill(0xff);
  callerAudio.set(speech);
  let fleet: ReturnType<typeof createCallerFleet> | null = null;
  const peer = startRealtimeLoadPeer({
    assistantAudio,
    chunkMs: 100,
    onAppend(arrivedAtMs, audioBase64) {
      const bytes = base64ByteLength(audioBase64);
      if (!measuring || !fleet || bytes < FRAME_BYTES) return;
      const last = markerFromBase64(audioBase64, bytes - FRAME_BYTES);
      const first = markerFromBase64(audioBase64, 0);
      const lastSentAtMs = fleet.frameSentAt(last.id, last.sequence);
      inboundDelays.push(arrivedAtMs - lastSentAtMs);
      if (bytes > FRAME_BYTES) {
        coalescingWaits.push(lastSentAtMs - fleet.frameSentAt(first.id, first.sequence));
      }
    },
  });
  const bridge = await startBridge(variant, databaseUrl, peer.url, LOCAL_OPENAI_API_KEY);
  const calls = createCallerFleet({
    frontdoorUrl: bridge.frontdoorUrl,
    authToken: LOCAL_TWILIO_AUTH_TOKEN,
    accountSid: LOCAL_TWILIO_ACCOUNT_SID,
    from: JANE_DOE_NUMBER,
    to: DEMO_ORG_NUMBER,
    callerAudio,
    socket: options.callerSocket,
    onMedia(arrivedAtMs, audioBase64) {
      if (!measuring || audioBase64.length < 8) return;
      const marker = markerFromBase64(audioBase64, 0);
      outboundDelays.push(arrivedAtMs - peer.deltaSentAt(marker.id, marker.sequence));
    },
  });
  fleet = calls;
  const ticker = setInterval(() => {
    const now = performance.now();
    calls.tick(now);
    peer.tick(now);
  }, 1);
  const results: StepResult[] = [];
  try {
    for (const target of options.steps) {
      // Ramp up to `target` calls at RAMP_CALLS_PER_SECOND, a few set up at a time.
      const inFlight = new Set<Promise<unknown>>();
      for (let started = calls.calls.length; started < target; started++) {
        if (inFlight.size >= RAMP_IN_FLIGHT) await Promise.race(inFlight);
        const promise = calls.startCall().finally(() => inFlight.delete(promise));
        inFlight.add(promise);
        await sleep(1000 / RAMP_CALLS_PER_SECOND);
      }
      await Promise.all(inFlight);
      const audioDeadline = performance.now() + 20_000;
      while (
        calls.calls.some((call) => !call.closed && Number.isNaN(call.firstMediaAtMs)) &&
        performance.now() < audioDeadline
      ) {
        await sleep(50);
      }
      await sleep(SETTLE_MS);
      // Window.
      inboundDelays = [];
      outboundDelays = [];
      coalescingWaits = [];
      calls.resetCounters();
      peer.resetCounters();
      const cpuStart = processCpuMs(bridge.pid);
      const loadCpuStart = processCpuMs("self");
      const windowStart = performance.now();
      measuring = true;
      await sleep(options.seconds * 1000);
      measuring = false;
      const windowSeconds = (performance.now() - windowStart) / 1000;
      const step: StepResult = {
        variant,
        calls: calls.calls.filter((call) => !call.closed).length,
        windowSeconds,
        bridgeCpuMs: processCpuMs(bridge.pid) - cpuStart,
        loadCpuMs: processCpuMs("self") - loadCpuStart,
        framesIn: peer.counters.appendedBytes / FRAME_BYTES,
        appends: peer.counters.appends,
        mediaOut: calls.counters.mediaReceived,
        mediaOutMs: calls.counters.mediaReceivedMs,
        marksOut: calls.counters.marksReceived,
        marksEchoed: calls.counters.marksEchoed,
        deltas: peer.counters.deltas,
        inboundDelay: summarize(inboundDelays),
        outboundDelay: summarize(outboundDelays),
        coalescingWaitMedianMs: median(coalescingWaits),
        sendLagMeanMs: calls.counters.sendLagSumMs / Math.max(1, calls.counters.framesSent),
        sendLagMaxMs: calls.counters.sendLagMaxMs,
        failedCalls: calls.calls.filter((call) => call.failure !== null).length,
        bridgeRssMb: rssMb(bridge.pid),
        loadAverage: loadAverage(),
      };
      results.push(step);
      log(
        `${variant} ${step.calls} calls: bridge CPU ${
          fixed((step.bridgeCpuMs / (windowSeconds * 1000)) * 100, 0)
        }% (${fixed(msPerCallSecond(step))} ms/call-s, ${
          fixed(usPerFrame(step), 1)
        } µs/20ms-frame, ${
          fixed((step.bridgeCpuMs * 1000) / messages(step), 1)
        } µs/msg), inbound delay p50 ${fixed(step.inboundDelay.p50Ms)} p99 ${
          fixed(step.inboundDelay.p99Ms)
        } ms, outbound p50 ${fixed(step.outboundDelay.p50Ms)} p99 ${
          fixed(step.outboundDelay.p99Ms)
        } ms, load CPU ${
          fixed((step.loadCpuMs / (windowSeconds * 1000)) * 100, 0)
        }%, send lag mean ${fixed(step.sendLagMeanMs)} max ${
          fixed(step.sendLagMaxMs, 0)
        } ms, failed ${step.failedCalls}, rss ${
          fixed(step.bridgeRssMb, 0)
        } MB, load ${step.loadAverage}`,
      );
      // Past a saturated bridge (its JS runs on one thread) or failing calls, nothing is learnt.
      const bridgeBusy = step.bridgeCpuMs / (windowSeconds * 1000);
      if (step.failedCalls > 0 || bridgeBusy > SATURATED_CPU_FRACTION) break;
    }
  } finally {
    measuring = false;
    await calls.hangupAll();
    clearInterval(ticker);
    await sleep(500);
    await bridge.stop();
    await peer.close();
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
    "outbound p50",
    "outbound p99",
    "load CPU",
  ]];
  const byKey = new Map<string, StepResult[]>();
  for (const step of results) {
    const key = `${step.variant}:${step.calls}`;
    byKey.set(key, [...(byKey.get(key) ?? []), step]);
  }
  for (const [key, steps] of byKey) {
    const [variant, calls] = key.split(":");
    const perCallSecond = median(steps.map(msPerCallSecond));
    table.push([
      variantLabel(variant as Variant),
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
      `${fixed(median(steps.map((step) => step.outboundDelay.p50Ms)))} ms`,
      `${fixed(median(steps.map((step) => step.outboundDelay.p99Ms)))} ms`,
      `${fixed(median(steps.map((step) => (step.loadCpuMs / step.windowSeconds) / 10)), 0)}%`,
    ]);
  }
  console.log(`\nload (medians over rounds):\n${markdownTable(table)}`);
  const perSecond = results.map((step) => {
    const callSeconds = step.calls * step.windowSeconds;
    return `${step.variant} ${step.calls}: per call-second ${
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
          if (!options.skipLoad) load.push(...await loadSweep(variant, db.url, options, log));
        }
      }
      if (firstAudio.length > 0) reportFirstAudio(firstAudio);
      if (load.length > 0) reportLoad(load);
    } finally {
      await db.drop();
    }
  }
}
