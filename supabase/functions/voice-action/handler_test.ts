import assert from "node:assert/strict";
import twilio from "twilio";
import { XMLParser } from "fast-xml-parser";
import { createMemoryLogger } from "../_shared/log.ts";
import { signInternalRequest, verifyStreamToken } from "../_shared/internal_auth.ts";
import type {
  CallAlreadyEnded,
  CallUpdate,
  CallUpdated,
  SmsRequest,
  SmsSent,
  TwilioRestClient,
  TwilioRestFailure,
} from "../_shared/twilio/rest_client.ts";
import { callVoiceAction, streamEndKey } from "../_shared/tools/protocol.ts";
import { createFakeStore, type FakeStore } from "../../../tests/support/fake_store.ts";
import { createVoiceActionHandler, type VoiceActionDeps, voiceActionUrls } from "./handler.ts";
import ICAL from "ical.js";
import { calendarFeedUrl, feedTokenSha256 } from "./calendar.ts";

const AUTH_TOKEN = "12345678901234567890123456789012";
const ACCOUNT_SID = "AC" + "1".repeat(32);
const CALL_SID = "CA" + "a".repeat(32);
const OTHER_CALL_SID = "CA" + "b".repeat(32);
const SECRET = "s".repeat(40);
const PUBLIC_BASE = "https://abc.supabase.co/functions/v1";
const PUBLIC_URL = `${PUBLIC_BASE}/voice-action`;
// What hosted Supabase shows the handler instead of the public URL.
const INTERNAL_URL = "http://edge-runtime.supabase.internal:9000/voice-action";
// Monday, November 23, 2026, 12:00 in New York.
const NOW = Date.UTC(2026, 10, 23, 17, 0, 0);
const URLS = voiceActionUrls({ publicFunctionsUrl: PUBLIC_BASE });

interface FakeTwilio extends Pick<TwilioRestClient, "sendSms" | "updateCall"> {
  sent: SmsRequest[];
  updates: { callSid: string; update: CallUpdate }[];
  smsResults: (SmsSent | TwilioRestFailure)[];
  updateResults: (CallUpdated | CallAlreadyEnded | TwilioRestFailure)[];
}

function createFakeTwilio(): FakeTwilio {
  const fake: FakeTwilio = {
    sent: [],
    updates: [],
    smsResults: [],
    updateResults: [],
    sendSms(message) {
      fake.sent.push(message);
      return Promise.resolve(
        fake.smsResults.shift() ??
          {
            ok: true,
            messageSid: "SM" + String(fake.sent.length).padStart(32, "0"),
            status: "queued",
            attempts: 1,
          },
      );
    },
    updateCall(callSid, update) {
      fake.updates.push({ callSid, update });
      return Promise.resolve(
        fake.updateResults.shift() ?? { ok: true, status: "in-progress", attempts: 1 },
      );
    },
  };
  return fake;
}

function setup(overrides: Partial<VoiceActionDeps> = {}) {
  const memory = createMemoryLogger("voice-action");
  const store: FakeStore = createFakeStore(() => NOW);
  const fakeTwilio = createFakeTwilio();
  const background: Promise<unknown>[] = [];
  const handler = createVoiceActionHandler({
    config: {
      publicFunctionsUrl: PUBLIC_BASE,
      twilioAuthToken: AUTH_TOKEN,
      twilioAccountSid: ACCOUNT_SID,
      internalSecret: SECRET,
    },
    log: memory.logger,
    clock: () => NOW,
    store,
    twilio: fakeTwilio,
    waitUntil: (promise) => background.push(promise),
    ...overrides,
  });
  /** Waits for background work, including work that background work started. */
  const settle = async () => {
    for (let done = 0; done < background.length;) {
      const batch = background.slice(done);
      done = background.length;
      await Promise.all(batch);
    }
  };
  return { handler, memory, store, twilio: fakeTwilio, settle };
}

function twilioRequest(
  route: string | null,
  params: Record<string, string>,
  options: { signUrl?: string; token?: string; signature?: string | null } = {},
): Request {
  const query = route === null ? "" : `?route=${route}`;
  const signature = options.signature === undefined
    ? twilio.getExpectedTwilioSignature(
      options.token ?? AUTH_TOKEN,
      (options.signUrl ?? PUBLIC_URL) + query,
      params,
    )
    : options.signature;
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
  if (signature !== null) headers["x-twilio-signature"] = signature;
  return new Request(INTERNAL_URL + query, {
    method: "POST",
    headers,
    body: new URLSearchParams(params).toString(),
  });
}

function statusParams(
  status: string,
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    AccountSid: ACCOUNT_SID,
    ApiVersion: "2010-04-01",
    CallSid: CALL_SID,
    CallStatus: status,
    Direction: "inbound",
    From: "+15551230001",
    To: "+15550100000",
    CallbackSource: "call-progress-events",
    Timestamp: "Mon, 23 Nov 2026 17:05:00 +0000",
    ...overrides,
  };
}

async function internalRequest(
  body: unknown,
  options: { secret?: string; nowMs?: number; raw?: string; headers?: Record<string, string> } = {},
): Promise<Request> {
  const text = options.raw ?? JSON.stringify(body);
  const signed = await signInternalRequest(options.secret ?? SECRET, text, options.nowMs ?? NOW);
  return new Request(INTERNAL_URL, {
    method: "POST",
    headers: { "content-type": "application/json", ...signed, ...options.headers },
    body: text,
  });
}

function toolCall(name: string, args: unknown, callId = "call_1") {
  return internalRequest({
    type: "tool_call",
    callSid: CALL_SID,
    traceId: "trace-1",
    callId,
    name,
    arguments: typeof args === "string" ? args : JSON.stringify(args),
  });
}

function control(action: string, extra: Record<string, unknown> = {}) {
  return internalRequest({
    type: "call_control",
    callSid: CALL_SID,
    traceId: "trace-1",
    action,
    reason: "test",
    ...extra,
  });
}

const xml = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  parseAttributeValue: false,
  parseTagValue: false,
});

async function twimlOf(response: Response): Promise<Record<string, unknown>> {
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /text\/xml/);
  return xml.parse(await response.text()).Response;
}

// ---------------------------------------------------------------------------------------------
// Classification and rejections
// ---------------------------------------------------------------------------------------------

Deno.test("createVoiceActionHandler() refuses other methods, unknown routes and unroutable bodies", async () => {
  const { handler, memory } = setup();
  const get = await handler(new Request(INTERNAL_URL + "?route=call-status"));
  assert.equal(get.status, 405);
  const unknown = await handler(twilioRequest("status", statusParams("completed")));
  assert.equal(unknown.status, 400);
  assert.match(
    await unknown.text(),
    /route=.*call-status, connect-action, sms-status, recording, voicemail/,
  );
  const noRoute = await handler(twilioRequest(null, statusParams("completed")));
  assert.equal(noRoute.status, 400);
  const text = await handler(new Request(INTERNAL_URL, { method: "POST", body: "hello" }));
  assert.equal(text.status, 400);
  assert.equal(memory.entries("request_rejected").length, 3);
});

