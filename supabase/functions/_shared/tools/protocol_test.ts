import assert from "node:assert/strict";
import { verifyInternalRequest } from "../internal_auth.ts";
import { callVoiceAction, safeParseVoiceActionRequest, streamEndKey } from "./protocol.ts";

const SECRET = "s".repeat(40);
const URL = "https://abc.supabase.co/functions/v1/voice-action";
const CALL_SID = "CA" + "a".repeat(32);
const NOW = Date.UTC(2026, 10, 23, 17, 0, 0);

const toolCall = {
  type: "tool_call" as const,
  callSid: CALL_SID,
  traceId: "trace-1",
  callId: "call_1",
  name: "end_call",
  arguments: '{"reason":"bye"}',
};

function answering(status: number, body: string, seen?: Request[]): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    seen?.push(request.clone());
    const verified = await verifyInternalRequest(
      SECRET,
      request.headers,
      await request.text(),
      NOW,
    );
    if (!verified.ok) {
      return new Response(JSON.stringify({ ok: false, error: "Unauthorized" }), { status: 401 });
    }
    return new Response(body, { status, headers: { "content-type": "application/json" } });
  };
}

Deno.test("callVoiceAction() signs the JSON body and returns the typed answer", async () => {
  const seen: Request[] = [];
  const answer = {
    ok: true,
    output: { ending: true },
    effect: "end_call",
    bookingInProgress: false,
  };
  const result = await callVoiceAction(
    answering(200, JSON.stringify(answer), seen),
    URL,
    SECRET,
    toolCall,
    {
      timeoutMs: 1000,
      nowMs: NOW,
    },
  );
  assert.deepEqual(result, { ok: true, status: 200, response: answer });
  assert.equal(seen[0].method, "POST");
  assert.equal(seen[0].url, URL);
  assert.equal(seen[0].headers.get("content-type"), "application/json");
  assert.deepEqual(JSON.parse(await seen[0].text()), toolCall);
});

Deno.test("callVoiceAction() returns error answers with voice-action's message and issues", async () => {
  const body = JSON.stringify({
    ok: false,
    error: "Invalid arguments for end_call: reason is required",
    issues: [{ path: "reason", message: "is required" }],
  });
  const result = await callVoiceAction(answering(422, body), URL, SECRET, toolCall, {
    timeoutMs: 1000,
    nowMs: NOW,
  });
  assert.deepEqual(result, {
    ok: false,
    failure: "http",
    status: 422,
    error: "Invalid arguments for end_call: reason is required",
    issues: [{ path: "reason", message: "is required" }],
  });
  const unauthorized = await callVoiceAction(answering(200, "{}"), URL, "x".repeat(40), toolCall, {
    timeoutMs: 1000,
    nowMs: NOW,
  });
  assert.deepEqual(unauthorized, {
    ok: false,
    failure: "http",
    status: 401,
    error: "Unauthorized",
    issues: undefined,
  });
  const gateway = await callVoiceAction(
    () => Promise.resolve(new Response("<html>bad gateway</html>", { status: 502 })),
    URL,
    SECRET,
    toolCall,
    { timeoutMs: 1000, nowMs: NOW },
  );
  assert.deepEqual(gateway, {
    ok: false,
    failure: "http",
    status: 502,
    error: "voice-action answered 502",
    issues: undefined,
  });
});

Deno.test("callVoiceAction() reports timeouts, network failures and invalid answers without throwing", async () => {
  const hanging: typeof fetch = (_input, init) =>
    new Promise((_resolve, reject) =>
      init?.signal?.addEventListener("abort", () => reject(init.signal?.reason))
    );
  const timedOut = await callVoiceAction(hanging, URL, SECRET, toolCall, {
    timeoutMs: 20,
    nowMs: NOW,
  });
  assert.deepEqual(timedOut, { ok: false, failure: "timeout", error: "No answer within 20 ms" });
  const refused = await callVoiceAction(
    () => Promise.reject(new TypeError("connection refused")),
    URL,
    SECRET,
    toolCall,
    { timeoutMs: 1000, nowMs: NOW },
  );
  assert.deepEqual(refused, {
    ok: false,
    failure: "network",
    error: "TypeError: connection refused",
  });
  const invalid = await callVoiceAction(answering(200, "OK"), URL, SECRET, toolCall, {
    timeoutMs: 1000,
    nowMs: NOW,
  });
  assert.equal(!invalid.ok && invalid.failure, "invalid_response");
});

Deno.test("safeParseVoiceActionRequest() accepts the four call-control actions with defaults", () => {
  const base = { type: "call_control", callSid: CALL_SID, traceId: "t" };
  const transfer = safeParseVoiceActionRequest({ ...base, action: "transfer" });
  assert.deepEqual(transfer, { success: true, data: { ...base, action: "transfer", reason: "" } });
  const ended = safeParseVoiceActionRequest({
    ...base,
    action: "stream_ended",
    reason: "caller_hung_up",
  });
  assert.deepEqual(ended, {
    success: true,
    data: { ...base, action: "stream_ended", reason: "caller_hung_up", bookingInProgress: false },
  });
  assert.equal(
    safeParseVoiceActionRequest({ ...base, action: "stream_ended", reason: "bored" }).success,
    false,
  );
  assert.equal(
    safeParseVoiceActionRequest({ ...base, action: "explode", reason: "" }).success,
    false,
  );
});

Deno.test("safeParseVoiceActionRequest() names the bad fields", () => {
  const result = safeParseVoiceActionRequest({
    type: "tool_call",
    callSid: "CA1",
    traceId: "",
    callId: "c",
    name: "x",
  });
  assert.equal(result.success, false);
  if (result.success) return;
  assert.deepEqual(result.error.issues.map((issue) => issue.path), ["callSid", "traceId"]);
  assert.match(result.error.message, /^Invalid voice-action request: callSid: /);
  assert.equal(safeParseVoiceActionRequest("hello").success, false);
  assert.equal(safeParseVoiceActionRequest(null).success, false);
});

Deno.test("streamEndKey() is one key per call", () => {
  assert.equal(streamEndKey(CALL_SID), `stream-end:${CALL_SID}`);
});
