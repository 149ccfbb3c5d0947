/**
 * Faults through the whole local stack (voice-frontdoor, voice-stream, voice-action, Postgres)
 * with the Twilio and OpenAI Realtime doubles, every call paced in real time: the database
 * unreachable at call start and during status callbacks, the caller hanging up mid-sentence, and
 * the model and Twilio REST failures of `tests/e2e/stream_faults_test.ts` again, here with the
 * caller's experience measured. In every case: no unhandled rejection, no handler that threw, no
 * dead air over 3 s for a caller still on the line, and the call's outcome recorded in `calls`.
 * @module
 */
import assert from "node:assert/strict";
import { eventually } from "../support/eventually.ts";
import {
  type CallStack,
  type CallStackOptions,
  JANE_DOE_NUMBER,
  startCallStack,
} from "../support/call_stack.ts";
import { createFaultyStore, type FaultyStore } from "../support/faulty_store.ts";
import { type ProcessGuard, watchProcess } from "../support/process_guard.ts";
import { deadAirGaps } from "../support/dead_air.ts";
import { findLogLeaks, secretsOf } from "../support/log_leaks.ts";
import { loadFixture } from "../support/audio_fixtures.ts";
import type { ScenarioEntry, SessionRecord } from "../doubles/openai_realtime_double.ts";
import type { CallerStep, CallResult } from "../doubles/twilio_call_double.ts";

const E2E = { sanitizeOps: false, sanitizeResources: false } as const;
/** The longest silence a caller still on the line may hear. */
const MAX_DEAD_AIR_MS = 3000;
/** `<Say>` rate of the calls: quicker than the double's default, to keep the tests short. */
const SAY_MS_PER_CHARACTER = 30;
/** The product's default caller lookup budget (`LOOKUP_BUDGET_MS`). */
const LOOKUP_BUDGET_MS = 150;
const GENERIC_GREETING = "Hi there, thanks for calling. How can I help you today?";
const JANE_GREETING = "Hi Jane, thanks for calling Harbor Dental. How can I help you today?";
/** Events that mean a function caught an exception it had no plan for. */
const CRASH_EVENTS = ["action_failed", "frontdoor_failed", "bridge_task_failed"];

/** Every log line of this file's stacks, for the final leak scan. */
const allLogLines: string[] = [];
const allSecrets: Record<string, string> = {};

/** Greets by name only when the caller's record reached the instructions. */
function greeting(durationMs = 600): ScenarioEntry {
  return (session: SessionRecord) =>
    JSON.stringify(session.sessionUpdates.at(-1) ?? {}).includes("Jane")
      ? { kind: "assistant_audio", durationMs, transcript: JANE_GREETING }
      : { kind: "assistant_audio", durationMs, transcript: GENERIC_GREETING };
}

/** Greeting, the caller says goodbye, the assistant ends the call. */
function goodbyeScenario(): ScenarioEntry[] {
  return [
    greeting(),
    { kind: "caller", fixture: "caller_bye" },
    {
      kind: "function_call",
      name: "end_call",
      arguments: { reason: "caller said goodbye" },
      then: { kind: "assistant_audio", durationMs: 300, transcript: "Goodbye!" },
    },
    { kind: "end" },
  ];
}

/**
 * The caller waits for the greeting, says goodbye, and hangs up after 2 s of silence if the
 * assistant has not ended the call by then.
 */
function goodbyeCaller(): CallerStep[] {
  return [
    { waitForAgentAudioMs: 300, timeoutMs: 10_000 },
    { waitForAgentSilenceMs: 200, timeoutMs: 10_000 },
    { send: loadFixture("caller_bye"), label: "says goodbye" },
    { waitForAgentAudioMs: 200, timeoutMs: 2_000 },
    { waitForAgentSilenceMs: 2_000, timeoutMs: 10_000 },
    { hangup: true },
  ];
}