Deno.test("createVoiceActionHandler() refuses unsigned, mis-signed and foreign Twilio callbacks with 403", async () => {
  const cases: [string, () => Request, string][] = [
    [
      "unsigned",
      () => twilioRequest("call-status", statusParams("completed"), { signature: null }),
      "signature_missing",
    ],
    [
      "wrong token",
      () => twilioRequest("call-status", statusParams("completed"), { token: "other" }),
      "signature_mismatch",
    ],
    [
      "internal url",
      () => twilioRequest("call-status", statusParams("completed"), { signUrl: INTERNAL_URL }),
      "signature_mismatch",
    ],
    ["other route", () => {
      const signed = twilioRequest("sms-status", statusParams("completed"));
      return new Request(INTERNAL_URL + "?route=call-status", {
        method: "POST",
        headers: signed.headers,
        body: signed.body,
      });
    }, "signature_mismatch"],
    [
      "account",
      () =>
        twilioRequest(
          "call-status",
          statusParams("completed", { AccountSid: "AC" + "2".repeat(32) }),
        ),
      "account_mismatch",
    ],
  ];
  for (const [name, make, reason] of cases) {
    const { handler, memory, store } = setup();
    const response = await handler(make());
    assert.equal(response.status, 403, name);
    assert.equal(store.events.size, 0, name);
    const [line] = memory.entries("security_rejected");
    assert.equal(line?.reason, reason, name);
  }
});

Deno.test("createVoiceActionHandler() refuses internal requests without a valid fresh HMAC with 401", async () => {
  const body = {
    type: "call_control",
    callSid: CALL_SID,
    traceId: "t",
    action: "hangup",
    reason: "x",
  };
  const cases: [string, () => Promise<Request>, string][] = [
    ["missing", () =>
      Promise.resolve(
        new Request(INTERNAL_URL, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        }),
      ), "internal_missing"],
    ["wrong secret", () => internalRequest(body, { secret: "x".repeat(40) }), "internal_mismatch"],
    ["stale", () => internalRequest(body, { nowMs: NOW - 61_000 }), "internal_stale"],
    ["future", () => internalRequest(body, { nowMs: NOW + 61_000 }), "internal_stale"],
    ["tampered", async () => {
      const signed = await internalRequest(body);
      return new Request(INTERNAL_URL, {
        method: "POST",
        headers: signed.headers,
        body: JSON.stringify({ ...body, action: "transfer" }),
      });
    }, "internal_mismatch"],
  ];
  for (const [name, make, reason] of cases) {
    const { handler, memory, twilio } = setup();
    const response = await handler(await make());
    assert.equal(response.status, 401, name);
    assert.deepEqual(await response.json(), { ok: false, error: "Unauthorized" }, name);
    assert.equal(memory.entries("security_rejected")[0]?.reason, reason, name);
    assert.equal(twilio.updates.length, 0, name);
  }
});

Deno.test("createVoiceActionHandler() answers 400 to signed internal requests that are not valid JSON requests", async () => {
  const { handler } = setup();
  const malformed = await handler(await internalRequest(null, { raw: "{not json" }));
  assert.equal(malformed.status, 400);
  assert.deepEqual(await malformed.json(), { ok: false, error: "Malformed JSON body" });
  const wrongType = await handler(await internalRequest({ type: "dance", callSid: CALL_SID }));
  assert.equal(wrongType.status, 400);
  assert.match((await wrongType.json()).error, /type/);
  const badSid = await handler(
    await internalRequest({
      type: "tool_call",
      callSid: "CA123",
      traceId: "t",
      callId: "c",
      name: "end_call",
      arguments: "{}",
    }),
  );
  assert.equal(badSid.status, 400);
  assert.match((await badSid.json()).error, /callSid/);
});

// ---------------------------------------------------------------------------------------------
// Status callbacks and recovery texts
// ---------------------------------------------------------------------------------------------

Deno.test("call-status records the event idempotently and a replay changes nothing", async () => {
  const { handler, store, memory } = setup();
  const params = statusParams("completed", { CallDuration: "42", SequenceNumber: "3" });
  assert.equal((await handler(twilioRequest("call-status", params))).status, 204);
  assert.equal((await handler(twilioRequest("call-status", params))).status, 204);
  assert.equal(store.events.size, 1);
  const [event] = store.events.values();
  assert.deepEqual(
    {
      key: event.idempotencyKey,
      kind: event.kind,
      status: event.status,
      durationSeconds: event.durationSeconds,
      from: event.from,
      occurredAt: event.occurredAt,
    },
    {
      key: `status:${CALL_SID}:completed:3`,
      kind: "status_callback",
      status: "completed",
      durationSeconds: 42,
      from: "+15551230001",
      occurredAt: "2026-11-23T17:05:00.000Z",
    },
  );
  const lines = memory.entries("call_status");
  assert.deepEqual(lines.map((line) => line.replay), [false, true]);
  assert.equal(lines[0].callSid, CALL_SID);
});

Deno.test("call-status never moves a call back when callbacks arrive out of order", async () => {
  const { handler, store } = setup();
  await handler(twilioRequest("call-status", statusParams("completed", { SequenceNumber: "2" })));
  await handler(twilioRequest("call-status", statusParams("in-progress", { SequenceNumber: "1" })));
  await handler(twilioRequest("call-status", statusParams("ringing", { SequenceNumber: "0" })));
  assert.equal(store.calls.get(CALL_SID)?.status, "completed");
  assert.equal(store.events.size, 3);
});

Deno.test("call-status answers 503 when the event cannot be stored, so Twilio retries", async () => {
  const { handler, store, memory, twilio } = setup();
  store.failNext("recordCallEvent");
  const response = await handler(twilioRequest("call-status", statusParams("failed")));
  assert.equal(response.status, 503);
  assert.equal(memory.entries("call_event_store_failed").length, 1);
  assert.equal(twilio.sent.length, 0);
  // Twilio's retry succeeds and the text goes out.
  assert.equal((await handler(twilioRequest("call-status", statusParams("failed")))).status, 204);
});

Deno.test("call-status texts the caller once after busy, failed and no-answer", async () => {
  for (const status of ["busy", "failed", "no-answer"]) {
    const { handler, twilio, store, settle } = setup();
    store.addCall({ callSid: CALL_SID });
    await handler(twilioRequest("call-status", statusParams(status)));
    await handler(twilioRequest("call-status", statusParams(status)));
    await settle();
    assert.equal(twilio.sent.length, 1, status);
    assert.deepEqual(twilio.sent[0], {
      to: "+15551230001",
      from: "+15550100000",
      body: "Hi Jane, this is Harbor Dental. Sorry we got cut off!",
      statusCallback: URLS.smsStatus,
    }, status);
    assert.equal(store.sms[0].status, "queued", status);
    assert.equal(store.sms[0].messageSid, "SM" + "1".padStart(32, "0"), status);
    assert.equal(store.calls.get(CALL_SID)?.outcome, "recovered", status);
  }
});

