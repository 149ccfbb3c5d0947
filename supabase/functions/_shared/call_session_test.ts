import assert from "node:assert/strict";
import {
  EARLY_AUDIO_LIMIT_MS,
  initialSessionState,
  markName,
  parseMarkName,
  playedMs,
  type SessionEffect,
  type SessionEvent,
  type SessionState,
  step,
} from "./call_session.ts";

const OPTIONS = { maxAheadMs: 500, modelOutputBytesPerMs: 8 };

/** Drives `step` over events at given times, collecting effects. */
function run(events: [number, SessionEvent][], initial: SessionState = initialSessionState()) {
  let state = initial;
  const effects: [number, SessionEffect][] = [];
  for (const [at, event] of events) {
    const result = step(state, event, at, OPTIONS);
    state = result.state;
    for (const effect of result.effects) effects.push([at, effect]);
  }
  return { state, effects, types: effects.map(([, e]) => e.type) };
}

const frame = (n: number) =>
  ({ type: "twilio_media", payload: `frame${n}`, durationMs: 20 }) as const;
const delta = (responseId: string, itemId: string, ms: number, tag = "a") =>
  ({
    type: "openai_audio_delta",
    responseId,
    itemId,
    payload: `${tag}${ms}`,
    durationMs: ms,
    receivedMs: ms,
  }) as const;

function streaming(): SessionState {
  return run([[0, { type: "twilio_start", streamSid: "MZ1" }], [10, { type: "openai_ready" }]])
    .state;
}

Deno.test("step() buffers caller audio until the model is ready, then flushes it in order", () => {
  const { effects, state } = run([
    [0, { type: "twilio_start", streamSid: "MZ1" }],
    [20, frame(1)],
    [40, frame(2)],
    [60, frame(3)],
    [70, { type: "openai_ready" }],
  ]);
  const kinds = effects.map(([, e]) => e.type);
  assert.deepEqual(kinds.slice(0, 2), [
    "send_openai_session_update_and_greet",
    "send_openai_append",
  ]);
  const append = effects[1][1] as Extract<SessionEffect, { type: "send_openai_append" }>;
  assert.deepEqual(append.payloads, ["frame1", "frame2", "frame3"]);
  assert.equal(state.phase, "streaming");
  assert.equal(state.earlyAudio.length, 0);
});

Deno.test("step() keeps only about 2 s of early caller audio", () => {
  const events: [number, SessionEvent][] = [[0, { type: "twilio_start", streamSid: "MZ1" }]];
  for (let i = 0; i < 150; i++) events.push([i * 20, frame(i)]);
  const { state } = run(events);
  assert.equal(state.earlyAudioMs, EARLY_AUDIO_LIMIT_MS);
  assert.equal(state.earlyAudio[0], "frame50");
  assert.equal(state.earlyAudio.at(-1), "frame149");
  assert.equal(state.droppedEarlyAudioMs, 1000);
});

Deno.test("step() coalesces caller frames into fewer appends once streaming", () => {
  const { effects } = run(
    [[100, frame(1)], [120, frame(2)], [140, frame(3)], [160, frame(4)]],
    streaming(),
  );
  const appends = effects.filter(([, e]) => e.type === "send_openai_append");
  assert.equal(appends.length, 2);
});

Deno.test("step() ignores media and a second start out of order", () => {
  const { effects, state } = run([[0, frame(1)], [1, { type: "twilio_start", streamSid: "MZ" }], [
    2,
    {
      type: "twilio_start",
      streamSid: "MZ2",
    },
  ]]);
  assert.equal(state.streamSid, "MZ");
  assert.equal(effects.filter(([, e]) => e.type === "log").length, 2);
});

