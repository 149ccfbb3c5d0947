import assert from "node:assert/strict";
import type {
  RealtimeClientEvent,
  RealtimeServerEvent,
  ResponseAudioDeltaEvent,
  ResponseFunctionCallArgumentsDoneEvent,
} from "openai/resources/realtime/realtime";
import {
  buildConversationItemTruncate,
  buildFunctionCallOutput,
  buildInputAudioBufferAppend,
  buildResponseCancel,
  buildResponseCreate,
  buildSessionUpdate,
  buildUserTextMessage,
  conversationItemTruncateEvent,
  functionCallOutputEvent,
  inputAudioBufferAppendEvent,
  OPENAI_PARSED_SERVER_EVENT_TYPES,
  type OpenAIOutputAudioDeltaEvent,
  type OpenAIRealtimeServerEvent,
  type OpenAISessionOptions,
  responseCancelEvent,
  responseCreateEvent,
  safeParseRealtimeServerEvent,
  sessionUpdateEvent,
  userTextMessageEvent,
} from "./openai_realtime.ts";
import type { AssertConforms, ServerEventsConform } from "./openai_realtime_types_check.ts";
import { createRandom } from "../../../../tests/support/random.ts";

const TOOLS = [{
  name: "take_message",
  description: "Record a message for the business",
  parameters: {
    type: "object",
    properties: { name: { type: "string" }, message: { type: "string" } },
    required: ["name", "message"],
  },
}];

const BASE_OPTIONS: OpenAISessionOptions = {
  model: "gpt-realtime",
  instructions: "You are the receptionist.",
  voice: "marin",
  transcriptionModel: "gpt-4o-mini-transcribe",
  turnDetection: { threshold: 0.6, prefixPaddingMs: 200, silenceDurationMs: 400 },
  tools: TOOLS,
};

Deno.test("sessionUpdateEvent() builds the GA session shape", () => {
  assert.deepEqual(sessionUpdateEvent(BASE_OPTIONS), {
    type: "session.update",
    session: {
      type: "realtime",
      model: "gpt-realtime",
      instructions: "You are the receptionist.",
      output_modalities: ["audio"],
      audio: {
        input: {
          format: { type: "audio/pcmu" },
          turn_detection: {
            type: "server_vad",
            threshold: 0.6,
            prefix_padding_ms: 200,
            silence_duration_ms: 400,
            create_response: true,
            interrupt_response: true,
          },
          transcription: { model: "gpt-4o-mini-transcribe" },
        },
        output: { format: { type: "audio/pcmu" }, voice: "marin" },
      },
      tools: [{ type: "function", ...TOOLS[0] }],
      tool_choice: "auto",
    },
  });
});

Deno.test("sessionUpdateEvent() uses audio/pcm at 24 kHz when asked", () => {
  const event = sessionUpdateEvent({
    ...BASE_OPTIONS,
    inputAudioFormat: "audio/pcm",
    outputAudioFormat: "audio/pcm",
  });
  assert.deepEqual(event.session.audio?.input?.format, { type: "audio/pcm", rate: 24000 });
  assert.deepEqual(event.session.audio?.output?.format, { type: "audio/pcm", rate: 24000 });
});

Deno.test("sessionUpdateEvent() applies VAD defaults and optional fields", () => {
  const event = sessionUpdateEvent({
    model: "gpt-realtime-mini",
    instructions: "",
    voice: "cedar",
    turnDetection: { createResponse: false, interruptResponse: false, idleTimeoutMs: 6000 },
    noiseReduction: "near_field",
  });
  const input = event.session.audio?.input;
  assert.deepEqual(input?.turn_detection, {
    type: "server_vad",
    threshold: 0.5,
    prefix_padding_ms: 300,
    silence_duration_ms: 500,
    create_response: false,
    interrupt_response: false,
    idle_timeout_ms: 6000,
  });
  assert.deepEqual(input?.noise_reduction, { type: "near_field" });
  assert.equal("transcription" in (input ?? {}), false);
  assert.deepEqual(event.session.tools, []);
  const off = sessionUpdateEvent({ ...BASE_OPTIONS, noiseReduction: null });
  assert.equal(off.session.audio?.input?.noise_reduction, null);
});