/** A stack, a process guard and the checks every fault test ends with. */
async function withStack(
  options: CallStackOptions,
  fn: (stack: CallStack, guard: ProcessGuard) => Promise<void>,
): Promise<void> {
  const guard = watchProcess();
  const stack = await startCallStack(options);
  try {
    await fn(stack, guard);
    await stack.rest.settled();
    const crashes = stack.requests.filter((request) => request.error !== null);
    assert.deepEqual(crashes, [], "no handler threw");
    const serverErrors = stack.requests.filter((request) => request.status === 500);
    assert.deepEqual(serverErrors, [], "no 500 answer");
    const crashLogs = stack.logs().filter((entry) => CRASH_EVENTS.includes(String(entry.event)));
    assert.deepEqual(crashLogs, [], "no unplanned exception logged");
    assert.equal(guard.rejections.length + guard.errors.length, 0, guard.describe());
  } finally {
    guard.stop();
    allLogLines.push(...stack.logLines);
    Object.assign(allSecrets, secretsOf(stack.env));
    await stack.stop();
  }
}

interface CallRow {
  status: string | null;
  outcome: string | null;
  trace_id: string | null;
  org_id: string | null;
}

/** Waits until the call's row has a final status and an outcome, and returns it. */
function recordedOutcome(stack: CallStack, callSid: string): Promise<CallRow> {
  return eventually(async () => {
    const [row] = await stack.db.sql<CallRow[]>`
      select status, outcome, trace_id, org_id from public.calls where call_sid = ${callSid}`;
    return row?.status === "completed" && row.outcome !== null ? row : null;
  }, `the outcome of ${callSid}`);
}

function assertNoDeadAir(call: CallResult): void {
  const gaps = deadAirGaps(call, { sayMsPerCharacter: SAY_MS_PER_CHARACTER });
  console.log(`longest dead air: ${Math.round(gaps[0]?.durationMs ?? 0)} ms`);
  assert.ok(
    (gaps[0]?.durationMs ?? 0) <= MAX_DEAD_AIR_MS,
    `dead air over ${MAX_DEAD_AIR_MS} ms: ${JSON.stringify(gaps.slice(0, 3))}`,
  );
}

/** Places Jane's call with the common options of this file. */
function placeCall(
  stack: CallStack,
  audio: CallerStep[],
): ReturnType<CallStack["startCall"]> {
  return stack.startCall({
    from: JANE_DOE_NUMBER,
    audio,
    pacing: "realtime",
    sayMsPerCharacter: SAY_MS_PER_CHARACTER,
    maxCallMs: 60_000,
  });
}

// ---------------------------------------------------------------------------------------------
// The database

for (const mode of ["refused", "blackhole"] as const) {
  Deno.test({
    name: `Postgres unreachable at call start (${mode}): generic greeting within the lookup ` +
      "budget, the call goes on once it is back",
    ...E2E,
    async fn() {
      let faulty: FaultyStore | null = null;
      await withStack({
        openai: { scenario: goodbyeScenario(), speedFactor: 4 },
        env: { LOOKUP_BUDGET_MS: String(LOOKUP_BUDGET_MS) },
        wrapStore: (store) => faulty = createFaultyStore(store, { connectTimeoutSeconds: 2 }),
      }, async (stack) => {
        faulty!.outage({ mode });
        const handle = placeCall(stack, goodbyeCaller());
        // The database comes back once the greeting is under way.
        await eventually(() => stack.logs("greeting_triggered").length > 0, "the greeting");
        faulty!.restore();
        const call = await handle.result;
        assert.deepEqual(call.protocolErrors, []);

        const [session] = stack.openai.sessions;
        assert.equal(session.responses[0].transcript, GENERIC_GREETING, "greeted generically");
        assert.doesNotMatch(JSON.stringify(session.sessionUpdates[0]), /Jane/);
        const lookup = stack.logs(mode === "refused" ? "lookup_failed" : "lookup_timeout");
        assert.equal(lookup.length, 1, `one ${mode} lookup`);
        const greeted = stack.logs("greeting_triggered")[0];
        // Within the budget (plus the model's connect time and a busy machine's slack).
        assert.ok(
          Number(greeted.sinceStartMs) <= LOOKUP_BUDGET_MS + 1000,
          `greeting ${greeted.sinceStartMs} ms after the stream started`,
        );
        assert.ok(Number(lookup[0].lookupMs) <= LOOKUP_BUDGET_MS + 500, `${lookup[0].lookupMs}`);
        assertNoDeadAir(call);

        // The assistant could still end the call, and the call's outcome is recorded.
        assert.equal(call.endReason, "twiml-hangup", "the assistant ended the call");
        const row = await recordedOutcome(stack, call.callSid);
        assert.equal(row.outcome, "completed");
        assert.ok(row.org_id, "the call is tied to its org");
        await faulty!.settled();
      });
    },
  });
}