Deno.test("call-status sends nothing for a normal completed call or a canceled one", async () => {
  for (const status of ["completed", "canceled"]) {
    const { handler, twilio, settle } = setup();
    await handler(twilioRequest("call-status", statusParams(status)));
    await settle();
    assert.equal(twilio.sent.length, 0, status);
  }
});

Deno.test("call-status texts after a completed call whose outcome is failed", async () => {
  const { handler, twilio, store, settle } = setup();
  store.addCall({ callSid: CALL_SID, outcome: "failed" });
  await handler(twilioRequest("call-status", statusParams("completed")));
  await settle();
  assert.equal(twilio.sent.length, 1);
});

Deno.test("call-status never texts opted-out or withheld numbers", async () => {
  const optedOut = setup();
  optedOut.store.optOuts.add("+15551230001");
  await optedOut.handler(twilioRequest("call-status", statusParams("no-answer")));
  await optedOut.settle();
  assert.equal(optedOut.twilio.sent.length, 0);
  assert.equal(optedOut.memory.entries("sms_not_claimed")[0]?.reason, "opted_out");

  const withheld = setup();
  await withheld.handler(twilioRequest("call-status", statusParams("busy", { From: "anonymous" })));
  await withheld.settle();
  assert.equal(withheld.twilio.sent.length, 0);
  assert.equal(withheld.memory.entries("sms_not_claimed")[0]?.reason, "invalid_number");
});

Deno.test("call-status stores a text that failed after retries as failed with its error code", async () => {
  const { handler, twilio, store, settle, memory } = setup();
  twilio.smsResults.push({
    ok: false,
    kind: "http",
    status: 500,
    code: 20500,
    message: "boom",
    attempts: 4,
  });
  await handler(twilioRequest("call-status", statusParams("failed")));
  await settle();
  assert.equal(store.sms[0].status, "failed");
  assert.equal(store.sms[0].errorCode, "20500");
  assert.equal(store.calls.get(CALL_SID)?.outcome, "failed");
  assert.equal(memory.entries("sms_failed").length, 1);
});

Deno.test("call-status refuses malformed fields with 400", async () => {
  const { handler } = setup();
  const response = await handler(twilioRequest("call-status", statusParams("exploded")));
  assert.equal(response.status, 400);
  assert.match(await response.text(), /CallStatus/);
});

// ---------------------------------------------------------------------------------------------
// <Connect action>, voicemail and recordings
// ---------------------------------------------------------------------------------------------

function connectParams(callStatus: string): Record<string, string> {
  return {
    AccountSid: ACCOUNT_SID,
    CallSid: CALL_SID,
    CallStatus: callStatus,
    From: "+15551230001",
    To: "+15550100000",
  };
}

Deno.test("connect-action hangs up after a normal end", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  await handler(await toolCall("end_call", { reason: "caller said goodbye" }));
  const doc = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.deepEqual(Object.keys(doc), ["Hangup"]);
  assert.equal(store.calls.get(CALL_SID)?.outcome, null);
});

Deno.test("connect-action apologizes and records a voicemail when the stream dropped with the caller on the line", async () => {
  const { handler, store, memory } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const doc = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.deepEqual(Object.keys(doc), ["Say", "Record", "Hangup"]);
  const record = doc.Record as Record<string, string>;
  assert.equal(record["@action"], `${PUBLIC_URL}?route=voicemail`);
  assert.equal(record["@recordingStatusCallback"], `${PUBLIC_URL}?route=recording`);
  assert.equal(record["@maxLength"], "120");
  assert.equal(record["@playBeep"], "true");
  assert.equal(store.calls.get(CALL_SID)?.outcome, "failed");
  assert.equal(store.events.get(streamEndKey(CALL_SID))?.payload?.reason, "unreported");
  assert.equal(memory.entries("connect_action")[0].decision, "voicemail:stream_dropped");
});

Deno.test("connect-action apologizes after a reported model failure and hangs up when the caller is gone", async () => {
  const reported = setup();
  reported.store.addCall({ callSid: CALL_SID, status: "in-progress" });
  await reported.handler(
    await control("stream_ended", { reason: "model_failed", bookingInProgress: false }),
  );
  const doc = await twimlOf(
    await reported.handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.ok("Record" in doc);

  const gone = setup();
  gone.store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const hangup = await twimlOf(
    await gone.handler(twilioRequest("connect-action", connectParams("completed"))),
  );
  assert.deepEqual(Object.keys(hangup), ["Hangup"]);
  // The caller is gone: how the conversation ended stays voice-stream's report to make.
  assert.equal(gone.store.events.has(streamEndKey(CALL_SID)), false);
});

Deno.test("connect-action still answers TwiML when the database is down", async () => {
  const { handler, store } = setup();
  store.failNext("recordCallEvent");
  const doc = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.ok("Record" in doc);
});

Deno.test("connect-action resumes a dropped stream from its checkpoint instead of apologizing", async () => {
  const { handler, store, memory, settle } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const continuationId = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d";
  // What take_call_handover returns when the worker died: its last turn's checkpoint.
  store.addHandover(CALL_SID, { continuationId, traceId: "trace-1", kind: "checkpoint" });
  const doc = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.deepEqual(Object.keys(doc), ["Connect"], "a new stream, no apology");
  const stream = (doc.Connect as Record<string, unknown>).Stream as {
    Parameter: Record<string, string>[];
  };
  const continuation = stream.Parameter.find((parameter) => parameter["@name"] === "continuation");
  assert.equal(continuation?.["@value"], continuationId);
  await settle();
  assert.equal(store.events.has(streamEndKey(CALL_SID)), false, "the call has not ended");
  assert.equal(store.events.get(`handover:${continuationId}`)?.kind, "stream_resumed");
  const [line] = memory.entries("connect_action");
  assert.equal(line.decision, "stream:resume_after_drop");
  assert.equal(line.resumedFrom, "checkpoint");
});

Deno.test("connect-action opens a new stream with a token bound to the continuation after a handover", async () => {
  const { handler, store, memory, settle } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const continuationId = "4c7d2a10-8f5e-4b1a-9c3d-2e6f7a8b9c0d";
  store.addHandover(CALL_SID, { continuationId, traceId: "trace-handover" });
  const doc = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.deepEqual(Object.keys(doc), ["Connect"]);
  const connect = doc.Connect as Record<string, unknown>;
  assert.equal(connect["@action"], `${PUBLIC_URL}?route=connect-action`);
  const stream = connect.Stream as { "@url": string; Parameter: Record<string, string>[] };
  assert.equal(stream["@url"], "wss://abc.supabase.co/functions/v1/voice-stream");
  const parameters = Object.fromEntries(
    stream.Parameter.map((parameter) => [parameter["@name"], parameter["@value"]]),
  );
  assert.deepEqual(Object.keys(parameters), [
    "traceId",
    "callSid",
    "from",
    "to",
    "token",
    "continuation",
  ]);
  assert.equal(parameters.traceId, "trace-handover");
  assert.equal(parameters.callSid, CALL_SID);
  assert.equal(parameters.from, "+15551230001");
  assert.equal(parameters.to, "+15550100000");
  assert.equal(parameters.continuation, continuationId);
  const claims = { callSid: CALL_SID, traceId: "trace-handover", nowMs: NOW };
  assert.deepEqual(
    await verifyStreamToken(SECRET, parameters.token, { ...claims, continuationId }),
    { ok: true },
  );
  assert.equal(
    (await verifyStreamToken(SECRET, parameters.token, claims)).ok,
    false,
    "the token is only good with its continuation",
  );
  // A handover is not an end: nothing is recorded under the stream-end key, nor an outcome.
  await settle();
  assert.equal(store.events.has(streamEndKey(CALL_SID)), false);
  assert.equal(store.events.get(`handover:${continuationId}`)?.kind, "stream_handover");
  assert.equal(store.calls.get(CALL_SID)?.outcome, null);
  assert.equal(memory.entries("connect_action")[0].decision, "stream:handover");

  // Taken once: a repeated request finds no handover, so the stream counts as dropped.
  const again = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.ok("Record" in again);
});

Deno.test("connect-action decides the end as usual when the pending handover cannot be read", async () => {
  const { handler, store, memory } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  await handler(await toolCall("end_call", { reason: "caller said goodbye" }));
  store.failNext("takeCallHandover");
  const doc = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("in-progress"))),
  );
  assert.deepEqual(Object.keys(doc), ["Hangup"]);
  assert.equal(memory.entries("handover_take_failed").length, 1);
});

