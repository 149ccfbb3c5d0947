import assert from "node:assert/strict";
import { until } from "../../../tests/support/eventually.ts";
import { issueStreamToken } from "../_shared/internal_auth.ts";
import { createMemoryLogger } from "../_shared/log.ts";
import { base64ToBytes, bytesToBase64, concatBytes } from "../_shared/codec/pcm.ts";
import type { CallerContext, CallMetrics, CallTurnInput } from "../_shared/store/types.ts";
import type { ContinuationState } from "./handover.ts";
import { runCallBridge } from "./bridge.ts";
import type { BridgeDeps, TimerHandle, ToolOutcome, VoiceActionClient } from "./bridge_deps.ts";
import { FakeSocket } from "../../../tests/support/fake_socket.ts";
import { APPEND_EVERY_MS } from "./call_session.ts";

/** Caller frames (20 ms each) per `input_audio_buffer.append`. */
const FRAMES_PER_APPEND = APPEND_EVERY_MS / 20;

// ---------------------------------------------------------------------------------------------
// Fixtures

const SECRET = "bridge-test-secret-".padEnd(48, "x");
const ACCOUNT_SID = "AC" + "1".repeat(32);
const CALL_SID = "CA" + "a".repeat(32);
const OTHER_CALL_SID = "CA" + "b".repeat(32);
const STREAM_SID = "MZ" + "c".repeat(32);
const TRACE_ID = "trace-0001";
const CALLER = "+15551230001";
const ORG_NUMBER = "+15550100000";
/** Wall clock at fake time 0 (token expiry is checked against it). */
const WALL_START_MS = Date.UTC(2026, 10, 23, 17, 0, 0);
const LOOKUP_BUDGET_MS = 150;

const KNOWN_CALLER: CallerContext = {
  org: {
    id: "org_1",
    name: "Harbor Dental",
    timezone: "America/New_York",
    greeting: "Thanks for calling Harbor Dental.",
    persona: "You are the receptionist of Harbor Dental.",
    appointmentMinutes: 30,
    transferNumber: "+15550100999",
    smsRecoveryTemplate: "Sorry we missed you.",
    emergencyKeywords: [],
    maxCallSeconds: null,
    voice: "marin",
    languages: ["en"],
    vad: { threshold: 0.6, silenceDurationMs: 400, prefixPaddingMs: 300 },
    phoneNumber: ORG_NUMBER,
    services: [],
    providers: [],
    bookingRules: { minNoticeMinutes: 0, bookingHorizonDays: null, slotGranularityMinutes: null },
  },
  client: {
    id: "client_1",
    firstName: "Jane",
    lastName: "Doe",
    phone: CALLER,
    preferredProvider: null,
  },
  upcomingAppointments: [],
  lastProvider: null,
  lastCallOutcome: null,
};

// ---------------------------------------------------------------------------------------------
// Fakes

/** Timers on a virtual clock: nothing fires until the test advances time. */
class FakeTime {
  nowMs = 0;
  #nextId = 1;
  readonly #timers = new Map<number, { atMs: number; callback: () => void }>();

  setTimeout = (callback: () => void, ms: number): TimerHandle => {
    const id = this.#nextId++;
    this.#timers.set(id, { atMs: this.nowMs + Math.max(0, ms), callback });
    return id;
  };

  clearTimeout = (id: TimerHandle): void => {
    this.#timers.delete(id as number);
  };

