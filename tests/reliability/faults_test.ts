/**
 * Faults through the whole local stack (voice-frontdoor, voice-stream, voice-action, Postgres)
 * with the Twilio and OpenAI Realtime doubles: one table of scenarios, each a call of Jane's paced
 * in real time so the caller's experience can be measured. The database unreachable at call
 * start, through the conversation and during the status callback; the caller hanging up
 * mid-sentence; the model refusing, erroring and dropping; Twilio REST failing during a recovery;
 * a stream with a forged signature; the caller pressing 0. In every case: no unhandled rejection,
 * no handler that threw or answered 500, no unplanned exception logged, no Media Streams protocol
 * error, no dead air over 3 s for a caller still on the line, the call's outcome recorded in
 * `calls` with its org and trace, and no secret or full phone number in any log line.
 * @module
 */
import assert from "node:assert/strict";
import { eventually } from "../support/eventually.ts";
import {
  type CallStack,
  type CallStackOptions,
  DEMO_ORG_NUMBER,
  DEMO_TRANSFER_NUMBER,
  JANE_DOE_NUMBER,
  startCallStack,
} from "../support/call_stack.ts";
import { createFaultyStore, type FaultyStore } from "../support/faulty_store.ts";
import { watchProcess } from "../support/process_guard.ts";
import { deadAirGaps } from "../support/dead_air.ts";
import { findLogLeaks, secretsOf } from "../support/log_leaks.ts";
import { loadFixture } from "../support/audio_fixtures.ts";
import { goodbyeScenario } from "../e2e/scenarios.ts";
import type { ScenarioEntry, SessionRecord } from "../doubles/openai_realtime_double.ts";
import type {
  CallerStep,
  CallResult,
  PlaceCallOptions,
  TwilioCallHandle,
} from "../doubles/twilio_call_double.ts";

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
/** A caller who says nothing and waits for whatever the product does. */
const QUIET: CallerStep[] = [{ silenceMs: 30_000 }];

/** The stack of one scenario; its store goes down on demand. */
interface FaultRun {
  stack: CallStack;
  faulty: FaultyStore;
}

/** A fault, how Jane's call meets it, and what must hold besides the checks of every scenario. */
interface FaultScenario {
  name: string;
  /** The model's script and faults, the functions' settings, the REST double's options. */
  stack: Pick<CallStackOptions, "openai" | "env" | "rest">;
  /** Places the call, brings the fault on, and returns the call once it has ended. */
  call(run: FaultRun): Promise<CallResult>;
  /** The outcome the call's row must reach. */
  outcome: "completed" | "recovered" | "failed" | "transferred";
  /** Codes of the Media Streams errors Twilio reports; none unless the fault is the stream's. */
  protocolErrors?: number[];
  /** This fault's own checks, once the outcome is recorded. */
  expect(run: FaultRun, call: CallResult): Promise<void> | void;
}

