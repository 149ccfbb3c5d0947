/**
 * voice-action end to end on a real database (migrations + seed) with the Twilio REST double:
 * Twilio-signed callbacks sent as Twilio sends them (with the `#rc=3&rp=all` retry overrides),
 * internal requests signed by `callVoiceAction`, texts and call updates observed at the double.
 * @module
 */
import assert from "node:assert/strict";
import { XMLParser } from "fast-xml-parser";
import { serveFunctions } from "../scripts/functions_router.ts";
import { createMemoryLogger } from "../supabase/functions/_shared/log.ts";
import { createPostgresStore } from "../supabase/functions/_shared/store/postgres_store.ts";
import {
  type CallControlRequest,
  callVoiceAction,
  type ToolCallRequest,
} from "../supabase/functions/_shared/tools/protocol.ts";
import { createTwilioRestClient } from "../supabase/functions/_shared/twilio/rest_client.ts";
import {
  createVoiceActionHandler,
  voiceActionUrls,
} from "../supabase/functions/voice-action/handler.ts";
import {
  addDays,
  toLocalDateTime,
  zonedTimeToUtc,
} from "../supabase/functions/voice-action/zoned_time.ts";
import { HARBOR_DENTAL, randomCallSid, randomPhone } from "./db/fixtures.ts";
import {
  sendTwilioWebhook,
  startTwilioRestDouble,
  type TwilioCallUpdate,
  type TwilioLiveCall,
} from "./doubles/twilio_rest_double.ts";
import { createTestDatabase } from "./support/test_db.ts";

const ACCOUNT_SID = "AC" + "1".repeat(32);
const AUTH_TOKEN = "a".repeat(32);
const SECRET = "s".repeat(40);
const PUBLIC_BASE = "https://project.supabase.co/functions/v1";
const URLS = voiceActionUrls({ publicFunctionsUrl: PUBLIC_BASE });
const ORG_NUMBER = HARBOR_DENTAL.phoneNumber;
const TIME_ZONE = "America/New_York";

const xml = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  parseTagValue: false,
});

/** The first weekday at least `minDays` after today, New York time. */
function nextWeekday(minDays: number, skipTuesday = false): string {
  let day = addDays(toLocalDateTime(Date.now(), TIME_ZONE).date, minDays);
  for (;;) {
    const weekday = new Date(`${day}T12:00:00Z`).getUTCDay();
    if (weekday >= 1 && weekday <= 5 && !(skipTuesday && weekday === 2)) return day;
    day = addDays(day, 1);
  }
}

/** A live call at the double that records the updates it receives. */
function liveCall(callSid: string, from: string): TwilioLiveCall & { updates: TwilioCallUpdate[] } {
  const updates: TwilioCallUpdate[] = [];
  return {
    callSid,
    from,
    to: ORG_NUMBER,
    direction: "inbound",
    updates,
    callParams: () => ({
      AccountSid: ACCOUNT_SID,
      ApiVersion: "2010-04-01",
      CallSid: callSid,
      Direction: "inbound",
      From: from,
      To: ORG_NUMBER,
    }),
    applyUpdate: (update) => updates.push(update),
  };
}

