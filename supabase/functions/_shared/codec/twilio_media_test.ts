import assert from "node:assert/strict";
import {
  buildTwilioClear,
  buildTwilioMark,
  buildTwilioMedia,
  isBase64,
  isDigitString,
  safeParseTwilioMessage,
  TWILIO_INBOUND_EVENTS,
  type TwilioInboundMessage,
} from "./twilio_media.ts";
import { createRandom } from "../../../../tests/support/random.ts";

// Frames shaped like the examples in Twilio's Media Streams documentation.
const STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0";
const CONNECTED = { event: "connected", protocol: "Call", version: "1.0.0" };
const START = {
  event: "start",
  sequenceNumber: "1",
  start: {
    accountSid: "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    streamSid: STREAM_SID,
    callSid: "CAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    tracks: ["inbound"],
    mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
    customParameters: { callerId: "+15550001111", tenant: "t-1" },
  },
  streamSid: STREAM_SID,
};
const MEDIA = {
  event: "media",
  sequenceNumber: "3",
  media: {
    track: "inbound",
    chunk: "1",
    timestamp: "5",
    payload: "no+JhoaJjpzAwJ+Ojo6MjY2Ojo2NjY2Ojo6Ojo6Ojo6Ojo6Ojo6Ojo6OjoY=",
  },
  streamSid: STREAM_SID,
};
const DTMF = {
  event: "dtmf",
  streamSid: STREAM_SID,
  sequenceNumber: "5",
  dtmf: { track: "inbound_track", digit: "1" },
};
const MARK = {
  event: "mark",
  sequenceNumber: "4",
  streamSid: STREAM_SID,
  mark: { name: "item_1:200" },
};
const STOP = {
  event: "stop",
  sequenceNumber: "5",
  streamSid: STREAM_SID,
  stop: {
    accountSid: "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    callSid: "CAxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
  },
};
const VALID_FRAMES = [CONNECTED, START, MEDIA, DTMF, MARK, STOP];

function parseOk(value: unknown): TwilioInboundMessage {
  const result = safeParseTwilioMessage(JSON.stringify(value));
  if (!result.success) throw new Error(`expected success, got ${JSON.stringify(result.error)}`);
  return result.data;
}

Deno.test("safeParseTwilioMessage() parses every documented inbound event", () => {
  for (const frame of VALID_FRAMES) {
    assert.deepEqual(parseOk(frame), frame);
  }
});

Deno.test("safeParseTwilioMessage() keeps sequenceNumber, chunk and timestamp as strings", () => {
  const data = parseOk(MEDIA);
  assert.equal(data.event, "media");
  if (data.event !== "media") return;
  assert.equal(data.sequenceNumber, "3");
  assert.equal(data.media.chunk, "1");
  assert.equal(data.media.timestamp, "5");
  const numeric = { ...MEDIA, media: { ...MEDIA.media, timestamp: 5 } };
  const result = safeParseTwilioMessage(JSON.stringify(numeric));
  assert.equal(result.success, false);
});

Deno.test("safeParseTwilioMessage() narrows on event", () => {
  const data = parseOk(START);
  if (data.event === "start") {
    assert.equal(data.start.customParameters.tenant, "t-1");
    assert.equal(data.start.mediaFormat.sampleRate, 8000);
  } else {
    assert.fail("expected a start frame");
  }
});

Deno.test("safeParseTwilioMessage() defaults missing customParameters to {}", () => {
  const { customParameters: _dropped, ...startWithout } = START.start;
  const data = parseOk({ ...START, start: startWithout });
  assert.ok(data.event === "start");
  assert.deepEqual(data.start.customParameters, {});
});

Deno.test("safeParseTwilioMessage() drops fields it does not know", () => {
  const data = parseOk({ ...MARK, extra: 1, mark: { name: "a", other: true } });
  assert.deepEqual(data, { ...MARK, mark: { name: "a" } });
});

Deno.test("safeParseTwilioMessage() reports invalid JSON as invalid_json", () => {
  for (const text of ["", "{", "not json", '{"event":"media",}', "\u0000"]) {
    const result = safeParseTwilioMessage(text);
    assert.deepEqual(result.success ? null : result.error.code, "invalid_json");
  }
});

Deno.test("safeParseTwilioMessage() reports unknown events as unknown_event", () => {
  const result = safeParseTwilioMessage('{"event":"clear","streamSid":"MZ1"}');
  assert.equal(result.success, false);
  if (result.success) return;
  assert.equal(result.error.code, "unknown_event");
  assert.match(result.error.message, /unknown event "clear"/);
});

