import assert from "node:assert/strict";
import { createMemoryLogger } from "../log.ts";
import {
  createTwilioRestClient,
  parseRetryAfter,
  type TwilioRestClientOptions,
} from "./rest_client.ts";

const ACCOUNT_SID = "AC" + "1".repeat(32);
const AUTH_TOKEN = "token-" + "x".repeat(26);
const CALL_SID = "CA" + "a".repeat(32);
const BASE = "https://api.example.test";

interface Seen {
  url: string;
  method: string;
  headers: Headers;
  form: URLSearchParams;
}

type Answer = { status: number; body?: unknown; headers?: Record<string, string> } | "network";

function setup(answers: Answer[], overrides: Partial<TwilioRestClientOptions> = {}) {
  const seen: Seen[] = [];
  const sleeps: number[] = [];
  const memory = createMemoryLogger("test");
  const fetchFn: typeof fetch = (input, init) => {
    seen.push({
      url: String(input),
      method: init?.method ?? "GET",
      headers: new Headers(init?.headers),
      form: new URLSearchParams(String(init?.body ?? "")),
    });
    const answer = answers.shift() ?? { status: 500 };
    if (answer === "network") {
      return Promise.reject(new TypeError("error sending request: connection refused"));
    }
    return Promise.resolve(
      new Response(answer.body === undefined ? "" : JSON.stringify(answer.body), {
        status: answer.status,
        headers: answer.headers,
      }),
    );
  };
  const client = createTwilioRestClient({
    baseUrl: BASE + "/",
    accountSid: ACCOUNT_SID,
    authToken: AUTH_TOKEN,
    fetch: fetchFn,
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
    log: memory.logger,
    clock: () => Date.UTC(2026, 10, 24, 12, 0, 0),
    ...overrides,
  });
  return { client, seen, sleeps, memory };
}

const message = { to: "+15551230001", from: "+15550100000", body: "Hi Jane & co" };

Deno.test("sendSms() posts a form with Basic auth and returns the Message SID", async () => {
  const { client, seen } = setup([{
    status: 201,
    body: { sid: "SM" + "b".repeat(32), status: "queued" },
  }]);
  const result = await client.sendSms({
    ...message,
    statusCallback: "https://x.test/a?route=sms-status",
  });
  assert.deepEqual(result, {
    ok: true,
    messageSid: "SM" + "b".repeat(32),
    status: "queued",
    attempts: 1,
  });
  assert.equal(seen.length, 1);
  assert.equal(seen[0].url, `${BASE}/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`);
  assert.equal(seen[0].method, "POST");
  assert.equal(seen[0].headers.get("content-type"), "application/x-www-form-urlencoded");
  assert.equal(
    seen[0].headers.get("authorization"),
    `Basic ${btoa(`${ACCOUNT_SID}:${AUTH_TOKEN}`)}`,
  );
  assert.deepEqual(Object.fromEntries(seen[0].form), {
    To: "+15551230001",
    From: "+15550100000",
    Body: "Hi Jane & co",
    StatusCallback: "https://x.test/a?route=sms-status",
  });
});

Deno.test("sendSms() retries 429 honouring Retry-After, and 5xx with doubling backoff", async () => {
  const { client, sleeps, memory } = setup([
    {
      status: 429,
      body: { code: 20429, message: "Too Many Requests" },
      headers: { "retry-after": "2" },
    },
    { status: 503, body: { code: 20500 } },
    { status: 500 },
    { status: 201, body: { sid: "SM" + "c".repeat(32), status: "queued" } },
  ]);
  const result = await client.sendSms(message);
  assert.equal(result.ok, true);
  assert.equal(result.attempts, 4);
  assert.deepEqual(sleeps, [2000, 500, 1000]);
  assert.equal(memory.entries("twilio_rest_retry").length, 3);
});

Deno.test("sendSms() gives up after 3 retries with a typed failure", async () => {
  const { client, seen, memory } = setup([
    { status: 500, body: { code: 20500, message: "An internal server error has occurred" } },
    { status: 500, body: { code: 20500, message: "An internal server error has occurred" } },
    { status: 502 },
    { status: 500, body: { code: 20500, message: "An internal server error has occurred" } },
  ]);
  const result = await client.sendSms(message);
  assert.deepEqual(result, {
    ok: false,
    kind: "http",
    status: 500,
    code: 20500,
    message: "An internal server error has occurred",
    attempts: 4,
  });
  assert.equal(seen.length, 4);
  assert.equal(memory.entries("twilio_rest_failed").length, 1);
});

