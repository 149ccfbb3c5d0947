/**
 * Calls longer than a stream's worker may live, through the whole local stack (voice-frontdoor,
 * voice-stream, voice-action, Postgres) with the Twilio and OpenAI Realtime doubles: with a 5 s
 * stream wall clock, one call is carried by several streams in turn, each handing it over to the
 * next through voice-action's `<Connect action>` answer, and a replayed or forged continuation is
 * refused.
 * @module
 */
import assert from "node:assert/strict";
import { JANE_DOE_NUMBER, startCallStack } from "../support/call_stack.ts";
import { signTwilioRequest } from "../doubles/twilio_rest_double.ts";
import { LOCAL_TWILIO_AUTH_TOKEN } from "../../scripts/local_stack.ts";
import { LONG_CALL_GREETING, longCall } from "./scenarios.ts";

/** Long end-to-end tests keep sockets and timers of the stack's own workers around. */
const E2E = { sanitizeOps: false, sanitizeResources: false } as const;

/** Opens a Media Stream to voice-stream as Twilio would and sends `start`; resolves with its close. */
async function replayStream(
  stream: { url: string; connectUrl: string },
  callSid: string,
  customParameters: Record<string, string>,
): Promise<{ code: number; reason: string }> {
  const signature = await signTwilioRequest(LOCAL_TWILIO_AUTH_TOKEN, stream.url, {});
  const socket = new WebSocket(stream.connectUrl, { headers: { "x-twilio-signature": signature } });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.addEventListener(
      "close",
      (event) => resolve({ code: event.code, reason: event.reason }),
    );
  });
  await new Promise((resolve) => socket.addEventListener("open", resolve));
  const streamSid = `MZ${crypto.randomUUID().replaceAll("-", "")}`;
  socket.send(JSON.stringify({ event: "connected", protocol: "Call", version: "1.0.0" }));
  socket.send(JSON.stringify({
    event: "start",
    sequenceNumber: "1",
    start: {
      accountSid: `AC${"0".repeat(32)}`,
      streamSid,
      callSid,
      tracks: ["inbound"],
      mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      customParameters,
    },
    streamSid,
  }));
  const timeout = setTimeout(() => socket.close(), 5000);
  const result = await closed;
  clearTimeout(timeout);
  return result;
}

