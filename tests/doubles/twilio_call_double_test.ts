/**
 * Tests of the Twilio voice double (webhook, TwiML, Media Streams and playout) against tiny fake
 * functions served on loopback; signatures are checked with the product's `signature.ts` and with
 * the `twilio` package.
 * @module
 */

import assert from "node:assert/strict";
import { getExpectedTwilioSignature } from "twilio/lib/webhooks/webhooks.js";
import { validateTwilioSignature } from "../../supabase/functions/_shared/twilio/signature.ts";
import { base64ToBytes, bytesToBase64 } from "../../supabase/functions/_shared/codec/pcm.ts";
import { loadFixture } from "../support/audio_fixtures.ts";
import { readWav } from "../support/wav.ts";
import {
  type CallerStep,
  checkServerMessage,
  FRAME_BYTES,
  publicToLocalUrlMapper,
  safeParseTwiml,
  startCall,
} from "./twilio_call_double.ts";

const ACCOUNT_SID = "AC" + "1".repeat(32);
const AUTH_TOKEN = "double-test-auth-token";
const PUBLIC_BASE = "https://example.supabase.co/functions/v1";
const STREAM_WSS_URL = "wss://example.supabase.co/functions/v1/voice-stream";
const CALLER = "+14155550100";
const CALLED = "+14155550199";

/** A loud mu-law frame pattern (not silence). */
function loudAudio(bytes: number): Uint8Array {
  const audio = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) audio[i] = i % 2 === 0 ? 0x10 : 0x90;
  return audio;
}

interface FakeRequest {
  path: string;
  search: string;
  params: Record<string, string>;
  headers: Headers;
  signatureValid: boolean;
}

interface FakeStream {
  socket: WebSocket;
  signature: string | null;
  signatureValid: boolean;
  messages: Array<Record<string, unknown>>;
  /** Resolves with the first message matching, waiting for it if needed. */
  next(predicate: (message: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  send(message: unknown): void;
  closed: Promise<void>;
}

/** voice-frontdoor, voice-stream and voice-action stand-ins that verify Twilio's signatures. */
function startFakeFunctions(handlers: {
  twiml: (request: FakeRequest) => string;
  onStream?: (stream: FakeStream) => Promise<void> | void;
  frontdoorStatus?: number;
}) {
  const requests: FakeRequest[] = [];
  const streams: FakeStream[] = [];
  const streamTasks: Promise<void>[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const { pathname: path, search } = new URL(req.url);
    if (path === "/voice-stream") {
      const signature = req.headers.get("x-twilio-signature");
      const signatureValid = await validateTwilioSignature(
        AUTH_TOKEN,
        signature,
        STREAM_WSS_URL,
        {},
      );
      if (!signatureValid) return new Response("Forbidden", { status: 403 });
      const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
      const messages: Array<Record<string, unknown>> = [];
      const waiters: Array<
        {
          predicate: (m: Record<string, unknown>) => boolean;
          resolve: (m: Record<string, unknown>) => void;
        }
      > = [];
      let closedResolve!: () => void;
      const stream: FakeStream = {
        socket,
        signature,
        signatureValid,
        messages,
        next(predicate) {
          const found = messages.find(predicate);
          if (found) return Promise.resolve(found);
          return new Promise((resolve) => waiters.push({ predicate, resolve }));
        },
        send(message) {
          if (socket.readyState === WebSocket.OPEN) {
            socket.send(typeof message === "string" ? message : JSON.stringify(message));
          }
        },
        closed: new Promise((resolve) => (closedResolve = resolve)),
      };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        messages.push(message);
        for (const waiter of [...waiters]) {
          if (waiter.predicate(message)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(message);
          }
        }
      };
      socket.onclose = () => closedResolve();
      socket.onopen = () => {
        streams.push(stream);
        streamTasks.push(Promise.resolve(handlers.onStream?.(stream)));
      };
      return response;
    }
    const params = Object.fromEntries(new URLSearchParams(await req.text()));
    const signature = req.headers.get("x-twilio-signature");
    const signatureValid = await validateTwilioSignature(
      AUTH_TOKEN,
      signature,
      PUBLIC_BASE + path + search,
      params,
    );
    const request = { path, search, params, headers: req.headers, signatureValid };
    requests.push(request);
    if (!signatureValid) return new Response("Forbidden", { status: 403 });
    if (path === "/voice-frontdoor" && handlers.frontdoorStatus !== undefined) {
      return new Response("nope", { status: handlers.frontdoorStatus });
    }
    return new Response(handlers.twiml(request), { headers: { "content-type": "text/xml" } });
  });
  const baseUrl = `http://127.0.0.1:${server.addr.port}`;
  return {
    requests,
    streams,
    frontdoorUrl: `${baseUrl}/voice-frontdoor`,
    async close() {
      await Promise.allSettled(streamTasks);
      await server.shutdown();
    },
  };
}