Deno.test("safeParseTwilioMessage() shortens huge unknown event names in messages", () => {
  const result = safeParseTwilioMessage(JSON.stringify({ event: "x".repeat(100_000) }));
  assert.ok(!result.success);
  assert.equal(result.error.code, "unknown_event");
  assert.ok(result.error.message.length < 200);
});

Deno.test("safeParseTwilioMessage() reports schema failures with readable paths", () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...MEDIA, media: { ...MEDIA.media, payload: undefined } }, /media\.payload/],
    [{ ...MEDIA, media: { ...MEDIA.media, payload: "not base64!" } }, /media\.payload: Expected/],
    [{ ...MEDIA, media: { ...MEDIA.media, payload: "" } }, /media\.payload/],
    [{ ...MEDIA, sequenceNumber: "3a" }, /sequenceNumber: Expected a string of digits/],
    [{ ...MARK, mark: {} }, /mark\.name/],
    [{ ...START, start: { ...START.start, tracks: "inbound" } }, /start\.tracks/],
    [{ event: 7 }, /`event` is not a string/],
    [[MEDIA], /expected a JSON object/],
    [null, /expected a JSON object/],
    ["media", /expected a JSON object/],
  ];
  for (const [value, pattern] of cases) {
    const result = safeParseTwilioMessage(JSON.stringify(value));
    assert.ok(!result.success, `expected failure for ${JSON.stringify(value)}`);
    assert.equal(result.error.code, "invalid_message");
    assert.match(result.error.message, pattern);
    assert.match(result.error.message, /^Cannot read Twilio/);
  }
});

Deno.test("buildTwilioMedia() builds an outbound media frame", () => {
  assert.equal(
    buildTwilioMedia("MZ1", "AAEC"),
    '{"event":"media","streamSid":"MZ1","media":{"payload":"AAEC"}}',
  );
});

Deno.test("buildTwilioMark() builds an outbound mark frame and escapes its name", () => {
  const text = buildTwilioMark("MZ1", 'item "1"\n');
  assert.deepEqual(JSON.parse(text), {
    event: "mark",
    streamSid: "MZ1",
    mark: { name: 'item "1"\n' },
  });
});

Deno.test("buildTwilioClear() builds an outbound clear frame", () => {
  assert.equal(buildTwilioClear("MZ1"), '{"event":"clear","streamSid":"MZ1"}');
});

Deno.test("isBase64() accepts padded standard base64 only", () => {
  for (const text of ["", "AAAA", "AA==", "AAA=", "+/+/", "QUJD"]) assert.ok(isBase64(text), text);
  for (const text of ["A", "AA", "AAA", "A===", "AA=A", "AA-_", "AA A", "AAAA\n", "é===", "=AAA"]) {
    assert.ok(!isBase64(text), text);
  }
  for (let length = 0; length < 64; length++) {
    const bytes = new Uint8Array(length).map((_, i) => (i * 37 + length) & 0xff);
    assert.ok(isBase64(btoa(String.fromCharCode(...bytes))));
  }
});

Deno.test("isBase64() agrees with a reference pattern on 20,000 random strings", () => {
  const reference = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
  const alphabet = [
    ..."ABCXYZabcxyz0189+/=",
    " ",
    "\t",
    "\n",
    "\r",
    "\f",
    "\u0000",
    "-",
    "_",
    "é",
    "😀",
  ];
  const random = createRandom(0xba5e64);
  let accepted = 0;
  for (let round = 0; round < 20_000; round++) {
    let text = "";
    const length = Math.floor(random() * 14);
    for (let i = 0; i < length; i++) {
      // Mostly base64 characters, so that valid strings are common.
      text += random() < 0.9
        ? alphabet[Math.floor(random() * 19)]
        : alphabet[Math.floor(random() * alphabet.length)];
    }
    const expected = reference.test(text);
    assert.equal(isBase64(text), expected, JSON.stringify(text));
    if (expected) accepted++;
  }
  assert.ok(accepted > 1_000, `accepted: ${accepted}`);
});

Deno.test("isDigitString() accepts non-empty ASCII digits only", () => {
  assert.ok(isDigitString("0"));
  assert.ok(isDigitString("1234567890"));
  for (const text of ["", " 1", "1.0", "-1", "1e3", "١"]) assert.ok(!isDigitString(text), text);
});

