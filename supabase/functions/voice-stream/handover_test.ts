import assert from "node:assert/strict";
import {
  buildContinuationState,
  type ContinuationState,
  type ContinuationTurn,
  handoverLevel,
  type HandoverSnapshot,
  heardPrefix,
  MAX_SUMMARY_CHARS,
  RECENT_TURNS_KEPT,
  safeParseContinuationState,
  summarizeTurns,
  wallClockHandoverTimes,
} from "./handover.ts";

const FREE = { wallClockMs: 150_000, cpuMs: 2000 };

function turns(count: number, from = 0): ContinuationTurn[] {
  return Array.from({ length: count }, (_, i) => ({
    sequence: from + i,
    speaker: (from + i) % 2 === 0 ? "assistant" : "caller",
    text: `Turn ${from + i}.`,
  }));
}

function snapshot(overrides: Partial<HandoverSnapshot> = {}): HandoverSnapshot {
  return {
    previous: null,
    callStartedAtMs: 1_000,
    nextSequence: 4,
    turns: turns(4),
    callerContext: null,
    bookingInProgress: false,
    toolResults: [],
    carriedToolResults: [],
    interrupted: null,
    callerAudio: null,
    respond: false,
    ...overrides,
  };
}

Deno.test("handoverLevel() is soft from 80%, hard from 95% and final from 99% of either budget", () => {
  assert.equal(handoverLevel(FREE, { elapsedMs: 119_999, cpuMs: 0 }), null);
  assert.equal(handoverLevel(FREE, { elapsedMs: 120_000, cpuMs: 0 }), "soft");
  assert.equal(handoverLevel(FREE, { elapsedMs: 142_500, cpuMs: 0 }), "hard");
  assert.equal(handoverLevel(FREE, { elapsedMs: 1_000, cpuMs: 1_600 }), "soft");
  assert.equal(handoverLevel(FREE, { elapsedMs: 1_000, cpuMs: 1_900 }), "hard");
  assert.equal(handoverLevel(FREE, { elapsedMs: 130_000, cpuMs: 1_950 }), "hard");
  assert.equal(handoverLevel(FREE, { elapsedMs: 148_500, cpuMs: 0 }), "final");
  assert.equal(handoverLevel(FREE, { elapsedMs: 0, cpuMs: 1_980 }), "final");
});

Deno.test("wallClockHandoverTimes() gives the Free and paid plans' thresholds", () => {
  assert.deepEqual(wallClockHandoverTimes(FREE), {
    softAtMs: 120_000,
    hardAtMs: 142_500,
    finalAtMs: 148_500,
  });
  assert.deepEqual(wallClockHandoverTimes({ wallClockMs: 400_000, cpuMs: 2000 }), {
    softAtMs: 320_000,
    hardAtMs: 380_000,
    finalAtMs: 396_000,
  });
});

Deno.test("buildContinuationState() keeps recent turns verbatim and summarizes older ones", () => {
  const first = buildContinuationState(snapshot({ turns: turns(RECENT_TURNS_KEPT + 3) }));
  assert.equal(first.handovers, 1);
  assert.equal(first.recentTurns.length, RECENT_TURNS_KEPT);
  assert.equal(first.recentTurns[0].sequence, 3);
  assert.equal(first.summary, "Assistant: Turn 0.\nCaller: Turn 1.\nAssistant: Turn 2.");
  // A chain: the next stream's turns join the carried ones; the call's start stays the first.
  const second = buildContinuationState(snapshot({
    previous: first,
    callStartedAtMs: 99_999,
    turns: turns(2, RECENT_TURNS_KEPT + 3),
    nextSequence: RECENT_TURNS_KEPT + 5,
  }));
  assert.equal(second.handovers, 2);
  assert.equal(second.callStartedAtMs, 1_000);
  assert.equal(second.nextSequence, RECENT_TURNS_KEPT + 5);
  assert.deepEqual(
    second.recentTurns.map((turn) => turn.sequence),
    Array.from({ length: RECENT_TURNS_KEPT }, (_, i) => i + 5),
  );
  assert.match(second.summary, /Turn 2\.\nCaller: Turn 3\.\nAssistant: Turn 4\.$/);
});

Deno.test("buildContinuationState() keeps the last tool results and clips long outputs", () => {
  const tool = (name: string, output = "{}") => ({ name, arguments: "{}", output });
  const state = buildContinuationState(snapshot({
    toolResults: [tool("a"), tool("b"), tool("c"), tool("d", "x".repeat(5000))],
    carriedToolResults: [{ callId: "call_1", ...tool("e", "y".repeat(5000)) }],
  }));
  assert.deepEqual(state.recentToolResults.map((result) => result.name), ["b", "c", "d"]);
  assert.equal(state.recentToolResults[2].output.length, 2000);
  assert.equal(state.carriedToolResults[0].output.length, 2000);
});

Deno.test("summarizeTurns() shortens each turn and keeps the newest part within its limit", () => {
  const long = "word ".repeat(100);
  const summary = summarizeTurns("", [{ sequence: 0, speaker: "caller", text: long }]);
  assert.ok(summary.startsWith("Caller: word word"));
  assert.ok(summary.endsWith("..."));
  assert.ok(summary.length <= 8 + 160);
  let growing = "";
  for (let i = 0; i < 100; i++) growing = summarizeTurns(growing, turns(2, i * 2));
  assert.ok(growing.length <= MAX_SUMMARY_CHARS + 4, `length ${growing.length}`);
  assert.ok(growing.startsWith("...\n"));
  assert.ok(growing.endsWith("Caller: Turn 199."));
  assert.equal(
    summarizeTurns("Earlier.", [{ sequence: 1, speaker: "caller", text: "  " }]),
    "Earlier.",
  );
});

Deno.test("heardPrefix() estimates the words played so far", () => {
  const text = "I have Tuesday at ten or Wednesday at eleven.";
  assert.equal(heardPrefix(text, 0, 2000), "");
  assert.equal(heardPrefix(text, 2000, 2000), text);
  assert.equal(heardPrefix(text, 500, 2000), "I have");
  assert.equal(heardPrefix(text, 1000, 2000), "I have Tuesday at ten");
  assert.equal(heardPrefix("", 500, 1000), "");
  assert.equal(heardPrefix(text, 500, 0), "");
});

Deno.test("safeParseContinuationState() reads back a built state and refuses others", () => {
  const built: ContinuationState = buildContinuationState(snapshot({
    interrupted: { text: "Hello there.", heardText: "Hello" },
    respond: true,
  }));
  const roundTrip = safeParseContinuationState(JSON.parse(JSON.stringify(built)));
  assert.deepEqual(roundTrip, { success: true, data: built });
  const wrong = safeParseContinuationState({ ...built, version: 2 });
  assert.equal(wrong.success, false);
  const broken = safeParseContinuationState({ ...built, recentTurns: [{ sequence: -1 }] });
  assert.equal(broken.success, false);
  if (!broken.success) assert.match(broken.error, /recentTurns/);
  assert.equal(safeParseContinuationState(null).success, false);
});