function connectTwiml(parameters: Record<string, string> = {}, action = true): string {
  const parameterXml = Object.entries(parameters)
    .map(([name, value]) => `<Parameter name="${name}" value="${value}"/>`)
    .join("");
  const actionAttribute = action ? ` action="${PUBLIC_BASE}/voice-action?step=after"` : "";
  return `<?xml version="1.0" encoding="UTF-8"?><Response><Connect${actionAttribute}>` +
    `<Stream url="${STREAM_WSS_URL}">${parameterXml}</Stream></Connect></Response>`;
}

const GOODBYE_TWIML = "<Response><Say>Goodbye</Say><Hangup/></Response>";

function callOptions(frontdoorUrl: string, audio: CallerStep[], pacing: number | "fast" = "fast") {
  return {
    frontdoorUrl,
    publicFrontdoorUrl: `${PUBLIC_BASE}/voice-frontdoor`,
    authToken: AUTH_TOKEN,
    accountSid: ACCOUNT_SID,
    from: CALLER,
    to: CALLED,
    audio,
    pacing,
    sayMsPerCharacter: 0,
    maxCallMs: 60_000,
  };
}

function sendAudio(stream: FakeStream, streamSid: string, bytes: Uint8Array): void {
  stream.send({ event: "media", streamSid, media: { payload: bytesToBase64(bytes) } });
}

function sendMark(stream: FakeStream, streamSid: string, name: string): void {
  stream.send({ event: "mark", streamSid, mark: { name } });
}

const isStart = (message: Record<string, unknown>) => message.event === "start";
const isMark = (name: string) => (message: Record<string, unknown>) =>
  message.event === "mark" && (message.mark as { name: string }).name === name;

Deno.test("publicToLocalUrlMapper() maps the public base to the local one, wss to ws", () => {
  const map = publicToLocalUrlMapper(
    "http://127.0.0.1:9000/voice-frontdoor",
    "https://x.supabase.co/functions/v1/voice-frontdoor",
  );
  assert.equal(
    map("https://x.supabase.co/functions/v1/voice-action?a=1"),
    "http://127.0.0.1:9000/voice-action?a=1",
  );
  assert.equal(
    map("wss://x.supabase.co/functions/v1/voice-stream"),
    "ws://127.0.0.1:9000/voice-stream",
  );
  assert.equal(map("https://elsewhere.example/x"), "https://elsewhere.example/x");
  const same = publicToLocalUrlMapper(
    "http://127.0.0.1:54321/functions/v1/voice-frontdoor",
    "https://x.supabase.co/functions/v1/voice-frontdoor",
  );
  assert.equal(
    same("wss://x.supabase.co/functions/v1/voice-stream"),
    "ws://127.0.0.1:54321/functions/v1/voice-stream",
  );
});

Deno.test("safeParseTwiml() reads verbs in order and rejects malformed or foreign documents", () => {
  const parsed = safeParseTwiml(
    connectTwiml({ tenant: "t1", "call id": "a&b" }).replace("a&b", "a&amp;b"),
  );
  assert.ok(parsed.success);
  const connect = parsed.data.children[0];
  assert.equal(connect.name, "Connect");
  assert.equal(connect.attributes.action, `${PUBLIC_BASE}/voice-action?step=after`);
  assert.equal(connect.children[0].attributes.url, STREAM_WSS_URL);
  assert.deepEqual(
    connect.children[0].children.map((child) => [child.attributes.name, child.attributes.value]),
    [["tenant", "t1"], ["call id", "a&b"]],
  );
  assert.equal(safeParseTwiml("<Response><Say>Hi</Response>").success, false);
  assert.equal(safeParseTwiml("<Reply><Say>Hi</Say></Reply>").success, false);
  assert.equal(safeParseTwiml("").success, false);
});