Deno.test("buildSessionUpdate() is the JSON text of sessionUpdateEvent()", () => {
  assert.deepEqual(JSON.parse(buildSessionUpdate(BASE_OPTIONS)), sessionUpdateEvent(BASE_OPTIONS));
});

Deno.test("inputAudioBufferAppendEvent() wraps base64 audio", () => {
  assert.deepEqual(inputAudioBufferAppendEvent("AAEC"), {
    type: "input_audio_buffer.append",
    audio: "AAEC",
  });
  assert.equal(
    buildInputAudioBufferAppend("AAEC"),
    '{"type":"input_audio_buffer.append","audio":"AAEC"}',
  );
});

Deno.test("functionCallOutputEvent() creates a function_call_output item", () => {
  assert.deepEqual(functionCallOutputEvent("call_1", '{"ok":true}'), {
    type: "conversation.item.create",
    item: { type: "function_call_output", call_id: "call_1", output: '{"ok":true}' },
  });
  assert.deepEqual(
    JSON.parse(buildFunctionCallOutput("call_1", "x")),
    functionCallOutputEvent("call_1", "x"),
  );
});

Deno.test("userTextMessageEvent() creates a user input_text message", () => {
  assert.deepEqual(userTextMessageEvent("The caller pressed 1"), {
    type: "conversation.item.create",
    item: {
      type: "message",
      role: "user",
      content: [{ type: "input_text", text: "The caller pressed 1" }],
    },
  });
  assert.deepEqual(JSON.parse(buildUserTextMessage("#")), userTextMessageEvent("#"));
});

Deno.test("responseCreateEvent() adds instructions only when given", () => {
  assert.deepEqual(responseCreateEvent(), { type: "response.create" });
  assert.deepEqual(responseCreateEvent({ instructions: "Greet the caller" }), {
    type: "response.create",
    response: { instructions: "Greet the caller" },
  });
  assert.equal(buildResponseCreate(), '{"type":"response.create"}');
});

Deno.test("responseCancelEvent() targets a response only when given", () => {
  assert.deepEqual(responseCancelEvent(), { type: "response.cancel" });
  assert.deepEqual(responseCancelEvent("resp_1"), {
    type: "response.cancel",
    response_id: "resp_1",
  });
  assert.equal(buildResponseCancel(), '{"type":"response.cancel"}');
});

Deno.test("conversationItemTruncateEvent() sends an integer audio_end_ms on content 0", () => {
  assert.deepEqual(conversationItemTruncateEvent("item_1", 1234.9), {
    type: "conversation.item.truncate",
    item_id: "item_1",
    content_index: 0,
    audio_end_ms: 1234,
  });
  assert.equal(conversationItemTruncateEvent("item_1", -5).audio_end_ms, 0);
  assert.equal(conversationItemTruncateEvent("item_1", 0.999).audio_end_ms, 0);
  const text = buildConversationItemTruncate("item_1", 99.5);
  assert.match(text, /"audio_end_ms":99[,}]/);
});

Deno.test("conversationItemTruncateEvent() rejects non-finite positions", () => {
  for (const value of [NaN, Infinity, -Infinity]) {
    assert.throws(() => conversationItemTruncateEvent("item_1", value), RangeError);
    assert.throws(() => buildConversationItemTruncate("item_1", value), RangeError);
  }
});

// Keys and values that only the shut-down beta shape used.
const BETA_KEYS_ANYWHERE = new Set([
  "OpenAI-Beta",
  "openai-beta",
  "input_audio_format",
  "output_audio_format",
  "input_audio_transcription",
  "modalities",
]);
const BETA_KEYS_AT_SESSION_TOP = new Set(["voice", "turn_detection", "temperature"]);
const BETA_VALUES = new Set(["g711_ulaw", "g711_alaw", "pcm16", "realtime=v1"]);

function findBetaShape(value: unknown, path: string, found: string[]): void {
  if (typeof value === "string") {
    if (BETA_VALUES.has(value)) found.push(`${path} = ${value}`);
    return;
  }
  if (typeof value !== "object" || value === null) return;
  for (const [key, child] of Object.entries(value)) {
    if (BETA_KEYS_ANYWHERE.has(key)) found.push(`${path}.${key}`);
    if (path === "$.session" && BETA_KEYS_AT_SESSION_TOP.has(key)) found.push(`${path}.${key}`);
    findBetaShape(child, `${path}.${key}`, found);
  }
}

