import assert from "node:assert/strict";
import twilio from "twilio";
import {
  LOCAL_TWILIO_ACCOUNT_SID,
  LOCAL_TWILIO_AUTH_TOKEN,
  startLocalStack,
} from "../local_stack.ts";
import { createTestDatabase } from "../../tests/support/test_db.ts";
import {
  DEMO_ORG_NUMBER,
  JANE_DOE_NUMBER,
  startCallStack,
} from "../../tests/support/call_stack.ts";
import { bookingCallerScript, bookingScenario, nextTuesday } from "../../tests/e2e/scenarios.ts";
import { EDGE_LIMIT_PRESETS } from "./limits.ts";
import { currentThreadId } from "./thread_stat.ts";

Deno.test({
  name: "startLocalStack() under the edge runtime answers a signed voice-frontdoor webhook",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const db = await createTestDatabase({ seed: true });
    const lines: string[] = [];
    const stack = await startLocalStack({
      databaseUrl: db.url,
      skipPrepare: true,
      port: 0,
      edgeRuntime: { ...EDGE_LIMIT_PRESETS.free, pollIntervalMs: 20 },
      logSink: (line) => lines.push(line),
    });
    try {
      const url = `${stack.functionsUrl}/voice-frontdoor`;
      const params = {
        AccountSid: LOCAL_TWILIO_ACCOUNT_SID,
        CallSid: "CA" + "e".repeat(32),
        CallStatus: "ringing",
        Direction: "inbound",
        From: JANE_DOE_NUMBER,
        To: DEMO_ORG_NUMBER,
      };
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          "x-twilio-signature": twilio.getExpectedTwilioSignature(
            LOCAL_TWILIO_AUTH_TOKEN,
            url,
            params,
          ),
        },
        body: new URLSearchParams(params).toString(),
      });
      const twiml = await response.text();
      assert.equal(response.status, 200, twiml);
      assert.match(
        twiml,
        /<Connect[^>]*><Stream url="wss:\/\/127\.0\.0\.1:\d+\/functions\/v1\/voice-stream"/,
      );
      const unsigned = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "From=%2B1",
      });
      assert.equal(unsigned.status, 403);
      await unsigned.body?.cancel();
      const entries = () =>
        lines.map((line) => JSON.parse(line) as Record<string, unknown>)
          .filter((entry) => entry.fn === "edge-runtime");
      const started = entries().filter((entry) => entry.event === "worker_started");
      assert.equal(started.length, 2, "one worker per request");
      assert.ok(started.every((entry) => entry.name === "voice-frontdoor"));
      assert.ok(started.every((entry) => entry.tid !== currentThreadId()));
    } finally {
      await stack.stop();
      await db.drop();
    }
  },
});

Deno.test({
  name: "startLocalStack() under the edge runtime carries a booking call, each request in a worker",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const e2e = await startCallStack({
      openai: { scenario: bookingScenario(nextTuesday()), speedFactor: 8 },
      edgeRuntime: { ...EDGE_LIMIT_PRESETS.free, pollIntervalMs: 20 },
    });
    const { openai, rest } = e2e;
    try {
      const call = await e2e.placeCall({
        from: JANE_DOE_NUMBER,
        audio: bookingCallerScript(),
        maxCallMs: 60_000,
      });
      assert.equal(call.status, "completed");
      assert.deepEqual(call.protocolErrors, []);
      const session = openai.sessions[0];
      assert.ok(session.functionCalls.some((fc) => fc.name === "book_appointment"));
      await rest.settled();
      const entries = e2e.logs(undefined, "edge-runtime");
      const started = entries.filter((entry) => entry.event === "worker_started");
      const names = new Set(started.map((entry) => entry.name));
      assert.deepEqual([...names].sort(), ["voice-action", "voice-frontdoor", "voice-stream"]);
      const killed = entries.filter((entry) =>
        entry.event === "worker_terminated" &&
        (entry.reason === "CPUTime" || entry.reason === "WallClockTime")
      );
      assert.deepEqual(killed, []);
      const stream = entries.find((entry) =>
        entry.event === "worker_terminated" && entry.name === "voice-stream"
      );
      assert.equal(stream?.requestInFlight, false, "the stream worker outlived its socket only");
    } finally {
      await e2e.stop();
    }
  },
});