Deno.test("checkServerMessage() accepts Twilio's three events and flags every deviation", () => {
  const sid = "MZ" + "2".repeat(32);
  const ok = (message: unknown) => checkServerMessage(JSON.stringify(message), sid).success;
  assert.ok(ok({ event: "media", streamSid: sid, media: { payload: "//8=" } }));
  assert.ok(ok({ event: "mark", streamSid: sid, mark: { name: "m1" } }));
  assert.ok(ok({ event: "clear", streamSid: sid }));
  assert.ok(!ok({ event: "play", streamSid: sid }));
  assert.ok(!ok({ event: "clear", streamSid: "MZ" + "3".repeat(32) }));
  assert.ok(!ok({ event: "clear" }));
  assert.ok(!ok({ event: "media", streamSid: sid, media: { payload: "not base64!" } }));
  assert.ok(!ok({ event: "media", streamSid: sid, media: { payload: "//8=", track: "outbound" } }));
  assert.ok(!ok({ event: "mark", streamSid: sid, mark: {} }));
  assert.ok(!ok({ event: "clear", streamSid: sid, extra: 1 }));
  assert.equal(checkServerMessage("{", sid).success, false);
});

Deno.test("placeCall() posts the inbound-call webhook with Twilio's parameters, signed", async () => {
  const functions = startFakeFunctions({
    twiml: () => "<Response><Say>Hello there</Say><Hangup/></Response>",
  });
  try {
    const call = startCall({
      ...callOptions(functions.frontdoorUrl, []),
      callerName: "Jane Doe",
      fromGeo: { city: "SAN FRANCISCO", state: "CA", zip: "94105" },
      stirVerstat: "TN-Validation-Passed-A",
    });
    const result = await call.result;
    const [webhook] = functions.requests;
    assert.equal(webhook.path, "/voice-frontdoor");
    assert.ok(webhook.signatureValid, "product validator accepts the signature");
    assert.equal(
      webhook.headers.get("x-twilio-signature"),
      getExpectedTwilioSignature(AUTH_TOKEN, `${PUBLIC_BASE}/voice-frontdoor`, webhook.params),
    );
    assert.equal(webhook.headers.get("content-type"), "application/x-www-form-urlencoded");
    assert.match(webhook.headers.get("i-twilio-idempotency-token") ?? "", /.+/);
    assert.deepEqual(
      { ...webhook.params },
      {
        AccountSid: ACCOUNT_SID,
        ApiVersion: "2010-04-01",
        CallSid: result.callSid,
        CallStatus: "ringing",
        Called: CALLED,
        CalledCity: "",
        CalledCountry: "US",
        CalledState: "",
        CalledZip: "",
        Caller: CALLER,
        CallerCity: "SAN FRANCISCO",
        CallerCountry: "US",
        CallerName: "Jane Doe",
        CallerState: "CA",
        CallerZip: "94105",
        Direction: "inbound",
        From: CALLER,
        FromCity: "SAN FRANCISCO",
        FromCountry: "US",
        FromState: "CA",
        FromZip: "94105",
        StirVerstat: "TN-Validation-Passed-A",
        To: CALLED,
        ToCity: "",
        ToCountry: "US",
        ToState: "",
        ToZip: "",
      },
    );
    assert.match(result.callSid, /^CA[0-9a-f]{32}$/);
    assert.deepEqual(result.says.map((say) => say.text), ["Hello there"]);
    assert.equal(result.endReason, "twiml-hangup");
    assert.deepEqual(result.protocolErrors, []);
  } finally {
    await functions.close();
  }
});

