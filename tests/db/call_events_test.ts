/**
 * Call path RPCs on a real database: idempotent, monotonic call events (replayed and out of
 * order), outcome precedence, transcripts, metrics, get_call and lookup_caller.
 * @module
 */
import assert from "node:assert/strict";
import { createTestDatabase } from "../support/test_db.ts";
import {
  createClient,
  createOrg,
  HARBOR_DENTAL,
  randomCallSid,
  randomPhone,
  rpc,
  startCall,
} from "./fixtures.ts";

interface EventResult {
  inserted: boolean;
  status: string | null;
  outcome: string | null;
  org_id: string | null;
}

Deno.test("call RPCs", async (t) => {
  const db = await createTestDatabase({ seed: true });
  const sql = db.sql;
  // record_call_event(call_sid, key, kind, trace_id, from, to, status, outcome, duration, at)
  const event = (callSid: string, key: string, fields: {
    status?: string | null;
    outcome?: string | null;
    from?: string;
    to?: string;
    durationSeconds?: number;
    occurredAt?: string;
    kind?: string;
  } = {}) =>
    rpc<EventResult>(sql, "record_call_event", [
      callSid,
      key,
      fields.kind ?? "status_callback",
      "trace-1",
      fields.from ?? null,
      fields.to ?? null,
      fields.status ?? null,
      fields.outcome ?? null,
      fields.durationSeconds ?? null,
      fields.occurredAt ?? null,
    ]);
  const appendTurns = async (callSid: string, turns: unknown) =>
    (await sql`select public.append_call_turns(${callSid}, ${JSON.stringify(turns)}::text::jsonb)
      as result`)[0].result;
  const callRow = async (callSid: string) =>
    (await sql`select * from public.calls where call_sid = ${callSid}`)[0];

  try {
    await t.step("record_call_event() creates the call and takes the org from To", async () => {
      const org = await createOrg(sql);
      const callSid = randomCallSid();
      const from = randomPhone();
      const result = await event(callSid, `${callSid}:1`, {
        status: "ringing",
        from,
        to: org.phoneNumber,
      });
      assert.deepEqual(result, {
        inserted: true,
        status: "ringing",
        outcome: null,
        org_id: org.id,
      });
      const call = await callRow(callSid);
      assert.equal(call.from_number, from);
      assert.equal(call.to_number, org.phoneNumber);
      assert.equal(call.trace_id, "trace-1");

      const stray = randomCallSid();
      const unknown = await event(stray, `${stray}:1`, { status: "ringing", to: randomPhone() });
      assert.equal(unknown.org_id, null, "an unknown number still records the call");
    });

    await t.step("record_call_event() changes nothing when a key is replayed", async () => {
      const org = await createOrg(sql);
      const callSid = randomCallSid();
      await event(callSid, "replay-key-" + callSid, { status: "ringing", to: org.phoneNumber });
      const before = await callRow(callSid);
      const replay = await event(callSid, "replay-key-" + callSid, {
        status: "completed",
        outcome: "failed",
      });
      assert.deepEqual(replay, {
        inserted: false,
        status: "ringing",
        outcome: null,
        org_id: org.id,
      });
      const after = await callRow(callSid);
      assert.deepEqual(after, before);
      const [{ count }] = await sql`select count(*)::int as count from public.call_events e
        join public.calls c on c.id = e.call_id where c.call_sid = ${callSid}`;
      assert.equal(count, 1);
    });

    await t.step("record_call_event() never moves the status backwards", async () => {
      const org = await createOrg(sql);
      const callSid = randomCallSid();
      const steps: [string, string][] = [
        ["in-progress", "in-progress"],
        ["ringing", "in-progress"],
        ["completed", "completed"],
        ["ringing", "completed"],
        ["in-progress", "completed"],
        ["busy", "completed"],
        ["failed", "completed"],
      ];
      await event(callSid, `${callSid}:0`, { status: "queued", to: org.phoneNumber });
      for (const [index, [status, expected]] of steps.entries()) {
        const result = await event(callSid, `${callSid}:${index + 1}`, { status });
        assert.equal(result.status, expected, `after ${status}`);
      }
      const call = await callRow(callSid);
      assert.equal(call.outcome, "completed");
      assert.ok(call.answered_at instanceof Date);
      assert.ok(call.ended_at instanceof Date);
    });

    await t.step(
      "record_call_event() sets ended_at and duration on terminal statuses",
      async () => {
        const org = await createOrg(sql);
        const callSid = randomCallSid();
        await event(callSid, `${callSid}:r`, {
          status: "ringing",
          to: org.phoneNumber,
          occurredAt: "2030-01-01T10:00:00Z",
        });
        await event(callSid, `${callSid}:a`, {
          status: "in-progress",
          occurredAt: "2030-01-01T10:00:05Z",
        });
        await event(callSid, `${callSid}:c`, {
          status: "completed",
          occurredAt: "2030-01-01T10:01:35Z",
        });
        let call = await callRow(callSid);
        assert.equal(call.answered_at.toISOString(), "2030-01-01T10:00:05.000Z");
        assert.equal(call.ended_at.toISOString(), "2030-01-01T10:01:35.000Z");
        assert.equal(call.duration_seconds, 90);
        // Twilio's CallDuration, when it arrives, is authoritative.
        await event(callSid, `${callSid}:d`, { status: "completed", durationSeconds: 91 });
        call = await callRow(callSid);
        assert.equal(call.duration_seconds, 91);
        assert.equal(call.ended_at.toISOString(), "2030-01-01T10:01:35.000Z");

        const missed = randomCallSid();
        await event(missed, `${missed}:r`, { status: "ringing", to: org.phoneNumber });
        const result = await event(missed, `${missed}:n`, { status: "no-answer" });
        assert.equal(result.outcome, "missed");
        assert.equal((await callRow(missed)).duration_seconds, null);
      },
    );

    await t.step("record_call_event() keeps a stronger outcome over a weaker one", async () => {
      const org = await createOrg(sql);
      const callSid = randomCallSid();
      await event(callSid, `${callSid}:1`, { status: "in-progress", to: org.phoneNumber });
      assert.equal((await event(callSid, `${callSid}:2`, { outcome: "failed" })).outcome, "failed");
      assert.equal(
        (await event(callSid, `${callSid}:3`, { outcome: "recovered" })).outcome,
        "recovered",
      );
      assert.equal(
        (await event(callSid, `${callSid}:4`, { status: "completed" })).outcome,
        "recovered",
      );
      assert.equal(
        (await event(callSid, `${callSid}:5`, { outcome: "completed" })).outcome,
        "recovered",
      );
      assert.equal(
        (await event(callSid, `${callSid}:6`, { outcome: "booked" })).outcome,
        "booked",
      );
      assert.equal(
        (await event(callSid, `${callSid}:7`, { outcome: "transferred" })).outcome,
        "booked",
      );
      await assert.rejects(event(callSid, `${callSid}:8`, { outcome: "exploded" }), {
        code: "22023",
      });
    });

    await t.step("record_call_event() serializes concurrent first events of one call", async () => {
      const org = await createOrg(sql);
      const callSid = randomCallSid();
      const results = await Promise.all(
        ["ringing", "in-progress", "ringing", "in-progress"].map((status, i) =>
          event(callSid, `${callSid}:${i}`, { status, to: org.phoneNumber })
        ),
      );
      assert.ok(results.every((result) => result.inserted));
      assert.equal((await callRow(callSid)).status, "in-progress");
    });

    await t.step("append_call_turns() inserts each sequence once", async () => {
      const org = await createOrg(sql);
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const turns = [
        {
          sequence: 0,
          speaker: "assistant",
          text: "Hi, how can I help?",
          start_ms: 0,
          end_ms: 900,
        },
        { sequence: 1, speaker: "caller", text: "I need a cleaning.", start_ms: 1200 },
      ];
      assert.equal(await appendTurns(callSid, turns), 2);
      assert.equal(await appendTurns(callSid, turns), 0);
      const more = [turns[1], { sequence: 2, speaker: "assistant", text: "Sure." }];
      assert.equal(await appendTurns(callSid, more), 1);
      assert.equal(await appendTurns(callSid, []), 0);
      const rows = await sql`select t.sequence, t.speaker, t.text, t.start_ms, t.end_ms
        from public.call_turns t join public.calls c on c.id = t.call_id
        where c.call_sid = ${callSid} order by t.sequence`;
      assert.deepEqual(rows.map((row) => row.text), [
        "Hi, how can I help?",
        "I need a cleaning.",
        "Sure.",
      ]);
      assert.equal(rows[0].end_ms, 900);
      await assert.rejects(
        appendTurns(callSid, [{ sequence: 3, speaker: "bot", text: "x" }]),
        { code: "23514" },
      );
      // Turns that arrive before any event still land, on a bare call row.
      const early = randomCallSid();
      assert.equal(await appendTurns(early, turns), 2);
    });

    await t.step(
      "record_call_metrics() adds counters per stream and keeps first timings",
      async () => {
        const org = await createOrg(sql);
        const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
        const metrics = (values: unknown[]) =>
          rpc<boolean>(sql, "record_call_metrics", [callSid, ...values]);
        assert.equal(await metrics([42, 610, 2, 1, 1000, 500, 120.5]), true);
        assert.equal(await metrics([99, 999, 1, 3, 10, 5, 60.25]), true);
        const call = (await sql`select lookup_ms, first_audio_ms, barge_ins, tool_calls,
        model_input_tokens::int as input, model_output_tokens::int as output,
        stream_seconds::float8 as seconds
        from public.calls where call_sid = ${callSid}`)[0];
        assert.deepEqual({ ...call }, {
          lookup_ms: 42,
          first_audio_ms: 610,
          barge_ins: 3,
          tool_calls: 4,
          input: 1010,
          output: 505,
          seconds: 180.75,
        });
        assert.equal(await rpc(sql, "record_call_metrics", [randomCallSid()]), false);
      },
    );

    await t.step("get_call() returns the call with the caller's first name", async () => {
      const org = await createOrg(sql);
      const client = await createClient(sql, org.id, { firstName: "Lin" });
      const callSid = await startCall(sql, { to: org.phoneNumber, from: client.phone });
      assert.deepEqual(await rpc(sql, "get_call", [callSid]), {
        call_sid: callSid,
        org_id: org.id,
        trace_id: null,
        from: client.phone,
        to: org.phoneNumber,
        status: "in-progress",
        outcome: null,
        client_first_name: "Lin",
      });
      assert.equal(await rpc(sql, "get_call", [randomCallSid()]), null);
    });

    await t.step("lookup_caller() greets the seeded Jane Doe by name", async () => {
      const context = await rpc<Record<string, Record<string, unknown>>>(sql, "lookup_caller", [
        HARBOR_DENTAL.phoneNumber,
        HARBOR_DENTAL.janeDoePhone,
      ]);
      assert.equal(context.org.name, "Harbor Dental");
      assert.equal(context.org.timezone, "America/New_York");
      assert.equal(context.org.appointment_minutes, 30);
      assert.equal(context.org.transfer_number, "+15550100999");
      assert.equal(context.org.phone_number, HARBOR_DENTAL.phoneNumber);
      assert.deepEqual(context.org.vad, {
        threshold: 0.6,
        silence_duration_ms: 400,
        prefix_padding_ms: 300,
      });
      assert.equal(context.client.first_name, "Jane");
      assert.equal(context.client.last_name, "Doe");
      assert.equal(
        await rpc(sql, "lookup_caller", [randomPhone(), HARBOR_DENTAL.janeDoePhone]),
        null,
      );
    });

    await t.step("lookup_caller() returns upcoming appointments and the last outcome", async () => {
      const org = await createOrg(sql);
      const caller = randomPhone();
      const stranger = await rpc<Record<string, unknown>>(sql, "lookup_caller", [
        org.phoneNumber,
        caller,
      ]);
      assert.equal(stranger.client, null);
      assert.deepEqual(stranger.upcoming_appointments, []);
      assert.equal(stranger.last_call_outcome, null);

      const first = await startCall(sql, { to: org.phoneNumber, from: caller });
      for (const startsAt of ["2030-03-15T13:00:00Z", "2030-03-12T13:00:00Z"]) {
        await rpc(sql, "book_appointment", [first, "Mo", "Salah", startsAt]);
      }
      await event(first, `${first}:end`, { status: "completed" });
      const second = await startCall(sql, { to: org.phoneNumber, from: caller });
      await event(second, `${second}:fail`, { outcome: "failed" });

      const context = await rpc<Record<string, unknown>>(sql, "lookup_caller", [
        org.phoneNumber,
        caller,
      ]);
      assert.equal((context.client as Record<string, unknown>).first_name, "Mo");
      const upcoming = context.upcoming_appointments as Record<string, string>[];
      assert.deepEqual(upcoming.map((a) => a.starts_at), [
        "2030-03-12T13:00:00.000Z",
        "2030-03-15T13:00:00.000Z",
      ]);
      // The second call has not ended, so the last outcome is the first call's.
      assert.equal(context.last_call_outcome, "booked");
    });
  } finally {
    await db.drop();
  }
});