Deno.test("client event builders never emit beta-shaped fields", () => {
  const events: RealtimeClientEvent[] = [
    sessionUpdateEvent(BASE_OPTIONS),
    sessionUpdateEvent({
      ...BASE_OPTIONS,
      inputAudioFormat: "audio/pcm",
      outputAudioFormat: "audio/pcm",
      noiseReduction: "far_field",
      turnDetection: { idleTimeoutMs: 5000 },
    }),
    sessionUpdateEvent({ model: "m", instructions: "i", voice: "alloy" }),
    inputAudioBufferAppendEvent("AAAA"),
    functionCallOutputEvent("c", "o"),
    userTextMessageEvent("t"),
    responseCreateEvent(),
    responseCreateEvent({ instructions: "x" }),
    responseCancelEvent(),
    responseCancelEvent("r"),
    conversationItemTruncateEvent("i", 10),
  ];
  const texts = [
    buildSessionUpdate(BASE_OPTIONS),
    buildInputAudioBufferAppend("AAAA"),
    buildFunctionCallOutput("c", "o"),
    buildUserTextMessage("t"),
    buildResponseCreate({ instructions: "x" }),
    buildResponseCancel("r"),
    buildConversationItemTruncate("i", 1),
  ];
  for (const event of [...events, ...texts.map((text) => JSON.parse(text))]) {
    const found: string[] = [];
    findBetaShape(event, "$", found);
    assert.deepEqual(found, [], `beta shape in ${JSON.stringify(event)}`);
  }
  // The walker itself must catch the beta shape, or the test above proves nothing.
  const beta: string[] = [];
  findBetaShape(
    {
      type: "session.update",
      session: { voice: "alloy", turn_detection: {}, input_audio_format: "g711_ulaw" },
    },
    "$",
    beta,
  );
  assert.equal(beta.length, 4);
});

// ---------------------------------------------------------------------------------------------
// Server events
// ---------------------------------------------------------------------------------------------

// Events shaped like the Realtime API reference examples.
const SERVER_EVENTS: Record<string, Record<string, unknown>> = {
  "session.created": {
    type: "session.created",
    event_id: "event_1",
    session: {
      type: "realtime",
      id: "sess_1",
      model: "gpt-realtime",
      output_modalities: ["audio"],
    },
  },
  "session.updated": {
    type: "session.updated",
    event_id: "event_2",
    session: {
      type: "realtime",
      id: "sess_1",
      audio: { input: { format: { type: "audio/pcmu" } } },
    },
  },
  "input_audio_buffer.speech_started": {
    type: "input_audio_buffer.speech_started",
    event_id: "event_3",
    audio_start_ms: 1000,
    item_id: "item_1",
  },
  "input_audio_buffer.speech_stopped": {
    type: "input_audio_buffer.speech_stopped",
    event_id: "event_4",
    audio_end_ms: 2000,
    item_id: "item_1",
  },
  "conversation.item.input_audio_transcription.completed": {
    type: "conversation.item.input_audio_transcription.completed",
    event_id: "event_5",
    item_id: "item_1",
    content_index: 0,
    transcript: "Hello, how are you?",
    usage: { type: "duration", seconds: 1 },
  },
  "response.created": {
    type: "response.created",
    event_id: "event_6",
    response: { object: "realtime.response", id: "resp_1", status: "in_progress", output: [] },
  },
  "response.output_audio.delta": {
    type: "response.output_audio.delta",
    event_id: "event_7",
    response_id: "resp_1",
    item_id: "item_2",
    output_index: 0,
    content_index: 0,
    delta: "/////w==",
  },
  "response.output_audio_transcript.done": {
    type: "response.output_audio_transcript.done",
    event_id: "event_8",
    response_id: "resp_1",
    item_id: "item_2",
    output_index: 0,
    content_index: 0,
    transcript: "Hello! How can I help?",
  },
  "response.function_call_arguments.done": {
    type: "response.function_call_arguments.done",
    event_id: "event_9",
    response_id: "resp_1",
    item_id: "item_3",
    output_index: 0,
    call_id: "call_1",
    name: "take_message",
    arguments: '{"name":"Ann"}',
  },
  "response.done": {
    type: "response.done",
    event_id: "event_10",
    response: {
      id: "resp_1",
      object: "realtime.response",
      status: "cancelled",
      status_details: { type: "cancelled", reason: "turn_detected" },
      output: [],
      usage: { total_tokens: 10, input_tokens: 6, output_tokens: 4, input_token_details: {} },
    },
  },
  "rate_limits.updated": {
    type: "rate_limits.updated",
    event_id: "event_11",
    rate_limits: [{ name: "requests", limit: 1000, remaining: 999, reset_seconds: 60 }],
  },
  error: {
    type: "error",
    event_id: "event_12",
    error: {
      type: "invalid_request_error",
      code: "beta_api_shape_disabled",
      message: "The beta API shape is disabled",
      param: null,
      event_id: null,
    },
  },
};