  /** Timers still scheduled. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const targetMs = this.nowMs + ms;
    while (true) {
      let dueId: number | null = null;
      let dueAtMs = Infinity;
      for (const [id, timer] of this.#timers) {
        if (timer.atMs <= targetMs && timer.atMs < dueAtMs) {
          dueId = id;
          dueAtMs = timer.atMs;
        }
      }
      if (dueId === null) break;
      const timer = this.#timers.get(dueId)!;
      this.#timers.delete(dueId);
      this.nowMs = timer.atMs;
      timer.callback();
      await settle();
    }
    this.nowMs = targetMs;
    await settle();
  }
}

/** Lets pending promise chains and async crypto finish (a few event-loop turns, no waiting). */
async function settle(turns = 3): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

interface FakeVoiceAction extends VoiceActionClient {
  toolCalls: Parameters<VoiceActionClient["callTool"]>[0][];
  controls: Parameters<VoiceActionClient["control"]>[0][];
  streamEnds: Parameters<VoiceActionClient["streamEnded"]>[0][];
}

function createFakeVoiceAction(
  callTool: (name: string) => Promise<ToolOutcome>,
): FakeVoiceAction {
  const fake: FakeVoiceAction = {
    toolCalls: [],
    controls: [],
    streamEnds: [],
    callTool(request) {
      fake.toolCalls.push(request);
      return callTool(request.name);
    },
    control(request) {
      fake.controls.push(request);
      return Promise.resolve();
    },
    streamEnded(request) {
      fake.streamEnds.push(request);
      return Promise.resolve();
    },
  };
  return fake;
}

interface HarnessOptions {
  lookupCaller?: () => Promise<CallerContext | null>;
  callTool?: (name: string) => Promise<ToolOutcome>;
  audioPipeline?: "passthrough" | "pcm24k";
  /** Where handovers save and claim continuations; without it the bridge never hands over. */
  continuations?: MemoryContinuations;
  wallClockSeconds?: number;
  cpuBudgetMs?: number;
  cpuClock?: () => number;
  /** Where the runtime's `beforeunload` comes from; defaults to the bridge's own default. */
  runtimeEvents?: EventTarget;
}

/** Continuations kept in memory with the database's rules: each is claimed once, by its call. */
interface MemoryContinuations {
  saved: Map<string, { callSid: string; state: Record<string, unknown>; claimed: boolean }>;
  /** Checkpoints saved at turns, newest last (claimed through the same ids). */
  checkpoints: Map<string, { callSid: string; state: Record<string, unknown>; claimed: boolean }>;
  /** Makes saving fail (the database is down). */
  failSaves: boolean;
  claims: number;
}

function createMemoryContinuations(): MemoryContinuations {
  return { saved: new Map(), checkpoints: new Map(), failSaves: false, claims: 0 };
}

/** One call's bridge with every dependency faked. */
interface Harness {
  time: FakeTime;
  twilio: FakeSocket;
  /** Every Realtime connection the bridge asked for. */
  connects: { url: string; model: string; apiKey: string }[];
  models: FakeSocket[];
  logs: ReturnType<typeof createMemoryLogger>;
  turns: CallTurnInput[][];
  metrics: CallMetrics[];
  voiceAction: FakeVoiceAction;
  /** The bridge's promise; resolves once the call is over and flushed. */
  done: Promise<void>;
  isDone(): boolean;
}

function continuationStore(memory: MemoryContinuations): Pick<
  BridgeDeps["store"],
  "saveCallContinuation" | "saveCallCheckpoint" | "claimCallContinuation"
> {
  return {
    saveCallContinuation(callSid, _traceId, state) {
      if (memory.failSaves) return Promise.reject(new Error("connection refused"));
      const id = crypto.randomUUID();
      memory.saved.set(id, { callSid, state: structuredClone(state), claimed: false });
      return Promise.resolve(id);
    },
    saveCallCheckpoint(callSid, _traceId, state) {
      if (memory.failSaves) return Promise.reject(new Error("connection refused"));
      const id = crypto.randomUUID();
      memory.checkpoints.set(id, { callSid, state: structuredClone(state), claimed: false });
      return Promise.resolve(id);
    },
    claimCallContinuation(continuationId, callSid) {
      memory.claims++;
      const row = memory.saved.get(continuationId) ?? memory.checkpoints.get(continuationId);
      if (!row || row.claimed || row.callSid !== callSid) return Promise.resolve(null);
      row.claimed = true;
      return Promise.resolve(structuredClone(row.state));
    },
  };
}

function startBridge(options: HarnessOptions = {}): Harness {
  const time = new FakeTime();
  const twilio = new FakeSocket(true);
  const logs = createMemoryLogger("voice-stream");
  const connects: Harness["connects"] = [];
  const models: FakeSocket[] = [];
  const turns: CallTurnInput[][] = [];
  const metrics: CallMetrics[] = [];
  const voiceAction = createFakeVoiceAction(
    options.callTool ??
      (() => Promise.resolve({ output: JSON.stringify({ ok: true }), effect: null })),
  );
  const deps: BridgeDeps = {
    config: {
      internalSecret: SECRET,
      openaiRealtimeUrl: "wss://realtime.test/v1/realtime",
      openaiRealtimeModel: "gpt-realtime",
      openaiApiKey: "sk-test-bridge",
      openaiVoice: "marin",
      openaiTranscriptionModel: "gpt-4o-mini-transcribe",
      audioPipeline: options.audioPipeline ?? "passthrough",
      lookupBudgetMs: LOOKUP_BUDGET_MS,
      maxCallSeconds: 380,
      streamWallClockSeconds: options.wallClockSeconds,
      streamCpuBudgetMs: options.cpuBudgetMs,
    },
    cpuClock: options.cpuClock,
    runtimeEvents: options.runtimeEvents,
    log: logs.logger,
    clock: () => WALL_START_MS + time.nowMs,
    now: () => time.nowMs,
    timers: { setTimeout: time.setTimeout, clearTimeout: time.clearTimeout },
    store: {
      lookupCaller: options.lookupCaller ?? (() => Promise.resolve(KNOWN_CALLER)),
      appendCallTurns(_callSid, batch) {
        turns.push(batch);
        return Promise.resolve(batch.length);
      },
      recordCallMetrics(_callSid, recorded) {
        metrics.push(recorded);
        return Promise.resolve();
      },
      ...(options.continuations ? continuationStore(options.continuations) : {}),
    },
    connectRealtime(request) {
      connects.push(request);
      const socket = new FakeSocket(false);
      models.push(socket);
      return socket;
    },
    voiceAction,
    tools: [],
  };
  let finished = false;
  const done = runCallBridge(twilio, deps).then(() => {
    finished = true;
  });
  return {
    time,
    twilio,
    connects,
    models,
    logs,
    turns,
    metrics,
    voiceAction,
    done,
    isDone: () => finished,
  };
}

// ---------------------------------------------------------------------------------------------
// Twilio's side (frames in Twilio's own key order, so the bridge's fast path is exercised)

async function validToken(callSid = CALL_SID, expiresAtMs = WALL_START_MS + 60_000) {
  return await issueStreamToken(SECRET, { callSid, traceId: TRACE_ID, expiresAtMs });
}

let sequenceNumber = 0;

function emitTwilioStart(h: Harness, customParameters: Record<string, string>): void {
  h.twilio.deliver(JSON.stringify({
    event: "start",
    sequenceNumber: String(++sequenceNumber),
    start: {
      accountSid: ACCOUNT_SID,
      streamSid: STREAM_SID,
      callSid: CALL_SID,
      tracks: ["inbound"],
      mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      customParameters,
    },
    streamSid: STREAM_SID,
  }));
}

function emitTwilioMedia(h: Harness, bytes: Uint8Array): void {
  const n = ++sequenceNumber;
  h.twilio.deliver(JSON.stringify({
    event: "media",
    sequenceNumber: String(n),
    media: {
      track: "inbound",
      chunk: String(n),
      timestamp: String(n * 20),
      payload: bytesToBase64(bytes),
    },
    streamSid: STREAM_SID,
  }));
}

function emitTwilioMark(h: Harness, name: string): void {
  h.twilio.deliver(JSON.stringify({
    event: "mark",
    sequenceNumber: String(++sequenceNumber),
    streamSid: STREAM_SID,
    mark: { name },
  }));
}

function emitTwilioDtmf(h: Harness, digit: string): void {
  h.twilio.deliver(JSON.stringify({
    event: "dtmf",
    streamSid: STREAM_SID,
    sequenceNumber: String(++sequenceNumber),
    dtmf: { track: "inbound_track", digit },
  }));
}

function emitTwilioStop(h: Harness): void {
  h.twilio.deliver(JSON.stringify({
    event: "stop",
    sequenceNumber: String(++sequenceNumber),
    streamSid: STREAM_SID,
    stop: { accountSid: ACCOUNT_SID, callSid: CALL_SID },
  }));
}

/** A 20 ms caller frame whose bytes all carry `tag` (so order can be checked). */
function callerFrame(tag: number, bytes = 160): Uint8Array {
  return new Uint8Array(bytes).fill(tag);
}

/** The `customParameters` voice-frontdoor puts on the `<Stream>`. */
async function streamParameters(
  overrides: Partial<Record<"token" | "callSid" | "traceId", string>> = {},
): Promise<Record<string, string>> {
  return {
    traceId: TRACE_ID,
    callSid: CALL_SID,
    from: CALLER,
    to: ORG_NUMBER,
    token: await validToken(),
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------
// The model's side

function modelOf(h: Harness): FakeSocket {
  assert.equal(h.models.length, 1, "one model session");
  return h.models[0];
}

function emitModelEvent(h: Harness, event: Record<string, unknown>): void {
  modelOf(h).deliver(JSON.stringify(event));
}

/** What the bridge sent the model, parsed. */
function modelEvents(h: Harness): Record<string, unknown>[] {
  return h.models.flatMap((model) => model.sent.map((text) => JSON.parse(text)));
}

function modelEventsOf(h: Harness, type: string): Record<string, unknown>[] {
  return modelEvents(h).filter((event) => event.type === type);
}

/** What the bridge sent Twilio, parsed. */
function twilioEvents(h: Harness, event?: string): Record<string, unknown>[] {
  const all = h.twilio.sent.map((text) => JSON.parse(text) as Record<string, unknown>);
  return event ? all.filter((message) => message.event === event) : all;
}

/** Bytes of every `input_audio_buffer.append`, in order, joined. */
function appendedBytes(h: Harness): Uint8Array {
  const chunks = modelEventsOf(h, "input_audio_buffer.append").map((event) =>
    base64ToBytes(event.audio as string)!
  );
  return concatBytes(chunks);
}

/** `start` with a valid token, the model socket opened: the greeting has been requested. */
async function startCall(h: Harness): Promise<void> {
  emitTwilioStart(h, await streamParameters());
  await until(() => h.models.length === 1, "the model connection");
  h.models[0].acceptOpen();
  await until(() => modelEventsOf(h, "session.update").length === 1, "session.update");
}

/** Ends the call from Twilio's side and waits until the bridge is done. */
async function hangUp(h: Harness): Promise<void> {
  emitTwilioStop(h);
  await h.done;
}

// ---------------------------------------------------------------------------------------------
// Stream token

const rejectedTokens: [string, () => Promise<Record<string, string>>, string][] = [
  [
    "a forged token",
    () => streamParameters({ token: `v1.9999999999.${"A".repeat(43)}` }),
    "mismatch",
  ],
  ["a malformed token", () => streamParameters({ token: "not-a-token" }), "malformed"],
  ["a missing token", async () => {
    const { token: _token, ...rest } = await streamParameters();
    return rest;
  }, "missing"],
  [
    "an expired token",
    async () => streamParameters({ token: await validToken(CALL_SID, WALL_START_MS - 1000) }),
    "expired",
  ],
  [
    "a token for another CallSid",
    async () => streamParameters({ token: await validToken(OTHER_CALL_SID) }),
    "mismatch",
  ],
  [
    "a callSid parameter that is not the stream's",
    async () =>
      streamParameters({ callSid: OTHER_CALL_SID, token: await validToken(OTHER_CALL_SID) }),
    "mismatch",
  ],
  [
    "a valid token whose callSid parameter differs",
    () => streamParameters({ callSid: OTHER_CALL_SID }),
    "call_mismatch",
  ],
];

for (const [what, parameters, reason] of rejectedTokens) {
  Deno.test(`runCallBridge() closes with 1008 on ${what} and never opens a model session`, async () => {
    const h = startBridge();
    emitTwilioStart(h, await parameters());
    // Caller audio that arrives meanwhile must not change anything.
    emitTwilioMedia(h, callerFrame(1));
    await h.done;
    assert.deepEqual(h.twilio.closeCalls.map((call) => call.code), [1008]);
    assert.equal(h.connects.length, 0, "the Realtime connector was never called");
    const rejected = h.logs.entries("security_rejected");
    assert.equal(rejected.length, 1);
    assert.equal(rejected[0].reason, `token_${reason}`);
    assert.equal(h.logs.entries("call_started").length, 0);
    assert.equal(h.voiceAction.streamEnds.length, 0);
    assert.equal(h.metrics.length, 0);
    assert.equal(h.time.pending, 0, "no timer left behind");
  });
}

Deno.test("runCallBridge() never opens a model session when Twilio stops during the token check", async () => {
  const h = startBridge();
  emitTwilioStart(h, await streamParameters());
  // The token check is asynchronous (HMAC): the stream ends before it finishes.
  emitTwilioStop(h);
  await h.done;
  await settle(10);
  for (const model of h.models) assert.ok(model.closed, "a model socket opened late is closed");
  assert.equal(h.connects.length, 0, "the Realtime connector was never called");
  assert.equal(h.time.pending, 0, "no timer left behind");
});

Deno.test("runCallBridge() never opens a model session when Twilio's socket closes during the token check", async () => {
  const h = startBridge();
  emitTwilioStart(h, await streamParameters());
  h.twilio.peerClose(1006);
  await h.done;
  await settle(10);
  assert.equal(h.connects.length, 0, "the Realtime connector was never called");
  assert.equal(h.time.pending, 0, "no timer left behind");
});

// ---------------------------------------------------------------------------------------------
// Call start: lookup and model in parallel

Deno.test("runCallBridge() puts a known caller's record in the instructions and greets by name", async () => {
  const h = startBridge();
  await startCall(h);
  const [update] = modelEventsOf(h, "session.update") as { session: Record<string, unknown> }[];
  assert.match(String(update.session.instructions), /<caller_record>[\s\S]*"Jane"/);
  const greeting = modelEventsOf(h, "response.create")[0] as {
    response?: { instructions?: string };
  };
  assert.match(String(greeting.response?.instructions), /first name/);
  assert.deepEqual(h.connects, [{
    url: "wss://realtime.test/v1/realtime",
    model: "gpt-realtime",
    apiKey: "sk-test-bridge",
  }]);
  assert.equal(h.logs.entries("client_identified").length, 1);
  assert.equal(h.logs.entries("greeting_triggered").length, 1);
  await hangUp(h);
});

Deno.test("runCallBridge() greets generically when the lookup outlasts its budget", async () => {
  const h = startBridge({ lookupCaller: () => new Promise<never>(() => {}) });
  emitTwilioStart(h, await streamParameters());
  await until(() => h.models.length === 1, "the model connection");
  h.models[0].acceptOpen();
  await settle();
  assert.equal(modelEventsOf(h, "session.update").length, 0, "waits for the lookup");
  await h.time.advance(LOOKUP_BUDGET_MS - 1);
  assert.equal(modelEventsOf(h, "session.update").length, 0, "still within the budget");
  await h.time.advance(1);
  // At the budget, without the caller's record: never dead air.
  const types = modelEvents(h).map((event) => event.type);
  assert.deepEqual(types.slice(0, 2), ["session.update", "response.create"]);
  const [update] = modelEventsOf(h, "session.update") as { session: Record<string, unknown> }[];
  const instructions = String(update.session.instructions);
  assert.doesNotMatch(instructions, /<caller_record>/);
  assert.match(instructions, /could not be loaded/);
  const greeting = modelEventsOf(h, "response.create")[0] as { response: { instructions: string } };
  assert.doesNotMatch(greeting.response.instructions, /first name/);
  const [timeout] = h.logs.entries("lookup_timeout");
  assert.equal(timeout.lookupMs, LOOKUP_BUDGET_MS);
  assert.equal(timeout.callSid, CALL_SID);
  assert.equal(h.logs.entries("greeting_triggered")[0].sinceStartMs, LOOKUP_BUDGET_MS);
  await hangUp(h);
  assert.equal(h.metrics[0].lookupMs, LOOKUP_BUDGET_MS);
  assert.equal(h.time.pending, 0, "no timer left behind");
});

Deno.test("runCallBridge() greets generically at once when the lookup fails", async () => {
  const h = startBridge({ lookupCaller: () => Promise.reject(new Error("connection refused")) });
  await startCall(h);
  assert.equal(h.time.nowMs, 0, "no time passed: the budget was not waited for");
  const [update] = modelEventsOf(h, "session.update") as { session: Record<string, unknown> }[];
  assert.doesNotMatch(String(update.session.instructions), /<caller_record>/);
  assert.equal(modelEventsOf(h, "response.create").length, 1, "the greeting was requested");
  const [failed] = h.logs.entries("lookup_failed");
  assert.equal(failed.level, "warn");
  assert.equal(h.logs.entries("lookup_timeout").length, 0);
  await hangUp(h);
});

Deno.test("runCallBridge() flushes caller audio from before the model was ready in order after session.update", async () => {
  const h = startBridge();
  emitTwilioStart(h, await streamParameters());
  const early = Array.from({ length: 12 }, (_, i) => callerFrame(10 + i));
  for (const frame of early.slice(0, 4)) emitTwilioMedia(h, frame);
  await until(() => h.models.length === 1, "the model connection");
  for (const frame of early.slice(4)) emitTwilioMedia(h, frame);
  assert.equal(h.models[0].sent.length, 0, "nothing is sent before the socket opens");
  h.models[0].acceptOpen();
  await until(() => modelEventsOf(h, "input_audio_buffer.append").length > 0, "the flush");
  const types = modelEvents(h).map((event) => event.type);
  assert.deepEqual(types, ["session.update", "response.create", "input_audio_buffer.append"]);
  assert.deepEqual(appendedBytes(h), concatBytes(early), "every early byte, in order");
  // Later audio follows the early audio.
  const later = Array.from({ length: FRAMES_PER_APPEND }, (_, i) => callerFrame(50 + i));
  for (const frame of later) emitTwilioMedia(h, frame);
  assert.deepEqual(appendedBytes(h), concatBytes([...early, ...later]));
  assert.equal(h.logs.entries("early_audio_flushed")[0].earlyAudioMs, 240);
  await hangUp(h);
});

// ---------------------------------------------------------------------------------------------
// Garbage and out-of-order frames

/** Frame-level warnings the bridge logged. */
function frameWarnings(h: Harness): Record<string, unknown>[] {
  return h.logs.entries().filter((entry) =>
    entry.event === "frame_rejected" || entry.event === "frame_out_of_order"
  );
}

const GARBAGE_FRAMES: (string | Uint8Array)[] = [
  "hello",
  "",
  "{",
  "null",
  "42",
  "[]",
  '"media"',
  "{}",
  JSON.stringify({ event: "bogus", streamSid: STREAM_SID }),
  JSON.stringify({ event: 7 }),
  JSON.stringify({ event: "media" }),
  JSON.stringify({ event: "media", sequenceNumber: "1", streamSid: STREAM_SID, media: null }),
  JSON.stringify({
    event: "media",
    sequenceNumber: "2",
    media: { track: "inbound", chunk: "1", timestamp: "20", payload: "!!!not base64!!!" },
    streamSid: STREAM_SID,
  }),
  JSON.stringify({
    event: "media",
    sequenceNumber: "3",
    media: { track: "inbound", chunk: "2", timestamp: "40", payload: "QUJD=" },
    streamSid: STREAM_SID,
  }),
  JSON.stringify({
    event: "media",
    sequenceNumber: "4",
    media: { track: "inbound", chunk: "3", timestamp: "60", payload: "" },
    streamSid: STREAM_SID,
  }),
  JSON.stringify({ event: "start", sequenceNumber: "x", streamSid: STREAM_SID }),
  JSON.stringify({ event: "dtmf", sequenceNumber: "5", streamSid: STREAM_SID, dtmf: {} }),
  "\u0000\u0001\u0002",
  new Uint8Array([0x7b, 0x7d]),
  new Uint8Array(160).fill(0xff),
];

Deno.test("runCallBridge() survives garbage frames before and after start, logging a bounded number", async () => {
  const h = startBridge();
  // 10 rounds of every kind of garbage before start; nothing may throw.
  for (let round = 0; round < 10; round++) {
    for (const frame of GARBAGE_FRAMES) h.twilio.deliver(frame);
  }
  await startCall(h);
  for (let round = 0; round < 10; round++) {
    for (const frame of GARBAGE_FRAMES) h.twilio.deliver(frame);
  }
  // The call goes on: caller audio still reaches the model, nothing was closed.
  const frames = Array.from({ length: FRAMES_PER_APPEND }, (_, i) => callerFrame(1 + i));
  for (const frame of frames) emitTwilioMedia(h, frame);
  assert.deepEqual(appendedBytes(h), concatBytes(frames));
  assert.equal(h.twilio.closed, false);
  assert.equal(modelOf(h).closed, false);
  const warnings = frameWarnings(h);
  assert.ok(warnings.length >= 1, "invalid frames are logged");
  assert.ok(
    warnings.length <= 10,
    `at most a few lines for 400 bad frames, got ${warnings.length}`,
  );
  await hangUp(h);
  assert.deepEqual(h.twilio.closeCalls.map((call) => call.code), [1000]);
});

Deno.test("runCallBridge() counts binary frames as invalid", async () => {
  const h = startBridge();
  h.twilio.deliver(new Uint8Array([1, 2, 3]));
  const [warning] = frameWarnings(h);
  assert.ok(warning, "a binary frame is logged");
  assert.equal(warning.event, "frame_rejected");
  await startCall(h);
  await hangUp(h);
});

Deno.test("runCallBridge() survives out-of-order frames, logging a bounded number", async () => {
  const h = startBridge();
  // Media before start: 100 frames (2 s), each out of order.
  for (let i = 0; i < 100; i++) emitTwilioMedia(h, callerFrame(i));
  // A stray mark and DTMF before start.
  emitTwilioMark(h, "not-ours");
  emitTwilioDtmf(h, "0");
  await startCall(h);
  assert.equal(appendedBytes(h).length, 0, "audio from before start is not the call's");
  // A second start (another CallSid) changes nothing.
  for (let i = 0; i < 20; i++) emitTwilioStart(h, await streamParameters());
  await settle();
  assert.equal(h.connects.length, 1, "one model session only");
  // Marks that are not ours, or from before a clear, are ignored.
  for (const name of ["whatever", "g0:abc:item", "g99:100:item_1", "", "g0:100:"]) {
    for (let i = 0; i < 10; i++) emitTwilioMark(h, name);
  }
  assert.equal(h.voiceAction.controls.length, 0, "DTMF before start did nothing");
  const frames = Array.from({ length: FRAMES_PER_APPEND }, (_, i) => callerFrame(7 + i));
  for (const frame of frames) emitTwilioMedia(h, frame);
  assert.deepEqual(appendedBytes(h), concatBytes(frames), "the call goes on");
  assert.equal(h.twilio.closed, false);
  const warnings = frameWarnings(h);
  assert.ok(warnings.some((entry) => entry.frame === "media"), "media before start is logged");
  assert.ok(
    warnings.length <= 10,
    `at most a few lines for 170 such frames, got ${warnings.length}`,
  );
  const marks = warnings.filter((entry) => entry.frame === "mark");
  assert.ok(marks.length >= 1 || warnings.length >= 5, "unknown marks are logged (while room)");
  await hangUp(h);
});

Deno.test("runCallBridge() ends a stream that sends nothing but garbage", async () => {
  const h = startBridge();
  for (let i = 0; i < 600; i++) h.twilio.deliver("garbage");
  await h.done;
  assert.ok(h.twilio.closed);
  assert.equal(h.connects.length, 0);
  assert.ok(frameWarnings(h).length <= 10);
  assert.equal(h.logs.entries("security_rejected")[0].reason, "too_many_bad_frames");
});

// ---------------------------------------------------------------------------------------------
// Model failures

async function assertRecovered(h: Harness, reason: RegExp): Promise<void> {
  await h.done;
  assert.equal(h.voiceAction.controls.length, 1);
  const [control] = h.voiceAction.controls;
  assert.equal(control.action, "recover");
  assert.equal(control.callSid, CALL_SID);
  assert.equal(control.traceId, TRACE_ID);
  assert.match(control.reason, reason);
  assert.ok(modelOf(h).closed, "the model socket is closed");
  assert.deepEqual(h.twilio.closeCalls.map((call) => call.code), [1000], "Twilio closed cleanly");
  assert.equal(h.voiceAction.streamEnds[0].reason, "model_failed");
  assert.equal(h.logs.entries("model_failed").length, 1);
  assert.equal(h.metrics.length, 1, "metrics written once");
  assert.equal(h.time.pending, 0, "no timer left behind");
}

Deno.test("runCallBridge() recovers the call on a server_error event", async () => {
  const h = startBridge();
  await startCall(h);
  emitModelEvent(h, {
    type: "error",
    event_id: "event_1",
    error: { type: "server_error", code: null, message: "The server had an error" },
  });
  await assertRecovered(h, /server_error/);
  assert.equal(h.logs.entries("model_error")[0].level, "error");
});

Deno.test("runCallBridge() only logs invalid_request_error events", async () => {
  const h = startBridge();
  await startCall(h);
  emitModelEvent(h, {
    type: "error",
    error: { type: "invalid_request_error", code: "invalid_value", message: "Bad value" },
  });
  await settle();
  assert.equal(h.voiceAction.controls.length, 0);
  assert.equal(modelOf(h).closed, false);
  assert.equal(h.logs.entries("model_error")[0].level, "warn");
  await hangUp(h);
});

Deno.test("runCallBridge() recovers the call when the model socket closes mid-call", async () => {
  const h = startBridge();
  await startCall(h);
  emitModelEvent(h, { type: "response.created", response: { id: "resp_1" } });
  emitModelEvent(h, {
    type: "response.output_audio.delta",
    response_id: "resp_1",
    item_id: "item_1",
    delta: bytesToBase64(new Uint8Array(800).fill(0x55)),
  });
  modelOf(h).peerClose(1006);
  await assertRecovered(h, /socket_closed_1006/);
});

Deno.test("runCallBridge() recovers the call when the model refuses the connection", async () => {
  const h = startBridge();
  emitTwilioStart(h, await streamParameters());
  await until(() => h.models.length === 1, "the model connection");
  h.models[0].peerClose(1006);
  await assertRecovered(h, /connect_refused/);
  assert.equal(h.models[0].sent.length, 0);
});

// ---------------------------------------------------------------------------------------------
// Tools, DTMF

Deno.test("runCallBridge() answers a failed tool call with an apology error, then a response", async () => {
  const h = startBridge({ callTool: () => Promise.reject(new Error("voice-action timed out")) });
  await startCall(h);
  emitModelEvent(h, {
    type: "response.function_call_arguments.done",
    response_id: "resp_1",
    item_id: "item_fc",
    output_index: 0,
    call_id: "call_1",
    name: "check_availability",
    arguments: JSON.stringify({ date: "2026-12-01" }),
  });
  await until(() => modelEventsOf(h, "conversation.item.create").length === 1, "the output");
  const events = modelEvents(h);
  const outputAt = events.findIndex((event) => event.type === "conversation.item.create");
  const item = events[outputAt].item as { type: string; call_id: string; output: string };
  assert.equal(item.type, "function_call_output");
  assert.equal(item.call_id, "call_1");
  const output = JSON.parse(item.output) as { error: string };
  assert.match(output.error, /[Aa]polog/);
  assert.equal(events[outputAt + 1]?.type, "response.create", "a response follows the output");
  assert.equal(h.voiceAction.toolCalls[0].traceId, TRACE_ID);
  const [logged] = h.logs.entries("tool_call");
  assert.equal(logged.outcome, "failed");
  assert.equal(h.twilio.closed, false, "the call goes on");
  await hangUp(h);
});

Deno.test("runCallBridge() asks voice-action to transfer when the caller presses 0", async () => {
  const h = startBridge();
  await startCall(h);
  emitTwilioDtmf(h, "0");
  await settle();
  assert.deepEqual(
    h.voiceAction.controls.map(({ action, callSid }) => ({ action, callSid })),
    [{ action: "transfer", callSid: CALL_SID }],
  );
  // Other digits go to the model as text.
  emitTwilioDtmf(h, "5");
  const texts = modelEventsOf(h, "conversation.item.create").map((event) =>
    JSON.stringify(event.item)
  );
  assert.match(texts.join(), /pressed key 5/);
  assert.equal(modelEvents(h).at(-1)?.type, "response.create");
  await hangUp(h);
  assert.equal(h.voiceAction.streamEnds[0].reason, "transferred");
});

// ---------------------------------------------------------------------------------------------
// Ending

Deno.test("runCallBridge() closes the model at once on stop, flushes turns and writes metrics once", async () => {
  const h = startBridge();
  await startCall(h);
  // The greeting: 300 ms of audio, interrupted after 100 ms.
  emitModelEvent(h, { type: "response.created", response: { id: "resp_1" } });
  emitModelEvent(h, {
    type: "response.output_audio.delta",
    response_id: "resp_1",
    item_id: "item_1",
    delta: bytesToBase64(new Uint8Array(2400).fill(0x55)),
  });
  assert.equal(twilioEvents(h, "media").length, 1);
  await h.time.advance(100);
  emitModelEvent(h, {
    type: "input_audio_buffer.speech_started",
    audio_start_ms: 1200,
    item_id: "item_u1",
  });
  assert.equal(twilioEvents(h, "clear").length, 1, "barge-in cleared Twilio");
  assert.deepEqual(
    modelEventsOf(h, "conversation.item.truncate").map((event) => event.audio_end_ms),
    [100],
  );
  emitModelEvent(h, {
    type: "response.output_audio_transcript.done",
    response_id: "resp_1",
    item_id: "item_1",
    output_index: 0,
    content_index: 0,
    transcript: "Hi Jane, thanks for calling.",
  });
  emitModelEvent(h, {
    type: "response.done",
    response: {
      id: "resp_1",
      status: "cancelled",
      usage: { input_tokens: 120, output_tokens: 30 },
    },
  });
  emitModelEvent(h, {
    type: "conversation.item.input_audio_transcription.completed",
    item_id: "item_u1",
    content_index: 0,
    transcript: "I'd like an appointment.",
  });
  emitModelEvent(h, {
    type: "response.function_call_arguments.done",
    response_id: "resp_2",
    item_id: "item_fc",
    output_index: 0,
    call_id: "call_1",
    name: "check_availability",
    arguments: "{}",
  });
  await until(() => modelEventsOf(h, "conversation.item.create").length === 1, "tool output");
  emitModelEvent(h, {
    type: "response.done",
    response: { id: "resp_2", status: "completed", usage: { input_tokens: 80, output_tokens: 20 } },
  });
  await h.time.advance(200);

  emitTwilioStop(h);
  assert.equal(modelOf(h).closeCalls.length, 1, "the model socket closes in the same turn");
  await h.done;
  assert.deepEqual(
    h.turns.flat().map(({ sequence, speaker, text }) => ({ sequence, speaker, text })),
    [
      { sequence: 0, speaker: "assistant", text: "Hi Jane, thanks for calling." },
      { sequence: 1, speaker: "caller", text: "I'd like an appointment." },
    ],
  );
  assert.equal(h.metrics.length, 1, "metrics written once");
  const [metrics] = h.metrics;
  assert.equal(metrics.bargeIns, 1);
  assert.equal(metrics.toolCalls, 1);
  assert.equal(metrics.modelInputTokens, 200);
  assert.equal(metrics.modelOutputTokens, 50);
  assert.equal(metrics.firstAudioMs, 0);
  assert.equal(metrics.lookupMs, 0);
  assert.equal(metrics.streamSeconds, 0.3);
  assert.deepEqual(h.twilio.closeCalls.map((call) => call.code), [1000]);
  assert.equal(h.voiceAction.streamEnds[0].reason, "caller_hung_up");
  assert.equal(h.voiceAction.controls.length, 0);
  const [ended] = h.logs.entries("call_ended");
  assert.equal(ended.reason, "twilio_stop");
  assert.equal(ended.traceId, TRACE_ID);
  // Twilio's close event after stop changes nothing.
  await settle();
  assert.equal(h.metrics.length, 1);
  assert.equal(h.time.pending, 0, "no timer left behind");
});

Deno.test("runCallBridge() sends a fast model's backlog to Twilio in 200 ms messages, bytes intact", async () => {
  const h = startBridge();
  await startCall(h);
  emitModelEvent(h, { type: "response.created", response: { id: "resp_1" } });
  // 2 s of audio at once, in 50 ms deltas of 400 bytes (base64 with padding: joined by bytes).
  const deltas = Array.from(
    { length: 40 },
    (_, i) => new Uint8Array(400).map((_, j) => (i * 7 + j) & 0xff),
  );
  for (const delta of deltas) {
    emitModelEvent(h, {
      type: "response.output_audio.delta",
      response_id: "resp_1",
      item_id: "item_1",
      delta: bytesToBase64(delta),
    });
  }
  for (let elapsed = 0; elapsed < 2_500; elapsed += 100) await h.time.advance(100);
  emitModelEvent(h, {
    type: "response.done",
    response: { id: "resp_1", status: "completed", usage: { input_tokens: 1, output_tokens: 1 } },
  });
  const media = twilioEvents(h, "media").map((event) =>
    base64ToBytes((event.media as { payload: string }).payload)!
  );
  const sizes = media.map((bytes) => bytes.length);
  // Deltas go out one by one until Twilio holds 500 ms, then 200 ms (1,600 bytes) per message.
  assert.deepEqual(sizes.slice(0, 10), Array(10).fill(400));
  assert.deepEqual(sizes.slice(10), [...Array(7).fill(1600), 800]);
  assert.deepEqual(concatBytes(media), concatBytes(deltas), "every byte, in order");
  // About one mark per 200 ms, the last one at the end of the 2,000 ms.
  const marks = twilioEvents(h, "mark").map((event) => (event.mark as { name: string }).name);
  assert.ok(marks.length <= 11, `marks: ${marks.length}`);
  assert.ok(marks.at(-1)!.includes(":2000:"), `last mark ${marks.at(-1)}`);
  await hangUp(h);
});

Deno.test("runCallBridge() writes turns in the background about every second", async () => {
  const h = startBridge();
  await startCall(h);
  emitModelEvent(h, {
    type: "conversation.item.input_audio_transcription.completed",
    item_id: "item_u1",
    content_index: 0,
    transcript: "Hello?",
  });
  await h.time.advance(999);
  assert.equal(h.turns.length, 0);
  await h.time.advance(1);
  assert.equal(h.turns.length, 1);
  await hangUp(h);
  assert.equal(h.turns.flat().length, 1, "nothing written twice");
});

Deno.test("runCallBridge() treats Twilio's socket closing like stop", async () => {
  const h = startBridge();
  await startCall(h);
  h.twilio.peerClose(1006);
  assert.equal(modelOf(h).closeCalls.length, 1);
  await h.done;
  assert.equal(h.metrics.length, 1);
  assert.equal(h.voiceAction.streamEnds[0].reason, "caller_hung_up");
});

// ---------------------------------------------------------------------------------------------
// pcm24k pipeline

Deno.test("runCallBridge() with AUDIO_PIPELINE=pcm24k speaks 24 kHz PCM to the model both ways", async () => {
  const h = startBridge({ audioPipeline: "pcm24k" });
  emitTwilioStart(h, await streamParameters());
  for (let i = 0; i < 5; i++) emitTwilioMedia(h, callerFrame(0x20 + i));
  await until(() => h.models.length === 1, "the model connection");
  h.models[0].acceptOpen();
  await until(() => modelEventsOf(h, "input_audio_buffer.append").length === 1, "the flush");
  for (let i = 0; i < 4; i++) emitTwilioMedia(h, callerFrame(0x30 + i));
  const [update] = modelEventsOf(h, "session.update") as {
    session: { audio: { input: { format: unknown }; output: { format: unknown } } };
  }[];
  assert.deepEqual(update.session.audio.input.format, { type: "audio/pcm", rate: 24000 });
  assert.deepEqual(update.session.audio.output.format, { type: "audio/pcm", rate: 24000 });
  // 9 frames of 160 mu-law bytes: 3x the samples, 2 bytes each.
  assert.equal(appendedBytes(h).length, 9 * 160 * 3 * 2);
  // 100 ms of model audio (24 kHz PCM16) becomes 100 ms of mu-law for Twilio.
  emitModelEvent(h, { type: "response.created", response: { id: "resp_1" } });
  emitModelEvent(h, {
    type: "response.output_audio.delta",
    response_id: "resp_1",
    item_id: "item_1",
    delta: bytesToBase64(new Uint8Array(4800)),
  });
  const media = twilioEvents(h, "media") as { media: { payload: string } }[];
  assert.equal(media.length, 1);
  assert.equal(base64ToBytes(media[0].media.payload)!.length, 800);
  await hangUp(h);
});

// ---------------------------------------------------------------------------------------------
// Handover: budgets, natural pauses, continuations

const echoedMarks = new Map<Harness, number>();

/** Twilio echoes every mark sent so far (the audio before it has played). */
function echoMarks(h: Harness): void {
  const marks = twilioEvents(h, "mark") as { mark: { name: string } }[];
  for (const mark of marks.slice(echoedMarks.get(h) ?? 0)) emitTwilioMark(h, mark.mark.name);
  echoedMarks.set(h, marks.length);
}

/** The model speaks one whole response of `ms` of audio saying `transcript`. */
function assistantSays(
  h: Harness,
  ids: { response: string; item: string },
  ms: number,
  transcript: string,
): void {
  emitModelEvent(h, { type: "response.created", response: { id: ids.response } });
  emitModelEvent(h, {
    type: "response.output_audio.delta",
    response_id: ids.response,
    item_id: ids.item,
    delta: bytesToBase64(new Uint8Array(ms * 8).fill(0x55)),
  });
  emitModelEvent(h, {
    type: "response.output_audio_transcript.done",
    response_id: ids.response,
    item_id: ids.item,
    output_index: 0,
    content_index: 0,
    transcript,
  });
  emitModelEvent(h, {
    type: "response.done",
    response: {
      id: ids.response,
      status: "completed",
      usage: { input_tokens: 10, output_tokens: 5 },
    },
  });
}

function callerStarts(h: Harness, itemId: string): void {
  emitModelEvent(h, {
    type: "input_audio_buffer.speech_started",
    audio_start_ms: 0,
    item_id: itemId,
  });
}

function callerStops(h: Harness, itemId: string, transcript: string): void {
  emitModelEvent(h, {
    type: "input_audio_buffer.speech_stopped",
    audio_end_ms: 0,
    item_id: itemId,
  });
  emitModelEvent(h, {
    type: "conversation.item.input_audio_transcription.completed",
    item_id: itemId,
    content_index: 0,
    transcript,
  });
}

function toolCallArrives(h: Harness, callId: string, name: string, args: unknown): void {
  emitModelEvent(h, {
    type: "response.function_call_arguments.done",
    response_id: `resp_${callId}`,
    item_id: `item_${callId}`,
    output_index: 0,
    call_id: callId,
    name,
    arguments: JSON.stringify(args),
  });
}

/** The parameters voice-action puts on the stream that continues a handed-over call. */
async function continuationParameters(continuationId: string): Promise<Record<string, string>> {
  return {
    ...(await streamParameters()),
    token: await issueStreamToken(SECRET, {
      callSid: CALL_SID,
      traceId: TRACE_ID,
      expiresAtMs: WALL_START_MS + 60_000,
      continuationId,
    }),
    continuation: continuationId,
  };
}

/** The only continuation saved so far. */
function savedContinuation(memory: MemoryContinuations) {
  assert.equal(memory.saved.size, 1, "one continuation saved");
  const [[id, row]] = [...memory.saved];
  return { id, state: row.state as unknown as ContinuationState };
}

/** Starts the stream that continues a call and waits until its model session is restored. */
async function continueCall(
  memory: MemoryContinuations,
  options: HarnessOptions = {},
  id: string = savedContinuation(memory).id,
): Promise<Harness & { lookups: number }> {
  let lookups = 0;
  const next = startBridge({
    continuations: memory,
    lookupCaller: () => {
      lookups++;
      return Promise.resolve(KNOWN_CALLER);
    },
    ...options,
  });
  emitTwilioStart(next, await continuationParameters(id));
  await until(() => next.models.length === 1, "the next stream's model connection");
  next.models[0].acceptOpen();
  await until(() => modelEventsOf(next, "session.update").length === 1, "the restored session");
  return Object.assign(next, {
    get lookups() {
      return lookups;
    },
  });
}

/** The `conversation.item.create` items a model session received, in order. */
function itemsOf(h: Harness): Record<string, unknown>[] {
  return modelEventsOf(h, "conversation.item.create").map((event) =>
    event.item as Record<string, unknown>
  );
}

Deno.test("runCallBridge() hands over at the first natural pause after 80% of its wall clock", async () => {
  const memory = createMemoryContinuations();
  const h = startBridge({ continuations: memory, wallClockSeconds: 10 });
  await startCall(h);
  assistantSays(h, { response: "resp_1", item: "item_a1" }, 400, "Hi Jane, how can I help?");
  await h.time.advance(400);
  echoMarks(h);
  callerStarts(h, "item_u1");
  await h.time.advance(1000);
  callerStops(h, "item_u1", "I need a cleaning.");
  assistantSays(h, { response: "resp_2", item: "item_a2" }, 600, "Sure, which day suits you?");
  await h.time.advance(600);
  echoMarks(h);
  // 7.9 s: the caller talks across the 8 s mark; no handover while they speak.
  await h.time.advance(7900 - h.time.nowMs);
  callerStarts(h, "item_u2");
  await h.time.advance(300);
  assert.equal(h.logs.entries("handover_due")[0]?.level, "soft");
  assert.equal(h.twilio.closed, false, "no handover while the caller speaks");
  callerStops(h, "item_u2", "Tuesday, please.");
  emitTwilioMedia(h, callerFrame(0xff));
  assert.equal(h.twilio.closed, false, "no handover while the answer is coming");
  assistantSays(h, { response: "resp_3", item: "item_a3" }, 300, "Tuesday works.");
  await h.time.advance(300);
  assert.equal(h.twilio.closed, false, "no handover before Twilio played the answer");
  echoMarks(h);
  await h.done;

  assert.deepEqual(modelOf(h).closeCalls, [{ code: 1000, reason: "handover" }]);
  assert.deepEqual(h.twilio.closeCalls, [{ code: 1000, reason: "handover" }]);
  assert.equal(h.voiceAction.streamEnds.length, 0, "a handover is not the end of the call");
  const { id, state } = savedContinuation(memory);
  assert.equal(state.nextSequence, 5);
  assert.deepEqual(state.recentTurns.map((turn) => turn.text), [
    "Hi Jane, how can I help?",
    "I need a cleaning.",
    "Sure, which day suits you?",
    "Tuesday, please.",
    "Tuesday works.",
  ]);
  assert.equal(state.callerContext?.client?.firstName, "Jane");
  assert.equal(state.handovers, 1);
  assert.equal(state.callStartedAtMs, WALL_START_MS);
  assert.equal(state.interrupted, null);
  assert.equal(state.respond, false);
  const [started] = h.logs.entries("handover_started");
  assert.equal(started.forced, false);
  assert.equal(started.elapsedMs, 8500);
  const [ended] = h.logs.entries("call_ended");
  assert.equal(ended.reason, "handover");
  assert.equal(ended.continuationId, id);
  assert.equal(h.turns.flat().length, 5, "this stream's turns are stored");
  assert.equal(h.metrics.length, 1, "this stream's metrics are written");
  assert.equal(h.time.pending, 0, "no timer left behind");
});

Deno.test("runCallBridge() continues a handed-over call without a lookup or a greeting", async () => {
  const memory = createMemoryContinuations();
  const h = startBridge({ continuations: memory, wallClockSeconds: 10 });
  await startCall(h);
  assistantSays(h, { response: "resp_1", item: "item_a1" }, 400, "Hi Jane, how can I help?");
  callerStops(h, "item_u1", "I need a cleaning.");
  await h.time.advance(8000);
  echoMarks(h);
  await h.done;

  const next = await continueCall(memory);
  assert.equal(next.lookups, 0, "the caller context came with the continuation");
  const [update] = modelEventsOf(next, "session.update") as { session: { instructions: string } }[];
  assert.match(update.session.instructions, /<caller_record>[\s\S]*"Jane"/);
  assert.match(update.session.instructions, /Do not greet the caller/);
  assert.match(update.session.instructions, /<conversation_record>/);
  assert.deepEqual(itemsOf(next), [
    {
      type: "message",
      role: "assistant",
      content: [{ type: "output_text", text: "Hi Jane, how can I help?" }],
    },
    {
      type: "message",
      role: "user",
      content: [{ type: "input_text", text: "I need a cleaning." }],
    },
  ]);
  assert.equal(modelEventsOf(next, "response.create").length, 0, "no second greeting");
  assert.equal(next.logs.entries("greeting_triggered").length, 0);
  const [restored] = next.logs.entries("continuation_restored");
  assert.equal(restored.turns, 2);
  assert.equal(restored.callSid, CALL_SID);
  // Numbering goes on where the previous stream stopped.
  emitModelEvent(next, {
    type: "conversation.item.input_audio_transcription.completed",
    item_id: "item_u9",
    content_index: 0,
    transcript: "Still there?",
  });
  await hangUp(next);
  assert.deepEqual(next.turns.flat().map((turn) => turn.sequence), [2]);
  assert.equal(next.voiceAction.streamEnds[0].reason, "caller_hung_up");
  assert.equal(next.metrics[0].lookupMs, null);
});

Deno.test("runCallBridge() waits for a tool result before a soft handover", async () => {
  const memory = createMemoryContinuations();
  let finishTool!: (outcome: ToolOutcome) => void;
  const h = startBridge({
    continuations: memory,
    wallClockSeconds: 10,
    callTool: () => new Promise((resolve) => finishTool = resolve),
  });
  await startCall(h);
  emitModelEvent(h, { type: "response.created", response: { id: "resp_0" } });
  emitModelEvent(h, { type: "response.done", response: { id: "resp_0", status: "completed" } });
  await h.time.advance(7900);
  toolCallArrives(h, "call_1", "check_availability", { date: "2026-12-01" });
  emitModelEvent(h, { type: "response.done", response: { id: "resp_fc", status: "completed" } });
  await h.time.advance(500);
  emitTwilioMedia(h, callerFrame(0xff));
  assert.equal(h.twilio.closed, false, "no handover while a tool call is in flight");
  finishTool({
    output: JSON.stringify({ slots: ["10:00"] }),
    effect: null,
    bookingInProgress: true,
  });
  await until(() => itemsOf(h).length === 1, "the tool output");
  assert.equal(itemsOf(h)[0].type, "function_call_output", "the result went to this model");
  assistantSays(h, { response: "resp_2", item: "item_a2" }, 300, "I have ten o'clock.");
  await h.time.advance(300);
  echoMarks(h);
  await h.done;
  const { state } = savedContinuation(memory);
  assert.deepEqual(state.carriedToolResults, []);
  assert.deepEqual(state.recentToolResults, [{
    name: "check_availability",
    arguments: JSON.stringify({ date: "2026-12-01" }),
    output: JSON.stringify({ slots: ["10:00"] }),
  }]);
  assert.equal(state.bookingInProgress, true);
  assert.equal(state.respond, false);
});

Deno.test("runCallBridge() carries a tool result that arrives after a hard handover was due", async () => {
  const memory = createMemoryContinuations();
  let finishTool!: (outcome: ToolOutcome) => void;
  const h = startBridge({
    continuations: memory,
    wallClockSeconds: 10,
    callTool: () => new Promise((resolve) => finishTool = resolve),
  });
  await startCall(h);
  emitModelEvent(h, { type: "response.created", response: { id: "resp_0" } });
  emitModelEvent(h, { type: "response.done", response: { id: "resp_0", status: "completed" } });
  // The caller talks through the soft window; the tool call comes just before 95%.
  await h.time.advance(7500);
  callerStarts(h, "item_u1");
  await h.time.advance(1400);
  callerStops(h, "item_u1", "Is Tuesday free?");
  emitModelEvent(h, { type: "response.created", response: { id: "resp_fc" } });
  toolCallArrives(h, "call_7", "check_availability", { date: "2026-12-01" });
  emitModelEvent(h, { type: "response.done", response: { id: "resp_fc", status: "completed" } });
  await h.time.advance(700);
  assert.equal(h.logs.entries("handover_due").at(-1)?.level, "hard");
  assert.equal(h.twilio.closed, false, "the tool call is not cut");
  finishTool({ output: JSON.stringify({ slots: ["10:00"] }), effect: null });
  await h.done;
  assert.equal(itemsOf(h).length, 0, "the old model never got the result");
  const { state } = savedContinuation(memory);
  assert.deepEqual(state.carriedToolResults, [{
    callId: "call_7",
    name: "check_availability",
    arguments: JSON.stringify({ date: "2026-12-01" }),
    output: JSON.stringify({ slots: ["10:00"] }),
  }]);
  assert.equal(state.respond, true);

  const next = await continueCall(memory);
  const items = itemsOf(next);
  assert.deepEqual(items.slice(-2), [
    {
      type: "function_call",
      call_id: "call_7",
      name: "check_availability",
      arguments: JSON.stringify({ date: "2026-12-01" }),
    },
    {
      type: "function_call_output",
      call_id: "call_7",
      output: JSON.stringify({ slots: ["10:00"] }),
    },
  ]);
  assert.equal(modelEvents(next).at(-1)?.type, "response.create", "it answers with the result");
  await hangUp(next);
});

/** A call on a 10 s stream, its greeting done, 7.5 s in: the soft handover is 500 ms away. */
async function callNearHandover() {
  const memory = createMemoryContinuations();
  const h = startBridge({ continuations: memory, wallClockSeconds: 10 });
  await startCall(h);
  emitModelEvent(h, { type: "response.created", response: { id: "resp_0" } });
  emitModelEvent(h, { type: "response.done", response: { id: "resp_0", status: "completed" } });
  await h.time.advance(7500);
  return { memory, h };
}

Deno.test("runCallBridge() hands over mid-sentence at 95% and the next stream resumes it", async () => {
  const { memory, h } = await callNearHandover();
  callerStarts(h, "item_u1");
  await h.time.advance(1400);
  callerStops(h, "item_u1", "What do you have next week?");
  await h.time.advance(100);
  const sentence = "I have Tuesday at ten, Wednesday at eleven and Friday at two available.";
  assistantSays(h, { response: "resp_1", item: "item_a1" }, 2000, sentence);
  await h.time.advance(500);
  await h.done;
  const clears = twilioEvents(h, "clear");
  assert.equal(clears.length, 1, "the cut-off audio is cleared at Twilio");
  const { state } = savedContinuation(memory);
  assert.equal(state.respond, true);
  assert.equal(state.interrupted?.text, sentence);
  assert.ok(sentence.startsWith(state.interrupted!.heardText), state.interrupted!.heardText);
  assert.match(state.interrupted!.heardText, /^I have Tuesday/);
  assert.ok(state.interrupted!.heardText.length < sentence.length / 2);
  assert.equal(h.logs.entries("handover_started")[0].forced, true);

  const next = await continueCall(memory);
  const [resume] = modelEventsOf(next, "response.create") as {
    response: { instructions: string };
  }[];
  assert.match(resume.response.instructions, /cut off mid-sentence/);
  assert.ok(resume.response.instructions.includes(JSON.stringify(state.interrupted!.heardText)));
  assert.match(resume.response.instructions, /Do not greet the caller/);
  await hangUp(next);
});

Deno.test("runCallBridge() hands over when its handler time nears the CPU budget", async () => {
  const memory = createMemoryContinuations();
  let cpuNowMs = 0;
  const h = startBridge({
    continuations: memory,
    cpuBudgetMs: 50,
    // Every reading moves on 0.5 ms: each handled message costs 0.5 ms.
    cpuClock: () => cpuNowMs += 0.5,
  });
  await startCall(h);
  await h.time.advance(2000);
  for (let i = 0; i < 100 && !h.twilio.closed; i++) emitTwilioMedia(h, callerFrame(0xff));
  await h.done;
  const [started] = h.logs.entries("handover_started");
  assert.ok(Number(started.cpuMs) >= 40, `cpuMs ${started.cpuMs}`);
  assert.equal(started.elapsedMs, 2000, "long before the wall clock");
  assert.equal(memory.saved.size, 1);
});

Deno.test("runCallBridge() hands over at once when the runtime warns of its CPU limit", async () => {
  const memory = createMemoryContinuations();
  const runtime = new EventTarget();
  const h = startBridge({ continuations: memory, runtimeEvents: runtime });
  await startCall(h);
  await h.time.advance(3000);
  runtime.dispatchEvent(new CustomEvent("beforeunload", { detail: { reason: "cpu" } }));
  emitTwilioMedia(h, callerFrame(0xff));
  await h.done;
  const [warned] = h.logs.entries("runtime_beforeunload");
  assert.equal(warned.reason, "cpu");
  assert.equal(warned.cpuMeter, "estimate");
  assert.deepEqual(h.logs.entries("handover_due").map((line) => line.level), ["final"]);
  assert.equal(h.logs.entries("handover_started")[0].elapsedMs, 3000, "long before any budget");
  assert.equal(memory.saved.size, 1);
  // The listener goes with the call: a later warning reaches no finished bridge.
  runtime.dispatchEvent(new CustomEvent("beforeunload", { detail: { reason: "cpu" } }));
  assert.equal(h.logs.entries("runtime_beforeunload").length, 1);
});

Deno.test("runCallBridge() waits for a pause when the runtime warns of its wall clock", async () => {
  const memory = createMemoryContinuations();
  const runtime = new EventTarget();
  const h = startBridge({ continuations: memory, runtimeEvents: runtime });
  await startCall(h);
  await h.time.advance(1000);
  runtime.dispatchEvent(new CustomEvent("beforeunload", { detail: { reason: "wall_clock" } }));
  assert.deepEqual(h.logs.entries("handover_due").map((line) => line.level), ["hard"]);
  emitTwilioMedia(h, callerFrame(0xff));
  await h.done;
  assert.equal(memory.saved.size, 1);
});

Deno.test("runCallBridge() checkpoints each stored turn; a stream whose worker died resumes from it", async () => {
  const memory = createMemoryContinuations();
  const h = startBridge({ continuations: memory });
  await startCall(h);
  assistantSays(h, { response: "resp_1", item: "item_a1" }, 400, "Hi Jane, how can I help?");
  await h.time.advance(1000);
  assert.equal(memory.checkpoints.size, 1, "checkpointed with the first stored turn");
  callerStops(h, "item_u1", "I need a cleaning on Tuesday.");
  await h.time.advance(1000);
  assert.equal(memory.checkpoints.size, 2);
  const [checkpointId, latest] = [...memory.checkpoints].at(-1)!;
  const state = latest.state as unknown as ContinuationState;
  assert.equal(state.nextSequence, 2);
  assert.equal(state.respond, true, "the caller spoke last: the next stream answers at once");
  assert.equal(memory.saved.size, 0, "no handover: the worker just dies here");

  // The worker is gone; voice-action's <Connect action> answer opens a stream on the checkpoint.
  const next = await continueCall(memory, {}, checkpointId);
  assert.equal(next.lookups, 0);
  assert.equal(next.logs.entries("greeting_triggered").length, 0, "no second greeting");
  assert.deepEqual(itemsOf(next).map((item) => (item as { role: string }).role), [
    "assistant",
    "user",
  ]);
  const [resume] = modelEventsOf(next, "response.create") as {
    response: { instructions: string };
  }[];
  assert.match(resume.response.instructions, /answer the caller's last words/);
  await until(() => memory.checkpoints.size === 3, "the resumed stream's own checkpoint");
  await hangUp(next);
  await hangUp(h);
});

Deno.test("runCallBridge() refuses a reused continuation with 1008 and never opens a model session", async () => {
  const memory = createMemoryContinuations();
  const h = startBridge({ continuations: memory, wallClockSeconds: 10 });
  await startCall(h);
  await h.time.advance(8000);
  emitTwilioMedia(h, callerFrame(0xff));
  await h.done;
  const first = await continueCall(memory);
  await hangUp(first);

  const replay = startBridge({ continuations: memory });
  emitTwilioStart(replay, await continuationParameters(savedContinuation(memory).id));
  await replay.done;
  assert.deepEqual(replay.twilio.closeCalls.map((call) => call.code), [1008]);
  assert.equal(replay.connects.length, 0, "no model session");
  assert.equal(replay.logs.entries("security_rejected")[0].reason, "continuation_refused");
  assert.equal(replay.voiceAction.streamEnds.length, 0);
});

Deno.test("runCallBridge() refuses a continuation its token was not issued for", async () => {
  const memory = createMemoryContinuations();
  const h = startBridge({ continuations: memory });
  const forged = crypto.randomUUID();
  emitTwilioStart(h, { ...(await streamParameters()), continuation: forged });
  await h.done;
  assert.deepEqual(h.twilio.closeCalls.map((call) => call.code), [1008]);
  assert.equal(h.connects.length, 0);
  assert.equal(memory.claims, 0, "nothing was claimed");
  assert.equal(h.logs.entries("security_rejected")[0].reason, "token_mismatch");
});

Deno.test("runCallBridge() ends the stream as an error when its continuation cannot be saved", async () => {
  const memory = createMemoryContinuations();
  memory.failSaves = true;
  const h = startBridge({ continuations: memory, wallClockSeconds: 10 });
  await startCall(h);
  await h.time.advance(8000);
  emitTwilioMedia(h, callerFrame(0xff));
  await h.done;
  assert.equal(h.logs.entries("handover_failed").length, 1);
  assert.equal(h.voiceAction.streamEnds[0].reason, "error", "voice-action apologises");
  assert.deepEqual(h.twilio.closeCalls.map((call) => call.code), [1000]);
  assert.equal(h.logs.entries("call_ended")[0].reason, "handover_failed");
});

Deno.test("runCallBridge() carries a caller cut off by a final handover to the next model as audio", async () => {
  const { memory, h } = await callNearHandover();
  callerStarts(h, "item_u1");
  // The caller talks on past 95% (the hard level waits for them) until 99%.
  for (let i = 0; !h.twilio.closed && i < 200; i++) {
    await h.time.advance(20);
    emitTwilioMedia(h, callerFrame(0x10 + (i % 64)));
  }
  await h.done;
  const [started] = h.logs.entries("handover_started");
  assert.equal(started.callerInterrupted, true);
  assert.ok(Number(started.elapsedMs) >= 9900, `handed over at ${started.elapsedMs} ms`);
  const { state } = savedContinuation(memory);
  assert.equal(state.respond, false, "the next model answers once the caller is done");
  // Every frame the old model heard of the unfinished sentence, in order.
  const heardByOldModel = appendedBytes(h);
  assert.deepEqual(base64ToBytes(state.callerAudio!), heardByOldModel);
  assert.ok(heardByOldModel.length >= 2300 * 8, `${heardByOldModel.length} bytes`);

  const next = await continueCall(memory);
  const appends = modelEventsOf(next, "input_audio_buffer.append");
  assert.equal(appends.length, 1);
  assert.deepEqual(base64ToBytes(appends[0].audio as string), heardByOldModel);
  assert.equal(modelEventsOf(next, "response.create").length, 0);
  await hangUp(next);
});

Deno.test("runCallBridge() ignores what the old model sends once a handover began", async () => {
  const { memory, h } = await callNearHandover();
  callerStarts(h, "item_u1");
  await h.time.advance(1900);
  callerStops(h, "item_u1", "Cancel it, please.");
  emitModelEvent(h, { type: "response.created", response: { id: "resp_1" } });
  // 95%: the answer is on its way but not audible yet; the next stream gives it.
  await h.time.advance(100);
  assert.equal(modelOf(h).closeCalls.length, 1, "the model session closed");
  toolCallArrives(h, "call_late", "cancel_appointment", { confirmation_code: "ABCD12" });
  emitModelEvent(h, {
    type: "response.output_audio_transcript.done",
    response_id: "resp_1",
    item_id: "item_a1",
    output_index: 0,
    content_index: 0,
    transcript: "Late words.",
  });
  await h.done;
  assert.equal(h.voiceAction.toolCalls.length, 0, "a tool the old session asked for never runs");
  const { state } = savedContinuation(memory);
  assert.equal(state.respond, true);
  assert.ok(!h.turns.flat().some((turn) => turn.text === "Late words."));
  assert.equal(state.nextSequence, h.turns.flat().length);
});