Deno.test({
  name: "a call outlives its streams: handed over several times, every turn stored once",
  ...E2E,
  async fn() {
    const conversation = longCall({ callerTurns: 5 });
    const e2e = await startCallStack({
      openai: { scenario: conversation.scenario, speedFactor: 8 },
      env: { STREAM_WALL_CLOCK_SECONDS: "5" },
    });
    try {
      const call = await e2e.placeCall({
        from: JANE_DOE_NUMBER,
        audio: conversation.callerScript,
        pacing: "realtime",
        maxCallMs: 60_000,
      });
      const streams = call.streams;
      const sessions = e2e.openai.sessions;
      assert.ok(streams.length >= 3, `streams: ${streams.length}`);
      assert.deepEqual(call.protocolErrors, [], "Media Streams spoken without errors");
      for (const session of sessions) {
        assert.deepEqual(session.errors, [], `model session ${session.index}: GA items accepted`);
      }
      // Each stream but the last was closed by the server after a handover; each opened its own
      // model session, and every one of those was closed.
      for (const stream of streams.slice(0, -1)) {
        assert.equal(stream.endedBy, "server");
        // 1000, or 0/1006 when a caller frame crossed the close frame (see the call double).
        assert.ok([1000, 0, 1006].includes(stream.closeCode ?? -1), `close ${stream.closeCode}`);
        assert.deepEqual(stream.unechoedMarks, [], "nothing unplayed was dropped");
      }
      assert.equal(sessions.length, streams.length, "one model session per stream");
      for (const session of sessions) assert.ok(session.closed, `session ${session.index} closed`);
      for (const session of sessions.slice(0, -1)) assert.equal(session.closeCode, 1000);
      const handovers = call.actionRequests.filter((request) =>
        request.purpose === "connect-action" && /<Stream /.test(request.delivery.body)
      );
      assert.equal(handovers.length, streams.length - 1);
      for (const [index, stream] of streams.entries()) {
        assert.equal(stream.customParameters.callSid, call.callSid);
        assert.equal(Boolean(stream.customParameters.continuation), index > 0);
      }

      // One greeting, by the first stream; later sessions were told not to greet.
      const greetings = sessions.flatMap((session) =>
        session.responses.filter((response) => response.transcript === LONG_CALL_GREETING)
      );
      assert.equal(greetings.length, 1);
      assert.equal(sessions[0].responses[0].transcript, LONG_CALL_GREETING);
      for (const session of sessions.slice(1)) {
        const instructions = String(session.sessionUpdates[0]?.instructions);
        assert.match(instructions, /Do not greet the caller/);
        assert.match(instructions, /"caller_first_name": "Jane"/, "caller context carried");
      }

      // The call ended normally on the last stream: the assistant said goodbye after the last
      // caller line (or, had a line been cut by a final handover, the caller hung up).
      const expectedEnd = conversation.callerLines() >= 5 ? "twiml-hangup" : "caller-hangup";
      assert.equal(call.endReason, expectedEnd);
      assert.equal(call.says.length, 0, "no apology");
      await e2e.rest.settled();
      const sql = e2e.db.sql;
      const [row] = await sql`select status, outcome, tool_calls, stream_seconds::float8 as seconds
        from public.calls where call_sid = ${call.callSid}`;
      assert.equal(row.status, "completed");
      assert.equal(row.outcome, "completed");
      assert.equal(e2e.rest.messages.length, 0, "no recovery text");
      // Each stream added the tool calls it ran (a call the old model asked for while its
      // session was being handed over is not run: the next session asks again).
      const ran = e2e.logs("tool_call").filter((entry) => entry.fn === "voice-stream").length;
      assert.ok(ran >= 1);
      assert.equal(row.tool_calls, ran, "each stream added its tool calls");
      assert.ok(row.seconds > 10, `stream seconds ${row.seconds}`);

      // Every turn of the whole call, stored once under its CallSid, in order.
      const turns = await sql`
        select t.sequence, t.speaker, t.text from public.call_turns t
        join public.calls c on c.id = t.call_id
        where c.call_sid = ${call.callSid} order by t.sequence`;
      assert.deepEqual(turns.map((turn) => turn.sequence), turns.map((_, index) => index));
      assert.equal(new Set(turns.map((turn) => turn.text)).size, turns.length, "no turn twice");
      const callerTurns = turns.filter((turn) => turn.speaker === "caller").map((turn) =>
        turn.text
      );
      const heard = sessions.flatMap((session) => session.userTurns.map((turn) => turn.transcript));
      assert.deepEqual(callerTurns, heard.filter((text) => text !== ""));
      assert.deepEqual(
        callerTurns,
        callerTurns.map((_, index) => `Caller line ${index + 1}.`),
        "caller lines in order",
      );
      const replies = turns.filter((turn) => /^Reply \d+\.$/.test(turn.text)).map((turn) =>
        Number(/\d+/.exec(turn.text)![0])
      );
      assert.deepEqual(replies, [...replies].sort((a, b) => a - b), "replies in order");
      assert.equal(turns[0].text, LONG_CALL_GREETING);
      if (expectedEnd === "twiml-hangup") assert.equal(turns.at(-1)?.text, "Goodbye!");

      const events = await sql`select e.kind from public.call_events e
        join public.calls c on c.id = e.call_id where c.call_sid = ${call.callSid}`;
      const kinds = events.map((event) => event.kind);
      assert.equal(kinds.filter((kind) => kind === "stream_handover").length, handovers.length);
      assert.equal(kinds.filter((kind) => kind === "stream_ended").length, 1, "one real end");
      assert.equal(e2e.logs("handover_started").length, handovers.length);
      assert.equal(e2e.logs("continuation_restored").length, handovers.length);

      // A replayed continuation (its stream already claimed it) and a forged one are refused
      // before any model session opens.
      const sessionsBefore = sessions.length;
      const replayed = await replayStream(streams[1], call.callSid, streams[1].customParameters);
      assert.equal(replayed.code, 1008);
      const forged = await replayStream(streams[0], call.callSid, {
        ...streams[0].customParameters,
        continuation: crypto.randomUUID(),
      });
      assert.equal(forged.code, 1008);
      assert.equal(e2e.openai.sessions.length, sessionsBefore, "no model session for either");
      const reasons = e2e.logs("security_rejected").map((entry) => entry.reason);
      assert.deepEqual(reasons, ["continuation_refused", "token_mismatch"]);
    } finally {
      await e2e.stop();
    }
  },
});