Deno.test({
  name: "Postgres unreachable through the conversation: the assistant still ends the call, " +
    "turns and outcome are stored once it is back",
  ...E2E,
  async fn() {
    let faulty: FaultyStore | null = null;
    await withStack({
      openai: { scenario: goodbyeScenario(), speedFactor: 4 },
      env: { LOOKUP_BUDGET_MS: String(LOOKUP_BUDGET_MS) },
      wrapStore: (store) => faulty = createFaultyStore(store, { connectTimeoutSeconds: 2 }),
    }, async (stack) => {
      faulty!.outage({ mode: "refused" });
      const handle = placeCall(stack, goodbyeCaller());
      // Down until the assistant's end_call has been answered (without the database).
      await eventually(
        () => stack.logs("tool_call").some((e) => e.fn === "voice-action" && e.name === "end_call"),
        "the end_call tool call",
        20_000,
      );
      faulty!.restore();
      const call = await handle.result;
      assert.deepEqual(call.protocolErrors, []);
      const [session] = stack.openai.sessions;
      assert.equal(session.responses[0].transcript, GENERIC_GREETING);
      const goodbye = session.responses.find((response) => response.transcript === "Goodbye!");
      assert.equal(goodbye?.status, "completed", "the assistant said goodbye");
      assert.equal(call.endReason, "twiml-hangup", "the assistant ended the call");
      assert.ok(stack.logs("turns_flush_failed").length >= 1, "turn writes failed meanwhile");
      assertNoDeadAir(call);
      const row = await recordedOutcome(stack, call.callSid);
      assert.equal(row.outcome, "completed");
      assert.ok(row.org_id, "the call is tied to its org");
      const turns = await stack.db.sql`
        select t.speaker, t.text from public.call_turns t join public.calls c on c.id = t.call_id
        where c.call_sid = ${call.callSid} order by t.sequence`;
      assert.deepEqual(turns.map((turn) => turn.speaker), ["assistant", "caller", "assistant"]);
      await faulty!.settled();
    });
  },
});

Deno.test({
  name: "Postgres unreachable during the status callback: 503, then the retried callback is stored",
  ...E2E,
  async fn() {
    let faulty: FaultyStore | null = null;
    await withStack({
      openai: { scenario: goodbyeScenario(), speedFactor: 4 },
      wrapStore: (store) => faulty = createFaultyStore(store, { connectTimeoutSeconds: 2 }),
      // Twilio's retries (`#rc=3&rp=all`) spaced so the database is back by the last one.
      rest: { callbackRetryDelayMs: 400 },
    }, async (stack) => {
      const handle = placeCall(stack, [{ waitForAgentAudioMs: 300, timeoutMs: 10_000 }]);
      // The caller hangs up as soon as the greeting has played; the database is down for 600 ms
      // from then on, for the writes that record call events.
      await handle.waitUntil(() => handle.agentAudioPlayedMs() >= 600, { timeoutMs: 10_000 });
      faulty!.outage({ mode: "refused", methods: ["recordCallEvent"], forMs: 600 });
      handle.hangup();
      const call = await handle.result;
      await stack.rest.settled();

      const [callback] = stack.rest.statusCallbacks.filter((cb) => cb.sid === call.callSid);
      const statuses = callback.delivery.attempts.map((attempt) => attempt.status);
      assert.equal(statuses[0], 503, `first delivery refused: ${statuses}`);
      assert.equal(statuses.at(-1), 204, `a retry was stored: ${statuses}`);
      assert.ok(stack.logs("call_event_store_failed").length >= 1);
      const row = await recordedOutcome(stack, call.callSid);
      assert.equal(row.outcome, "completed");
      const events = await stack.db.sql`
        select e.kind, e.status from public.call_events e join public.calls c on c.id = e.call_id
        where c.call_sid = ${call.callSid} and e.kind = 'status_callback'`;
      assert.deepEqual(events.map((e) => e.status), ["completed"], "stored once");
      assertNoDeadAir(call);
      await faulty!.settled();
    });
  },
});

