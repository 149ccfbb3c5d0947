/**
 * voice-stream's failure paths through the whole local stack (voice-frontdoor, voice-stream,
 * voice-action, Postgres) with the Twilio and OpenAI Realtime doubles: the model refusing,
 * failing or dropping, a forged stream signature, a transfer by key press, and many calls at once.
 * @module
 */
import assert from "node:assert/strict";
import { eventually } from "../support/eventually.ts";
import {
  type CallStack,
  type CallStackOptions,
  DEMO_TRANSFER_NUMBER,
  JANE_DOE_NUMBER,
  startCallStack,
} from "../support/call_stack.ts";
import type { CallerStep, CallResult } from "../doubles/twilio_call_double.ts";
import type { ScenarioEntry } from "../doubles/openai_realtime_double.ts";
import { loadFixture } from "../support/audio_fixtures.ts";
import { droppedModelScenario } from "./scenarios.ts";

/** Long end-to-end tests keep sockets and timers of the stack's own workers around. */
const E2E = { sanitizeOps: false, sanitizeResources: false } as const;

/** A caller who says nothing and waits for whatever the product does. */
const QUIET_CALLER: CallerStep[] = [{ silenceMs: 30_000 }];

async function withStack(
  options: CallStackOptions,
  fn: (e2e: CallStack) => Promise<void>,
): Promise<void> {
  const e2e = await startCallStack(options);
  try {
    await fn(e2e);
  } finally {
    await e2e.stop();
  }
}

/** The call's row in `public.calls`. */
async function callRow(e2e: CallStack, callSid: string) {
  const [row] = await e2e.db.sql`
    select status, outcome, trace_id from public.calls where call_sid = ${callSid}`;
  return row as { status: string; outcome: string | null; trace_id: string | null } | undefined;
}

/**
 * What a caller must get when the model fails: the apology on the line, the recovery text on
 * their phone, the call recorded as recovered, and the stream's logs telling why.
 */
async function assertRecovered(e2e: CallStack, call: CallResult): Promise<void> {
  assert.deepEqual(call.protocolErrors, [], "the bridge spoke Media Streams without errors");
  assert.ok(
    call.says.some((say) => /sorry/i.test(say.text)),
    `apology heard; says: ${JSON.stringify(call.says.map((say) => say.text))}`,
  );
  await e2e.rest.settled();
  const sms = await eventually(
    () => e2e.rest.messages.find((message) => message.to === JANE_DOE_NUMBER),
    "the recovery SMS",
  );
  assert.ok(sms.body.length > 0);
  const row = await eventually(
    async () => {
      const found = await callRow(e2e, call.callSid);
      return found?.outcome === "recovered" ? found : null;
    },
    "the call's outcome",
  );
  assert.ok(row.trace_id);
  const failures = e2e.logs("model_failed").filter((entry) => entry.callSid === call.callSid);
  assert.equal(failures.length, 1, "the stream logged the model failure once");
  const recovered = e2e.logs("call_recovered").filter((entry) => entry.callSid === call.callSid);
  assert.equal(recovered.length, 1, "voice-action recovered the call once");
  assert.equal(e2e.rest.messages.filter((m) => m.to === JANE_DOE_NUMBER).length, 1, "one text");
}

Deno.test({
  name: "voice-stream recovers the call when the model refuses the connection",
  ...E2E,
  async fn() {
    await withStack({
      openai: {
        scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_generic" }],
        faults: { refuse: { mode: "http_503" } },
      },
    }, async (e2e) => {
      const call = await e2e.placeCall({ from: JANE_DOE_NUMBER, audio: QUIET_CALLER });
      assert.ok(e2e.openai.connectionAttempts() >= 1, "the bridge tried the model");
      assert.equal(e2e.openai.sessions.length, 0, "no session was established");
      await assertRecovered(e2e, call);
    });
  },
});

Deno.test({
  name: "voice-stream recovers the call when the model errors mid-call",
  ...E2E,
  async fn() {
    await withStack({
      openai: {
        scenario: [
          { kind: "assistant_audio", fixture: "agent_greeting_generic" },
          { kind: "caller", fixture: "caller_bye" },
          { kind: "server_error", close: true },
        ],
        speedFactor: 8,
      },
    }, async (e2e) => {
      const call = await e2e.placeCall({
        from: JANE_DOE_NUMBER,
        audio: [
          { waitForAgentAudioMs: 500, timeoutMs: 15_000 },
          { waitForAgentSilenceMs: 300, timeoutMs: 15_000 },
          { send: loadFixture("caller_bye"), label: "speaks" },
          { silenceMs: 30_000 },
        ],
      });
      const session = e2e.openai.sessions[0];
      assert.ok(session.responses.length >= 1, "the greeting played before the failure");
      assert.equal(session.userTurns.length, 1, "the failure came after the caller spoke");
      assert.ok(call.agentAudioPlayedMs > 0);
      assert.ok(
        session.errors.some((error) => error.type === "server_error"),
        "the double failed as scripted",
      );
      assert.equal(session.closed, true);
      await assertRecovered(e2e, call);
    });
  },
});