Deno.test("sendSms() does not retry a 4xx", async () => {
  const { client, seen } = setup([
    { status: 400, body: { code: 21211, message: "The 'To' number is not a valid phone number." } },
  ]);
  const result = await client.sendSms(message);
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.kind === "http" && result.code, 21211);
  assert.equal(seen.length, 1);
});

Deno.test("sendSms() retries connection failures but not timeouts", async () => {
  const refused = setup(["network", { status: 201, body: { sid: "SM" + "d".repeat(32) } }]);
  const sent = await refused.client.sendSms(message);
  assert.equal(sent.ok, true);
  assert.equal(refused.seen.length, 2);

  let calls = 0;
  const hanging: typeof fetch = (_input, init) => {
    calls++;
    return new Promise((_resolve, reject) => {
      init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
    });
  };
  const slow = setup([], { fetch: hanging, attemptTimeoutMs: 20 });
  const result = await slow.client.sendSms(message);
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.kind, "timeout");
  assert.equal(calls, 1);
});

Deno.test("updateCall() sends TwiML, URL or Status", async () => {
  const { client, seen } = setup([
    { status: 200, body: { sid: CALL_SID, status: "in-progress" } },
    { status: 200, body: { sid: CALL_SID, status: "completed" } },
    { status: 200, body: { sid: CALL_SID, status: "in-progress" } },
  ]);
  const twiml =
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi &amp; bye</Say></Response>';
  assert.deepEqual(await client.updateCall(CALL_SID, { twiml }), {
    ok: true,
    status: "in-progress",
    attempts: 1,
  });
  assert.equal((await client.updateCall(CALL_SID, { status: "completed" })).ok, true);
  assert.equal((await client.updateCall(CALL_SID, { url: "https://x.test/next" })).ok, true);
  assert.equal(seen[0].url, `${BASE}/2010-04-01/Accounts/${ACCOUNT_SID}/Calls/${CALL_SID}.json`);
  assert.deepEqual(Object.fromEntries(seen[0].form), { Twiml: twiml });
  assert.deepEqual(Object.fromEntries(seen[1].form), { Status: "completed" });
  assert.deepEqual(Object.fromEntries(seen[2].form), {
    Url: "https://x.test/next",
    Method: "POST",
  });
});

Deno.test("updateCall() reports a call that already ended as call_ended, not as an error", async () => {
  const { client, memory } = setup([
    { status: 404, body: { code: 20404, message: "The requested resource was not found" } },
    { status: 400, body: { code: 21220, message: "Call is not in-progress. Cannot redirect." } },
  ]);
  assert.deepEqual(await client.updateCall(CALL_SID, { status: "completed" }), {
    ok: false,
    kind: "call_ended",
    status: 404,
    code: 20404,
    attempts: 1,
  });
  const redirected = await client.updateCall(CALL_SID, { twiml: "<Response/>" });
  assert.equal(!redirected.ok && redirected.kind, "call_ended");
  assert.equal(memory.entries("twilio_rest_failed").length, 0);
});

Deno.test("createTwilioRestClient() caps the backoff", async () => {
  const { client, sleeps } = setup([
    { status: 429, headers: { "retry-after": "3600" } },
    { status: 201, body: { sid: "SM" + "e".repeat(32) } },
  ], { maxDelayMs: 1500 });
  assert.equal((await client.sendSms(message)).ok, true);
  assert.deepEqual(sleeps, [1500]);
});

Deno.test("parseRetryAfter() reads seconds and HTTP dates", () => {
  const now = Date.UTC(2026, 10, 24, 12, 0, 0);
  assert.equal(parseRetryAfter(null, now), null);
  assert.equal(parseRetryAfter("", now), null);
  assert.equal(parseRetryAfter("1", now), 1000);
  assert.equal(parseRetryAfter("0.5", now), 500);
  assert.equal(parseRetryAfter("Tue, 24 Nov 2026 12:00:03 GMT", now), 3000);
  assert.equal(parseRetryAfter("Tue, 24 Nov 2026 11:00:00 GMT", now), 0);
  assert.equal(parseRetryAfter("soon", now), null);
});