Deno.test("placeCall() ends with an application error when the webhook is refused", async () => {
  const functions = startFakeFunctions({ twiml: () => GOODBYE_TWIML });
  try {
    const result = await startCall({
      ...callOptions(functions.frontdoorUrl, []),
      webhookSignatureOverride: "bm90IGEgc2lnbmF0dXJl",
    }).result;
    assert.equal(functions.requests[0].signatureValid, false);
    assert.equal(result.endReason, "application-error");
    assert.deepEqual(result.protocolErrors.map((error) => error.code), [11200]);
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() opens a signed stream, sends connected/start/media/dtmf, then requests the Connect action", async () => {
  let streamSid = "";
  const functions = startFakeFunctions({
    twiml: (request) =>
      request.path === "/voice-frontdoor" ? connectTwiml({ tenant: "t-1" }) : GOODBYE_TWIML,
    async onStream(stream) {
      const start = await stream.next(isStart);
      streamSid = start.streamSid as string;
      await stream.next((message) => message.event === "dtmf");
      await stream.next((message) =>
        message.event === "media" && Number(message.sequenceNumber) >= 12
      );
      stream.socket.close(1000, "done");
    },
  });
  try {
    const result = await startCall(
      callOptions(functions.frontdoorUrl, [{ send: loudAudio(400) }, { dtmf: "5" }, {
        silenceMs: 10_000,
      }]),
    ).result;
    const [stream] = functions.streams;
    assert.ok(stream.signatureValid, "upgrade signed over the wss URL");
    assert.equal(stream.signature, getExpectedTwilioSignature(AUTH_TOKEN, STREAM_WSS_URL, {}));
    const [connected, start, ...rest] = stream.messages;
    assert.deepEqual(connected, { event: "connected", protocol: "Call", version: "1.0.0" });
    assert.deepEqual(start, {
      event: "start",
      sequenceNumber: "1",
      start: {
        accountSid: ACCOUNT_SID,
        streamSid,
        callSid: result.callSid,
        tracks: ["inbound"],
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
        customParameters: { tenant: "t-1" },
      },
      streamSid,
    });
    assert.match(streamSid, /^MZ[0-9a-f]{32}$/);
    const media = rest.filter((message) => message.event === "media");
    media.forEach((message, index) => {
      const body = message.media as Record<string, string>;
      assert.equal(body.track, "inbound");
      assert.equal(body.chunk, String(index + 1));
      assert.equal(body.timestamp, String(index * 20));
      assert.equal(base64ToBytes(body.payload)?.length, FRAME_BYTES);
    });
    // 400 bytes of speech: two full frames and a third padded with silence.
    assert.deepEqual(
      base64ToBytes((media[2].media as Record<string, string>).payload)?.subarray(80, 84),
      new Uint8Array([0xff, 0xff, 0xff, 0xff]),
    );
    const dtmf = rest.find((message) => message.event === "dtmf");
    assert.deepEqual(dtmf?.dtmf, { track: "inbound_track", digit: "5" });
    const sequenceNumbers = [start, ...rest].map((message) => Number(message.sequenceNumber));
    assert.deepEqual(sequenceNumbers, sequenceNumbers.map((_, index) => index + 1));

    assert.equal(result.streams[0].endedBy, "server");
    // Deno's server drops the TCP connection when a frame crosses its close frame, and Deno's
    // client then reports 0 instead of the server's code (Twilio's client would see 1000).
    assert.ok([1000, 0].includes(result.closeCode!), `close code ${result.closeCode}`);
    assert.deepEqual(result.customParameters, { tenant: "t-1" });
    const action = functions.requests.find((request) => request.path === "/voice-action");
    assert.ok(action?.signatureValid);
    assert.equal(action?.params.CallStatus, "in-progress");
    assert.equal(result.actionRequests[0].purpose, "connect-action");
    assert.equal(
      result.actionRequests[0].delivery.signedUrl,
      `${PUBLIC_BASE}/voice-action?step=after`,
    );
    assert.deepEqual(result.says.map((say) => say.text), ["Goodbye"]);
    assert.equal(result.endReason, "twiml-hangup");
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() echoes a mark only once the audio queued before it has played", async () => {
  const speed = 10;
  let echoRealMs = 0;
  const functions = startFakeFunctions({
    twiml: () => connectTwiml({}, false),
    async onStream(stream) {
      const sid = (await stream.next(isStart)).streamSid as string;
      sendMark(stream, sid, "before-audio");
      await stream.next(isMark("before-audio"));
      for (let i = 0; i < 5; i++) sendAudio(stream, sid, loudAudio(1600)); // 5 x 200 ms
      const sentAt = performance.now();
      sendMark(stream, sid, "after-1s");
      await stream.next(isMark("after-1s"));
      echoRealMs = performance.now() - sentAt;
      stream.socket.close();
    },
  });
  try {
    const result = await startCall(callOptions(functions.frontdoorUrl, [], speed)).result;
    const [immediate, afterAudio] = result.marksEchoed;
    assert.equal(immediate.name, "before-audio");
    assert.equal(immediate.dueMs, immediate.receivedAtMs, "nothing queued: echoed at once");
    assert.equal(afterAudio.name, "after-1s");
    assert.equal(afterAudio.dueMs - result.agentChunks[0].startMs, 1000);
    assert.ok(afterAudio.echoedAtMs >= afterAudio.dueMs);
    assert.ok(
      afterAudio.echoedAtMs - afterAudio.dueMs < 500,
      `late by ${afterAudio.echoedAtMs - afterAudio.dueMs} ms`,
    );
    assert.ok(echoRealMs >= (1000 / speed) * 0.8, `echo after ${echoRealMs} real ms`);
    assert.equal(afterAudio.cleared, false);
    assert.equal(result.agentAudioPlayedMs, 1000);
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() returns pending marks on clear and drops the unplayed audio", async () => {
  const speed = 10;
  const functions = startFakeFunctions({
    twiml: () => connectTwiml({}, false),
    async onStream(stream) {
      const sid = (await stream.next(isStart)).streamSid as string;
      sendAudio(stream, sid, loudAudio(40_000)); // 5000 ms
      sendMark(stream, sid, "a");
      await new Promise((resolve) => setTimeout(resolve, 500 / speed));
      stream.send({ event: "clear", streamSid: sid });
      await stream.next(isMark("a"));
      sendAudio(stream, sid, loudAudio(1600)); // 200 ms
      sendMark(stream, sid, "b");
      await stream.next(isMark("b"));
      stream.socket.close();
    },
  });
  try {
    const result = await startCall(callOptions(functions.frontdoorUrl, [], speed)).result;
    const [clear] = result.clears;
    assert.deepEqual(clear.marksReturned, ["a"]);
    assert.equal(clear.playedMsAtClear + clear.droppedMs, 5000);
    assert.ok(
      clear.playedMsAtClear >= 300 && clear.playedMsAtClear <= 4500,
      `played ${clear.playedMsAtClear}`,
    );
    const [first, second] = result.agentChunks;
    assert.equal(first.playedMs, clear.playedMsAtClear);
    assert.equal(first.cutAtMs, clear.atMs);
    assert.deepEqual(clear.cutChunks, [{
      index: 0,
      playedMs: first.playedMs,
      droppedMs: clear.droppedMs,
    }]);
    assert.ok(second.startMs >= clear.atMs, "audio after a clear starts fresh");
    assert.deepEqual(
      result.marksEchoed.map((mark) => [mark.name, mark.cleared]),
      [["a", true], ["b", false]],
    );
    assert.equal(result.agentAudioPlayedMs, first.playedMs + 200);
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() records invalid server messages as Twilio warnings and keeps the stream", async () => {
  const functions = startFakeFunctions({
    twiml: () => connectTwiml({}, false),
    async onStream(stream) {
      const sid = (await stream.next(isStart)).streamSid as string;
      stream.send({ event: "play", streamSid: sid });
      stream.send({ event: "clear", streamSid: "MZ" + "0".repeat(32) });
      stream.send({ event: "media", streamSid: sid, media: { payload: "@@@" } });
      stream.send("not json");
      stream.socket.send(new Uint8Array([1, 2, 3]));
      sendMark(stream, sid, "still-alive");
      await stream.next(isMark("still-alive"));
      stream.socket.close();
    },
  });
  try {
    const result = await startCall(callOptions(functions.frontdoorUrl, [])).result;
    assert.deepEqual(result.protocolErrors.map((error) => error.code), [
      31951,
      31951,
      31951,
      31951,
      31950,
    ]);
    assert.equal(result.streams[0].endedBy, "server");
    assert.equal(result.receivedEvents.length, 6);
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() hangs up from the script: stop, close, Connect action with CallStatus=completed", async () => {
  const functions = startFakeFunctions({
    twiml: (request) => request.path === "/voice-frontdoor" ? connectTwiml() : GOODBYE_TWIML,
  });
  try {
    const result = await startCall(
      callOptions(functions.frontdoorUrl, [{ silenceMs: 200 }, { hangup: true }]),
    ).result;
    const [stream] = functions.streams;
    await stream.closed;
    const stop = stream.messages.at(-1)!;
    assert.deepEqual(stop, {
      event: "stop",
      sequenceNumber: stop.sequenceNumber,
      streamSid: result.streamSid,
      stop: { accountSid: ACCOUNT_SID, callSid: result.callSid },
    });
    assert.equal(result.streams[0].framesSent, 10);
    assert.equal(result.streams[0].endedBy, "caller-hangup");
    const action = functions.requests.find((request) => request.path === "/voice-action");
    assert.equal(action?.params.CallStatus, "completed");
    assert.equal(result.endReason, "caller-hangup");
    assert.deepEqual(result.says, [], "TwiML after a hang-up is not executed");
    assert.equal(result.documents.at(-1)?.executed, false);
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() waits in the script for agent audio, then for agent silence", async () => {
  const functions = startFakeFunctions({
    twiml: () => connectTwiml({}, false),
    async onStream(stream) {
      const sid = (await stream.next(isStart)).streamSid as string;
      sendAudio(stream, sid, loudAudio(8000)); // 1000 ms
      await stream.closed;
    },
  });
  try {
    const result = await startCall(callOptions(functions.frontdoorUrl, [
      { waitForAgentAudioMs: 400 },
      { send: loudAudio(160) },
      { waitForAgentSilenceMs: 300 },
      { hangup: true },
    ])).result;
    const [waitAudio, speak, waitSilence] = result.scriptLog;
    const chunk = result.agentChunks[0];
    assert.ok(waitAudio.endedAtMs! >= chunk.startMs + 400);
    assert.ok(
      waitAudio.endedAtMs! <= chunk.startMs + 400 + 20 + 200,
      `ended at ${waitAudio.endedAtMs}`,
    );
    assert.equal(speak.kind, "send");
    assert.ok(waitSilence.endedAtMs! >= chunk.startMs + 1000 + 300);
    assert.deepEqual(result.scriptTimeouts, []);
    assert.equal(result.endReason, "caller-hangup");
  } finally {
    await functions.close();
  }
});

Deno.test("CallResult.wav() writes the caller left and the played agent audio right, aligned", async () => {
  const callerSpeech = loadFixture("caller_confirm");
  const agentSpeech = loadFixture("agent_goodbye");
  const functions = startFakeFunctions({
    twiml: () => connectTwiml({}, false),
    async onStream(stream) {
      const sid = (await stream.next(isStart)).streamSid as string;
      await stream.next((message) =>
        message.event === "media" && Number(message.sequenceNumber) > 5
      );
      sendAudio(stream, sid, agentSpeech);
      sendMark(stream, sid, "end");
      await stream.next(isMark("end"));
      stream.socket.close();
    },
  });
  try {
    const result = await startCall(callOptions(functions.frontdoorUrl, [{ send: callerSpeech }]))
      .result;
    const wav = readWav(result.wav());
    assert.equal(wav.channels, 2);
    assert.equal(wav.sampleRate, 8000);
    const frames = wav.samples[0].length;
    const energy = (channel: number, fromMs: number, toMs: number) => {
      let sum = 0;
      for (let i = Math.round(fromMs * 8); i < Math.min(frames, Math.round(toMs * 8)); i++) {
        sum += Math.abs(wav.samples[channel][i]);
      }
      return sum;
    };
    const chunk = result.agentChunks[0];
    const streamOpenMs = result.streams[0].openedAtMs!;
    assert.ok(frames >= Math.round((chunk.startMs + chunk.durationMs) * 8) - 1);
    assert.ok(
      energy(0, streamOpenMs, streamOpenMs + callerSpeech.length / 8) > 0,
      "caller on the left",
    );
    assert.equal(energy(1, 0, chunk.startMs), 0, "agent silent before its audio played");
    assert.ok(energy(1, chunk.startMs, chunk.startMs + chunk.durationMs) > 0, "agent on the right");
    const path = await Deno.makeTempFile({ suffix: ".wav" });
    try {
      await result.saveWav(path);
      assert.deepEqual(await Deno.readFile(path), result.wav());
    } finally {
      await Deno.remove(path);
    }
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() carries the caller's script across a handover to a fresh stream", async () => {
  const functions = startFakeFunctions({
    twiml: (request) => {
      if (request.path === "/voice-action") {
        // The first stream's action hands over through a relative <Redirect>.
        return request.params.CallStatus === "in-progress"
          ? "<Response><Redirect>voice-frontdoor?leg=2</Redirect></Response>"
          : GOODBYE_TWIML;
      }
      return connectTwiml({ leg: request.search === "?leg=2" ? "2" : "1" });
    },
    async onStream(stream) {
      const start = await stream.next(isStart);
      const sid = start.streamSid as string;
      const { customParameters } = start.start as { customParameters: Record<string, string> };
      if (customParameters.leg === "1") {
        sendAudio(stream, sid, loudAudio(800)); // 100 ms
        sendMark(stream, sid, "leg-1");
        await stream.next(isMark("leg-1"));
        stream.socket.close(1000, "handover");
      } else {
        sendAudio(stream, sid, loudAudio(1600)); // 200 ms
        await stream.closed;
      }
    },
  });
  try {
    const result = await startCall(callOptions(functions.frontdoorUrl, [
      { waitForAgentAudioMs: 100 },
      // Only the second stream plays this much more: the script waits across the handover.
      { waitForAgentAudioMs: 200 },
      { send: loudAudio(1600) },
      { waitForAgentSilenceMs: 100 },
      { hangup: true },
    ])).result;
    assert.deepEqual(result.streams.map((stream) => stream.customParameters.leg), ["1", "2"]);
    assert.deepEqual(result.streams.map((stream) => stream.endedBy), ["server", "caller-hangup"]);
    assert.deepEqual(
      result.actionRequests.map((request) => [request.purpose, request.delivery.params.CallStatus]),
      [["connect-action", "in-progress"], ["redirect", "in-progress"], [
        "connect-action",
        "completed",
      ]],
    );
    assert.equal(
      result.actionRequests[1].delivery.signedUrl,
      `${PUBLIC_BASE}/voice-frontdoor?leg=2`,
    );
    assert.ok(functions.requests.every((request) => request.signatureValid));
    assert.equal(result.agentAudioPlayedMs, 300);
    const sendStep = result.scriptLog.find((step) => step.kind === "send")!;
    assert.ok(sendStep.startedAtMs >= result.streams[1].openedAtMs!, "script resumed in stream 2");
    assert.equal(result.endReason, "caller-hangup");
  } finally {
    await functions.close();
  }
});

Deno.test("startCall() fails a stream Twilio would not open and moves on to the Connect action", async () => {
  const functions = startFakeFunctions({
    twiml: (request) => {
      if (request.path !== "/voice-frontdoor") return GOODBYE_TWIML;
      const twiml = connectTwiml();
      return request.search === "?plain=1" ? twiml.replace("wss://", "ws://") : twiml;
    },
  });
  try {
    const badSignature = await startCall({
      ...callOptions(functions.frontdoorUrl, []),
      streamSignatureOverride: "AAAA",
    }).result;
    assert.deepEqual(badSignature.protocolErrors.map((error) => error.code), [31920]);
    assert.equal(badSignature.streams[0].endedBy, "handshake-failed");
    assert.equal(badSignature.actionRequests[0].delivery.params.CallStatus, "in-progress");
    assert.deepEqual(badSignature.says.map((say) => say.text), ["Goodbye"]);

    const plainWs = await startCall({
      ...callOptions(functions.frontdoorUrl, []),
      publicFrontdoorUrl: `${PUBLIC_BASE}/voice-frontdoor?plain=1`,
      frontdoorUrl: `${functions.frontdoorUrl}?plain=1`,
    }).result;
    assert.deepEqual(plainWs.protocolErrors.map((error) => error.code), [31922]);
    assert.equal(plainWs.streams.length, 0, "never connected");
    assert.equal(plainWs.endReason, "twiml-hangup");
  } finally {
    await functions.close();
  }
});
