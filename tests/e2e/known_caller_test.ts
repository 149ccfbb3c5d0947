import assert from "node:assert/strict";
import { JANE_DOE_NUMBER, startCallStack } from "../support/call_stack.ts";
import { bookingCallerScript, bookingScenario, nextTuesday } from "./scenarios.ts";

Deno.test({
  name:
    "a known caller is greeted by name, interrupts, books with another provider on a day her preferred one is off, and hangs up",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const date = nextTuesday();
    const e2e = await startCallStack({
      openai: { scenario: bookingScenario(date), speedFactor: 8 },
    });
    try {
      const call = await e2e.placeCall({
        from: JANE_DOE_NUMBER,
        audio: bookingCallerScript(),
        pacing: "realtime",
        maxCallMs: 60_000,
      });
      const session = e2e.openai.sessions[0];
      // The caller's record reached the model as data, with the tools and GA audio formats.
      const update = session.sessionUpdates[0] as {
        instructions: string;
        audio: { input: { format: unknown }; output: { format: unknown } };
        tools: { name: string }[];
      };
      assert.match(update.instructions, /<caller_record>[\s\S]*"caller_first_name": "Jane"/);
      assert.deepEqual(update.audio.input.format, { type: "audio/pcmu" });
      assert.deepEqual(update.audio.output.format, { type: "audio/pcmu" });
      const toolNames = update.tools.map((tool) => tool.name).sort();
      assert.deepEqual(toolNames, [
        "book_appointment",
        "cancel_appointment",
        "check_availability",
        "end_call",
        "reschedule_appointment",
        "transfer_to_human",
      ]);
      assert.deepEqual(session.errors, [], "the bridge spoke the GA protocol without errors");
      assert.equal(
        session.responses[0].transcript,
        "Hi Jane, thanks for calling Harbor Dental. How can I help you today?",
      );
      // She interrupted the greeting: Twilio was cleared and the item truncated where she was.
      assert.equal(call.clears.length, 1);
      assert.equal(session.truncations.length, 1);
      const truncation = session.truncations[0];
      const heard = call.clears[0].playedMsAtClear;
      assert.ok(
        Math.abs(truncation.audio_end_ms - heard) <= 50,
        `truncated at ${truncation.audio_end_ms} ms, caller heard ${heard} ms`,
      );
      // Her speech reached the model and the tools ran against the database.
      assert.ok(session.userTurns.length >= 3, `user turns: ${session.userTurns.length}`);
      // Her preferred provider, Dr. Lee, is off on Tuesdays: the tool offered Sam Ortiz instead.
      const check = session.functionCalls.find((fc) => fc.name === "check_availability");
      const offered = JSON.parse(check?.output ?? "{}");
      assert.equal(offered.available, false, check?.output ?? "no output");
      assert.equal(offered.provider, "Dr. Lee");
      assert.match(offered.message, /Dr\. Lee has no free times for Cleaning/);
      const tenOClock = offered.other_providers.slots.find((slot: { time: string }) =>
        slot.time === "10:00"
      );
      assert.deepEqual(tenOClock?.providers, ["Sam Ortiz"]);
      const booking = session.functionCalls.find((fc) => fc.name === "book_appointment");
      const output = JSON.parse(booking?.output ?? "{}");
      assert.equal(output.booked, true, booking?.output ?? "no output");
      assert.equal(output.provider, "Sam Ortiz");
      assert.match(output.say, /your cleaning with Sam Ortiz is on Tuesday/);
      const sql = e2e.db.sql;
      const [appointment] = await sql`
        select a.confirmation_code, c.first_name, c.last_name, p.name as provider, s.name as service
        from public.appointments a join public.clients c on c.id = a.client_id
        join public.providers p on p.id = a.provider_id
        join public.services s on s.id = a.service_id
        where a.status = 'booked' and c.phone = ${JANE_DOE_NUMBER}
        order by a.created_at desc limit 1`;
      assert.equal(appointment.first_name, "Jane");
      assert.equal(appointment.provider, "Sam Ortiz");
      assert.equal(appointment.service, "Cleaning");
      assert.equal(output.confirmation_code, appointment.confirmation_code);
      // The assistant ended the call after its goodbye: the stream closed and Twilio hung up.
      assert.match(call.finalTwiml ?? "", /<Hangup\s*\/>/);
      await e2e.rest.settled();
      const [row] = await sql`
        select status, outcome, trace_id, barge_ins, tool_calls, first_audio_ms, lookup_ms
        from public.calls where call_sid = ${call.callSid}`;
      assert.equal(row.outcome, "booked");
      assert.equal(row.barge_ins, 1);
      assert.equal(row.tool_calls, 3);
      assert.ok(row.first_audio_ms !== null && row.lookup_ms !== null);
      const turns = await sql`
        select sequence, speaker, text from public.call_turns t join public.calls c on c.id = t.call_id
        where c.call_sid = ${call.callSid} order by sequence`;
      assert.ok(turns.length >= 6, `turns: ${turns.length}`);
      assert.ok(
        turns.some((turn) => turn.speaker === "caller" && /Tuesday at ten/.test(turn.text)),
      );
      // The confirmation SMS went out with the code.
      const sms = e2e.rest.messages.filter((message) => message.to === JANE_DOE_NUMBER);
      assert.equal(sms.length, 1);
      assert.match(sms[0].body, new RegExp(appointment.confirmation_code));
      assert.match(sms[0].body, /your Cleaning with Sam Ortiz at Harbor Dental/);
      // Operators can follow the call by its traceId across the three functions.
      const traceId = row.trace_id as string;
      const lines = e2e.logs().filter((entry) => entry.traceId === traceId);
      const events = new Set(lines.map((entry) => entry.event));
      for (
        const event of [
          "call_incoming",
          "call_started",
          "client_identified",
          "greeting_triggered",
          "barge_in",
          "tool_call",
          "call_ended",
        ]
      ) {
        assert.ok(events.has(event), `missing ${event}`);
      }
      assert.deepEqual(
        new Set(lines.map((entry) => entry.fn)),
        new Set(["voice-frontdoor", "voice-stream", "voice-action"]),
      );
      assert.ok(!e2e.logLines.join("\n").includes("5551230001"), "no full phone number in logs");
    } finally {
      await e2e.stop();
    }
  },
});
