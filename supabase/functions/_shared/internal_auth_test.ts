import assert from "node:assert/strict";
import {
  issueStreamToken,
  signInternalRequest,
  timingSafeEqual,
  verifyInternalRequest,
  verifyStreamToken,
} from "./internal_auth.ts";

const SECRET = "k".repeat(40);
const callSid = "CA" + "a".repeat(32);

Deno.test("verifyStreamToken() accepts its own token until expiry", async () => {
  const token = await issueStreamToken(SECRET, { callSid, traceId: "t1", expiresAtMs: 1_060_000 });
  assert.deepEqual(
    await verifyStreamToken(SECRET, token, { callSid, traceId: "t1", nowMs: 1_000_000 }),
    {
      ok: true,
    },
  );
  assert.deepEqual(
    await verifyStreamToken(SECRET, token, { callSid, traceId: "t1", nowMs: 1_060_000 }),
    {
      ok: false,
      reason: "expired",
    },
  );
});

Deno.test("verifyStreamToken() refuses another call, trace, secret or a tampered token", async () => {
  const token = await issueStreamToken(SECRET, { callSid, traceId: "t1", expiresAtMs: 2_000_000 });
  const now = { nowMs: 1_000_000 };
  const other = "CA" + "b".repeat(32);
  assert.equal(
    (await verifyStreamToken(SECRET, token, { callSid: other, traceId: "t1", ...now })).ok,
    false,
  );
  assert.equal(
    (await verifyStreamToken(SECRET, token, { callSid, traceId: "t2", ...now })).ok,
    false,
  );
  assert.equal(
    (await verifyStreamToken("x".repeat(40), token, { callSid, traceId: "t1", ...now })).ok,
    false,
  );
  const extended = token.replace(/^v1\.(\d+)/, (_m, expiry) => `v1.${Number(expiry) + 100}`);
  assert.deepEqual(await verifyStreamToken(SECRET, extended, { callSid, traceId: "t1", ...now }), {
    ok: false,
    reason: "mismatch",
  });
  assert.deepEqual(await verifyStreamToken(SECRET, "garbage", { callSid, traceId: "t1", ...now }), {
    ok: false,
    reason: "malformed",
  });
  assert.deepEqual(await verifyStreamToken(SECRET, null, { callSid, traceId: "t1", ...now }), {
    ok: false,
    reason: "missing",
  });
});

Deno.test("verifyInternalRequest() checks signature and age", async () => {
  const body = JSON.stringify({ tool: "end_call" });
  const headers = new Headers(await signInternalRequest(SECRET, body, 1_000_000));
  assert.deepEqual(await verifyInternalRequest(SECRET, headers, body, 1_030_000), { ok: true });
  assert.deepEqual(await verifyInternalRequest(SECRET, headers, body, 1_061_000), {
    ok: false,
    reason: "stale",
  });
  assert.deepEqual(await verifyInternalRequest(SECRET, headers, body + " ", 1_000_000), {
    ok: false,
    reason: "mismatch",
  });
  assert.deepEqual(await verifyInternalRequest(SECRET, new Headers(), body, 1_000_000), {
    ok: false,
    reason: "missing",
  });
});

Deno.test("timingSafeEqual() compares strings of any length", () => {
  assert.equal(timingSafeEqual("abc", "abc"), true);
  assert.equal(timingSafeEqual("abc", "abd"), false);
  assert.equal(timingSafeEqual("abc", "abcd"), false);
});

Deno.test("verifyStreamToken() binds a continuation id: forged, dropped or added ids are refused", async () => {
  const continuationId = "3f0c8a52-5d0e-4c53-9a43-1f6f2f0f1a11";
  const claims = { callSid, traceId: "t1", nowMs: 1_000_000 };
  const token = await issueStreamToken(SECRET, {
    callSid,
    traceId: "t1",
    expiresAtMs: 2_000_000,
    continuationId,
  });
  assert.deepEqual(await verifyStreamToken(SECRET, token, { ...claims, continuationId }), {
    ok: true,
  });
  const forged = "9a1b2c3d-0000-4000-8000-000000000000";
  assert.deepEqual(
    await verifyStreamToken(SECRET, token, { ...claims, continuationId: forged }),
    { ok: false, reason: "mismatch" },
  );
  assert.deepEqual(await verifyStreamToken(SECRET, token, claims), {
    ok: false,
    reason: "mismatch",
  });
  // A first stream's token cannot carry a continuation the caller made up.
  const plain = await issueStreamToken(SECRET, { callSid, traceId: "t1", expiresAtMs: 2_000_000 });
  assert.deepEqual(await verifyStreamToken(SECRET, plain, { ...claims, continuationId }), {
    ok: false,
    reason: "mismatch",
  });
  assert.deepEqual(await verifyStreamToken(SECRET, plain, { ...claims, continuationId: null }), {
    ok: true,
  });
});