Deno.test("connect-action never opens a new stream for a caller who hung up during a handover", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  store.addHandover(CALL_SID, { continuationId: crypto.randomUUID(), traceId: "t" });
  const doc = await twimlOf(
    await handler(twilioRequest("connect-action", connectParams("completed"))),
  );
  assert.deepEqual(Object.keys(doc), ["Hangup"]);
});

Deno.test("voicemail thanks the caller and recording marks the call as voicemail", async () => {
  const { handler, store, twilio, settle } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress", outcome: "failed" });
  const recordingSid = "RE" + "c".repeat(32);
  const base = {
    AccountSid: ACCOUNT_SID,
    CallSid: CALL_SID,
    RecordingSid: recordingSid,
    RecordingUrl: "https://api.twilio.com/rec",
  };
  const thanks = await twimlOf(
    await handler(twilioRequest("voicemail", { ...base, RecordingDuration: "14" })),
  );
  assert.deepEqual(Object.keys(thanks), ["Say", "Hangup"]);
  const recorded = await handler(twilioRequest("recording", {
    ...base,
    RecordingStatus: "completed",
    RecordingDuration: "14",
  }));
  assert.equal(recorded.status, 204);
  assert.equal(store.calls.get(CALL_SID)?.outcome, "voicemail");
  await handler(twilioRequest("call-status", statusParams("completed")));
  await settle();
  assert.equal(twilio.sent.length, 1);
});

Deno.test("recording answers 503 when it cannot be stored", async () => {
  const { handler, store } = setup();
  store.failNext("recordCallEvent");
  const response = await handler(twilioRequest("recording", {
    AccountSid: ACCOUNT_SID,
    CallSid: CALL_SID,
    RecordingSid: "RE" + "c".repeat(32),
    RecordingStatus: "completed",
    RecordingDuration: "3",
  }));
  assert.equal(response.status, 503);
});

// ---------------------------------------------------------------------------------------------
// SMS status callbacks
// ---------------------------------------------------------------------------------------------

Deno.test("sms-status moves a message's delivery status and keeps its error code", async () => {
  const { handler, store, settle, memory } = setup();
  await handler(twilioRequest("call-status", statusParams("busy")));
  await settle();
  const messageSid = store.sms[0].messageSid!;
  const params = {
    AccountSid: ACCOUNT_SID,
    MessageSid: messageSid,
    MessageStatus: "undelivered",
    ErrorCode: "30003",
  };
  assert.equal((await handler(twilioRequest("sms-status", params))).status, 204);
  assert.equal(store.sms[0].status, "undelivered");
  assert.equal(store.sms[0].errorCode, "30003");
  const unknown = { ...params, MessageSid: "SM" + "f".repeat(32) };
  assert.equal((await handler(twilioRequest("sms-status", unknown))).status, 204);
  assert.equal(memory.entries("sms_status_unknown_message").length, 1);
  store.failNext("updateSmsStatus");
  assert.equal((await handler(twilioRequest("sms-status", params))).status, 503);
});

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

Deno.test("tool_call refuses bad arguments with 422 and an error the model can read", async () => {
  const { handler, store, memory } = setup();
  store.addCall({ callSid: CALL_SID });
  const response = await handler(
    await toolCall("book_appointment", {
      first_name: "Jane",
      date: "2026-11-31",
      time: "3pm",
      confirmed_by_caller: "yes",
    }),
  );
  assert.equal(response.status, 422);
  const body = await response.json();
  assert.equal(body.ok, false);
  assert.match(body.error, /^Invalid arguments for book_appointment: /);
  assert.match(body.error, /time must be a time written HH:MM/);
  assert.deepEqual(body.issues.map((issue: { path: string }) => issue.path), [
    "last_name",
    "date",
    "time",
    "confirmed_by_caller",
  ]);
  const unknown = await handler(await toolCall("order_pizza", {}));
  assert.equal(unknown.status, 422);
  assert.match((await unknown.json()).error, /There is no tool named "order_pizza"/);
  const notJson = await handler(await toolCall("end_call", "{reason:"));
  assert.equal(notJson.status, 422);
  assert.deepEqual(memory.entries("tool_call").map((line) => line.outcome), [
    "invalid_arguments",
    "invalid_arguments",
    "invalid_arguments",
  ]);
});

Deno.test("tool_call logs and counts every call once per call_id", async () => {
  const { handler, store, memory, settle } = setup();
  store.addCall({ callSid: CALL_SID });
  await handler(await toolCall("check_availability", { date: "2026-11-24" }, "call_a"));
  await handler(await toolCall("check_availability", { date: "2026-11-24" }, "call_a"));
  await handler(await toolCall("check_availability", { date: "2026-11-25" }, "call_b"));
  await settle();
  const toolEvents = [...store.events.values()].filter((event) => event.kind === "tool_call");
  assert.deepEqual(toolEvents.map((event) => event.idempotencyKey), [
    `tool:${CALL_SID}:call_a`,
    `tool:${CALL_SID}:call_b`,
  ]);
  const [line] = memory.entries("tool_call");
  assert.equal(line.name, "check_availability");
  assert.equal(line.outcome, "ok");
  assert.equal(line.traceId, "trace-1");
  assert.equal(line.callSid, CALL_SID);
  assert.equal(typeof line.ms, "number");
});