// ---------------------------------------------------------------------------------------------
// The caller hangs up while the assistant speaks

Deno.test({
  name: "the Twilio socket closing mid-sentence closes the model session and flushes the turns",
  ...E2E,
  async fn() {
    await withStack({
      openai: {
        scenario: [
          greeting(),
          { kind: "caller", fixture: "caller_confirm" },
          {
            kind: "assistant_audio",
            durationMs: 6000,
            transcript: "Let me tell you everything about our opening hours and our services.",
          },
          { kind: "end" },
        ],
        speedFactor: 1.5,
      },
    }, async (stack) => {
      const handle = placeCall(stack, [
        { waitForAgentAudioMs: 300, timeoutMs: 10_000 },
        { waitForAgentSilenceMs: 200, timeoutMs: 10_000 },
        { send: loadFixture("caller_confirm"), label: "asks something" },
        // Hangs up one second into the long answer.
        { waitForAgentAudioMs: 1000, timeoutMs: 10_000 },
        { hangup: true },
      ]);
      const call = await handle.result;
      assert.equal(call.endReason, "caller-hangup");
      const [session] = stack.openai.sessions;
      await stack.openai.waitFor(() => session.closed, 5000, "the model session to close");
      assert.equal(session.closeCode, 1000, "closed by the bridge");
      const answer = session.responses.at(-1)!;
      assert.ok(
        answer.audioMsSent < 6000,
        `the model was still speaking (${answer.audioMsSent} ms of 6000 sent)`,
      );
      const ended = stack.logs("call_ended");
      assert.equal(ended.length, 1);
      assert.equal(ended[0].reason, "twilio_stop");
      const turns = await eventually(async () => {
        const rows = await stack.db.sql`
          select t.speaker, t.text from public.call_turns t join public.calls c on c.id = t.call_id
          where c.call_sid = ${call.callSid} order by t.sequence`;
        return rows.length >= 2 ? rows : null;
      }, "the turns");
      assert.equal(turns[0].speaker, "assistant");
      assert.equal(turns[0].text, JANE_GREETING);
      assert.ok(turns.some((turn) => turn.speaker === "caller"), "the caller's turn was stored");
      const row = await recordedOutcome(stack, call.callSid);
      assert.equal(row.outcome, "completed");
      const [metrics] = await stack.db.sql`
        select stream_seconds, first_audio_ms from public.calls where call_sid = ${call.callSid}`;
      assert.ok(metrics.stream_seconds !== null && metrics.first_audio_ms !== null, "metrics");
      assertNoDeadAir(call);
    });
  },
});

// ---------------------------------------------------------------------------------------------
// The model and Twilio REST fail (the scenarios of tests/e2e/stream_faults_test.ts, in real time)