Deno.test("step() paces assistant audio at most 500 ms ahead and marks every 100 ms", () => {
  const events: [number, SessionEvent][] = [[100, {
    type: "openai_response_created",
    responseId: "r1",
  }]];
  for (let i = 0; i < 20; i++) events.push([100, delta("r1", "i1", 100, `c${i}`)]);
  const first = run(events, streaming());
  const sent = first.effects.filter(([, e]) => e.type === "send_twilio_media");
  assert.equal(sent.length, 5, "500 ms sent at once");
  const marks = first.effects.filter(([, e]) => e.type === "send_twilio_mark").map(([, e]) =>
    parseMarkName((e as { name: string }).name)!.sentMs
  );
  assert.deepEqual(marks, [100, 200, 300, 400, 500]);
  const timer = first.effects.find(([, e]) => e.type === "schedule_timer")![1] as { atMs: number };
  assert.equal(timer.atMs, 100 + 20, "next send once 20 ms more has played");
  const second = run([[timer.atMs, { type: "timer_fired", name: "pace" }]], first.state);
  assert.equal(second.effects.filter(([, e]) => e.type === "send_twilio_media").length, 1);
  assert.equal(second.state.metrics.firstAudioMs, 100);
});

Deno.test("step() truncates at the played position on barge-in and drops late deltas", () => {
  const events: [number, SessionEvent][] = [[100, {
    type: "openai_response_created",
    responseId: "r1",
  }]];
  for (let i = 0; i < 10; i++) events.push([100, delta("r1", "i1", 100)]);
  // 330 ms after the first audio went out, the caller starts speaking.
  events.push([430, { type: "openai_speech_started", itemId: "u1", audioStartMs: 0 }]);
  events.push([440, delta("r1", "i1", 100)]);
  const { effects, state } = run(events, streaming());
  const afterBarge = effects.filter(([at]) => at >= 430).map(([, e]) => e);
  assert.equal(afterBarge[0].type, "send_twilio_clear");
  assert.deepEqual(afterBarge[1], { type: "send_openai_truncate", itemId: "i1", audioEndMs: 330 });
  assert.ok(!afterBarge.some((e) => e.type === "send_twilio_media"), "late delta dropped");
  assert.equal(state.metrics.bargeIns, 1);
  assert.equal(state.queue.length, 0);
  // Marks from before the clear no longer count.
  const stale = step(state, { type: "twilio_mark", name: markName(0, "i1", 500) }, 450, OPTIONS);
  assert.equal(stale.state.items.i1.ackedMs, 330);
});

Deno.test("step() never truncates beyond the audio received, and not when nothing is playing", () => {
  let { state } = run([[100, delta("r1", "i1", 100)]], streaming());
  const quiet = step(
    state,
    { type: "openai_speech_started", itemId: "u1", audioStartMs: 0 },
    5000,
    OPTIONS,
  );
  assert.equal(quiet.effects.length, 0, "fully played: nothing to cut");
  state = run([[6000, delta("r2", "i2", 40)]], quiet.state).state;
  const cut = step(
    state,
    { type: "openai_speech_started", itemId: "u2", audioStartMs: 0 },
    6010,
    OPTIONS,
  );
  const truncate = cut.effects.find((e) => e.type === "send_openai_truncate") as {
    audioEndMs: number;
  };
  assert.equal(truncate.audioEndMs, 10);
  assert.ok(Number.isInteger(truncate.audioEndMs));
  assert.ok(playedMs(cut.state, "i2", 6010) <= 40);
});

Deno.test("step() answers a tool call and ends the call after the last words have played", () => {
  const base = run([
    [100, { type: "openai_function_call", callId: "c1", name: "end_call", arguments: "{}" }],
    [200, {
      type: "tool_result",
      callId: "c1",
      name: "end_call",
      output: '{"ok":true}',
      effect: "end_call",
    }],
    [300, { type: "openai_response_created", responseId: "r2" }],
    [300, delta("r2", "i9", 200)],
    [320, {
      type: "openai_response_done",
      responseId: "r2",
      status: "completed",
      inputTokens: 5,
      outputTokens: 7,
    }],
  ], streaming());
  assert.deepEqual(base.types.slice(0, 3), [
    "call_tool",
    "send_openai_function_output",
    "send_openai_response_create",
  ]);
  assert.ok(!base.types.includes("close_call"), "goodbye still playing");
  const wake = base.effects.filter(([, e]) => e.type === "schedule_timer").at(-1)![1] as {
    atMs: number;
  };
  assert.equal(wake.atMs, 500);
  const end = run([[500, { type: "timer_fired", name: "pace" }]], base.state);
  assert.deepEqual(end.types, ["close_call"]);
  assert.equal(base.state.metrics.toolCalls, 1);
  assert.equal(base.state.metrics.outputTokens, 7);
});