Deno.test("check_availability lists free times in the org's zone, phrased for speech", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  const response = await handler(
    await toolCall("check_availability", { date: "2026-11-24", after: "12:00", before: "14:00" }),
  );
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.ok, true);
  assert.equal(body.effect, null);
  assert.equal(body.bookingInProgress, true);
  assert.equal(body.output.available, true);
  assert.equal(body.output.day, "Tuesday, November 24");
  // Dr. Lee does not work on Tuesdays: every time is Sam's.
  assert.equal(body.output.service, "Cleaning");
  assert.deepEqual(body.output.slots, [
    { time: "12:00", spoken: "Tuesday, November 24 at 12:00 PM", providers: ["Sam Ortiz"] },
    { time: "12:30", spoken: "Tuesday, November 24 at 12:30 PM", providers: ["Sam Ortiz"] },
    { time: "13:00", spoken: "Tuesday, November 24 at 1:00 PM", providers: ["Sam Ortiz"] },
    { time: "13:30", spoken: "Tuesday, November 24 at 1:30 PM", providers: ["Sam Ortiz"] },
  ]);
  assert.deepEqual(store.invocations.find((call) => call.method === "searchAvailability")?.args, [
    {
      orgId: store.org.id,
      serviceId: "svc-cleaning",
      fromDay: "2026-11-24",
      days: 1,
      providerId: null,
    },
  ]);
});

Deno.test("check_availability offers the next free day after a full or closed day", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  // Saturday, November 28: closed; the next free day is Monday the 30th.
  const body = await (await handler(await toolCall("check_availability", { date: "2026-11-28" })))
    .json();
  assert.equal(body.output.available, false);
  assert.equal(body.output.next_available.date, "2026-11-30");
  assert.equal(body.output.next_available.slots[0].spoken, "Monday, November 30 at 9:00 AM");
  assert.match(body.output.message, /no free times for Cleaning on Saturday, November 28/);
  const past = await (await handler(await toolCall("check_availability", { date: "2026-11-20" })))
    .json();
  assert.match(past.output.message, /already passed/);
});

Deno.test("book_appointment refuses until the caller confirmed the read-back", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  const args = {
    first_name: "Jane",
    last_name: "Doe",
    date: "2026-11-24",
    time: "10:00",
    confirmed_by_caller: false,
  };
  const body = await (await handler(await toolCall("book_appointment", args))).json();
  assert.equal(body.output.booked, false);
  assert.equal(body.output.reason, "needs_confirmation");
  assert.match(body.output.instructions, /Jane Doe, Cleaning, Tuesday, November 24 at 10:00 AM/);
  assert.equal(store.appointments.length, 0);
});

Deno.test("book_appointment books the caller's slot, says the code and texts a confirmation", async () => {
  const { handler, store, twilio, settle } = setup();
  store.addCall({ callSid: CALL_SID });
  const args = {
    first_name: "Jane",
    last_name: "Doe",
    date: "2026-11-24",
    time: "9:30",
    confirmed_by_caller: true,
  };
  const body = await (await handler(await toolCall("book_appointment", args))).json();
  assert.equal(body.output.booked, true);
  assert.equal(body.bookingInProgress, false);
  const booked = store.invocations.find((call) => call.method === "bookAppointment")?.args[0];
  assert.deepEqual(booked, {
    callSid: CALL_SID,
    firstName: "Jane",
    lastName: "Doe",
    startsAt: "2026-11-24T14:30:00.000Z",
    serviceId: "svc-cleaning",
    providerId: null,
  });
  const code = body.output.confirmation_code as string;
  assert.equal(body.output.provider, "Sam Ortiz");
  assert.equal(
    body.output.say,
    `You're all set, Jane: your cleaning with Sam Ortiz is on Tuesday, November 24 at 9:30 AM. Your confirmation code is ${
      [...code].join(", ")
    }.`,
  );
  await settle();
  assert.equal(twilio.sent.length, 1);
  assert.equal(store.sms[0].kind, "confirmation");
  assert.equal(store.calls.get(CALL_SID)?.outcome, "booked");
});

Deno.test("book_appointment turns a taken or invalid slot into a readable refusal", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  store.addCall({ callSid: OTHER_CALL_SID, from: "+15551230002" });
  const args = {
    first_name: "Jane",
    last_name: "Doe",
    date: "2026-11-24",
    time: "10:00",
    confirmed_by_caller: true,
  };
  await handler(
    await internalRequest({
      type: "tool_call",
      callSid: OTHER_CALL_SID,
      traceId: "t2",
      callId: "c0",
      name: "book_appointment",
      arguments: args,
    }),
  );
  const taken = await (await handler(await toolCall("book_appointment", args))).json();
  assert.deepEqual([taken.output.booked, taken.output.reason], [false, "slot_taken"]);
  assert.match(taken.output.message, /just taken/);
  assert.equal(taken.bookingInProgress, true);
  const lunch =
    await (await handler(await toolCall("book_appointment", { ...args, time: "10:15" }))).json();
  assert.equal(lunch.output.reason, "outside_hours");
  const night = await (await handler(
    await toolCall("book_appointment", { ...args, date: "2026-11-23", time: "09:00" }),
  )).json();
  assert.equal(night.output.reason, "in_past");
});

Deno.test("check_availability groups times by provider and names who is free at each", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  // Monday, November 30: both work; Dr. Lee breaks for lunch from 12:00 to 13:00.
  const body = await (await handler(
    await toolCall("check_availability", {
      service: "cleaning",
      date: "2026-11-30",
      after: "11:30",
      before: "13:30",
    }),
  )).json();
  assert.deepEqual(
    body.output.slots.map((slot: { time: string; providers: string[] }) => [
      slot.time,
      slot.providers,
    ]),
    [
      ["11:30", ["Dr. Lee", "Sam Ortiz"]],
      ["12:00", ["Sam Ortiz"]],
      ["12:30", ["Sam Ortiz"]],
      ["13:00", ["Dr. Lee", "Sam Ortiz"]],
    ],
  );
  assert.match(body.output.instructions, /each with one of its providers/);
});

Deno.test("check_availability offers other providers on a day the asked-for one is off", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  // Tuesday: Dr. Lee is off, Sam works.
  const body = await (await handler(
    await toolCall("check_availability", {
      service: "Cleaning",
      provider: "Lee",
      date: "2026-11-24",
      before: "10:00",
    }),
  )).json();
  assert.equal(body.output.available, false);
  assert.equal(body.output.provider, "Dr. Lee");
  assert.match(body.output.message, /Dr\. Lee has no free times for Cleaning on Tuesday/);
  assert.deepEqual(
    body.output.other_providers.slots.map((slot: { time: string }) => slot.time),
    ["09:00", "09:30"],
  );
  assert.deepEqual(body.output.other_providers.slots[0].providers, ["Sam Ortiz"]);
  const searches = store.invocations.filter((call) => call.method === "searchAvailability");
  assert.deepEqual(
    searches.map((call) => (call.args[0] as { providerId: string | null }).providerId),
    ["prov-lee", null],
  );
});