function parseServerOk(value: unknown): OpenAIRealtimeServerEvent {
  const result = safeParseRealtimeServerEvent(JSON.stringify(value));
  if (!result.success) throw new Error(`expected success, got ${JSON.stringify(result.error)}`);
  return result.data;
}

Deno.test("OPENAI_PARSED_SERVER_EVENT_TYPES lists real server event types", () => {
  // Typed against the openai package: a misspelt type fails `deno check`.
  const expected: RealtimeServerEvent["type"][] = [
    "session.created",
    "session.updated",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "conversation.item.input_audio_transcription.completed",
    "response.created",
    "response.output_audio.delta",
    "response.output_audio_transcript.done",
    "response.function_call_arguments.done",
    "response.done",
    "rate_limits.updated",
    "error",
  ];
  assert.deepEqual([...OPENAI_PARSED_SERVER_EVENT_TYPES].sort(), [...expected].sort());
  assert.deepEqual(Object.keys(SERVER_EVENTS).sort(), [...expected].sort());
});

Deno.test("safeParseRealtimeServerEvent() parses every used event and keeps extra fields", () => {
  for (const [type, event] of Object.entries(SERVER_EVENTS)) {
    const data = parseServerOk(event);
    assert.equal(data.type, type);
    assert.deepEqual(data, event);
  }
});

Deno.test("safeParseRealtimeServerEvent() types the fields the bridge reads", () => {
  const delta = parseServerOk(SERVER_EVENTS["response.output_audio.delta"]);
  assert.ok(delta.type === "response.output_audio.delta");
  const deltaFields: Pick<ResponseAudioDeltaEvent, "response_id" | "item_id" | "delta"> = delta;
  assert.equal(deltaFields.item_id, "item_2");
  const call = parseServerOk(SERVER_EVENTS["response.function_call_arguments.done"]);
  assert.ok(call.type === "response.function_call_arguments.done");
  const callFields: Pick<ResponseFunctionCallArgumentsDoneEvent, "call_id" | "name" | "arguments"> =
    call;
  assert.equal(callFields.name, "take_message");
  const done = parseServerOk(SERVER_EVENTS["response.done"]);
  assert.ok(done.type === "response.done");
  assert.equal(done.response.status, "cancelled");
  assert.equal(done.response.status_details?.reason, "turn_detected");
  assert.equal(done.response.usage?.total_tokens, 10);
  const error = parseServerOk(SERVER_EVENTS.error);
  assert.ok(error.type === "error");
  assert.equal(error.error.code, "beta_api_shape_disabled");
});

Deno.test("safeParseRealtimeServerEvent() reports other well-formed events as other", () => {
  for (const type of ["response.output_audio.done", "conversation.item.added", "other", ""]) {
    assert.deepEqual(parseServerOk({ type, event_id: "e", anything: [1, { x: null }] }), {
      type: "other",
      rawType: type,
    });
  }
});

