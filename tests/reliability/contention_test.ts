/**
 * Contention through the whole local stack (voice-frontdoor, voice-stream, voice-action,
 * Postgres) with the Twilio and OpenAI Realtime doubles: 50 callers whose model books the same
 * slot at once through the tool path. One booking, 49 refusals the model speaks back.
 * @module
 */
import assert from "node:assert/strict";
import { startCallStack } from "../support/call_stack.ts";
import { watchProcess } from "../support/process_guard.ts";
import { longestDeadAirMs } from "../support/dead_air.ts";
import { findLogLeaks, secretsOf } from "../support/log_leaks.ts";
import { createRandom } from "../support/random.ts";
import { loadFixture } from "../support/audio_fixtures.ts";
import type { ScenarioEntry, SessionRecord } from "../doubles/openai_realtime_double.ts";
import type { CallerStep } from "../doubles/twilio_call_double.ts";
import { nextTuesday } from "../e2e/scenarios.ts";
import { zonedTimeToUtc } from "../../supabase/functions/voice-action/zoned_time.ts";

/** Callers booking the same slot at once. */
const CALLERS = 50;
/**
 * The slot they all want: a Tuesday at 11:00, inside the seed org's hours. On Tuesdays only Sam
 * Ortiz works at the seed's Harbor Dental, so the slot has one provider and one winner.
 */
const SLOT_TIME = "11:00";
const TIME_ZONE = "America/New_York";
const CONFIRMED_TEXT = "You're all set, see you then.";
const REFUSED_TEXT = "Sorry, that time was just taken by someone else. Let me find you another.";
const E2E = { sanitizeOps: false, sanitizeResources: false } as const;

/** What the scripted model says after `book_appointment`, decided by the tool's output. */
function speakBookingResult(session: SessionRecord) {
  const booking = session.functionCalls.findLast((call) => call.name === "book_appointment");
  const output = JSON.parse(booking?.output ?? "{}") as { booked?: boolean; reason?: string };
  const transcript = output.booked === true
    ? CONFIRMED_TEXT
    : output.reason === "slot_taken"
    ? REFUSED_TEXT
    : `Unexpected booking output: ${booking?.output}`;
  return { kind: "assistant_audio" as const, durationMs: 400, transcript };
}

/** Greets, hears the caller confirm, books the contested slot, says how it went, then ends. */
function contentionScenario(date: string, lastName: string): ScenarioEntry[] {
  return [
    { kind: "assistant_audio", durationMs: 300, transcript: "Harbor Dental, how can I help?" },
    { kind: "caller", transcript: "Book me Tuesday at eleven, please." },
    {
      kind: "function_call",
      name: "book_appointment",
      arguments: {
        first_name: "Caller",
        last_name: lastName,
        date,
        time: SLOT_TIME,
        confirmed_by_caller: true,
      },
      then: speakBookingResult,
    },
    { kind: "caller", transcript: "Thanks, bye." },
    {
      kind: "function_call",
      name: "end_call",
      arguments: { reason: "caller said goodbye" },
      then: { kind: "assistant_audio", durationMs: 200, transcript: "Goodbye!" },
    },
    { kind: "end" },
  ];
}

function callerScript(): CallerStep[] {
  return [
    { waitForAgentAudioMs: 200, timeoutMs: 60_000 },
    { waitForAgentSilenceMs: 200, timeoutMs: 60_000 },
    { send: loadFixture("caller_confirm"), label: "asks for the slot" },
    { waitForAgentAudioMs: 300, timeoutMs: 60_000 },
    { waitForAgentSilenceMs: 200, timeoutMs: 60_000 },
    { send: loadFixture("caller_bye"), label: "says goodbye" },
    { silenceMs: 90_000 },
  ];
}

/** Distinct caller numbers from a seeded generator (reproducible). */
function callerNumbers(count: number, seed: number): string[] {
  const random = createRandom(seed);
  const numbers = new Set<string>();
  while (numbers.size < count) {
    numbers.add(`+1555${String(Math.floor(random() * 10_000_000)).padStart(7, "0")}`);
  }
  return [...numbers];
}

