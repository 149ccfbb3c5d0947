/**
 * Calls on the local edge runtime (scripts/edge_runtime/: every function request in its own
 * worker thread, killed at its limits as Supabase kills it): a voice-stream worker that dies
 * mid-sentence without warning does not end the call.
 * @module
 */
import assert from "node:assert/strict";
import { EDGE_LIMIT_PRESETS } from "../../scripts/edge_runtime/limits.ts";
import { JANE_DOE_NUMBER, startCallStack } from "../support/call_stack.ts";
import { loadFixture } from "../support/audio_fixtures.ts";
import { nextTuesday } from "./scenarios.ts";
import type { ScenarioEntry } from "../doubles/openai_realtime_double.ts";

const LONG_ANSWER = "Let me see what we have on Tuesday for a cleaning with Dr. Lee.";

/** Per model connection: the first stream dies in its long answer; the resumed one books. */
function scenario(date: string) {
  return (connectionIndex: number): ScenarioEntry[] =>
    connectionIndex === 0
      ? [
        { kind: "assistant_audio", durationMs: 1200, transcript: "Harbor Dental, hello Jane!" },
        { kind: "caller", fixture: "caller_book_cleaning" },
        { kind: "assistant_audio", durationMs: 8000, transcript: LONG_ANSWER },
      ]
      : [
        {
          kind: "assistant_audio",
          durationMs: 1500,
          transcript: "Tuesday at ten is free with Sam Ortiz. Shall I book it?",
        },
        { kind: "caller", fixture: "caller_confirm" },
        {
          kind: "function_call",
          name: "book_appointment",
          arguments: {
            first_name: "Jane",
            last_name: "Doe",
            service: "Cleaning",
            provider: "Sam Ortiz",
            date,
            time: "10:00",
            confirmed_by_caller: true,
          },
          then: { kind: "assistant_audio", durationMs: 900, transcript: "You're all set." },
        },
        { kind: "caller", fixture: "caller_bye" },
        {
          kind: "function_call",
          name: "end_call",
          arguments: { reason: "caller said goodbye" },
          then: { kind: "assistant_audio", durationMs: 400, transcript: "Goodbye!" },
        },
        { kind: "end" },
      ];
}

Deno.test({
  name: "a voice-stream worker killed mid-sentence: the call resumes on a new stream and books",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const date = nextTuesday();
    const e2e = await startCallStack({
      openai: { scenario: scenario(date), speedFactor: 8 },
      edgeRuntime: { ...EDGE_LIMIT_PRESETS.free, pollIntervalMs: 20 },
      env: { LOG_LEVEL: "warn" },
    });
    const { edgeRuntime, db, openai } = e2e;
    try {
      const handle = e2e.startCall({
        from: JANE_DOE_NUMBER,
        pacing: "realtime",
        maxCallMs: 90_000,
        audio: [
          { waitForAgentAudioMs: 1000, timeoutMs: 20_000 },
          { waitForAgentSilenceMs: 600, timeoutMs: 20_000 },
          { send: loadFixture("caller_book_cleaning"), label: "asks for a cleaning" },
          // The long answer starts; the worker dies during it; the resumed stream answers.
          { waitForAgentAudioMs: 3500, timeoutMs: 30_000 },
          { waitForAgentSilenceMs: 700, timeoutMs: 20_000 },
          { send: loadFixture("caller_confirm"), label: "confirms" },
          { waitForAgentAudioMs: 600, timeoutMs: 20_000 },
          { waitForAgentSilenceMs: 700, timeoutMs: 20_000 },
          { send: loadFixture("caller_bye"), label: "says goodbye" },
          { silenceMs: 15_000 },
        ],
      });
      // Mid-sentence: 1.5 s into the 8 s answer, kill the stream's worker as a hard limit does.
      await handle.waitUntil(() => openai.sessions[0]?.responses.length >= 2, {
        timeoutMs: 30_000,
      });
      const answerStartMs = handle.agentAudioPlayedMs();
      await handle.waitUntil(() => handle.agentAudioPlayedMs() >= answerStartMs + 1500, {
        timeoutMs: 10_000,
      });
      const worker = edgeRuntime!.workers().find((w) =>
        w.name === "voice-stream" && !w.state.terminated
      );
      assert.ok(worker, "the stream's worker is live");
      assert.equal(edgeRuntime!.terminate(worker.workerId, "CPUTime"), true);
      const call = await handle.result;

      assert.deepEqual(call.protocolErrors, []);
      assert.equal(call.endReason, "twiml-hangup", "the assistant ended the call");
      assert.deepEqual(call.says, [], "no apology, no voicemail");
      assert.equal(call.streams.length, 2, "a second stream resumed the call");
      const [dead, resumed] = call.streams;
      assert.ok(dead.endedAtMs !== null && resumed.openedAtMs !== null);
      const firstResumedAudio = call.agentChunks.find((chunk) =>
        chunk.streamSid === resumed.streamSid
      );
      assert.ok(firstResumedAudio, "the resumed stream spoke");
      const gapMs = firstResumedAudio.startMs - dead.endedAtMs!;
      assert.ok(gapMs <= 2000, `the caller heard ${gapMs} ms of silence between the streams`);

      // The second model session continued the conversation: no greeting, the turns restored.
      assert.equal(openai.sessions.length, 2);
      const restored = openai.sessions[1];
      const instructions = JSON.stringify(restored.sessionUpdates.at(-1) ?? {});
      assert.match(instructions, /Do not greet the caller/);
      assert.equal(
        restored.responses[0].transcript,
        "Tuesday at ten is free with Sam Ortiz. Shall I book it?",
      );

      // It booked, every turn once, and the operator can see why the call moved.
      const [row] = await db.sql`select outcome from public.calls where call_sid = ${call.callSid}`;
      assert.equal(row.outcome, "booked");
      const [appointment] = await db.sql`select p.name from public.appointments a
        join public.providers p on p.id = a.provider_id join public.calls c on c.id = a.call_id
        where c.call_sid = ${call.callSid}`;
      assert.equal(appointment.name, "Sam Ortiz");
      const turns = await db.sql<{ sequence: number; text: string }[]>`
        select t.sequence, t.text from public.call_turns t join public.calls c on c.id = t.call_id
        where c.call_sid = ${call.callSid} order by t.sequence`;
      assert.deepEqual(turns.map((turn) => turn.sequence), turns.map((_, index) => index));
      assert.equal(turns.filter((turn) => /Harbor Dental, hello/.test(turn.text)).length, 1);
      const events = await db.sql`select e.kind from public.call_events e
        join public.calls c on c.id = e.call_id where c.call_sid = ${call.callSid}`;
      assert.ok(events.some((event) => event.kind === "stream_resumed"));
      const killed = e2e.logs("worker_terminated", "edge-runtime")
        .filter((entry) => entry.reason === "CPUTime");
      assert.equal(killed.length, 1);
    } finally {
      await e2e.stop();
    }
  },
});
