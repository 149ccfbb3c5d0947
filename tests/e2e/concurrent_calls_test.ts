/**
 * Many calls at once through the whole local stack (voice-frontdoor, voice-stream, voice-action,
 * Postgres) with the Twilio and OpenAI Realtime doubles: every one bridged to its end, its own
 * model session, its outcome recorded. (The faults these calls can meet are in
 * `tests/reliability/faults_test.ts`.)
 * @module
 */
import assert from "node:assert/strict";
import { eventually } from "../support/eventually.ts";
import { JANE_DOE_NUMBER, startCallStack } from "../support/call_stack.ts";
import { loadFixture } from "../support/audio_fixtures.ts";
import { goodbyeScenario } from "./scenarios.ts";

/** Concurrent calls of the load test. */
const CONCURRENT_CALLS = 100;

Deno.test({
  name: "voice-stream bridges 100 concurrent short calls to the end",
  // Long end-to-end tests keep sockets and timers of the stack's own workers around.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const e2e = await startCallStack({
      openai: {
        scenario: goodbyeScenario(
          { kind: "assistant_audio", durationMs: 300, transcript: "Hello, how can I help?" },
          200,
        ),
        speedFactor: 8,
      },
      env: {
        // 100 calls share the local stack's small database pool (one session with PGlite): a
        // tool call then queues for seconds, longer than the bridge's 4 s default allows.
        TOOL_TIMEOUT_MS: "60000",
      },
    });
    try {
      const bye = loadFixture("caller_bye");
      // Real-time pacing: the Twilio double sends every due 20 ms frame, so at "fast" (20x) 100
      // calls would push 100,000 frames a second through this one process, which no 2-core
      // machine keeps up with (the backlog grows until memory runs out). At 1x it is 5,000.
      const handles = Array.from({ length: CONCURRENT_CALLS }, () =>
        e2e.startCall({
          from: JANE_DOE_NUMBER,
          pacing: "realtime",
          audio: [
            { waitForAgentAudioMs: 200, timeoutMs: 60_000 },
            { waitForAgentSilenceMs: 100, timeoutMs: 60_000 },
            { send: bye, label: "says goodbye" },
            { silenceMs: 120_000 },
          ],
          maxCallMs: 120_000,
        }));
      const calls = await Promise.all(handles.map((handle) => handle.result));
      await e2e.rest.settled();
      for (const call of calls) {
        assert.deepEqual(call.protocolErrors, [], `protocol errors on ${call.callSid}`);
        assert.equal(call.endReason, "twiml-hangup", `${call.callSid} ended by the assistant`);
        assert.ok(call.agentAudioPlayedMs > 0, "the assistant was heard");
      }
      assert.equal(e2e.openai.sessions.length, CONCURRENT_CALLS, "one model session per call");
      for (const session of e2e.openai.sessions) {
        assert.deepEqual(session.errors, [], `error events on session ${session.index}`);
        assert.equal(session.closed, true, "no model session left open");
        assert.ok(session.userTurns.length >= 1, "the caller's speech reached the model");
      }
      const sids = calls.map((call) => call.callSid);
      const rows = await eventually(
        async () => {
          const found = await e2e.db.sql`
          select call_sid, trace_id, outcome from public.calls where call_sid = any(${sids})`;
          return found.length === CONCURRENT_CALLS && found.every((row) => row.outcome !== null)
            ? found
            : null;
        },
        "every call's outcome",
        30_000,
      );
      for (const row of rows) assert.ok(row.trace_id, `trace id of ${row.call_sid}`);
      assert.equal(e2e.logs("call_ended").length, CONCURRENT_CALLS);
      assert.equal(e2e.logs("model_failed").length, 0);
    } finally {
      await e2e.stop();
    }
  },
});