Deno.test("voice-action on Postgres with the Twilio REST double", async (t) => {
  const db = await createTestDatabase({ seed: true });
  const store = createPostgresStore(db.url, { maxConnections: 8 });
  const memory = createMemoryLogger("voice-action", "info");
  let toLocal = (url: string) => url;
  const double = startTwilioRestDouble({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    // Message status callbacks go to our public URL: route them to the local server.
    rewriteUrl: (url) => toLocal(url),
    // Leaves time to store the Message SID before its first status callback arrives.
    smsSentDelayMs: 100,
  });
  const background = new Set<Promise<unknown>>();
  const handler = createVoiceActionHandler({
    config: {
      publicFunctionsUrl: PUBLIC_BASE,
      twilioAuthToken: AUTH_TOKEN,
      twilioAccountSid: ACCOUNT_SID,
      internalSecret: SECRET,
    },
    log: memory.logger,
    clock: Date.now,
    store,
    twilio: createTwilioRestClient({
      baseUrl: double.baseUrl,
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
      log: memory.logger,
      // Real backoff is 250-1000 ms; a few ms keeps the suite fast with the same retry logic.
      sleep: () => new Promise((resolve) => setTimeout(resolve, 2)),
    }),
    waitUntil: (promise) => {
      background.add(promise);
      promise.finally(() => background.delete(promise));
    },
  });
  const server = serveFunctions({ "voice-action": handler }, { port: 0 });
  const localBase = `http://127.0.0.1:${server.addr.port}/functions/v1`;
  toLocal = (url: string) => url.replace(PUBLIC_BASE, localBase);

  const settle = async () => {
    while (background.size > 0) await Promise.allSettled([...background]);
  };
  const startCall = async (from = randomPhone(), callSid = randomCallSid()) => {
    await store.recordCallEvent({
      callSid,
      idempotencyKey: `incoming:${callSid}`,
      kind: "call_incoming",
      traceId: crypto.randomUUID(),
      from,
      to: ORG_NUMBER,
      status: "ringing",
    });
    return { callSid, from };
  };
  const statusCallback = (
    callSid: string,
    from: string,
    status: string,
    extra: Record<string, string> = {},
  ) =>
    sendTwilioWebhook({
      publicUrl: URLS.callStatus,
      params: {
        AccountSid: ACCOUNT_SID,
        ApiVersion: "2010-04-01",
        CallSid: callSid,
        CallStatus: status,
        Direction: "inbound",
        From: from,
        To: ORG_NUMBER,
        ...extra,
      },
      signingToken: AUTH_TOKEN,
      rewriteUrl: toLocal,
      retryDelayMs: 5,
    });
  const internal = <R extends ToolCallRequest | CallControlRequest>(body: R) =>
    callVoiceAction(fetch, `${localBase}/voice-action`, SECRET, body, {
      timeoutMs: 10_000,
      nowMs: Date.now(),
    });
  const callRow = async (callSid: string) =>
    (await db.sql`select status, outcome from public.calls where call_sid = ${callSid}`)[0];
  const smsRows = async (callSid: string) =>
    await db.sql`
      select s.kind, s.status, s.message_sid, s.error_code, s.body
      from public.sms_messages s join public.calls c on c.id = s.call_id
      where c.call_sid = ${callSid}
    `;
  const messagesTo = (phone: string) => double.messages.filter((message) => message.to === phone);

  try {
    await t.step("replayed and out-of-order status callbacks never move a call back", async () => {
      const { callSid, from } = await startCall();
      const completed = await statusCallback(callSid, from, "completed", {
        SequenceNumber: "2",
        CallDuration: "31",
      });
      assert.equal(completed.status, 204);
      assert.equal(
        (await statusCallback(callSid, from, "in-progress", { SequenceNumber: "1" })).status,
        204,
      );
      assert.equal(
        (await statusCallback(callSid, from, "completed", {
          SequenceNumber: "2",
          CallDuration: "31",
        })).status,
        204,
      );
      assert.deepEqual({ ...(await callRow(callSid)) }, {
        status: "completed",
        outcome: "completed",
      });
      const events = await db.sql`
        select count(*)::int as n from public.call_events e join public.calls c on c.id = e.call_id
        where c.call_sid = ${callSid} and e.kind = 'status_callback'
      `;
      assert.equal(events[0].n, 2);
      await settle();
      assert.equal(messagesTo(from).length, 0, "a normal call gets no text");
    });

    await t.step("50 concurrent duplicate failed callbacks send exactly one text", async () => {
      const { callSid, from } = await startCall();
      const deliveries = await Promise.all(
        Array.from(
          { length: 50 },
          () => statusCallback(callSid, from, "failed", { SequenceNumber: "0" }),
        ),
      );
      assert.ok(deliveries.every((delivery) => delivery.status === 204));
      await settle();
      const messages = messagesTo(from);
      assert.equal(messages.length, 1);
      assert.equal(messages[0].from, ORG_NUMBER);
      assert.equal(
        messages[0].body,
        "Hi there, this is Harbor Dental. Sorry we got cut off! Call us back any time, or reply with a good time to reach you.",
      );
      assert.equal(messages[0].statusCallback, URLS.smsStatus);
      const [row] = await smsRows(callSid);
      assert.equal(row.message_sid, messages[0].sid);
      assert.equal((await callRow(callSid)).outcome, "recovered");
    });

    await t.step("message status callbacks move the text to delivered", async () => {
      const { callSid, from } = await startCall();
      await statusCallback(callSid, from, "no-answer");
      await settle();
      // The double reports sent, then delivered, signed, to our sms-status route.
      await double.settled();
      const callbacks = double.statusCallbacks.filter((callback) =>
        callback.kind === "message" && callback.sid === messagesTo(from)[0].sid
      );
      assert.deepEqual(callbacks.map((callback) => [callback.status, callback.delivery.status]), [
        ["sent", 204],
        ["delivered", 204],
      ]);
      assert.equal((await smsRows(callSid))[0].status, "delivered");
    });

    await t.step(
      "a text survives Twilio 5xx answers and is stored as failed when they persist",
      async () => {
        const first = await startCall();
        double.injectFailures({ path: "Messages.json", status: 500, count: 2 });
        await statusCallback(first.callSid, first.from, "busy");
        await settle();
        assert.equal(messagesTo(first.from).length, 1);
        const attempts = double.requests.filter((request) =>
          request.path.endsWith("/Messages.json") && request.params.To === first.from
        );
        assert.deepEqual(attempts.map((request) => request.status), [500, 500, 201]);
        assert.equal((await smsRows(first.callSid))[0].status, "queued");

        const second = await startCall();
        double.injectFailures({ path: "Messages.json", status: 503, count: 4 });
        await statusCallback(second.callSid, second.from, "busy");
        await settle();
        assert.equal(messagesTo(second.from).length, 0);
        const [row] = await smsRows(second.callSid);
        assert.deepEqual([row.status, row.error_code], ["failed", "20500"]);
        assert.equal((await callRow(second.callSid)).outcome, "missed");
      },
    );

    await t.step("an opted-out caller gets no text", async () => {
      const { callSid, from } = await startCall();
      await db
        .sql`insert into public.sms_opt_outs (org_id, phone) values (${HARBOR_DENTAL.id}, ${from})`;
      await statusCallback(callSid, from, "no-answer");
      await settle();
      assert.equal(messagesTo(from).length, 0);
      assert.equal((await smsRows(callSid)).length, 0);
    });

    await t.step(
      "a dropped stream gets the apology and voicemail, then the recovery text",
      async () => {
        const { callSid, from } = await startCall();
        const action = await sendTwilioWebhook({
          publicUrl: URLS.connectAction,
          params: {
            AccountSid: ACCOUNT_SID,
            CallSid: callSid,
            CallStatus: "in-progress",
            From: from,
            To: ORG_NUMBER,
          },
          signingToken: AUTH_TOKEN,
          rewriteUrl: toLocal,
        });
        const doc = xml.parse(action.body).Response;
        assert.deepEqual(Object.keys(doc), ["Say", "Record", "Hangup"]);
        assert.equal(doc.Record["@action"], URLS.voicemail);
        await statusCallback(callSid, from, "completed");
        await settle();
        assert.equal(messagesTo(from).length, 1);
      },
    );

    await t.step(
      "20 concurrent bookings of one hour with two providers: two booked, the rest slot_taken",
      async () => {
        // Dr. Lee and Sam Ortiz both offer cleanings on every weekday but Tuesday.
        const date = nextWeekday(2, true);
        const calls = await Promise.all(Array.from({ length: 20 }, () => startCall()));
        const results = await Promise.all(calls.map(({ callSid }, index) =>
          internal({
            type: "tool_call",
            callSid,
            traceId: `trace-${index}`,
            callId: `call_${index}`,
            name: "book_appointment",
            arguments: JSON.stringify({
              first_name: "Caller",
              last_name: `Number${index}`,
              date,
              time: "10:00",
              confirmed_by_caller: true,
            }),
          })
        ));
        const outputs = results.map((result) => {
          assert.equal(result.ok, true);
          return result.ok ? result.response.output : {};
        });
        const booked = outputs.filter((output) => output.booked === true);
        const taken = outputs.filter((output) => output.reason === "slot_taken");
        assert.deepEqual(booked.map((output) => output.provider).sort(), ["Dr. Lee", "Sam Ortiz"]);
        assert.equal(taken.length, 18);
        assert.match(String(taken[0].message), /just taken/);
        assert.match(
          String(booked[0].say),
          /confirmation code is ([ACDEFHJKMNPRTUVWXY346789], ){5}[ACDEFHJKMNPRTUVWXY346789]\./,
        );
        const rows = await db.sql`
        select starts_at from public.appointments where org_id = ${HARBOR_DENTAL.id} and status = 'booked'
      `;
        assert.equal(rows.length, 2);
        assert.equal(
          rows[0].starts_at.toISOString(),
          zonedTimeToUtc(date, "10:00", TIME_ZONE)!.toISOString(),
        );
        await settle();
        // The winner's confirmation text carries the code, from the org's template.
        const winner = calls[outputs.findIndex((output) => output.booked === true)];
        const [text] = messagesTo(winner.from);
        assert.match(
          text.body,
          new RegExp(`Confirmation code: ${booked[0].confirmation_code}\\.$`),
        );
      },
    );

    await t.step(
      "check_availability and book_appointment agree with the database's slots",
      async () => {
        const { callSid } = await startCall(HARBOR_DENTAL.janeDoePhone);
        const date = nextWeekday(3);
        const checked = await internal({
          type: "tool_call",
          callSid,
          traceId: "trace-a",
          callId: "call_check",
          name: "check_availability",
          arguments: JSON.stringify({ date, after: "16:00" }),
        });
        assert.ok(checked.ok);
        const output = checked.ok ? checked.response.output : {};
        assert.deepEqual((output.slots as { time: string }[]).map((slot) => slot.time), [
          "16:00",
          "16:30",
        ]);
        assert.equal(checked.ok && checked.response.bookingInProgress, true);
        const booked = await internal({
          type: "tool_call",
          callSid,
          traceId: "trace-a",
          callId: "call_book",
          name: "book_appointment",
          arguments: JSON.stringify({
            first_name: "Jane",
            last_name: "Doe",
            date,
            time: "16:30",
            confirmed_by_caller: true,
          }),
        });
        assert.equal(booked.ok && booked.response.output.booked, true);
        assert.equal((await callRow(callSid)).outcome, "booked");
        const bad = await internal({
          type: "tool_call",
          callSid,
          traceId: "trace-a",
          callId: "call_bad",
          name: "book_appointment",
          arguments: JSON.stringify({ first_name: "Jane", date, time: "4:30 PM" }),
        });
        assert.equal(!bad.ok && bad.failure === "http" && bad.status, 422);
        assert.match(!bad.ok ? bad.error : "", /time must be a time written HH:MM/);
        await settle();
        const counted = await db.sql`
        select count(*)::int as n from public.call_events e join public.calls c on c.id = e.call_id
        where c.call_sid = ${callSid} and e.kind = 'tool_call'
      `;
        assert.equal(counted[0].n, 3);
      },
    );

    await t.step("zonedTimeToUtc() resolves DST edges as Postgres does", async () => {
      for (
        const [date, time] of [["2026-11-01", "01:30"], ["2026-03-08", "03:00"], [
          "2026-07-01",
          "09:00",
        ]]
      ) {
        const [row] = await db.sql`
          select (${`${date} ${time}`}::timestamp at time zone ${TIME_ZONE}) as at
        `;
        assert.equal(
          zonedTimeToUtc(date, time, TIME_ZONE)!.toISOString(),
          row.at.toISOString(),
          `${date} ${time}`,
        );
      }
    });

    await t.step(
      "transfer updates the live call at the double with <Dial> to the transfer number",
      async () => {
        const { callSid, from } = await startCall();
        const call = liveCall(callSid, from);
        double.registerCall(call);
        const result = await internal({
          type: "call_control",
          callSid,
          traceId: "trace-t",
          action: "transfer",
          reason: "caller asked for a person",
        });
        assert.deepEqual(result.ok && result.response, {
          ok: true,
          action: "transfer",
          result: "done",
        });
        assert.equal(call.updates.length, 1);
        const doc = xml.parse(call.updates[0].twiml!).Response;
        assert.equal(doc.Say, "Connecting you now.");
        assert.equal(doc.Dial["@callerId"], ORG_NUMBER);
        assert.equal(doc.Dial.Number, "+15550100999");
        assert.equal((await callRow(callSid)).outcome, "transferred");
      },
    );

    await t.step("an emergency transfers at once from the tool call", async () => {
      const { callSid, from } = await startCall();
      const call = liveCall(callSid, from);
      double.registerCall(call);
      const result = await internal({
        type: "tool_call",
        callSid,
        traceId: "trace-e",
        callId: "call_e",
        name: "transfer_to_human",
        arguments: JSON.stringify({
          reason: "pain",
          caller_words: "I'm in severe pain and my face is swelling",
        }),
      });
      assert.equal(result.ok && result.response.effect, null);
      assert.equal(call.updates.length, 1);
      assert.equal(xml.parse(call.updates[0].twiml!).Response.Dial.Number, "+15550100999");
    });

    await t.step("hanging up a call that already ended is not an error", async () => {
      const { callSid } = await startCall();
      const result = await internal({
        type: "call_control",
        callSid,
        traceId: "trace-h",
        action: "hangup",
        reason: "done",
      });
      assert.deepEqual(result.ok && result.response, {
        ok: true,
        action: "hangup",
        result: "call_ended",
      });
    });

    await t.step("a hang-up in the middle of booking gets the recovery text", async () => {
      const { callSid, from } = await startCall();
      await statusCallback(callSid, from, "completed");
      const reported = await internal({
        type: "call_control",
        callSid,
        traceId: "trace-m",
        action: "stream_ended",
        reason: "caller_hung_up",
        bookingInProgress: true,
      });
      assert.equal(reported.ok && reported.response.abnormal, true);
      await settle();
      assert.equal(messagesTo(from).length, 1);
    });
  } finally {
    await settle();
    await double.close();
    await server.shutdown();
    await store.close();
    await db.drop();
  }
});