// ---------------------------------------------------------------------------------------------
// Fuzz: 10,000 seeded inputs; a failure prints its seed and case index so it reproduces.
// ---------------------------------------------------------------------------------------------

const JSONISH_ALPHABET = [...'{}[]":,.-+0123456789eEtrufalsn \\u/abcdefmdiatrk=ÿé😀\n\t\u0000'];

function fuzzInput(random: () => number, index: number): string {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const oddValues: unknown[] = [
    null,
    0,
    -1.5,
    1e308,
    true,
    [],
    {},
    [1, [2, [3]]],
    { event: "media" },
    "",
    "media",
    "x".repeat(int(5000)),
    "\ud800",
    { __proto__: null, constructor: "x" },
  ];
  switch (index % 5) {
    case 0: { // random JSON-ish characters
      let text = "";
      const length = int(200);
      for (let i = 0; i < length; i++) text += pick(JSONISH_ALPHABET);
      return random() < 0.5 ? `{"event":${text}` : text;
    }
    case 1: { // character-level mutations of a valid frame
      const chars = [...JSON.stringify(pick(VALID_FRAMES))];
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
    case 2: { // structural mutations: odd types, missing and extra fields
      const frame = structuredClone(pick(VALID_FRAMES)) as Record<string, unknown>;
      const target = random() < 0.5
        ? frame
        : (Object.values(frame).find((v) => typeof v === "object") as Record<string, unknown> ??
          frame);
      const keys = Object.keys(target);
      const key = random() < 0.8 && keys.length > 0
        ? pick(keys)
        : pick(["__proto__", "constructor", "toString", "extra"]);
      if (random() < 0.3) delete target[key];
      else target[key] = pick(oddValues);
      if (random() < 0.2) frame.event = pick([...TWILIO_INBOUND_EVENTS, "clear", "Media", ""]);
      return JSON.stringify(frame);
    }
    case 3: { // deep nesting in and around the frame
      // JSON.parse costs ~0.25 ms per 1,000 levels: go very deep only now and then.
      const depth = 1 + (index % 250 === 3 ? 20_000 : int(500));
      const open = random() < 0.5 ? "[" : '{"a":';
      const close = open === "[" ? "]" : "}";
      const nested = open.repeat(depth) + "1" + close.repeat(random() < 0.9 ? depth : depth - 1);
      return pick([
        nested,
        `{"event":"media","sequenceNumber":"1","streamSid":"MZ","media":${nested}}`,
        `{"event":"start","sequenceNumber":"1","streamSid":"MZ","start":{"customParameters":${nested}}}`,
      ]);
    }
    default: { // huge strings, sometimes valid base64, sometimes not
      const huge = index % 500 === 4;
      const length = huge ? 1_000_000 + int(1_000_000) : int(20_000);
      const payload = "A".repeat(length - (length % 4)) + pick(["", "=", "!", "é"]);
      return JSON.stringify({
        ...MEDIA,
        media: { ...MEDIA.media, payload },
        streamSid: random() < 0.5 ? STREAM_SID : "S".repeat(length),
      });
    }
  }
}

Deno.test("safeParseTwilioMessage() survives 10,000 fuzzed inputs", () => {
  const seed = 0x7e1110;
  const random = createRandom(seed);
  const codes = new Set(["invalid_json", "invalid_message", "unknown_event"]);
  let successes = 0;
  for (let index = 0; index < 10_000; index++) {
    const text = fuzzInput(random, index);
    let result;
    try {
      result = safeParseTwilioMessage(text);
    } catch (error) {
      throw new Error(`seed ${seed} case ${index} threw: ${error}`);
    }
    assert.equal(typeof result, "object", `seed ${seed} case ${index}`);
    if (result.success) {
      successes++;
      assert.ok(TWILIO_INBOUND_EVENTS.includes(result.data.event), `seed ${seed} case ${index}`);
      if (result.data.event === "media") assert.ok(isBase64(result.data.media.payload));
    } else {
      assert.ok(codes.has(result.error.code), `seed ${seed} case ${index}`);
      assert.equal(typeof result.error.message, "string");
      assert.ok(result.error.message.length < 1000, `seed ${seed} case ${index}: long message`);
    }
  }
  // Both outcomes must be exercised, or the generator is broken.
  assert.ok(successes > 100 && successes < 9_000, `successes: ${successes}`);
});