Deno.test("check_availability asks which service, and refuses unknown services and providers", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  store.org.services = store.org.services.map((service) => ({ ...service, isDefault: false }));
  const ask = await (await handler(await toolCall("check_availability", { date: "2026-11-24" })))
    .json();
  assert.equal(ask.output.reason, "service_needs_choice");
  assert.match(ask.output.message, /'Check-up', 'Cleaning', 'New patient exam'/);
  const pizza = await (await handler(
    await toolCall("check_availability", { service: "pizza", date: "2026-11-24" }),
  )).json();
  assert.equal(pizza.output.reason, "service_unknown");
  const notOffered = await (await handler(
    await toolCall("check_availability", {
      service: "New patient exam",
      provider: "Sam",
      date: "2026-11-24",
    }),
  )).json();
  assert.equal(notOffered.output.reason, "provider_unknown");
  assert.match(notOffered.output.message, /Sam Ortiz does not offer New patient exam/);
  assert.equal(
    store.invocations.filter((call) => call.method === "searchAvailability").length,
    0,
    "nothing was searched for a name that does not resolve",
  );
});

Deno.test("book_appointment books the named provider, keeps the buffer and reads the service's instructions", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  const exam = {
    first_name: "Jane",
    last_name: "Doe",
    service: "new patient exam",
    provider: "dr lee",
    date: "2026-11-30",
    time: "09:00",
    confirmed_by_caller: true,
  };
  const body = await (await handler(await toolCall("book_appointment", exam))).json();
  assert.equal(body.output.booked, true);
  assert.equal(body.output.provider, "Dr. Lee");
  assert.match(
    body.output.say,
    /your new patient exam with Dr\. Lee is on Monday, November 30 at 9:00 AM\. Please arrive 10 minutes early/,
  );
  assert.deepEqual(store.appointments.map((a) => [a.endsAt, a.blockedUntil]), [
    ["2026-11-30T15:00:00.000Z", "2026-11-30T15:15:00.000Z"],
  ]);
  // 10:00 falls in the exam's 15-minute buffer for Dr. Lee, not for Sam.
  const cleaning = {
    first_name: "Jane",
    last_name: "Doe",
    service: "Cleaning",
    date: "2026-11-30",
    time: "10:00",
    confirmed_by_caller: true,
  };
  const withLee = await (await handler(
    await toolCall("book_appointment", { ...cleaning, provider: "Dr. Lee" }, "c2"),
  )).json();
  assert.equal(withLee.output.reason, "slot_taken");
  const anyone = await (await handler(await toolCall("book_appointment", cleaning, "c3"))).json();
  assert.equal(anyone.output.provider, "Sam Ortiz");
  // Dr. Lee is off on Tuesdays.
  const tuesday = await (await handler(
    await toolCall("book_appointment", { ...exam, date: "2026-11-24" }, "c4"),
  )).json();
  assert.equal(tuesday.output.reason, "outside_hours");
});

Deno.test("cancel_appointment and reschedule_appointment act on the caller's own appointments only", async () => {
  const { handler, store, twilio, settle } = setup();
  store.addCall({ callSid: CALL_SID });
  store.addCall({ callSid: OTHER_CALL_SID, from: "+15551230002" });
  const args = {
    first_name: "Jane",
    last_name: "Doe",
    date: "2026-11-24",
    time: "10:00",
    confirmed_by_caller: true,
  };
  const booked = await (await handler(await toolCall("book_appointment", args))).json();
  const code = booked.output.confirmation_code;
  const stranger = await (await handler(
    await internalRequest({
      type: "tool_call",
      callSid: OTHER_CALL_SID,
      traceId: "t2",
      callId: "c9",
      name: "cancel_appointment",
      arguments: { confirmation_code: code },
    }),
  )).json();
  assert.equal(stranger.output.reason, "not_found");
  const moved = await (await handler(
    await toolCall("reschedule_appointment", {
      confirmation_code: code.toLowerCase(),
      date: "2026-11-25",
      time: "15:00",
    }, "c2"),
  )).json();
  assert.equal(moved.output.rescheduled, true);
  assert.equal(moved.output.when, "Wednesday, November 25 at 3:00 PM");
  const cancelled =
    await (await handler(await toolCall("cancel_appointment", { confirmation_code: code }, "c3")))
      .json();
  assert.equal(cancelled.output.cancelled, true);
  assert.equal(
    cancelled.output.say,
    "Your appointment on Wednesday, November 25 at 3:00 PM is cancelled.",
  );
  await settle();
  // One confirmation text per call, however many changes.
  assert.equal(twilio.sent.length, 1);
});

Deno.test("transfer_to_human asks voice-stream to transfer after the assistant's last words", async () => {
  const { handler, store, twilio } = setup();
  store.addCall({ callSid: CALL_SID });
  const body =
    await (await handler(await toolCall("transfer_to_human", { reason: "billing question" })))
      .json();
  assert.equal(body.effect, "transfer");
  assert.equal(body.output.transferring, true);
  assert.equal(twilio.updates.length, 0);
});

Deno.test("transfer_to_human transfers at once when the caller's words hold an emergency keyword", async () => {
  const { handler, store, twilio } = setup();
  store.addCall({ callSid: CALL_SID });
  const body = await (await handler(
    await toolCall("transfer_to_human", {
      reason: "caller needs help",
      caller_words: "My gum is BLEEDING a lot",
    }),
  )).json();
  assert.equal(body.effect, null);
  assert.equal(body.output.transferred, true);
  assert.equal(twilio.updates.length, 1);
  const doc = xml.parse(twilio.updates[0].update.twiml!).Response;
  assert.equal(doc.Dial.Number, "+15550100999");
  assert.equal(doc.Dial["@callerId"], "+15550100000");
  assert.equal(store.calls.get(CALL_SID)?.outcome, "transferred");
});

Deno.test("transfer_to_human tells the model when nobody can take the call", async () => {
  const { handler, store } = setup();
  store.org.transferNumber = null;
  store.addCall({ callSid: CALL_SID });
  const body =
    await (await handler(await toolCall("transfer_to_human", { reason: "wants a person" }))).json();
  assert.equal(body.effect, null);
  assert.equal(body.output.reason, "no_transfer_number");
});

Deno.test("end_call returns the end_call effect and marks the end as handled", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  const body = await (await handler(await toolCall("end_call", { reason: "done" }))).json();
  assert.deepEqual([body.effect, body.bookingInProgress], ["end_call", false]);
  assert.equal(store.events.get(streamEndKey(CALL_SID))?.payload?.reason, "assistant_ended");
});

Deno.test("tool_call answers 404 for an unknown call and 503 when the store fails", async () => {
  const { handler, store } = setup();
  const unknown = await handler(await toolCall("check_availability", { date: "2026-11-24" }));
  assert.equal(unknown.status, 404);
  assert.match((await unknown.json()).error, /Apologize/);
  store.addCall({ callSid: CALL_SID });
  store.failNext("searchAvailability");
  const failed = await handler(await toolCall("check_availability", { date: "2026-11-24" }));
  assert.equal(failed.status, 503);
  assert.match((await failed.json()).error, /not responding/);
});

// ---------------------------------------------------------------------------------------------
// Call control
// ---------------------------------------------------------------------------------------------