/** Greets by name only when the caller's record reached the instructions. */
function greeting(durationMs = 600): ScenarioEntry {
  return (session: SessionRecord) =>
    JSON.stringify(session.sessionUpdates.at(-1) ?? {}).includes("Jane")
      ? { kind: "assistant_audio", durationMs, transcript: JANE_GREETING }
      : { kind: "assistant_audio", durationMs, transcript: GENERIC_GREETING };
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

/** Places Jane's call, paced in real time (dead air is measured in call time). */
function placeCall(
  stack: CallStack,
  audio: CallerStep[],
  options: Partial<PlaceCallOptions> = {},
): TwilioCallHandle {
  return stack.startCall({
    from: JANE_DOE_NUMBER,
    audio,
    pacing: "realtime",
    sayMsPerCharacter: SAY_MS_PER_CHARACTER,
    maxCallMs: 60_000,
    ...options,
  });
}

/** Places the call and hangs up once the voicemail prompt after the apology starts. */
async function recoveredCall(
  stack: CallStack,
  audio: CallerStep[],
  options: Partial<PlaceCallOptions> = {},
): Promise<CallResult> {
  const handle = placeCall(stack, audio, options);
  await handle.waitUntil(() => handle.live.verbs.some((verb) => verb.verb === "Record"), {
    timeoutMs: 20_000,
  });
  handle.hangup();
  return await handle.result;
}

/**
 * What a caller must get when the assistant cannot take the call: the apology on the line, and
 * the recovery text on their phone unless Twilio refused it.
 */
function assertRecovered(
  stack: CallStack,
  call: CallResult,
  text: "delivered" | "refused",
): void {
  assert.ok(
    call.says.some((say) => /sorry/i.test(say.text)),
    `apology heard; says: ${JSON.stringify(call.says.map((say) => say.text))}`,
  );
  const texts = stack.rest.messages.filter((message) => message.to === JANE_DOE_NUMBER);
  assert.equal(texts.length, text === "delivered" ? 1 : 0, "texts to the caller");
  if (text === "delivered") assert.ok(texts[0].body.length > 0, "the recovery text says something");
}

/**
 * A model failure: the caller recovered, the failure logged once by the stream and the recovery
 * once by voice-action.
 */
function assertModelRecovery(
  stack: CallStack,
  call: CallResult,
  text: "delivered" | "refused",
): void {
  assertRecovered(stack, call, text);
  const ofCall = (event: string) => stack.logs(event).filter((e) => e.callSid === call.callSid);
  assert.equal(ofCall("model_failed").length, 1, "the stream logged the model failure once");
  assert.equal(ofCall("call_recovered").length, 1, "voice-action recovered the call once");
}

/** A model whose socket is cut three audio deltas into a 2 s greeting. */
function droppingModel(): CallStackOptions["openai"] {
  return {
    scenario: [greeting(2000)],
    speedFactor: 1,
    faults: { dropMidResponse: { afterDeltas: 3 } },
  };
}

/** The call's turns, in order. */
async function turnsOf(stack: CallStack, callSid: string) {
  return await stack.db.sql<{ speaker: string; text: string }[]>`
    select t.speaker, t.text from public.call_turns t join public.calls c on c.id = t.call_id
    where c.call_sid = ${callSid} order by t.sequence`;
}

const databaseAtCallStart = (["refused", "blackhole"] as const).map((mode): FaultScenario => ({
  name: `Postgres unreachable at call start (${mode}): generic greeting within the lookup ` +
    "budget, the call goes on once it is back",
  stack: {
    openai: { scenario: goodbyeScenario(greeting(), 300), speedFactor: 4 },
    env: { LOOKUP_BUDGET_MS: String(LOOKUP_BUDGET_MS) },
  },
  async call({ stack, faulty }) {
    faulty.outage({ mode });
    const handle = placeCall(stack, goodbyeCaller());
    // The database comes back once the greeting is under way.
    await eventually(() => stack.logs("greeting_triggered").length > 0, "the greeting");
    faulty.restore();
    return await handle.result;
  },
  outcome: "completed",
  expect({ stack }, call) {
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
    // The assistant could still end the call.
    assert.equal(call.endReason, "twiml-hangup", "the assistant ended the call");
  },
}));

/** Every fault, run by the one loop below. */
const SCENARIOS: FaultScenario[] = [
  ...databaseAtCallStart,
  {
    name: "Postgres unreachable through the conversation: the assistant still ends the call, " +
      "turns and outcome are stored once it is back",
    stack: {
      openai: { scenario: goodbyeScenario(greeting(), 300), speedFactor: 4 },
      env: { LOOKUP_BUDGET_MS: String(LOOKUP_BUDGET_MS) },
    },
    async call({ stack, faulty }) {
      faulty.outage({ mode: "refused" });
      const handle = placeCall(stack, goodbyeCaller());
      // Down until the assistant's end_call has been answered (without the database).
      await eventually(
        () => stack.logs("tool_call", "voice-action").some((e) => e.name === "end_call"),
        "the end_call tool call",
        20_000,
      );
      faulty.restore();
      return await handle.result;
    },
    outcome: "completed",
    async expect({ stack }, call) {
      const [session] = stack.openai.sessions;
      assert.equal(session.responses[0].transcript, GENERIC_GREETING);
      const goodbye = session.responses.find((response) => response.transcript === "Goodbye!");
      assert.equal(goodbye?.status, "completed", "the assistant said goodbye");
      assert.equal(call.endReason, "twiml-hangup", "the assistant ended the call");
      assert.ok(stack.logs("turns_flush_failed").length >= 1, "turn writes failed meanwhile");
      const turns = await turnsOf(stack, call.callSid);
      assert.deepEqual(turns.map((turn) => turn.speaker), ["assistant", "caller", "assistant"]);
    },
  },
  {
    name:
      "Postgres unreachable during the status callback: 503, then the retried callback is stored",
    stack: {
      openai: { scenario: goodbyeScenario(greeting(), 300), speedFactor: 4 },
      // Twilio's retries (`#rc=3&rp=all`) spaced so the database is back by the last one.
      rest: { callbackRetryDelayMs: 400 },
    },
    async call({ stack, faulty }) {
      const handle = placeCall(stack, [{ waitForAgentAudioMs: 300, timeoutMs: 10_000 }]);
      // The caller hangs up as soon as the greeting has played; the database is down for 600 ms
      // from then on, for the writes that record call events.
      await handle.waitUntil(() => handle.agentAudioPlayedMs() >= 600, { timeoutMs: 10_000 });
      faulty.outage({ mode: "refused", methods: ["recordCallEvent"], forMs: 600 });
      handle.hangup();
      return await handle.result;
    },
    outcome: "completed",
    async expect({ stack }, call) {
      await stack.rest.settled();
      const [callback] = stack.rest.statusCallbacks.filter((cb) => cb.sid === call.callSid);
      const statuses = callback.delivery.attempts.map((attempt) => attempt.status);
      assert.equal(statuses[0], 503, `first delivery refused: ${statuses}`);
      assert.equal(statuses.at(-1), 204, `a retry was stored: ${statuses}`);
      assert.ok(stack.logs("call_event_store_failed").length >= 1);
      const events = await stack.db.sql`
        select e.kind, e.status from public.call_events e join public.calls c on c.id = e.call_id
        where c.call_sid = ${call.callSid} and e.kind = 'status_callback'`;
      assert.deepEqual(events.map((e) => e.status), ["completed"], "stored once");
    },
  },
  {
    name: "the Twilio socket closing mid-sentence closes the model session and flushes the turns",
    stack: {
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
    },
    async call({ stack }) {
      return await placeCall(stack, [
        { waitForAgentAudioMs: 300, timeoutMs: 10_000 },
        { waitForAgentSilenceMs: 200, timeoutMs: 10_000 },
        { send: loadFixture("caller_confirm"), label: "asks something" },
        // Hangs up one second into the long answer.
        { waitForAgentAudioMs: 1000, timeoutMs: 10_000 },
        { hangup: true },
      ]).result;
    },
    outcome: "completed",
    async expect({ stack }, call) {
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
        const rows = await turnsOf(stack, call.callSid);
        return rows.length >= 2 ? rows : null;
      }, "the turns");
      assert.equal(turns[0].speaker, "assistant");
      assert.equal(turns[0].text, JANE_GREETING);
      assert.ok(turns.some((turn) => turn.speaker === "caller"), "the caller's turn was stored");
      // The stream writes its metrics after its turns, when the outcome may be recorded already.
      await eventually(async () => {
        const [metrics] = await stack.db.sql`
          select stream_seconds, first_audio_ms from public.calls where call_sid = ${call.callSid}`;
        return metrics.stream_seconds !== null && metrics.first_audio_ms !== null;
      }, "the stream's metrics");
    },
  },
  {
    name: "the model refusing the connection: apology without dead air, the recovery text, " +
      "outcome recovered",
    stack: {
      openai: {
        scenario: goodbyeScenario(greeting(), 300),
        faults: { refuse: { mode: "http_503" } },
      },
    },
    call: ({ stack }) => recoveredCall(stack, QUIET),
    outcome: "recovered",
    expect({ stack }, call) {
      assert.ok(stack.openai.connectionAttempts() >= 1, "the bridge tried the model");
      assert.equal(stack.openai.sessions.length, 0, "no session was established");
      assertModelRecovery(stack, call, "delivered");
    },
  },
  {
    name: "the model erroring after the caller spoke: apology without dead air, the recovery " +
      "text, outcome recovered",
    stack: {
      openai: {
        scenario: [
          greeting(),
          { kind: "caller", fixture: "caller_bye" },
          { kind: "server_error", close: true },
        ],
        speedFactor: 4,
      },
    },
    call: ({ stack }) =>
      recoveredCall(stack, [
        { waitForAgentAudioMs: 300, timeoutMs: 10_000 },
        { waitForAgentSilenceMs: 200, timeoutMs: 10_000 },
        { send: loadFixture("caller_bye"), label: "speaks" },
        { silenceMs: 30_000 },
      ]),
    outcome: "recovered",
    expect({ stack }, call) {
      const [session] = stack.openai.sessions;
      assert.ok(session.responses.length >= 1, "the greeting played before the failure");
      assert.equal(session.userTurns.length, 1, "the failure came after the caller spoke");
      assert.ok(call.agentAudioPlayedMs > 0);
      assert.ok(
        session.errors.some((error) => error.type === "server_error"),
        "the double failed as scripted",
      );
      assert.equal(session.closed, true);
      assertModelRecovery(stack, call, "delivered");
    },
  },
  {
    name: "the model dropping mid-response: apology without dead air, the recovery text, " +
      "outcome recovered",
    stack: { openai: droppingModel() },
    call: ({ stack }) => recoveredCall(stack, QUIET),
    outcome: "recovered",
    expect({ stack }, call) {
      const [session] = stack.openai.sessions;
      assert.equal(session.responses[0].audioDeltaCount, 3, "dropped after three deltas");
      assert.equal(session.closed, true);
      assertModelRecovery(stack, call, "delivered");
    },
  },
  {
    name: "Twilio REST answering 429 then 5xx during a recovery: apology without dead air, the " +
      "text recorded as failed",
    stack: { openai: droppingModel() },
    call({ stack }) {
      // The redirect to the apology is throttled once; every try of the recovery text fails.
      stack.rest.injectFailures({ path: /\/Calls\/CA[0-9a-f]+\.json$/, status: 429, count: 1 });
      stack.rest.injectFailures({ path: "Messages.json", status: 503, count: 10 });
      return recoveredCall(stack, QUIET);
    },
    // Without the text the call stays failed (a recovered call is one whose text went out).
    outcome: "failed",
    async expect({ stack }, call) {
      assertModelRecovery(stack, call, "refused");
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
    },
  },
  {
    name: "a stream with a bad signature is refused before any model session: apology without " +
      "dead air, the recovery text, outcome recovered",
    stack: {
      openai: { scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_generic" }] },
    },
    call: ({ stack }) =>
      recoveredCall(stack, QUIET, { streamSignatureOverride: "bm90IGEgc2lnbmF0dXJl" }),
    outcome: "recovered",
    // Twilio's handshake error: voice-stream refused the socket.
    protocolErrors: [31920],
    expect({ stack }, call) {
      assert.equal(stack.openai.connectionAttempts(), 0, "no model session");
      assert.equal(call.streams[0].endedBy, "handshake-failed");
      const rejected = stack.logs("security_rejected", "voice-stream");
      assert.equal(rejected.length, 1);
      assert.equal(rejected[0].reason, "signature_mismatch");
      assert.equal(call.agentAudioPlayedMs, 0);
      assert.equal(call.status, "completed");
      assertRecovered(stack, call, "delivered");
    },
  },
  {
    name:
      "the caller pressing 0 is transferred through Twilio's REST API, the model session closed",
    stack: {
      openai: { scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_generic" }] },
    },
    call: ({ stack }) =>
      placeCall(stack, [
        { waitForAgentAudioMs: 500, timeoutMs: 15_000 },
        { dtmf: "0" },
        { silenceMs: 30_000 },
      ]).result,
    outcome: "transferred",
    expect({ stack }, call) {
      assert.deepEqual(call.dials.map((dial) => dial.target), [DEMO_TRANSFER_NUMBER]);
      const transfer = stack.rest.requests.find((request) =>
        request.path.endsWith(`/Calls/${call.callSid}.json`) &&
        String(request.params.Twiml ?? "").includes("<Dial")
      );
      assert.ok(transfer, "the transfer went through Twilio's REST API");
      const [session] = stack.openai.sessions;
      assert.equal(session.closed, true, "the model session was closed");
      assert.equal(stack.logs("dtmf_transfer").length, 1);
      assert.deepEqual(stack.openai.sessions.flatMap((s) => s.errors), []);
    },
  },
];

interface CallRow {
  status: string | null;
  outcome: string | null;
  trace_id: string | null;
  org_id: string | null;
}

/** Waits until the call's row is `completed` with `outcome`, and returns it. */
async function recordedOutcome(
  stack: CallStack,
  callSid: string,
  outcome: string,
): Promise<CallRow> {
  let row: CallRow | undefined;
  try {
    return await eventually(async () => {
      [row] = await stack.db.sql<CallRow[]>`
        select status, outcome, trace_id, org_id from public.calls where call_sid = ${callSid}`;
      return row?.status === "completed" && row.outcome === outcome ? row : null;
    }, `the outcome ${outcome}`);
  } catch {
    assert.fail(`the call should be completed with outcome ${outcome}: ${JSON.stringify(row)}`);
  }
}

function assertNoDeadAir(call: CallResult): void {
  const gaps = deadAirGaps(call, { sayMsPerCharacter: SAY_MS_PER_CHARACTER });
  console.log(`longest dead air: ${Math.round(gaps[0]?.durationMs ?? 0)} ms`);
  assert.ok(
    (gaps[0]?.durationMs ?? 0) <= MAX_DEAD_AIR_MS,
    `dead air over ${MAX_DEAD_AIR_MS} ms: ${JSON.stringify(gaps.slice(0, 3))}`,
  );
}

/** Every log line of this file's stacks, for the final leak scan. */
const allLogLines: string[] = [];
const allSecrets: Record<string, string> = {};

for (const scenario of SCENARIOS) {
  Deno.test({
    name: scenario.name,
    ...E2E,
    async fn() {
      const guard = watchProcess();
      let faulty: FaultyStore | null = null;
      const stack = await startCallStack({
        ...scenario.stack,
        wrapStore: (store) => faulty = createFaultyStore(store),
      });
      const run = { stack, faulty: faulty! };
      try {
        const call = await scenario.call(run);
        assert.deepEqual(
          call.protocolErrors.map((error) => error.code),
          scenario.protocolErrors ?? [],
          `Media Streams errors: ${JSON.stringify(call.protocolErrors)}`,
        );
        assertNoDeadAir(call);
        const row = await recordedOutcome(stack, call.callSid, scenario.outcome);
        assert.ok(row.org_id, "the call is tied to its org");
        assert.ok(row.trace_id, "the call has its trace");
        await scenario.expect(run, call);
        await run.faulty.settled();
        await stack.rest.settled();
        const crashes = stack.requests.filter((request) => request.error !== null);
        assert.deepEqual(crashes, [], "no handler threw");
        const serverErrors = stack.requests.filter((request) => request.status === 500);
        assert.deepEqual(serverErrors, [], "no 500 answer");
        const crashLogs = stack.logs().filter((entry) =>
          CRASH_EVENTS.includes(String(entry.event))
        );
        assert.deepEqual(crashLogs, [], "no unplanned exception logged");
        assert.equal(guard.rejections.length + guard.errors.length, 0, guard.describe());
      } finally {
        guard.stop();
        allLogLines.push(...stack.logLines);
        Object.assign(allSecrets, secretsOf(stack.env));
        await stack.stop();
      }
    },
  });
}

Deno.test("no secret or full phone number in any log line of these fault tests", () => {
  // Run last: scans what every test above captured (nothing when they were filtered out).
  const leaks = findLogLeaks(allLogLines, {
    secrets: allSecrets,
    phoneNumbers: [JANE_DOE_NUMBER, DEMO_ORG_NUMBER, DEMO_TRANSFER_NUMBER],
  });
  assert.deepEqual(leaks, []);
});
