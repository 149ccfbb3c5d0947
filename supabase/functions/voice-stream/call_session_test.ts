import assert from "node:assert/strict";
import {
  EARLY_AUDIO_LIMIT_MS,
  initialSessionState,
  isNaturalPause,
  markName,
  parseMarkName,
  playedMs,
  RESPONSE_WAIT_MS,
  type SessionEffect,
  type SessionEvent,
  type SessionOptions,
  type SessionState,
  step,
  TRANSCRIPT_WAIT_MS,
} from "./call_session.ts";

const OPTIONS = { maxAheadMs: 500, modelOutputBytesPerMs: 8 };

/** Drives `step` over events at given times, collecting effects. */
function run(
  events: [number, SessionEvent][],
  initial: SessionState = initialSessionState(),
  options: SessionOptions = OPTIONS,
) {
  let state = initial;
  const effects: [number, SessionEffect][] = [];
  for (const [at, event] of events) {
    const result = step(state, event, at, options);
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

Deno.test("step() sends every 20 ms caller frame to the model at once, no batching delay", () => {
  const events: [number, SessionEvent][] = [];
  for (let i = 1; i <= 4; i++) events.push([80 + i * 20, frame(i)]);
  const { effects, state } = run(events, streaming());
  const appends = effects.filter(([, e]) => e.type === "send_openai_append").map(([at, e]) => [
    at,
    (e as Extract<SessionEffect, { type: "send_openai_append" }>).payloads,
  ]);
  assert.deepEqual(appends, [
    [100, ["frame1"]],
    [120, ["frame2"]],
    [140, ["frame3"]],
    [160, ["frame4"]],
  ]);
  assert.deepEqual(state.pendingAppend, []);
});

Deno.test("step() joins frames into one append per appendEveryMs when configured so", () => {
  const events: [number, SessionEvent][] = [];
  for (let i = 1; i <= 10; i++) events.push([80 + i * 20, frame(i)]);
  const { effects, state } = run(events, streaming(), { ...OPTIONS, appendEveryMs: 80 });
  const appends = effects.filter(([, e]) => e.type === "send_openai_append").map(([at, e]) => [
    at,
    (e as Extract<SessionEffect, { type: "send_openai_append" }>).payloads,
  ]);
  assert.deepEqual(appends, [
    [160, ["frame1", "frame2", "frame3", "frame4"]],
    [240, ["frame5", "frame6", "frame7", "frame8"]],
  ]);
  assert.deepEqual(state.pendingAppend, ["frame9", "frame10"], "the rest waits for the next");
});

Deno.test("step() joins frames shorter than 20 ms until they make one", () => {
  const short = (n: number) =>
    ({ type: "twilio_media", payload: `short${n}`, durationMs: 10 }) as const;
  const { effects, state } = run([[100, short(1)], [110, short(2)], [120, short(3)]], streaming());
  const appends = effects.filter(([, e]) => e.type === "send_openai_append").map(([, e]) =>
    (e as Extract<SessionEffect, { type: "send_openai_append" }>).payloads
  );
  assert.deepEqual(appends, [["short1", "short2"]]);
  assert.deepEqual(state.pendingAppend, ["short3"], "the rest waits for the next");
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

const mediaPayloads = (effects: [number, SessionEffect][]) =>
  effects.filter(([, e]) => e.type === "send_twilio_media").map(([, e]) =>
    (e as Extract<SessionEffect, { type: "send_twilio_media" }>).payloads
  );
const markedMs = (effects: [number, SessionEffect][]) =>
  effects.filter(([, e]) => e.type === "send_twilio_mark").map(([, e]) =>
    parseMarkName((e as { name: string }).name)!.sentMs
  );

Deno.test("step() paces assistant audio at most 500 ms ahead in chunks of up to 200 ms", () => {
  const events: [number, SessionEvent][] = [[100, {
    type: "openai_response_created",
    responseId: "r1",
  }]];
  for (let i = 0; i < 20; i++) events.push([100, delta("r1", "i1", 100, `c${i}`)]);
  const first = run(events, streaming());
  // Deltas go out as they come until Twilio holds 500 ms (first audio is not held back).
  assert.deepEqual(mediaPayloads(first.effects), [
    ["c0100"],
    ["c1100"],
    ["c2100"],
    ["c3100"],
    ["c4100"],
  ]);
  assert.deepEqual(markedMs(first.effects), [200, 400], "a mark per 200 ms of audio");
  assert.equal(first.state.metrics.firstAudioMs, 100);
  const timer = first.effects.findLast(([, e]) => e.type === "schedule_timer")![1] as {
    atMs: number;
  };
  assert.equal(timer.atMs, 100 + 200, "next send once a 200 ms chunk fits under 500 ms");
  // Then the backlog goes out 200 ms per message, two deltas joined.
  const second = run([[timer.atMs, { type: "timer_fired", name: "pace" }]], first.state);
  assert.deepEqual(mediaPayloads(second.effects), [["c5100", "c6100"]]);
  assert.deepEqual(markedMs(second.effects), [700]);
  const nextTimer = second.effects.findLast(([, e]) => e.type === "schedule_timer")![1] as {
    atMs: number;
  };
  assert.equal(nextTimer.atMs, 500);
  // Much later (Twilio has played everything): 500 ms at once, in 200 ms messages.
  const third = run([[5_000, { type: "timer_fired", name: "pace" }]], second.state);
  assert.deepEqual(mediaPayloads(third.effects), [
    ["c7100", "c8100"],
    ["c9100", "c10100"],
    ["c11100"],
  ]);
});

Deno.test("step() marks the end of a response's audio, not every delta at real-time pace", () => {
  const events: [number, SessionEvent][] = [[100, {
    type: "openai_response_created",
    responseId: "r1",
  }]];
  // A model streaming at 1x: one 100 ms delta every 100 ms, each sent at once.
  for (let i = 0; i < 5; i++) events.push([100 + i * 100, delta("r1", "i1", 100, `c${i}`)]);
  const during = run(events, streaming());
  assert.equal(mediaPayloads(during.effects).length, 5);
  assert.deepEqual(markedMs(during.effects), [200, 400], "one mark per 200 ms");
  const done = run([[600, {
    type: "openai_response_done",
    responseId: "r1",
    status: "completed",
    inputTokens: 1,
    outputTokens: 1,
  }]], during.state);
  assert.deepEqual(markedMs(done.effects), [500], "the last 100 ms are marked at response.done");
  // Its echo tells the bridge the last words played.
  const echoed = run([[1_100, {
    type: "twilio_mark",
    name: (done.effects.find(([, e]) => e.type === "send_twilio_mark")![1] as { name: string })
      .name,
  }]], done.state);
  assert.equal(echoed.state.items.i1.ackedMs, 500);
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

/** A streaming call whose greeting has played: 300 ms of audio from 100 ms, done at 200 ms. */
function afterGreeting(): SessionState {
  return run([
    [100, { type: "openai_response_created", responseId: "r1" }],
    [100, delta("r1", "i1", 300)],
    [200, {
      type: "openai_response_done",
      responseId: "r1",
      status: "completed",
      inputTokens: 0,
      outputTokens: 0,
    }],
  ], streaming()).state;
}

Deno.test("isNaturalPause() needs a silent assistant and caller, no answer coming and no tool running", () => {
  const greeted = afterGreeting();
  assert.equal(isNaturalPause(greeted, 399), false, "the greeting still plays");
  assert.equal(isNaturalPause(greeted, 400), true);
  const speaking = run(
    [[500, { type: "openai_speech_started", itemId: "u1", audioStartMs: 0 }]],
    greeted,
  );
  assert.equal(isNaturalPause(speaking.state, 600), false, "the caller speaks");
  const stopped = run([[700, { type: "openai_speech_stopped", itemId: "u1" }]], speaking.state);
  assert.equal(isNaturalPause(stopped.state, 800), false, "an answer and a transcript are coming");
  const transcribed = run(
    [[900, { type: "openai_input_transcript", itemId: "u1", transcript: "Hi" }]],
    stopped.state,
  );
  assert.equal(isNaturalPause(transcribed.state, 1000), false, "the answer is still coming");
  assert.equal(isNaturalPause(transcribed.state, 700 + RESPONSE_WAIT_MS), true, "none came");
  const tool = run([[1000, {
    type: "openai_function_call",
    callId: "c1",
    name: "check_availability",
    arguments: "{}",
  }]], transcribed.state);
  assert.equal(isNaturalPause(tool.state, 5000), false, "a tool call is in flight");
  const lost = run([[800, { type: "openai_speech_stopped", itemId: "u2" }]], speaking.state);
  assert.equal(isNaturalPause(lost.state, 800 + TRANSCRIPT_WAIT_MS), true, "a transcript lost");
});

Deno.test("step() hands over at the soft level only at a natural pause", () => {
  const greeted = afterGreeting();
  const due = run([[300, { type: "handover_due", level: "soft" }]], greeted);
  assert.ok(!due.types.includes("begin_handover"), "the greeting still plays");
  assert.equal(due.state.handoverDue, "soft");
  const paused = run([[420, frame(1)]], due.state);
  const begin = paused.effects.find(([, e]) => e.type === "begin_handover")![1];
  assert.deepEqual(begin, {
    type: "begin_handover",
    forced: false,
    interrupted: null,
    respond: false,
    callerInterrupted: false,
    carriedToolResults: [],
  });
  assert.equal(paused.state.phase, "closing");
  // Nothing reaches the model after the handover began.
  const after = run([[440, frame(2)], [460, frame(3)], [480, frame(4)]], paused.state);
  assert.ok(!after.types.includes("send_openai_append"));
});

Deno.test("step() hands over at the hard level cutting the assistant where it was heard, never the caller", () => {
  const talking = run([
    [2000, { type: "openai_response_created", responseId: "r2" }],
    [2000, delta("r2", "i2", 1000)],
  ], afterGreeting());
  const hard = run([[2300, { type: "handover_due", level: "hard" }]], talking.state);
  assert.deepEqual(hard.types.filter((t) => t !== "log"), ["send_twilio_clear", "begin_handover"]);
  const begin = hard.effects.find(([, e]) => e.type === "begin_handover")![1] as {
    forced: boolean;
    interrupted: { itemId: string; playedMs: number };
    respond: boolean;
  };
  assert.equal(begin.forced, true);
  assert.deepEqual(begin.interrupted, { itemId: "i2", playedMs: 300 });
  assert.equal(begin.respond, true, "the next stream finishes the sentence");
  // The caller speaking at the hard limit is not cut; at the final one they are, and the next
  // stream listens first.
  const caller = run([
    [2000, { type: "openai_speech_started", itemId: "u5", audioStartMs: 0 }],
    [2300, { type: "handover_due", level: "hard" }],
    [2400, frame(1)],
  ], afterGreeting());
  assert.ok(!caller.types.includes("begin_handover"), "the caller is still speaking");
  const final = run([[2500, { type: "handover_due", level: "final" }]], caller.state);
  const handover = final.effects.find(([, e]) => e.type === "begin_handover")![1] as {
    respond: boolean;
    callerInterrupted: boolean;
  };
  assert.equal(handover.respond, false);
  assert.equal(handover.callerInterrupted, true, "their words so far go with the call");
  // Their last words not transcribed yet: the hard level waits for them too.
  const transcribing = run([
    [2000, { type: "openai_speech_started", itemId: "u6", audioStartMs: 0 }],
    [2200, { type: "openai_speech_stopped", itemId: "u6" }],
    [2300, { type: "handover_due", level: "hard" }],
  ], afterGreeting());
  assert.ok(!transcribing.types.includes("begin_handover"));
  const transcribed = run(
    [[2600, { type: "openai_input_transcript", itemId: "u6", transcript: "Next week?" }]],
    transcribing.state,
  );
  const begun = transcribed.effects.find(([, e]) => e.type === "begin_handover")![1] as {
    respond: boolean;
  };
  assert.equal(begun.respond, true, "the next stream answers them");
});

Deno.test("step() carries a tool result that arrives once a hard handover is due", () => {
  const base = run([
    [1000, {
      type: "openai_function_call",
      callId: "c1",
      name: "check_availability",
      arguments: "{}",
    }],
    [1100, { type: "handover_due", level: "hard" }],
  ], afterGreeting());
  assert.ok(!base.types.includes("begin_handover"), "the tool call is not cut");
  const result = run([[1300, {
    type: "tool_result",
    callId: "c1",
    name: "check_availability",
    output: '{"slots":[]}',
    effect: null,
  }]], base.state);
  assert.ok(!result.types.includes("send_openai_function_output"));
  const begin = result.effects.find(([, e]) => e.type === "begin_handover")![1];
  assert.deepEqual(begin, {
    type: "begin_handover",
    // Nobody is cut off: with the result carried, the line is quiet.
    forced: false,
    interrupted: null,
    respond: true,
    callerInterrupted: false,
    carriedToolResults: [{ callId: "c1", name: "check_availability", output: '{"slots":[]}' }],
  });
});

Deno.test("step() never hands over a call that is ending", () => {
  const ending = run([
    [1000, { type: "max_duration_reached" }],
    [1100, { type: "handover_due", level: "hard" }],
    [5000, frame(1)],
  ], afterGreeting());
  assert.ok(!ending.types.includes("begin_handover"));
});

Deno.test("step() numbers a continued call's turns from the carried sequence", () => {
  const { effects, state } = run([
    [0, { type: "twilio_start", streamSid: "MZ2" }],
    [10, { type: "openai_ready", nextSequence: 41, responds: false }],
    [100, { type: "openai_input_transcript", itemId: "u1", transcript: "Still me." }],
  ]);
  const turn = effects.find(([, e]) => e.type === "record_turn")![1] as {
    turn: { sequence: number };
  };
  assert.equal(turn.turn.sequence, 41);
  assert.equal(state.awaitingResponseSinceMs, null, "no greeting is expected");
});

Deno.test("parseMarkName() reads back markName() and rejects others", () => {
  assert.deepEqual(parseMarkName(markName(3, "item:with:colons", 420)), {
    generation: 3,
    itemId: "item:with:colons",
    sentMs: 420,
  });
  assert.equal(parseMarkName("hello"), null);
  assert.equal(parseMarkName("g1:-5:i1"), null);
  assert.equal(parseMarkName("g1:1e3:i1"), null);
});

Deno.test("parseMarkName() reads back fractional positions (903-byte deltas are 112.875 ms)", () => {
  for (const sentMs of [112.875, 0.125, 1234.5, 225.75]) {
    assert.deepEqual(parseMarkName(markName(2, "item_abc", sentMs)), {
      generation: 2,
      itemId: "item_abc",
      sentMs,
    });
  }
});

Deno.test("step() acknowledges a mark at a fractional position without a warning", () => {
  const events: [number, SessionEvent][] = [[100, {
    type: "openai_response_created",
    responseId: "r1",
  }]];
  // Three 903-byte deltas: 112.875 ms each, marked at 338.625 ms when the response's audio ends.
  for (let i = 0; i < 3; i++) events.push([100, delta("r1", "i1", 112.875, `c${i}`)]);
  events.push([100, {
    type: "openai_response_done",
    responseId: "r1",
    status: "completed",
    inputTokens: 1,
    outputTokens: 1,
  }]);
  const sent = run(events, streaming());
  const marks = sent.effects.filter(([, e]) => e.type === "send_twilio_mark")
    .map(([, e]) => (e as { name: string }).name);
  assert.ok(marks.length > 0, "marks were sent");
  const last = marks.at(-1)!;
  assert.match(last, /^g\d+:338\.625:i1$/);
  const acked = step(sent.state, { type: "twilio_mark", name: last }, 500, OPTIONS);
  assert.deepEqual(
    acked.effects.filter((e) => e.type === "log" && (e as { level: string }).level !== "debug"),
    [],
    "no frame_out_of_order / unknown_mark warning",
  );
  assert.equal(acked.state.items.i1.ackedMs, 338.625);
});