Deno.test({
  name: "50 callers booking the same slot through the tool path: one booking, 49 spoken refusals",
  ...E2E,
  async fn() {
    const guard = watchProcess();
    const date = nextTuesday();
    const stack = await startCallStack({
      openai: {
        scenario: (index) => contentionScenario(date, `Number${index}`),
        speedFactor: 4,
      },
      // Every tool call of the 50 waits on the same row: give it time rather than the 4 s default.
      env: { TOOL_TIMEOUT_MS: "60000" },
      maxDbConnections: 20,
    });
    const numbers = callerNumbers(CALLERS, 0xc0ffee);
    try {
      const startedAt = performance.now();
      const handles = numbers.map((from) =>
        stack.startCall({ from, audio: callerScript(), pacing: "realtime", maxCallMs: 90_000 })
      );
      const calls = await Promise.all(handles.map((handle) => handle.result));
      const wallMs = Math.round(performance.now() - startedAt);
      await stack.rest.settled();

      // Every call went to the end without protocol errors, ended by the assistant.
      for (const call of calls) {
        assert.deepEqual(call.protocolErrors, [], `protocol errors on ${call.callSid}`);
        assert.equal(call.endReason, "twiml-hangup", `${call.callSid} ended by the assistant`);
      }
      assert.equal(stack.openai.sessions.length, CALLERS);

      // One booked output, 49 slot_taken refusals, and each spoken back as the next response.
      const outputs = stack.openai.sessions.map((session) => {
        assert.deepEqual(session.errors, [], `error events on session ${session.index}`);
        const booking = session.functionCalls.filter((fc) => fc.name === "book_appointment");
        assert.equal(booking.length, 1, `one booking attempt on session ${session.index}`);
        const output = JSON.parse(booking[0].output ?? "null");
        const spoken = session.responses.find((response) =>
          response.transcript === CONFIRMED_TEXT || response.transcript === REFUSED_TEXT
        );
        assert.ok(spoken, `session ${session.index} spoke the result: ${booking[0].output}`);
        assert.equal(spoken.status, "completed");
        assert.equal(spoken.transcript, output.booked ? CONFIRMED_TEXT : REFUSED_TEXT);
        return output as { booked: boolean; reason?: string; message?: string };
      });
      const booked = outputs.filter((output) => output.booked === true);
      const refused = outputs.filter((output) => output.booked === false);
      assert.equal(booked.length, 1, "exactly one booking succeeded");
      assert.equal(refused.length, CALLERS - 1);
      for (const output of refused) {
        assert.equal(output.reason, "slot_taken");
        assert.match(output.message ?? "", /just taken by someone else/);
      }

      // The database holds one appointment for the slot, and no two booked appointments overlap.
      const sql = stack.db.sql;
      const startsAt = zonedTimeToUtc(date, SLOT_TIME, TIME_ZONE)!.toISOString();
      const [{ count: slotRows }] = await sql`
        select count(*)::int as count from public.appointments where starts_at = ${startsAt}`;
      assert.equal(slotRows, 1, "one appointment row for the contested slot");
      const [{ count: overlaps }] = await sql`
        select count(*)::int as count from public.appointments a
        join public.appointments b on a.id < b.id and a.org_id = b.org_id
          and a.status = 'booked' and b.status = 'booked' and a.during && b.during`;
      assert.equal(overlaps, 0, "no double booking");

      // The callers heard it: every call's transcript holds the spoken result, and the outcomes say
      // one call booked.
      const sids = calls.map((call) => call.callSid);
      const spokenTurns = await sql`
        select c.call_sid, t.text from public.call_turns t join public.calls c on c.id = t.call_id
        where c.call_sid = any(${sids}) and t.speaker = 'assistant'
          and t.text in (${CONFIRMED_TEXT}, ${REFUSED_TEXT})`;
      assert.equal(new Set(spokenTurns.map((row) => row.call_sid)).size, CALLERS);
      assert.equal(spokenTurns.filter((row) => row.text === CONFIRMED_TEXT).length, 1);
      const outcomes = await sql`
        select outcome, count(*)::int as count from public.calls where call_sid = any(${sids})
        group by outcome order by outcome`;
      assert.deepEqual(
        outcomes.map((row) => [row.outcome, row.count]),
        [["booked", 1], ["completed", CALLERS - 1]],
      );

      const toolMs = stack.logs("tool_call")
        .filter((entry) => entry.fn === "voice-action" && entry.name === "book_appointment")
        .map((entry) => Number(entry.ms)).sort((a, b) => a - b);
      const deadAir = calls.map((call) => longestDeadAirMs(call)).sort((a, b) => a - b);
      console.log(
        `contention: ${CALLERS} calls in ${wallMs} ms; book_appointment ms p50 ${
          toolMs[Math.floor(toolMs.length / 2)]
        } max ${toolMs.at(-1)}; longest dead air per call p50 ${
          deadAir[Math.floor(deadAir.length / 2)]
        } ms, max ${deadAir.at(-1)} ms`,
      );

      assert.deepEqual(
        stack.requests.filter((r) => r.error !== null || (r.status ?? 0) >= 500),
        [],
      );
      assert.deepEqual(
        findLogLeaks(stack.logLines, { secrets: secretsOf(stack.env), phoneNumbers: numbers }),
        [],
      );
      assert.equal(guard.rejections.length + guard.errors.length, 0, guard.describe());
    } finally {
      guard.stop();
      await stack.stop();
    }
  },
});
