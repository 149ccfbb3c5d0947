import assert from "node:assert/strict";
import { createMemoryLogger, maskPhone } from "./log.ts";

Deno.test("maskPhone() keeps only the last 4 digits", () => {
  assert.equal(maskPhone("+15551230001"), "***0001");
  assert.equal(maskPhone("anonymous"), "***");
});

Deno.test("createLogger() writes one JSON object per line with bound call fields", () => {
  const { logger, lines, entries } = createMemoryLogger("voice-frontdoor");
  const callLog = logger.child({
    traceId: "trace-1",
    callSid: "CA1234567890abcdef1234567890abcdef",
  });
  callLog.info("call_incoming", { from: "+15551230001", to: "15550100000", lookupMs: 3 });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes("\n"));
  const [entry] = entries("call_incoming");
  assert.equal(entry.fn, "voice-frontdoor");
  assert.equal(entry.level, "info");
  assert.equal(entry.traceId, "trace-1");
  // CallSids stay searchable: hex digit runs are not phone numbers.
  assert.equal(entry.callSid, "CA1234567890abcdef1234567890abcdef");
  assert.equal(entry.from, "***0001");
  assert.equal(entry.to, "***0000");
  assert.equal(entry.lookupMs, 3);
});

Deno.test("createLogger() never prints secrets and masks numbers inside text", () => {
  const { logger, lines } = createMemoryLogger("voice-action");
  logger.warn("security_rejected", {
    authToken: "tok-123456",
    headers: { authorization: "Basic abc", "x-twilio-signature": "sig" },
    msg: "SMS to +15551230001 failed",
    usage: { inputTokens: 12 },
  });
  const text = lines.join("\n");
  assert.doesNotMatch(text, /tok-123456|Basic abc|"sig"|5551230001/);
  assert.match(text, /\*\*\*0001/);
  assert.match(text, /"inputTokens":12/);
});

Deno.test("createLogger() drops lines below its level", () => {
  const { logger, lines } = createMemoryLogger("voice-stream", "warn");
  logger.info("noise");
  logger.error("boom", { error: new Error("bad +15551230001") });
  assert.equal(lines.length, 1);
  assert.match(lines[0], /"message":"bad \*\*\*0001"/);
});