Deno.test("safeParseRealtimeServerEvent() rejects used events with wrong fields", () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...SERVER_EVENTS["response.output_audio.delta"], delta: undefined }, /delta/],
    [{ ...SERVER_EVENTS["response.output_audio.delta"], delta: "abc" }, /delta: Expected/],
    [{ ...SERVER_EVENTS["input_audio_buffer.speech_started"], audio_start_ms: "1" }, /audio_start/],
    [{ ...SERVER_EVENTS["response.done"], response: { id: "r" } }, /response\.status/],
    [{ ...SERVER_EVENTS["response.created"], response: {} }, /response\.id/],
    [{ ...SERVER_EVENTS.error, error: { code: "x" } }, /error\.type/],
    [{ ...SERVER_EVENTS["response.function_call_arguments.done"], arguments: {} }, /arguments/],
    [{ ...SERVER_EVENTS["response.output_audio.delta"], event_id: 7 }, /event_id/],
    [{ type: 1 }, /`type` is not a string/],
    [{}, /`type` is not a string/],
    [[], /expected a JSON object/],
    [7, /expected a JSON object/],
  ];
  for (const [value, pattern] of cases) {
    const result = safeParseRealtimeServerEvent(JSON.stringify(value));
    assert.ok(!result.success, `expected failure for ${JSON.stringify(value)}`);
    assert.equal(result.error.code, "invalid_message");
    assert.match(result.error.message, pattern);
  }
});

Deno.test("safeParseRealtimeServerEvent() reports invalid JSON as invalid_json", () => {
  for (const text of ["", "{", '{"type":"error"', "undefined", "{'type':'x'}"]) {
    const result = safeParseRealtimeServerEvent(text);
    assert.equal(result.success ? "" : result.error.code, "invalid_json");
  }
});

// The parsed events are checked against the openai package in openai_realtime.ts. These drifts
// must each fail that check, or its passing proves nothing: `@ts-expect-error` fails type checking
// when the line below it has no error.
type BetaEventName = { type: "response.audio.delta"; delta: string };
type RenamedField = { type: "response.output_audio.delta"; audio: string };
type ChangedFieldType = { type: "input_audio_buffer.speech_started"; audio_start_ms: string };
type RenamedNestedField = {
  type: "response.done";
  response: { status_details: { reasons: string } };
};
type NullRejected = { type: "error"; error: { code?: string } };
type ChangedArrayElement = { type: "rate_limits.updated"; rate_limits: { remaining: string }[] };
type NarrowerThanSdk = { type: "response.done"; response: { status: "completed" } };
type OneDriftAmongMany = OpenAIOutputAudioDeltaEvent | BetaEventName;
// @ts-expect-error: a beta event name is no GA server event.
type _BetaEventName = AssertConforms<ServerEventsConform<BetaEventName>>;
// @ts-expect-error: `audio` is no field of `response.output_audio.delta`.
type _RenamedField = AssertConforms<ServerEventsConform<RenamedField>>;
// @ts-expect-error: the SDK declares `audio_start_ms` a number.
type _ChangedFieldType = AssertConforms<ServerEventsConform<ChangedFieldType>>;
// @ts-expect-error: `reasons` is no field of `status_details`.
type _RenamedNestedField = AssertConforms<ServerEventsConform<RenamedNestedField>>;
// @ts-expect-error: the SDK allows `code: null`.
type _NullRejected = AssertConforms<ServerEventsConform<NullRejected>>;
// @ts-expect-error: the SDK declares `remaining` a number.
type _ChangedArrayElement = AssertConforms<ServerEventsConform<ChangedArrayElement>>;
// @ts-expect-error: the SDK allows other statuses (e.g. `in_progress`).
type _NarrowerThanSdk = AssertConforms<ServerEventsConform<NarrowerThanSdk>>;
// @ts-expect-error: one drifting event fails the whole union.
type _OneDriftAmongMany = AssertConforms<ServerEventsConform<OneDriftAmongMany>>;
// Looser than the SDK (`status`), optional where it requires (`event_id`) and required where it
// does not (`id`): conforms, since the parser accepts everything the SDK declares.
type Looser = {
  type: "response.done";
  event_id?: string;
  response: { id: string; status: string };
};
type _Looser = AssertConforms<ServerEventsConform<Looser>>;

// ---------------------------------------------------------------------------------------------
// Fuzz: 10,000 seeded inputs; a failure prints its seed and case index so it reproduces.
// ---------------------------------------------------------------------------------------------