Deno.test("step() transfers after the assistant's last words", () => {
  const { types } = run([
    [100, {
      type: "openai_function_call",
      callId: "c1",
      name: "transfer_to_human",
      arguments: "{}",
    }],
    [150, {
      type: "tool_result",
      callId: "c1",
      name: "transfer_to_human",
      output: "{}",
      effect: "transfer",
    }],
    [160, {
      type: "openai_response_done",
      responseId: "r3",
      status: "completed",
      inputTokens: 0,
      outputTokens: 0,
    }],
  ], streaming());
  assert.equal(types.at(-1), "call_control");
});

Deno.test("step() ignores a tool result nobody asked for", () => {
  const { effects } = run([[100, {
    type: "tool_result",
    callId: "zz",
    name: "x",
    output: "{}",
    effect: null,
  }]], streaming());
  assert.equal(effects.length, 0);
});

Deno.test("step() turns key 0 into a transfer and other keys into text for the model", () => {
  const { effects } = run([[100, { type: "twilio_dtmf", digit: "0" }], [200, {
    type: "twilio_dtmf",
    digit: "5",
  }]], streaming());
  const control = effects.find(([, e]) => e.type === "call_control")![1];
  assert.deepEqual(control, {
    type: "call_control",
    action: "transfer",
    reason: "caller pressed 0",
  });
  const text = effects.find(([, e]) => e.type === "send_openai_user_text")![1] as { text: string };
  assert.match(text.text, /key 5/);
});

Deno.test("step() recovers the call once when the model fails", () => {
  const { types, state } = run([
    [100, { type: "openai_failed", reason: "socket_closed_1006" }],
    [110, { type: "openai_failed", reason: "again" }],
  ], streaming());
  assert.deepEqual(types.filter((t) => t !== "log"), ["call_control", "close_call"]);
  assert.equal(state.phase, "closing");
});

Deno.test("step() says goodbye at the time limit, then hangs up", () => {
  const base = run([[1000, { type: "max_duration_reached" }]], streaming());
  const create = base.effects.find(([, e]) => e.type === "send_openai_response_create")![1] as {
    instructions?: string;
  };
  assert.match(create.instructions ?? "", /goodbye/);
  const done = run([
    [1100, {
      type: "openai_response_done",
      responseId: "r9",
      status: "completed",
      inputTokens: 0,
      outputTokens: 0,
    }],
  ], base.state);
  assert.deepEqual(done.types.filter((t) => t !== "log"), ["call_control", "close_call"]);
});

Deno.test("step() numbers transcript turns in arrival order and skips empty ones", () => {
  const { effects } = run([
    [100, { type: "openai_output_transcript", itemId: "i1", transcript: "Hi Jane" }],
    [200, { type: "openai_input_transcript", itemId: "u1", transcript: " " }],
    [300, { type: "openai_input_transcript", itemId: "u2", transcript: "Book me in" }],
  ], streaming());
  const turns = effects.filter(([, e]) => e.type === "record_turn").map(([, e]) =>
    (e as { turn: { sequence: number; speaker: string } }).turn
  );
  assert.deepEqual(turns.map((t) => [t.sequence, t.speaker]), [[0, "assistant"], [1, "caller"]]);
});

Deno.test("step() closes once on stop and ignores everything after", () => {
  const { types, state } = run([[100, { type: "twilio_stop" }], [110, { type: "twilio_closed" }], [
    120,
    frame(1),
  ]], streaming());
  assert.deepEqual(types, ["close_call"]);
  assert.equal(state.phase, "closed");
});

Deno.test("parseMarkName() reads back markName() and rejects others", () => {
  assert.deepEqual(parseMarkName(markName(3, "item:with:colons", 420)), {
    generation: 3,
    itemId: "item:with:colons",
    sentMs: 420,
  });
  assert.equal(parseMarkName("hello"), null);
});