/** The caller says nothing after the greeting and hangs up once the voicemail prompt starts. */
async function recoveredCall(stack: CallStack, audio: CallerStep[]): Promise<CallResult> {
  const handle = placeCall(stack, audio);
  await handle.waitUntil(() => handle.live.verbs.some((verb) => verb.verb === "Record"), {
    timeoutMs: 20_000,
  });
  handle.hangup();
  const call = await handle.result;
  assert.deepEqual(call.protocolErrors, []);
  assert.ok(call.says.some((say) => /sorry/i.test(say.text)), "the caller heard the apology");
  assertNoDeadAir(call);
  const row = await recordedOutcome(stack, call.callSid);
  assert.ok(["recovered", "failed"].includes(row.outcome!), `outcome ${row.outcome}`);
  return call;
}

const QUIET: CallerStep[] = [{ silenceMs: 30_000 }];

Deno.test({
  name: "the model refusing the connection: apology without dead air, outcome recorded",
  ...E2E,
  async fn() {
    await withStack({
      openai: { scenario: goodbyeScenario(), faults: { refuse: { mode: "http_503" } } },
    }, async (stack) => {
      await recoveredCall(stack, QUIET);
    });
  },
});

Deno.test({
  name: "the model erroring mid-call: apology without dead air, outcome recorded",
  ...E2E,
  async fn() {
    await withStack({
      openai: {
        scenario: [greeting(), { kind: "caller", fixture: "caller_bye" }, {
          kind: "server_error",
          close: true,
        }],
        speedFactor: 4,
      },
    }, async (stack) => {
      await recoveredCall(stack, [
        { waitForAgentAudioMs: 300, timeoutMs: 10_000 },
        { waitForAgentSilenceMs: 200, timeoutMs: 10_000 },
        { send: loadFixture("caller_bye"), label: "speaks" },
        { silenceMs: 30_000 },
      ]);
    });
  },
});

Deno.test({
  name: "the model dropping mid-response: apology without dead air, outcome recorded",
  ...E2E,
  async fn() {
    await withStack({
      openai: {
        scenario: [greeting(2000)],
        speedFactor: 1,
        faults: { dropMidResponse: { afterDeltas: 3 } },
      },
    }, async (stack) => {
      await recoveredCall(stack, QUIET);
    });
  },
});

Deno.test({
  name: "Twilio REST answering 429 then 5xx during a recovery: apology without dead air, the " +
    "text recorded as failed",
  ...E2E,
  async fn() {
    await withStack({
      openai: {
        scenario: [greeting(2000)],
        speedFactor: 1,
        faults: { dropMidResponse: { afterDeltas: 3 } },
      },
    }, async (stack) => {
      // The redirect to the apology is throttled once; every try of the recovery text fails.
      stack.rest.injectFailures({ path: /\/Calls\/CA[0-9a-f]+\.json$/, status: 429, count: 1 });
      stack.rest.injectFailures({ path: "Messages.json", status: 503, count: 10 });
      const call = await recoveredCall(stack, QUIET);
      const [sms] = await eventually(async () => {
        const rows = await stack.db.sql`
          select s.kind, s.status, s.error_code from public.sms_messages s
          join public.calls c on c.id = s.call_id where c.call_sid = ${call.callSid}`;
        return rows.length === 1 && rows[0].status === "failed" ? rows : null;
      }, "the failed text");
      assert.equal(sms.kind, "recovery");
      const retries = stack.logs("twilio_rest_retry");
      assert.ok(retries.some((entry) => entry.status === 429), "the 429 was retried");
      assert.ok(retries.filter((entry) => entry.status === 503).length >= 3, "5xx retried");
      assert.equal(stack.logs("twilio_rest_failed").length, 1);
    });
  },
});

// ---------------------------------------------------------------------------------------------

Deno.test("no secret or full phone number in any log line of these fault tests", () => {
  // Run last: scans what every test above captured (nothing when they were filtered out).
  const leaks = findLogLeaks(allLogLines, {
    secrets: allSecrets,
    phoneNumbers: [JANE_DOE_NUMBER, "+15550100000", "+15550100999"],
  });
  assert.deepEqual(leaks, []);
});