Deno.test({
  name: "voice-stream recovers the call when the model socket drops mid-response",
  ...E2E,
  async fn() {
    await withStack({
      openai: {
        scenario: droppedModelScenario(),
        faults: { dropMidResponse: { afterDeltas: 3 } },
      },
    }, async (e2e) => {
      const call = await e2e.placeCall({ from: JANE_DOE_NUMBER, audio: QUIET_CALLER });
      const [session] = e2e.openai.sessions;
      assert.equal(session.responses[0].audioDeltaCount, 3, "dropped after three deltas");
      assert.equal(session.closed, true);
      await assertRecovered(e2e, call);
    });
  },
});

Deno.test({
  name: "voice-stream opens no model session for a stream with a bad signature",
  ...E2E,
  async fn() {
    await withStack({
      openai: { scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_generic" }] },
    }, async (e2e) => {
      const call = await e2e.placeCall({
        from: JANE_DOE_NUMBER,
        audio: QUIET_CALLER,
        streamSignatureOverride: "bm90IGEgc2lnbmF0dXJl",
        maxCallMs: 60_000,
      });
      assert.equal(e2e.openai.connectionAttempts(), 0, "no model session");
      assert.equal(call.streams[0].endedBy, "handshake-failed");
      const rejected = e2e.logs("security_rejected").filter((entry) => entry.fn === "voice-stream");
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0].reason, "signature_mismatch");
      assert.equal(call.agentAudioPlayedMs, 0);
      assert.equal(call.status, "completed");
    });
  },
});

Deno.test({
  name: "voice-stream transfers the call when the caller presses 0",
  ...E2E,
  async fn() {
    await withStack({
      openai: { scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_generic" }] },
    }, async (e2e) => {
      const call = await e2e.placeCall({
        from: JANE_DOE_NUMBER,
        audio: [
          { waitForAgentAudioMs: 500, timeoutMs: 15_000 },
          { dtmf: "0" },
          { silenceMs: 30_000 },
        ],
      });
      assert.deepEqual(call.dials.map((dial) => dial.target), [DEMO_TRANSFER_NUMBER]);
      const transfer = e2e.rest.requests.find((request) =>
        request.path.endsWith(`/Calls/${call.callSid}.json`) &&
        String(request.params.Twiml ?? "").includes("<Dial")
      );
      assert.ok(transfer, "the transfer went through Twilio's REST API");
      const [session] = e2e.openai.sessions;
      assert.equal(session.closed, true, "the model session was closed");
      await e2e.rest.settled();
      const row = await eventually(
        async () => {
          const found = await callRow(e2e, call.callSid);
          return found?.outcome === "transferred" ? found : null;
        },
        "the transferred outcome",
      );
      assert.ok(row.trace_id);
      assert.equal(e2e.logs("dtmf_transfer").length, 1);
      assert.deepEqual(e2e.openai.sessions.flatMap((s) => s.errors), []);
    });
  },
});

/** Concurrent calls of the load test. */
const CONCURRENT_CALLS = 100;

/** A short call: a greeting, the caller says goodbye, the assistant ends the call. */
function shortScenario(): ScenarioEntry[] {
  return [
    { kind: "assistant_audio", durationMs: 300, transcript: "Hello, how can I help?" },
    { kind: "caller", fixture: "caller_bye" },
    {
      kind: "function_call",
      name: "end_call",
      arguments: { reason: "caller said goodbye" },
      then: { kind: "assistant_audio", durationMs: 200, transcript: "Goodbye!" },
    },
    { kind: "end" },
  ];
}

Deno.test({
  name: "voice-stream bridges 100 concurrent short calls to the end",
  ...E2E,
  async fn() {
    await withStack({
      openai: { scenario: shortScenario(), speedFactor: 8 },
      env: {
        // 100 calls share the local stack's small database pool (one session with PGlite): a
        // tool call then queues for seconds, longer than the bridge's 4 s default allows.
        TOOL_TIMEOUT_MS: "60000",
      },
    }, async (e2e) => {
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
    });
  },
});