Deno.test("call_control transfer dials the org's transfer number from the org's number", async () => {
  const { handler, store, twilio } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const response = await handler(await control("transfer"));
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { ok: true, action: "transfer", result: "done" });
  assert.equal(twilio.updates[0].callSid, CALL_SID);
  const doc = xml.parse(twilio.updates[0].update.twiml!).Response;
  assert.equal(doc.Say, "Connecting you now.");
  assert.equal(doc.Dial["@callerId"], "+15550100000");
  assert.equal(store.calls.get(CALL_SID)?.outcome, "transferred");
});

Deno.test("call_control transfer without a transfer number answers 409", async () => {
  const { handler, store, twilio } = setup();
  store.org.transferNumber = null;
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const response = await handler(await control("transfer"));
  assert.equal(response.status, 409);
  assert.match((await response.json()).error, /no transfer number/);
  assert.equal(twilio.updates.length, 0);
});

Deno.test("call_control hangup completes the call; a call that already ended is fine", async () => {
  const { handler, store, twilio } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const done = await (await handler(await control("hangup"))).json();
  assert.deepEqual(done, { ok: true, action: "hangup", result: "done" });
  assert.deepEqual(twilio.updates[0].update, { status: "completed" });
  twilio.updateResults.push({
    ok: false,
    kind: "call_ended",
    status: 404,
    code: 20404,
    attempts: 1,
  });
  const ended = await (await handler(await control("hangup"))).json();
  assert.deepEqual(ended, { ok: true, action: "hangup", result: "call_ended" });
  twilio.updateResults.push({
    ok: false,
    kind: "http",
    status: 500,
    code: 20500,
    message: "boom",
    attempts: 4,
  });
  const failed = await handler(await control("hangup"));
  assert.equal(failed.status, 502);
});

Deno.test("call_control recover plays the apology with a voicemail, texts the caller and records the failure", async () => {
  const { handler, store, twilio, settle } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const body = await (await handler(await control("recover", { reason: "model_failed" }))).json();
  assert.deepEqual(body, { ok: true, action: "recover", result: "done" });
  const doc = xml.parse(twilio.updates[0].update.twiml!).Response;
  assert.deepEqual(Object.keys(doc), ["Say", "Record", "Hangup"]);
  await settle();
  assert.equal(twilio.sent.length, 1);
  assert.equal(store.calls.get(CALL_SID)?.outcome, "recovered");
  // The terminal callback that follows sends nothing more.
  await handler(twilioRequest("call-status", statusParams("completed")));
  await settle();
  assert.equal(twilio.sent.length, 1);
});

Deno.test("stream_ended after a hang-up mid-booking texts the caller, whichever comes first", async () => {
  for (const order of ["report first", "status first"]) {
    const { handler, store, twilio, settle } = setup();
    store.addCall({ callSid: CALL_SID, status: "in-progress" });
    const report = async () => {
      const body = await (await handler(
        await control("stream_ended", { reason: "caller_hung_up", bookingInProgress: true }),
      )).json();
      assert.deepEqual(body, {
        ok: true,
        action: "stream_ended",
        result: "recorded",
        abnormal: true,
      });
    };
    const status = () => handler(twilioRequest("call-status", statusParams("completed")));
    if (order === "report first") {
      await report();
      await status();
    } else {
      await status();
      await report();
    }
    await settle();
    assert.equal(twilio.sent.length, 1, order);
  }
});

Deno.test("stream_ended after a plain hang-up sends nothing", async () => {
  const { handler, store, twilio, settle } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  const body = await (await handler(await control("stream_ended", { reason: "caller_hung_up" })))
    .json();
  assert.equal(body.abnormal, false);
  await handler(twilioRequest("call-status", statusParams("completed")));
  await settle();
  assert.equal(twilio.sent.length, 0);
  assert.equal(store.calls.get(CALL_SID)?.outcome, "completed");
});

Deno.test("call_control answers 503 when the store is down", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  store.failNext("recordCallEvent");
  const response = await handler(await control("stream_ended", { reason: "error" }));
  assert.equal(response.status, 503);
});

Deno.test("call_control hangup and end_call still work when the database is down", async () => {
  const { handler, store, twilio, memory } = setup();
  store.addCall({ callSid: CALL_SID, status: "in-progress" });
  store.failNext("recordCallEvent");
  const ended = await (await handler(await toolCall("end_call", { reason: "bye" }))).json();
  assert.equal(ended.effect, "end_call");
  store.failNext("recordCallEvent");
  const hangup = await (await handler(await control("hangup"))).json();
  assert.deepEqual(hangup, { ok: true, action: "hangup", result: "done" });
  assert.deepEqual(twilio.updates[0].update, { status: "completed" });
  assert.equal(memory.entries("call_event_store_failed").length, 2);
});

Deno.test("callVoiceAction() and the handler speak the same protocol", async () => {
  const { handler, store } = setup();
  store.addCall({ callSid: CALL_SID });
  const viaHandler: typeof fetch = (input, init) => handler(new Request(input, init));
  const result = await callVoiceAction(viaHandler, PUBLIC_URL, SECRET, {
    type: "tool_call",
    callSid: CALL_SID,
    traceId: "trace-1",
    callId: "call_9",
    name: "check_availability",
    arguments: '{"date":"2026-11-24","before":"09:30"}',
  }, { timeoutMs: 1000, nowMs: NOW });
  assert.ok(result.ok);
  assert.deepEqual(result.response.output.slots, [{
    time: "09:00",
    spoken: "Tuesday, November 24 at 9:00 AM",
    providers: ["Sam Ortiz"],
  }]);
  const refused = await callVoiceAction(viaHandler, PUBLIC_URL, SECRET, {
    type: "tool_call",
    callSid: CALL_SID,
    traceId: "trace-1",
    callId: "call_10",
    name: "end_call",
    arguments: "{}",
  }, { timeoutMs: 1000, nowMs: NOW });
  assert.deepEqual(refused, {
    ok: false,
    failure: "http",
    status: 422,
    error: "Invalid arguments for end_call: reason is required. Fix them and call end_call again",
    issues: [{ path: "reason", message: "is required" }],
  });
});

Deno.test("end_call ends a call the database does not know, or while it is down", async () => {
  const { handler, store } = setup();
  const unknown = await handler(await toolCall("end_call", { reason: "bye" }));
  assert.equal(unknown.status, 200);
  assert.equal((await unknown.json()).effect, "end_call");
  store.addCall({ callSid: CALL_SID });
  store.failNext("recordCallEvent");
  store.failNext("getCall");
  const down = await handler(await toolCall("end_call", { reason: "bye" }, "call_2"));
  assert.equal((await down.json()).effect, "end_call");
});

// ---------------------------------------------------------------------------------------------
// Calendar feed (GET ?route=calendar&token=...)
// ---------------------------------------------------------------------------------------------

const FEED_TOKEN = "Zm9yLXRlc3RzLW9ubHktYS1mZWVkLXRva2VuLTMyYnl";
const OTHER_FEED_TOKEN = "b3RoZXItdGVzdC1mZWVkLXRva2VuLW9mLTMyLWJ5dGV";

/** A GET of the feed URL as the edge runtime shows it to the handler. */
function feedRequest(token: string | null, method = "GET"): Request {
  const query = token === null ? "?route=calendar" : `?route=calendar&token=${token}`;
  return new Request(INTERNAL_URL + query, { method });
}