const JSONISH_ALPHABET = [...'{}[]":,.-+0123456789eEtrufalsn \\u/abcdeoptyr_=ÿé😀\n\t\u0000'];
const VALID_EVENTS = Object.values(SERVER_EVENTS);

function fuzzInput(random: () => number, index: number): string {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const oddValues: unknown[] = [
    null,
    0,
    -0.5,
    1e308,
    false,
    [],
    {},
    [[[]]],
    { type: "error" },
    "",
    "x".repeat(int(5000)),
    "\udfff",
    { __proto__: null, constructor: "x" },
  ];
  switch (index % 5) {
    case 0: {
      let text = "";
      const length = int(200);
      for (let i = 0; i < length; i++) text += pick(JSONISH_ALPHABET);
      return random() < 0.5 ? `{"type":${text}` : text;
    }
    case 1: {
      const chars = [...JSON.stringify(pick(VALID_EVENTS))];
      const mutations = 1 + int(5);
      for (let m = 0; m < mutations; m++) {
        const at = int(chars.length + 1);
        const op = int(3);
        if (op === 0) chars.splice(at, 1);
        else if (op === 1) chars.splice(at, 0, pick(JSONISH_ALPHABET));
        else chars[at] = pick(JSONISH_ALPHABET);
      }
      return chars.join("");
    }
    case 2: {
      const event = structuredClone(pick(VALID_EVENTS)) as Record<string, unknown>;
      const nested = Object.values(event).find((v) => typeof v === "object" && v !== null);
      const target = random() < 0.5 || nested === undefined
        ? event
        : nested as Record<string, unknown>;
      const keys = Object.keys(target);
      const key = random() < 0.8 && keys.length > 0
        ? pick(keys)
        : pick(["__proto__", "constructor", "toString", "extra"]);
      if (random() < 0.3) delete target[key];
      else target[key] = pick(oddValues);
      if (random() < 0.2) event.type = pick([...OPENAI_PARSED_SERVER_EVENT_TYPES, "x", ""]);
      return JSON.stringify(event);
    }
    case 3: {
      // JSON.parse costs ~0.25 ms per 1,000 levels: go very deep only now and then.
      const depth = 1 + (index % 250 === 3 ? 20_000 : int(500));
      const open = random() < 0.5 ? "[" : '{"a":';
      const close = open === "[" ? "]" : "}";
      const nested = open.repeat(depth) + "1" + close.repeat(random() < 0.9 ? depth : depth - 1);
      return pick([
        nested,
        `{"type":"response.done","response":${nested}}`,
        `{"type":"session.created","session":${nested}}`,
        `{"type":"conversation.item.added","item":${nested}}`,
      ]);
    }
    default: {
      const huge = index % 500 === 4;
      const length = huge ? 1_000_000 + int(1_000_000) : int(20_000);
      const delta = "A".repeat(length - (length % 4)) + pick(["", "=", "!", "é"]);
      return JSON.stringify({
        ...SERVER_EVENTS["response.output_audio.delta"],
        delta,
        item_id: random() < 0.5 ? "item_1" : "I".repeat(length),
      });
    }
  }
}

Deno.test("safeParseRealtimeServerEvent() survives 10,000 fuzzed inputs", () => {
  const seed = 0x0a1e7;
  const random = createRandom(seed);
  let successes = 0;
  for (let index = 0; index < 10_000; index++) {
    const text = fuzzInput(random, index);
    let result;
    try {
      result = safeParseRealtimeServerEvent(text);
    } catch (error) {
      throw new Error(`seed ${seed} case ${index} threw: ${error}`);
    }
    assert.equal(typeof result, "object", `seed ${seed} case ${index}`);
    if (result.success) {
      successes++;
      assert.equal(typeof result.data.type, "string", `seed ${seed} case ${index}`);
    } else {
      assert.ok(
        result.error.code === "invalid_json" || result.error.code === "invalid_message",
        `seed ${seed} case ${index}`,
      );
      assert.ok(result.error.message.length < 1000, `seed ${seed} case ${index}: long message`);
    }
  }
  assert.ok(successes > 100 && successes < 9_000, `successes: ${successes}`);
});
