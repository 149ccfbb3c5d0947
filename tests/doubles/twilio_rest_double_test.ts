/**
 * Tests of the Twilio REST double: Basic auth, Twilio's validation errors, failure injection,
 * SMS and call status callbacks (signatures checked with the product's `signature.ts`) and REST
 * updates of a live call double.
 * @module
 */

import assert from "node:assert/strict";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { validateTwilioSignature } from "../../supabase/functions/_shared/twilio/signature.ts";
import { startCall } from "./twilio_call_double.ts";
import {
  parseConnectionOverrides,
  signTwilioRequest,
  smsSegmentCount,
  startTwilioRestDouble,
  type TwilioCallRegistration,
  type TwilioCallUpdate,
  type TwilioLiveCall,
} from "./twilio_rest_double.ts";

const ACCOUNT_SID = "AC" + "a".repeat(32);
const AUTH_TOKEN = "rest-double-auth-token";
const PUBLIC_BASE = "https://example.supabase.co/functions/v1";
const STREAM_WSS_URL = "wss://example.supabase.co/functions/v1/voice-stream";
const MESSAGES_PATH = `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`;

function callPath(callSid: string): string {
  return `/2010-04-01/Accounts/${ACCOUNT_SID}/Calls/${callSid}.json`;
}

function basicAuth(user: string, password: string): string {
  return "Basic " + btoa(`${user}:${password}`);
}