/** Books Jane's cleaning with Sam on Tuesday 09:00 and a check-up with Dr. Lee she cancels. */
async function arrangeFeedAppointments(store: FakeStore) {
  store.addCall({ callSid: CALL_SID });
  const cleaning = await store.bookAppointment({
    callSid: CALL_SID,
    firstName: "Jane",
    lastName: "Doe",
    startsAt: "2026-11-24T14:00:00.000Z",
    serviceId: "svc-cleaning",
    providerId: "prov-sam",
  });
  const checkup = await store.bookAppointment({
    callSid: CALL_SID,
    firstName: "Jane",
    lastName: "Doe",
    startsAt: "2026-11-25T15:00:00.000Z",
    serviceId: "svc-checkup",
    providerId: "prov-lee",
  });
  assert.ok(cleaning.ok && checkup.ok);
  await store.cancelAppointment({
    callSid: CALL_SID,
    confirmationCode: checkup.appointment.confirmationCode,
  });
  return { cleaning: cleaning.appointment, checkup: checkup.appointment };
}

function parseFeed(text: string): ICAL.Event[] {
  const calendar = new ICAL.Component(ICAL.parse(text));
  return calendar.getAllSubcomponents("vevent").map((vevent) => new ICAL.Event(vevent));
}

Deno.test("calendar serves the org's feed as text/calendar with booked and cancelled events", async () => {
  const { handler, store, memory } = setup();
  const { cleaning, checkup } = await arrangeFeedAppointments(store);
  const tokenSha256 = await feedTokenSha256(FEED_TOKEN);
  const feedId = store.rotateCalendarFeed(null, tokenSha256);
  assert.equal(
    calendarFeedUrl(PUBLIC_BASE, FEED_TOKEN),
    `${PUBLIC_URL}?route=calendar&token=${FEED_TOKEN}`,
  );

  const response = await handler(feedRequest(FEED_TOKEN));
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/calendar; charset=utf-8");
  assert.equal(response.headers.get("cache-control"), "private, max-age=300");
  const text = await response.text();
  assert.match(text, /^BEGIN:VCALENDAR\r\n/);
  const events = parseFeed(text);
  assert.equal(events.length, 2);
  const [booked, cancelled] = events;
  assert.equal(booked.uid, `${cleaning.id}@appointments.voice-frontdoor`);
  assert.equal(booked.startDate.toJSDate().toISOString(), "2026-11-24T14:00:00.000Z");
  assert.equal(booked.endDate.toJSDate().toISOString(), "2026-11-24T14:30:00.000Z");
  assert.equal(booked.summary, "Cleaning: Jane (•••• 0001)");
  assert.match(booked.description, new RegExp(`Confirmation code: ${cleaning.confirmationCode}`));
  assert.match(booked.description, /Provider: Sam Ortiz/);
  assert.equal(booked.component.getFirstPropertyValue("status"), "CONFIRMED");
  assert.equal(cancelled.uid, `${checkup.id}@appointments.voice-frontdoor`);
  assert.equal(cancelled.component.getFirstPropertyValue("status"), "CANCELLED");

  // The feed is named in the log; the token and its hash never are.
  const [served] = memory.entries("calendar_feed_served");
  assert.equal(served.feedId, feedId);
  assert.equal(served.orgId, store.org.id);
  assert.equal(served.events, 2);
  for (const line of memory.lines) {
    assert.ok(!line.includes(FEED_TOKEN) && !line.includes(tokenSha256), line);
  }
  // The store is asked with the hash, never the token.
  assert.deepEqual(
    store.invocations.filter((call) => call.method === "calendarFeed").map((call) => call.args),
    [[tokenSha256]],
  );
});

Deno.test("calendar serves a provider's feed with that provider's appointments only", async () => {
  const { handler, store } = setup();
  const { cleaning } = await arrangeFeedAppointments(store);
  store.rotateCalendarFeed("prov-sam", await feedTokenSha256(FEED_TOKEN));
  const response = await handler(feedRequest(FEED_TOKEN));
  assert.equal(response.status, 200);
  const text = await response.text();
  assert.match(text, /X-WR-CALNAME:Harbor Dental: Sam Ortiz\r\n/);
  assert.deepEqual(parseFeed(text).map((event) => event.uid), [
    `${cleaning.id}@appointments.voice-frontdoor`,
  ]);
});

Deno.test("calendar answers the same 404 to unknown, rotated, malformed and missing tokens", async () => {
  const { handler, store } = setup();
  await arrangeFeedAppointments(store);
  store.rotateCalendarFeed(null, await feedTokenSha256(FEED_TOKEN));
  // Rotating the org's feed revokes the first token.
  store.rotateCalendarFeed(null, await feedTokenSha256(OTHER_FEED_TOKEN));
  assert.equal((await handler(feedRequest(OTHER_FEED_TOKEN))).status, 200);
  const lookups = () => store.invocations.filter((call) => call.method === "calendarFeed").length;
  const before = lookups();

  const answers: [string, string | null, number][] = [
    ["rotated", FEED_TOKEN, 1],
    ["unknown", "A".repeat(43), 1],
    ["malformed", `${FEED_TOKEN}x`, 0],
    ["escaped", encodeURIComponent("a/b+c=").padEnd(43, "A"), 0],
    ["missing", null, 0],
  ];
  for (const [what, token, expectedLookups] of answers) {
    const lookupsBefore = lookups();
    const response = await handler(feedRequest(token));
    assert.equal(response.status, 404, what);
    assert.equal(await response.text(), "Not found", what);
    assert.equal(response.headers.get("cache-control"), "no-store", what);
    assert.equal(lookups() - lookupsBefore, expectedLookups, `${what}: lookups`);
  }
  assert.equal(lookups() - before, 2);
});

Deno.test("calendar answers 405 to other methods, and HEAD with the headers only", async () => {
  const { handler, store } = setup();
  store.rotateCalendarFeed(null, await feedTokenSha256(FEED_TOKEN));
  for (const method of ["POST", "PUT", "DELETE", "OPTIONS"]) {
    const response = await handler(feedRequest(FEED_TOKEN, method));
    assert.equal(response.status, 405, method);
    assert.equal(response.headers.get("allow"), "GET, HEAD");
  }
  const head = await handler(feedRequest(FEED_TOKEN, "HEAD"));
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-type"), "text/calendar; charset=utf-8");
  assert.equal(head.body, null);
});

Deno.test("calendar answers 503 when the store fails, without the token in the log", async () => {
  const { handler, store, memory } = setup();
  store.rotateCalendarFeed(null, await feedTokenSha256(FEED_TOKEN));
  store.failNext("calendarFeed");
  const response = await handler(feedRequest(FEED_TOKEN));
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("retry-after"), "60");
  assert.equal(memory.entries("calendar_feed_failed").length, 1);
  assert.ok(memory.lines.every((line) => !line.includes(FEED_TOKEN)));
  assert.equal((await handler(feedRequest(FEED_TOKEN))).status, 200, "served once it is back");
});
