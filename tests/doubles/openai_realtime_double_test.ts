/**
 * Tests of the OpenAI Realtime GA double, driven by a plain WebSocket client speaking the GA
 * protocol by hand (no bridge code), so they pin down what the double accepts and answers.
 * @module
 */

import assert from "node:assert/strict";
import { concatBytes } from "../../supabase/functions/_shared/codec/pcm.ts";
import { createResampler } from "../../supabase/functions/_shared/codec/resample.ts";
import { mulawDecode } from "../../supabase/functions/_shared/codec/g711.ts";
import {
  base64ToBytes,
  bytesToBase64,
  int16ToPcm16le,
} from "../../supabase/functions/_shared/codec/pcm.ts";
import {
  FIXTURE_TRANSCRIPTS,
  loadFixture,
  mulawDurationMs,
  mulawSilence,
} from "../support/audio_fixtures.ts";
import {
  BETA_SHAPE_CLOSE_CODE,
  DEFAULT_DOUBLE_API_KEY,
  type OpenAIRealtimeDouble,
  type OpenAIRealtimeDoubleOptions,
  startOpenAIRealtimeDouble,
  vadThresholdToDbfs,
} from "./openai_realtime_double.ts";

type Json = Record<string, unknown>;

/** A GA client written by hand: records every server event, sends JSON. */
interface TestClient {
  socket: WebSocket;
  events: Json[];
  opened: Promise<void>;
  closed: Promise<CloseEvent>;
  send(event: Json): void;
  /** Next event of `type` at or after index `from` (default: any so far). */
  next(type: string, options?: { from?: number; timeoutMs?: number }): Promise<Json>;
  /** Resolves once `predicate` holds over the events. */
  until(predicate: (events: Json[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

function connect(url: string, init: WebSocketOptions = {}): TestClient {
  const socket = new WebSocket(url, init);
  const events: Json[] = [];
  const waiters = new Set<() => void>();
  const opened = new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve());
    socket.addEventListener("error", () => reject(new Error("WebSocket failed to open")));
  });
  opened.catch(() => {});
  const closed = new Promise<CloseEvent>((resolve) => {
    socket.addEventListener("close", (event) => {
      resolve(event);
      for (const waiter of [...waiters]) waiter();
    });
  });
  socket.addEventListener("message", (message) => {
    events.push(JSON.parse(message.data as string));
    for (const waiter of [...waiters]) waiter();
  });
  const until = (predicate: (events: Json[]) => boolean, timeoutMs = 5000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (predicate(events)) {
          finish();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`Timed out; events: ${events.map((e) => e.type).join(", ")}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return {
    socket,
    events,
    opened,
    closed,
    send: (event) => socket.send(JSON.stringify(event)),
    async next(type, options = {}) {
      const from = options.from ?? 0;
      await until(
        (all) => all.slice(from).some((event) => event.type === type),
        options.timeoutMs,
      );
      return events.slice(from).find((event) => event.type === type)!;
    },
    until,
    async close() {
      if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
        socket.close();
      }
      await closed;
    },
  };
}

function bearer(key = DEFAULT_DOUBLE_API_KEY): WebSocketOptions {
  return { headers: { Authorization: `Bearer ${key}` } };
}

const MODEL = "gpt-realtime";

/** A GA session.update for a phone bridge: mu-law both ways, server VAD, transcription. */
function phoneSessionUpdate(overrides: Json = {}): Json {
  return {
    type: "session.update",
    event_id: "evt_session",
    session: {
      type: "realtime",
      instructions: "You are the receptionist of Harbor Dental. The caller is Jane Doe.",
      output_modalities: ["audio"],
      audio: {
        input: {
          format: { type: "audio/pcmu" },
          transcription: { model: "gpt-4o-mini-transcribe" },
          turn_detection: {
            type: "server_vad",
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
          },
        },
        output: { format: { type: "audio/pcmu" }, voice: "marin" },
      },
      tools: [{
        type: "function",
        name: "book_appointment",
        description: "Books a dental appointment",
        parameters: { type: "object", properties: { day: { type: "string" } } },
      }],
      tool_choice: "auto",
      ...overrides,
    },
  };
}

/** Appends mu-law audio in 100 ms events, as a coalescing bridge would. */
function appendMulaw(client: TestClient, mulaw: Uint8Array, chunkBytes = 800): void {
  for (let offset = 0; offset < mulaw.length; offset += chunkBytes) {
    client.send({
      type: "input_audio_buffer.append",
      audio: bytesToBase64(mulaw.subarray(offset, offset + chunkBytes)),
    });
  }
}

async function withDouble(
  options: OpenAIRealtimeDoubleOptions,
  body: (double: OpenAIRealtimeDouble) => Promise<void>,
): Promise<void> {
  const double = await startOpenAIRealtimeDouble({ speedFactor: Infinity, ...options });
  try {
    await body(double);
  } finally {
    await double.close();
  }
}

/** Opens a GA connection with the phone session applied. */
async function openPhoneSession(double: OpenAIRealtimeDouble): Promise<TestClient> {
  const client = connect(`${double.url}?model=${MODEL}`, bearer());
  await client.opened;
  await client.next("session.created");
  client.send(phoneSessionUpdate());
  await client.next("session.updated");
  return client;
}

function errorsOf(client: TestClient, from = 0): Json[] {
  return client.events.slice(from).filter((event) => event.type === "error").map((event) =>
    event.error as Json
  );
}

Deno.test("startOpenAIRealtimeDouble() accepts a GA connection and merges session.update", async () => {
  await withDouble({}, async (double) => {
    const client = connect(`${double.url}?model=${MODEL}`, bearer());
    try {
      await client.opened;
      const created = await client.next("session.created");
      const session = created.session as Json;
      assert.equal(typeof created.event_id, "string");
      assert.equal(session.type, "realtime");
      assert.equal(session.object, "realtime.session");
      assert.equal(session.model, MODEL);
      const audio = session.audio as { input: Json; output: Json };
      assert.deepEqual(audio.input.format, { type: "audio/pcm", rate: 24000 });
      assert.deepEqual(audio.output.format, { type: "audio/pcm", rate: 24000 });

      client.send(phoneSessionUpdate());
      const updated = (await client.next("session.updated")).session as Json;
      const merged = updated.audio as { input: Json; output: Json };
      assert.deepEqual(merged.input.format, { type: "audio/pcmu" });
      assert.deepEqual(merged.output.format, { type: "audio/pcmu" });
      assert.equal((merged.input.turn_detection as Json).interrupt_response, true);
      assert.equal((merged.input.turn_detection as Json).create_response, true);
      assert.match(String(updated.instructions), /Jane Doe/);
      assert.equal(errorsOf(client).length, 0);

      const record = double.sessions[0];
      assert.equal(record.auth, "header");
      assert.equal(record.sessionUpdates.length, 1);
      assert.equal((record.sessionUpdates[0].tools as Json[])[0].name, "book_appointment");
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() accepts subprotocol auth and selects the realtime protocol", async () => {
  await withDouble({}, async (double) => {
    const client = connect(`${double.url}?model=gpt-realtime-mini`, {
      protocols: ["realtime", `openai-insecure-api-key.${DEFAULT_DOUBLE_API_KEY}`],
    });
    try {
      await client.opened;
      assert.equal(client.socket.protocol, "realtime");
      await client.next("session.created");
      assert.equal(double.sessions[0].auth, "subprotocol");
      assert.equal(double.sessions[0].model, "gpt-realtime-mini");
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() refuses bad keys and models over HTTP without upgrading", async () => {
  await withDouble({}, async (double) => {
    const httpUrl = double.url.replace("ws://", "http://");
    const wrongKey = await fetch(`${httpUrl}?model=${MODEL}`, {
      headers: { Authorization: "Bearer sk-wrong" },
    });
    assert.equal(wrongKey.status, 401);
    assert.equal(((await wrongKey.json()).error as Json).code, "invalid_api_key");
    const noModel = await fetch(httpUrl, { headers: { Authorization: `Bearer ${double.apiKey}` } });
    assert.equal(noModel.status, 400);
    await noModel.body?.cancel();
    const badModel = await fetch(`${httpUrl}?model=gpt-4o`, {
      headers: { Authorization: `Bearer ${double.apiKey}` },
    });
    assert.equal(badModel.status, 404);
    await badModel.body?.cancel();

    const client = connect(`${double.url}?model=${MODEL}`, bearer("sk-wrong"));
    await assert.rejects(client.opened);
    await client.closed;
    assert.equal(double.sessions.length, 0);
  });
});

Deno.test("startOpenAIRealtimeDouble() answers the beta header with beta_api_shape_disabled and 4000", async () => {
  await withDouble({}, async (double) => {
    const client = connect(`${double.url}?model=${MODEL}`, {
      headers: { Authorization: `Bearer ${double.apiKey}`, "OpenAI-Beta": "realtime=v1" },
    });
    await client.opened;
    const closed = await client.closed;
    assert.equal(closed.code, BETA_SHAPE_CLOSE_CODE);
    assert.equal(errorsOf(client)[0].code, "beta_api_shape_disabled");
    assert.equal(double.sessions[0].betaHeader, true);
  });
});

Deno.test("startOpenAIRealtimeDouble() closes with 4000 on a beta-shaped session.update", async () => {
  await withDouble({}, async (double) => {
    const client = connect(`${double.url}?model=${MODEL}`, bearer());
    await client.opened;
    await client.next("session.created");
    client.send({
      type: "session.update",
      session: {
        input_audio_format: "g711_ulaw",
        output_audio_format: "g711_ulaw",
        voice: "alloy",
        turn_detection: { type: "server_vad" },
        modalities: ["audio", "text"],
      },
    });
    const closed = await client.closed;
    assert.equal(closed.code, BETA_SHAPE_CLOSE_CODE);
    assert.equal(errorsOf(client)[0].code, "beta_api_shape_disabled");
  });

  // A GA envelope with beta format strings is refused the same way.
  await withDouble({}, async (double) => {
    const client = connect(`${double.url}?model=${MODEL}`, bearer());
    await client.opened;
    await client.next("session.created");
    client.send({
      type: "session.update",
      session: { type: "realtime", audio: { input: { format: "g711_ulaw" } } },
    });
    assert.equal((await client.closed).code, BETA_SHAPE_CLOSE_CODE);
  });
});

Deno.test("startOpenAIRealtimeDouble() answers malformed client events with the service's error codes", async () => {
  await withDouble({}, async (double) => {
    const client = await openPhoneSession(double);
    try {
      const cases: Array<[Json | string, string, string | null]> = [
        [{ type: "response.audio.delta", event_id: "e1" }, "invalid_value", "type"],
        [
          { type: "session.update", session: { type: "realtime", temperature: 0.8 } },
          "unknown_parameter",
          "session.temperature",
        ],
        [
          { type: "session.update", session: { instructions: "x" } },
          "missing_required_parameter",
          "session.type",
        ],
        [
          {
            type: "session.update",
            session: { type: "realtime", audio: { input: { format: { type: "audio/wav" } } } },
          },
          "invalid_value",
          "session.audio.input.format.type",
        ],
        [
          {
            type: "session.update",
            session: {
              type: "realtime",
              audio: { input: { turn_detection: { type: "server_vad", threshold: 2 } } },
            },
          },
          "decimal_above_max_value",
          "session.audio.input.turn_detection.threshold",
        ],
        [{ type: "input_audio_buffer.append", audio: 42 }, "invalid_type", "audio"],
        [{ type: "input_audio_buffer.append", audio: "not base64!" }, "invalid_value", "audio"],
        [{ type: "input_audio_buffer.commit" }, "input_audio_buffer_commit_empty", null],
        [
          {
            type: "conversation.item.create",
            item: { type: "function_call_output", output: "{}" },
          },
          "missing_required_parameter",
          "item.call_id",
        ],
        [
          {
            type: "conversation.item.create",
            item: { type: "function_call_output", call_id: "call_unknown", output: "{}" },
          },
          "invalid_tool_call_id",
          "item.call_id",
        ],
        [{ type: "response.cancel" }, "response_cancel_not_active", null],
        [
          { type: "response.create", response: { modalities: ["audio"] } },
          "unknown_parameter",
          "response.modalities",
        ],
        ["{not json", "invalid_json", null],
      ];
      for (const [event, code, param] of cases) {
        const before = client.events.length;
        if (typeof event === "string") client.socket.send(event);
        else client.send(event);
        await client.next("error", { from: before });
        const error = errorsOf(client, before)[0];
        assert.equal(error.code, code, `code for ${JSON.stringify(event)}: ${error.message}`);
        assert.equal(error.param ?? null, param, `param for ${JSON.stringify(event)}`);
        assert.equal(error.type, "invalid_request_error");
      }
      const unknown = errorsOf(client)[0];
      assert.equal(unknown.event_id, "e1");
      assert.match(String(unknown.message), /^Invalid value: 'response\.audio\.delta'/);
      assert.equal(client.socket.readyState, WebSocket.OPEN);
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() rejects fractional and too-long truncations and records valid ones", async () => {
  await withDouble(
    { scenario: [{ kind: "assistant_audio", fixture: "agent_goodbye" }] },
    async (double) => {
      const client = await openPhoneSession(double);
      try {
        client.send({ type: "response.create" });
        const done = await client.next("response.done");
        assert.equal((done.response as Json).status, "completed");
        const delta = await client.next("response.output_audio.delta");
        const itemId = delta.item_id as string;
        const audioMs = mulawDurationMs(loadFixture("agent_goodbye"));

        let before = client.events.length;
        client.send({
          type: "conversation.item.truncate",
          item_id: itemId,
          content_index: 0,
          audio_end_ms: 120.5,
        });
        await client.next("error", { from: before });
        assert.equal(errorsOf(client, before)[0].code, "invalid_type");
        assert.match(String(errorsOf(client, before)[0].message), /expected an integer/);

        before = client.events.length;
        client.send({
          type: "conversation.item.truncate",
          item_id: itemId,
          content_index: 0,
          audio_end_ms: audioMs + 500,
        });
        await client.next("error", { from: before });
        assert.match(
          String(errorsOf(client, before)[0].message),
          new RegExp(`^Audio content of ${audioMs}ms is already shorter than ${audioMs + 500}ms`),
        );

        before = client.events.length;
        client.send({
          type: "conversation.item.truncate",
          item_id: "item_missing",
          content_index: 0,
          audio_end_ms: 10,
        });
        await client.next("error", { from: before });

        client.send({
          type: "conversation.item.truncate",
          item_id: itemId,
          content_index: 0,
          audio_end_ms: 200,
        });
        const truncated = await client.next("conversation.item.truncated");
        assert.equal(truncated.audio_end_ms, 200);
        assert.deepEqual(double.sessions[0].truncations.map((t) => t.audio_end_ms), [200]);
      } finally {
        await client.close();
      }
    },
  );
});

Deno.test("startOpenAIRealtimeDouble() VAD finds the speech in a fixture and ignores silence", async () => {
  await withDouble({
    scenario: [{ kind: "caller", fixture: "caller_book_cleaning" }, { kind: "end" }],
  }, async (double) => {
    const client = await openPhoneSession(double);
    try {
      // Three seconds of digital silence: no speech.
      appendMulaw(client, mulawSilence(3000));
      await double.waitFor(() => double.sessions[0].appendedAudioMs >= 3000);
      assert.equal(
        client.events.some((e) => e.type === "input_audio_buffer.speech_started"),
        false,
      );

      const speech = loadFixture("caller_book_cleaning");
      appendMulaw(client, concatBytes([speech, mulawSilence(1000)]));
      const started = await client.next("input_audio_buffer.speech_started");
      const stopped = await client.next("input_audio_buffer.speech_stopped");
      const speechMs = mulawDurationMs(speech);
      // Speech starts within the fixture's 40 ms lead-in (+ the 60 ms the VAD needs), and
      // audio_start_ms includes the 300 ms prefix padding.
      const startMs = started.audio_start_ms as number;
      assert.ok(startMs >= 3000 - 300 && startMs <= 3000 - 300 + 120, `start ${startMs}`);
      const endMs = stopped.audio_end_ms as number;
      assert.ok(
        endMs >= 3000 + speechMs - 200 + 500 && endMs <= 3000 + speechMs + 500 + 40,
        `end ${endMs}, speech ends at ${3000 + speechMs}`,
      );
      assert.equal(stopped.item_id, started.item_id);
      const committed = await client.next("input_audio_buffer.committed");
      assert.equal(committed.item_id, started.item_id);
      const transcription = await client.next(
        "conversation.item.input_audio_transcription.completed",
      );
      assert.equal(transcription.transcript, FIXTURE_TRANSCRIPTS.caller_book_cleaning);
      // create_response defaults to true: the end of the turn starts a response.
      await client.next("response.done");
      assert.equal(double.sessions[0].responses[0].trigger, "vad");
      assert.equal(double.sessions[0].userTurns.length, 1);
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() VAD also runs on 24 kHz audio/pcm input", async () => {
  await withDouble({}, async (double) => {
    const client = connect(`${double.url}?model=${MODEL}`, bearer());
    try {
      await client.opened;
      await client.next("session.created");
      client.send({
        type: "session.update",
        session: {
          type: "realtime",
          audio: { input: { turn_detection: { type: "server_vad", create_response: false } } },
        },
      });
      await client.next("session.updated");
      const resampler = createResampler(8000, 24000);
      const mulaw = concatBytes([mulawSilence(500), loadFixture("caller_bye"), mulawSilence(800)]);
      const pcm = int16ToPcm16le(Int16Array.from(resampler.process(mulawDecode(mulaw))));
      for (let offset = 0; offset < pcm.length; offset += 4800) {
        client.send({
          type: "input_audio_buffer.append",
          audio: bytesToBase64(pcm.subarray(offset, offset + 4800)),
        });
      }
      const started = await client.next("input_audio_buffer.speech_started");
      await client.next("input_audio_buffer.speech_stopped");
      assert.ok((started.audio_start_ms as number) <= 500);
      assert.equal(client.events.some((e) => e.type === "response.created"), false);
      assert.equal(
        client.events.some((e) =>
          e.type === "conversation.item.input_audio_transcription.completed"
        ),
        false,
        "no transcription unless configured",
      );
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() cancels the response when the caller barges in", async () => {
  await withDouble({
    speedFactor: 2,
    scenario: [
      { kind: "assistant_audio", fixture: "agent_greeting_jane" },
      { kind: "caller", fixture: "caller_interrupt" },
      { kind: "assistant_audio", fixture: "agent_goodbye" },
    ],
  }, async (double) => {
    const client = await openPhoneSession(double);
    try {
      client.send({ type: "response.create" });
      const firstDelta = await client.next("response.output_audio.delta");
      appendMulaw(client, concatBytes([loadFixture("caller_interrupt"), mulawSilence(700)]));
      await client.next("input_audio_buffer.speech_started");
      const done = await client.next("response.done");
      const response = done.response as Json;
      assert.equal(response.status, "cancelled");
      assert.deepEqual(response.status_details, { type: "cancelled", reason: "turn_detected" });
      const doneIndex = client.events.indexOf(done);
      const lateDeltas = client.events.slice(doneIndex).filter((e) =>
        e.type === "response.output_audio.delta" && e.response_id === response.id
      );
      assert.equal(lateDeltas.length, 0, "no deltas of the cancelled response after response.done");
      const record = double.sessions[0];
      assert.equal(record.cancellations[0].reason, "turn_detected");
      assert.ok(
        record.cancellations[0].audioMsSent < mulawDurationMs(loadFixture("agent_greeting_jane")),
      );

      // The bridge truncates at what was played; the double accepts up to what it sent.
      client.send({
        type: "conversation.item.truncate",
        item_id: firstDelta.item_id,
        content_index: 0,
        audio_end_ms: 100,
      });
      await client.next("conversation.item.truncated");

      // After the caller's turn the next scripted response plays.
      await client.until((events) => events.filter((e) => e.type === "response.done").length === 2);
      assert.equal(record.responses[1].trigger, "vad");
      assert.equal(record.responses[1].status, "completed");
      assert.equal(record.userTurns[0].transcript, FIXTURE_TRANSCRIPTS.caller_interrupt);
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() honours response.cancel and refuses overlapping responses", async () => {
  await withDouble({
    speedFactor: 1,
    scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_generic" }],
  }, async (double) => {
    const client = await openPhoneSession(double);
    try {
      client.send({ type: "response.create" });
      await client.next("response.output_audio.delta");
      let before = client.events.length;
      client.send({ type: "response.create", event_id: "evt_again" });
      await client.next("error", { from: before });
      assert.equal(errorsOf(client, before)[0].code, "conversation_already_has_active_response");

      before = client.events.length;
      client.send({ type: "response.cancel" });
      const done = await client.next("response.done", { from: before });
      assert.equal((done.response as Json).status, "cancelled");
      assert.equal(
        ((done.response as Json).status_details as Json).reason,
        "client_cancelled",
      );
      const afterDone = client.events.slice(client.events.indexOf(done));
      assert.equal(afterDone.some((e) => e.type === "response.output_audio.delta"), false);
      assert.equal(double.sessions[0].cancellations.length, 1);
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() runs a function call and records its output", async () => {
  await withDouble({
    scenario: [
      (session) => ({
        kind: "assistant_audio",
        fixture: String(session.session.instructions).includes("Jane")
          ? "agent_greeting_jane"
          : "agent_greeting_generic",
      }),
      { kind: "caller", fixture: "caller_confirm" },
      {
        kind: "function_call",
        name: "book_appointment",
        arguments: { day: "Tuesday", time: "10:00" },
        callId: "call_book_1",
        then: { kind: "assistant_audio", fixture: "agent_booked" },
      },
    ],
  }, async (double) => {
    const client = await openPhoneSession(double);
    try {
      client.send({ type: "response.create" });
      await client.next("response.done");
      assert.equal(
        (await client.next("response.output_audio_transcript.done")).transcript,
        FIXTURE_TRANSCRIPTS.agent_greeting_jane,
      );

      appendMulaw(client, concatBytes([loadFixture("caller_confirm"), mulawSilence(700)]));
      const args = await client.next("response.function_call_arguments.done");
      assert.equal(args.name, "book_appointment");
      assert.equal(args.call_id, "call_book_1");
      assert.deepEqual(JSON.parse(args.arguments as string), { day: "Tuesday", time: "10:00" });
      await client.until((events) => events.filter((e) => e.type === "response.done").length === 2);

      client.send({
        type: "conversation.item.create",
        item: {
          type: "function_call_output",
          call_id: "call_book_1",
          output: JSON.stringify({ ok: true, code: "HD-1234" }),
        },
      });
      await client.next("conversation.item.done", { from: client.events.length });
      client.send({ type: "response.create" });
      await client.until((events) => events.filter((e) => e.type === "response.done").length === 3);
      const record = double.sessions[0];
      assert.equal(record.functionCalls[0].output, JSON.stringify({ ok: true, code: "HD-1234" }));
      assert.deepEqual(record.responses.map((r) => r.stepKind), [
        "assistant_audio",
        "function_call",
        "assistant_audio",
      ]);
      assert.equal(record.responses[2].transcript, FIXTURE_TRANSCRIPTS.agent_booked);
      const usage = (client.events.filter((e) => e.type === "response.done")[2].response as Json)
        .usage as Json;
      assert.equal(
        usage.total_tokens,
        (usage.input_tokens as number) + (usage.output_tokens as number),
      );
      assert.equal(errorsOf(client).length, 0);
    } finally {
      await client.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() sends audio/pcm output as 24 kHz PCM16 in ~100 ms deltas", async () => {
  await withDouble(
    { scenario: [{ kind: "assistant_audio", fixture: "agent_goodbye" }] },
    async (double) => {
      const client = connect(`${double.url}?model=${MODEL}`, bearer());
      try {
        await client.opened;
        await client.next("session.created");
        client.send({ type: "response.create" });
        await client.next("response.done");
        const deltas = client.events.filter((e) => e.type === "response.output_audio.delta");
        const bytes = deltas.map((e) => base64ToBytes(e.delta as string)!.length);
        assert.equal(bytes[0], 4800);
        const total = bytes.reduce((a, b) => a + b, 0);
        assert.equal(total, loadFixture("agent_goodbye").length * 6);
      } finally {
        await client.close();
      }
    },
  );
});

Deno.test("startOpenAIRealtimeDouble() fault: refuses the first connection with HTTP 503", async () => {
  await withDouble({ faults: { refuse: { mode: "http_503", count: 1 } } }, async (double) => {
    const refused = connect(`${double.url}?model=${MODEL}`, bearer());
    await assert.rejects(refused.opened);
    await refused.closed;
    const accepted = connect(`${double.url}?model=${MODEL}`, bearer());
    try {
      await accepted.opened;
      await accepted.next("session.created");
      assert.equal(double.connectionAttempts(), 2);
    } finally {
      await accepted.close();
    }
  });
});

Deno.test("startOpenAIRealtimeDouble() fault: closes right after the upgrade", async () => {
  await withDouble({ faults: { refuse: { mode: "close_after_upgrade" } } }, async (double) => {
    const client = connect(`${double.url}?model=${MODEL}`, bearer());
    await client.opened;
    const closed = await client.closed;
    assert.equal(closed.code, 1011);
    assert.equal(client.events.length, 0);
    assert.equal(double.sessions[0].refused, true);
  });
});

Deno.test("startOpenAIRealtimeDouble() fault: server_error step sends an error and closes", async () => {
  await withDouble({ scenario: [{ kind: "server_error", close: true }] }, async (double) => {
    const client = await openPhoneSession(double);
    client.send({ type: "response.create" });
    const closed = await client.closed;
    assert.equal(closed.code, 1011);
    assert.equal(errorsOf(client)[0].type, "server_error");
  });
});

Deno.test("startOpenAIRealtimeDouble() fault: drops the socket without a close frame mid-response", async () => {
  await withDouble({
    speedFactor: 20,
    scenario: [{ kind: "assistant_audio", fixture: "agent_greeting_jane" }],
    faults: { dropMidResponse: { afterDeltas: 3 } },
  }, async (double) => {
    const client = await openPhoneSession(double);
    client.send({ type: "response.create" });
    const closed = await client.closed;
    // No close frame: not clean, and Deno reports code 1006 or 0 depending on the path.
    assert.equal(closed.wasClean, false);
    assert.ok(closed.code === 1006 || closed.code === 0, `close code ${closed.code}`);
    const deltas = client.events.filter((e) => e.type === "response.output_audio.delta");
    assert.equal(deltas.length, 3);
    assert.equal(client.events.some((e) => e.type === "response.done"), false);
    await double.waitFor(() => double.sessions[0].closed);
  });
});

Deno.test("startOpenAIRealtimeDouble() fault: delays the first audio delta", async () => {
  await withDouble({
    scenario: [{ kind: "assistant_audio", fixture: "agent_goodbye" }],
    faults: { firstDeltaDelayMs: 300 },
  }, async (double) => {
    const client = await openPhoneSession(double);
    try {
      const sentAt = performance.now();
      client.send({ type: "response.create" });
      await client.next("response.created");
      await client.next("response.output_audio.delta");
      assert.ok(performance.now() - sentAt >= 250);
    } finally {
      await client.close();
    }
  });
});

Deno.test("vadThresholdToDbfs() maps 0..1 onto -60..-20 dBFS by default", () => {
  assert.equal(vadThresholdToDbfs(0.5), -40);
  assert.equal(vadThresholdToDbfs(0), -60);
  assert.equal(vadThresholdToDbfs(1, { floorDbfs: -70, ceilingDbfs: -30 }), -30);
});