async function post(
  baseUrl: string,
  path: string,
  params: Record<string, string>,
  auth = basicAuth(ACCOUNT_SID, AUTH_TOKEN),
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const response = await fetch(baseUrl + path, {
    method: "POST",
    headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

interface ReceivedCallback {
  path: string;
  params: Record<string, string>;
  signatureValid: boolean;
  idempotencyToken: string | null;
}

/**
 * voice-frontdoor (answers `twiml`), voice-stream and voice-action (answers `<Response/>`)
 * stand-ins that check signatures; HTTP requests fail with 503 `failFirst` times.
 */
function startFakeCallbackEndpoint(options: { failFirst?: number; twiml?: string } = {}) {
  const received: ReceivedCallback[] = [];
  const streams: Array<{ messages: Array<Record<string, unknown>>; closed: Promise<void> }> = [];
  let failuresLeft = options.failFirst ?? 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const { pathname, search } = new URL(req.url);
    if (pathname === "/voice-stream") {
      const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
      const messages: Array<Record<string, unknown>> = [];
      let closedResolve!: () => void;
      streams.push({ messages, closed: new Promise((resolve) => (closedResolve = resolve)) });
      socket.onmessage = (event) => messages.push(JSON.parse(event.data));
      socket.onclose = () => closedResolve();
      return response;
    }
    const params = Object.fromEntries(new URLSearchParams(await req.text()));
    received.push({
      path: pathname,
      params,
      signatureValid: await validateTwilioSignature(
        AUTH_TOKEN,
        req.headers.get("x-twilio-signature"),
        PUBLIC_BASE + pathname + search,
        params,
      ),
      idempotencyToken: req.headers.get("i-twilio-idempotency-token"),
    });
    if (failuresLeft > 0) {
      failuresLeft--;
      return new Response("storage down", { status: 503 });
    }
    const twiml = pathname === "/voice-frontdoor" ? options.twiml : undefined;
    return new Response(twiml ?? "<Response/>", {
      headers: { "content-type": "text/xml" },
    });
  });
  const localBase = `http://127.0.0.1:${server.addr.port}`;
  return {
    received,
    streams,
    localBase,
    rewriteUrl: (url: string) => url.replace(PUBLIC_BASE, localBase),
    close: () => server.shutdown(),
  };
}

/** A live call that only records updates and ends on `Status=completed`. */
function fakeLiveCall(callSid: string): TwilioLiveCall & {
  updates: TwilioCallUpdate[];
  registration?: TwilioCallRegistration;
} {
  const call = {
    callSid,
    from: "+14155550100",
    to: "+14155550199",
    direction: "inbound" as const,
    updates: [] as TwilioCallUpdate[],
    registration: undefined as TwilioCallRegistration | undefined,
    callParams: () => ({
      AccountSid: ACCOUNT_SID,
      ApiVersion: "2010-04-01",
      CallSid: callSid,
      Direction: "inbound",
      From: "+14155550100",
      To: "+14155550199",
    }),
    applyUpdate(update: TwilioCallUpdate) {
      call.updates.push(update);
      if (update.status === "completed") {
        call.registration?.statusChanged("completed", { durationSec: 42 });
      }
    },
  };
  return call;
}

Deno.test("signTwilioRequest() reproduces Twilio's documented example and the twilio package", async () => {
  const params = {
    CallSid: "CA1234567890ABCDE",
    Caller: "+14158675309",
    Digits: "1234",
    From: "+14158675309",
    To: "+18005551212",
  };
  assert.equal(
    await signTwilioRequest("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params),
    "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
  );
  const repeated = { MediaUrl: ["https://b.example/2", "https://a.example/1"], Body: "hé ✓" };
  assert.equal(
    await signTwilioRequest(AUTH_TOKEN, `${PUBLIC_BASE}/voice-action`, repeated),
    getExpectedTwilioSignature(AUTH_TOKEN, `${PUBLIC_BASE}/voice-action`, repeated),
  );
});

Deno.test("parseConnectionOverrides() strips the fragment and reads rc and rp", () => {
  assert.deepEqual(parseConnectionOverrides(`${PUBLIC_BASE}/voice-action?x=1#rc=3&rp=all`), {
    url: `${PUBLIC_BASE}/voice-action?x=1`,
    overrides: {
      retryCount: 3,
      retryPolicies: ["all"],
      readTimeoutMs: 15_000,
      totalTimeoutMs: null,
      raw: { rc: "3", rp: "all" },
    },
  });
  const defaults = parseConnectionOverrides(`${PUBLIC_BASE}/voice-action`).overrides;
  assert.equal(defaults.retryCount, 1);
  assert.deepEqual(defaults.retryPolicies, ["ct"]);
  assert.equal(parseConnectionOverrides("https://x/#rc=9").overrides.retryCount, 5);
});

Deno.test("smsSegmentCount() counts GSM-7 and UCS-2 segments as Twilio bills them", () => {
  assert.equal(smsSegmentCount("a".repeat(160)), 1);
  assert.equal(smsSegmentCount("a".repeat(161)), 2);
  assert.equal(smsSegmentCount("{".repeat(80)), 1);
  assert.equal(smsSegmentCount("é".repeat(160)), 1);
  assert.equal(smsSegmentCount("✓".repeat(70)), 1);
  assert.equal(smsSegmentCount("✓".repeat(71)), 2);
});

Deno.test("startTwilioRestDouble() answers 401 code 20003 on wrong credentials", async () => {
  const rest = startTwilioRestDouble({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
  try {
    const params = { To: "+14155550100", From: "+14155550199", Body: "hi" };
    const wrong = await post(rest.baseUrl, MESSAGES_PATH, params, basicAuth(ACCOUNT_SID, "nope"));
    assert.equal(wrong.status, 401);
    assert.deepEqual(wrong.body, {
      code: 20003,
      detail: "Your AccountSid or AuthToken was incorrect.",
      message: "Authenticate",
      more_info: "https://www.twilio.com/docs/errors/20003",
      status: 401,
    });
    assert.match(wrong.headers.get("www-authenticate") ?? "", /^Basic/);
    const missing = await fetch(rest.baseUrl + MESSAGES_PATH, { method: "POST" });
    assert.equal(missing.status, 401);
    await missing.body?.cancel();
    assert.equal(rest.messages.length, 0);
    assert.deepEqual(rest.requests.map((request) => request.status), [401, 401]);
  } finally {
    await rest.close();
  }
});

Deno.test("Messages.json validates like Twilio (21604, 21211, 21603, 21602, 21617)", async () => {
  const rest = startTwilioRestDouble({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
  try {
    const cases: Array<[Record<string, string>, number]> = [
      [{ From: "+14155550199", Body: "hi" }, 21604],
      [{ To: "4155550100", From: "+14155550199", Body: "hi" }, 21211],
      [{ To: "+14155550100", Body: "hi" }, 21603],
      [{ To: "+14155550100", From: "+14155550199" }, 21602],
      [{ To: "+14155550100", From: "+14155550199", Body: "x".repeat(1601) }, 21617],
    ];
    for (const [params, code] of cases) {
      const { status, body } = await post(rest.baseUrl, MESSAGES_PATH, params);
      assert.equal(status, 400, `code ${code}`);
      assert.equal(body.code, code);
      assert.equal(body.more_info, `https://www.twilio.com/docs/errors/${code}`);
      assert.equal(body.status, 400);
    }
    assert.equal(rest.messages.length, 0);
  } finally {
    await rest.close();
  }
});

Deno.test("injectFailures() answers 429 with Retry-After, then 503, then lets requests through", async () => {
  const rest = startTwilioRestDouble({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
  try {
    rest.injectFailures({ path: "Messages.json", count: 1, status: 429, retryAfterSeconds: 2 });
    rest.injectFailures({ path: /Messages\.json$/, count: 1, status: 503 });
    const params = { To: "+14155550100", From: "+14155550199", Body: "hi" };
    const limited = await post(rest.baseUrl, MESSAGES_PATH, params);
    assert.equal(limited.status, 429);
    assert.equal(limited.body.code, 20429);
    assert.equal(limited.headers.get("retry-after"), "2");
    const unavailable = await post(rest.baseUrl, MESSAGES_PATH, params);
    assert.equal(unavailable.status, 503);
    assert.equal(rest.messages.length, 0, "a failed request has no effect");
    const sent = await post(rest.baseUrl, MESSAGES_PATH, params);
    assert.equal(sent.status, 201);
    assert.equal(rest.messages.length, 1);
  } finally {
    await rest.close();
  }
});

Deno.test("Messages.json records the SMS, answers Twilio JSON and sends signed sent/delivered callbacks", async () => {
  const endpoint = startFakeCallbackEndpoint();
  const rest = startTwilioRestDouble({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    rewriteUrl: endpoint.rewriteUrl,
    smsSentDelayMs: 5,
    smsDeliveredDelayMs: 5,
  });
  try {
    const { status, body } = await post(rest.baseUrl, MESSAGES_PATH, {
      To: "+14155550100",
      From: "+14155550199",
      Body: "Your appointment is booked for Tuesday at 10.",
      StatusCallback: `${PUBLIC_BASE}/voice-action?kind=sms`,
    });
    assert.equal(status, 201);
    assert.match(body.sid as string, /^SM[0-9a-f]{32}$/);
    assert.equal(body.status, "queued");
    assert.equal(body.account_sid, ACCOUNT_SID);
    assert.equal(body.num_segments, "1");
    assert.equal(body.error_code, null);
    assert.match(
      body.date_created as string,
      /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/,
    );
    assert.equal(body.uri, `/2010-04-01/Accounts/${ACCOUNT_SID}/Messages/${body.sid}.json`);
    assert.equal(rest.messages[0].body, "Your appointment is booked for Tuesday at 10.");
    assert.equal(rest.requests[0].authUser, ACCOUNT_SID);
    await rest.settled();
    assert.deepEqual(
      endpoint.received.map((callback) => [callback.params.MessageStatus, callback.signatureValid]),
      [["sent", true], ["delivered", true]],
    );
    assert.equal(endpoint.received[1].params.MessageSid, body.sid);
    assert.equal(rest.messages[0].status, "delivered");
  } finally {
    await rest.close();
    await endpoint.close();
  }
});

Deno.test("Calls/{sid}.json answers 404 code 20404 for an unknown call and 32018 for long Twiml", async () => {
  const rest = startTwilioRestDouble({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
  try {
    const unknownSid = "CA" + "0".repeat(32);
    const unknown = await post(rest.baseUrl, callPath(unknownSid), { Status: "completed" });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 20404);
    assert.equal(
      unknown.body.message,
      `The requested resource ${callPath(unknownSid)} was not found`,
    );
    const call = fakeLiveCall("CA" + "b".repeat(32));
    call.registration = rest.registerCall(call);
    const long = await post(rest.baseUrl, callPath(call.callSid), {
      Twiml: "<Response>" + " ".repeat(4000) + "</Response>",
    });
    assert.equal(long.status, 400);
    assert.equal(long.body.code, 32018);
    const nothing = await post(rest.baseUrl, callPath(call.callSid), {});
    assert.equal(nothing.status, 400);
    const badStatus = await post(rest.baseUrl, callPath(call.callSid), { Status: "busy" });
    assert.equal(badStatus.status, 400);
    assert.deepEqual(call.updates, [], "rejected updates never reach the call");
  } finally {
    await rest.close();
  }
});

Deno.test("Calls/{sid}.json Status=completed hangs up and the completed callback is retried per #rc=3&rp=all", async () => {
  const endpoint = startFakeCallbackEndpoint({ failFirst: 2 });
  const rest = startTwilioRestDouble({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    statusCallbackUrl: `${PUBLIC_BASE}/voice-action#rc=3&rp=all`,
    rewriteUrl: endpoint.rewriteUrl,
  });
  try {
    const call = fakeLiveCall("CA" + "c".repeat(32));
    call.registration = rest.registerCall(call);
    const { status, body } = await post(rest.baseUrl, callPath(call.callSid), {
      Status: "completed",
    });
    assert.equal(status, 200);
    assert.equal(body.status, "completed");
    assert.deepEqual(call.updates, [{ status: "completed" }]);
    await rest.settled();
    assert.equal(endpoint.received.length, 3, "two 503s then a 200");
    assert.ok(
      endpoint.received.every((callback) => callback.signatureValid),
      "signed without the fragment",
    );
    assert.equal(new Set(endpoint.received.map((callback) => callback.idempotencyToken)).size, 1);
    const { params } = endpoint.received[2];
    assert.equal(params.CallStatus, "completed");
    assert.equal(params.CallDuration, "42");
    assert.equal(params.CallbackSource, "call-progress-events");
    assert.equal(params.SequenceNumber, "0");
    assert.match(params.Timestamp, /\+0000$/);
    const [callback] = rest.statusCallbacks;
    assert.deepEqual(callback.delivery.attempts.map((attempt) => attempt.status), [503, 503, 200]);
    assert.equal(rest.calls[0].status, "completed");
    const again = await post(rest.baseUrl, callPath(call.callSid), { Twiml: "<Response/>" });
    assert.equal(again.body.code, 21220, "an ended call cannot be redirected");
  } finally {
    await rest.close();
    await endpoint.close();
  }
});

Deno.test("Calls/{sid}.json Twiml=<Dial> ends a live call double's stream and transfers the caller", async () => {
  const endpoint = startFakeCallbackEndpoint({
    twiml:
      `<Response><Connect action="${PUBLIC_BASE}/voice-action"><Stream url="${STREAM_WSS_URL}"/></Connect></Response>`,
  });
  const rest = startTwilioRestDouble({
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    statusCallbackUrl: `${PUBLIC_BASE}/voice-action?event=status`,
    rewriteUrl: endpoint.rewriteUrl,
  });
  try {
    const call = startCall({
      frontdoorUrl: `${endpoint.localBase}/voice-frontdoor`,
      publicFrontdoorUrl: `${PUBLIC_BASE}/voice-frontdoor`,
      authToken: AUTH_TOKEN,
      accountSid: ACCOUNT_SID,
      from: "+14155550100",
      to: "+14155550199",
      restDouble: rest,
      sayMsPerCharacter: 0,
      maxCallMs: 60_000,
    });
    await call.waitUntil(() => call.live.callerAudioSentMs >= 200);
    const transfer =
      "<Response><Say>Transferring you now</Say><Dial>+14155550123</Dial></Response>";
    const { status } = await post(rest.baseUrl, callPath(call.callSid), { Twiml: transfer });
    assert.equal(status, 200);
    const result = await call.result;
    await endpoint.streams[0].closed;
    assert.equal(endpoint.streams[0].messages.at(-1)?.event, "stop");
    assert.equal(result.streams[0].endedBy, "api-update");
    assert.deepEqual(result.says.map((say) => say.text), ["Transferring you now"]);
    assert.deepEqual(result.dials.map((dial) => dial.target), ["+14155550123"]);
    assert.equal(result.endReason, "end-of-document");
    assert.ok(
      !endpoint.received.some((callback) =>
        callback.path === "/voice-action" && callback.params.CallStatus === "in-progress"
      ),
      "a REST redirect does not request the Connect action",
    );
    await rest.settled();
    const statusCallback = endpoint.received.find((callback) =>
      callback.params.CallbackSource !== undefined
    );
    assert.ok(statusCallback?.signatureValid);
    assert.equal(statusCallback?.params.CallStatus, "completed");
    assert.equal(statusCallback?.params.CallSid, call.callSid);
    assert.equal(statusCallback?.params.From, "+14155550100");
    assert.equal(rest.calls[0].updates[0].status, 200);
  } finally {
    await rest.close();
    await endpoint.close();
  }
});

Deno.test("Calls/{sid}.json Url=… makes a live call double fetch and run the new TwiML", async () => {
  const endpoint = startFakeCallbackEndpoint({
    twiml:
      `<Response><Connect><Stream url="${STREAM_WSS_URL}"/></Connect><Say>Unreached</Say></Response>`,
  });
  const rest = startTwilioRestDouble({ accountSid: ACCOUNT_SID, authToken: AUTH_TOKEN });
  try {
    const call = startCall({
      frontdoorUrl: `${endpoint.localBase}/voice-frontdoor`,
      publicFrontdoorUrl: `${PUBLIC_BASE}/voice-frontdoor`,
      authToken: AUTH_TOKEN,
      accountSid: ACCOUNT_SID,
      from: "+14155550100",
      to: "+14155550199",
      restDouble: rest,
      maxCallMs: 60_000,
    });
    await call.waitUntil(() => call.live.callerAudioSentMs >= 100);
    const { status } = await post(rest.baseUrl, callPath(call.callSid), {
      Url: `${PUBLIC_BASE}/voice-action?next=goodbye`,
    });
    assert.equal(status, 200);
    const result = await call.result;
    const fetched = endpoint.received.find((request) => request.path === "/voice-action");
    assert.ok(fetched?.signatureValid);
    assert.equal(fetched?.params.CallStatus, "in-progress");
    assert.equal(result.actionRequests[0].purpose, "rest-update");
    assert.equal(result.streams[0].endedBy, "api-update");
    assert.equal(result.finalTwiml, "<Response/>");
    assert.deepEqual(result.says, [], "the rest of the first document never runs");
    assert.equal(result.endReason, "end-of-document");
  } finally {
    await rest.close();
    await endpoint.close();
  }
});
