import assert from "node:assert/strict";
import {
  coalesceTwilioPayloadsToAppend,
  concatBase64,
  extractOpenAIAudioDelta,
  extractTwilioMediaPayload,
  fastExtractOpenAIAudioDelta,
  fastExtractTwilioMediaPayload,
  openAIAudioDeltaToTwilioMedia,
  readRealtimeFrame,
  readTwilioFrame,
  slowExtractOpenAIAudioDelta,
  slowExtractTwilioMediaPayload,
  twilioMediaFromValidBase64,
  twilioMediaToOpenAIAppend,
} from "./media_fast_path.ts";
import { buildTwilioMedia, safeParseTwilioMessage } from "./twilio_media.ts";
import { buildInputAudioBufferAppend, safeParseRealtimeServerEvent } from "./openai_realtime.ts";
import { createRandom } from "../../../../tests/support/random.ts";

function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 4) {
    const word = Math.floor(random() * 4294967296);
    for (let j = 0; j < 4 && i + j < length; j++) bytes[i + j] = (word >>> (8 * j)) & 0xff;
  }
  return bytes;
}

function toBase64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));
}

// ---------------------------------------------------------------------------------------------
// A JSON writer that controls key order, whitespace and string escaping, to produce every
// spelling of a frame that a JSON encoder could send.
// ---------------------------------------------------------------------------------------------

/** A JSON value whose objects keep their key order; `Raw` is inserted verbatim. */
type Tree = string | number | boolean | null | Raw | Tree[] | Entries;
class Entries {
  constructor(readonly entries: Array<[string, Tree]>) {}
}
class Raw {
  constructor(readonly text: string) {}
}

interface WriteStyle {
  readonly whitespace: () => string;
  readonly escape: (text: string) => string;
}

const PLAIN: WriteStyle = { whitespace: () => "", escape: (text) => JSON.stringify(text) };

function write(tree: Tree, style: WriteStyle): string {
  const ws = style.whitespace;
  if (tree instanceof Raw) return tree.text;
  if (typeof tree === "string") return style.escape(tree);
  if (Array.isArray(tree)) return `[${ws()}${tree.map((t) => write(t, style)).join(`,${ws()}`)}]`;
  if (tree instanceof Entries) {
    const parts = tree.entries.map(([key, value]) =>
      `${ws()}${style.escape(key)}${ws()}:${ws()}${write(value, style)}${ws()}`
    );
    return `{${parts.join(",")}${ws()}}`;
  }
  return JSON.stringify(tree);
}

/** Escapes every character as `\uXXXX`: legal JSON that the fast scanner must leave alone. */
function escapeAsUnicode(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    out += "\\u" + text.charCodeAt(i).toString(16).padStart(4, "0");
  }
  return out + '"';
}

/** Escapes `/` as `\/`, as PHP and some Java encoders do. */
function escapeSlashes(text: string): string {
  return JSON.stringify(text).replaceAll("/", "\\/");
}

function shuffle<T>(random: () => number, items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Twilio media frames
// ---------------------------------------------------------------------------------------------

interface Variant {
  readonly text: string;
  /** The fast path is expected to settle this spelling without JSON.parse. */
  readonly fastDecides: boolean;
}

function digits(random: () => number): string {
  return String(Math.floor(random() * 10 ** (1 + Math.floor(random() * 9))));
}

function twilioMediaVariant(random: () => number, index: number): Variant {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  // Twilio frames are 160 bytes; other lengths cover every padding case.
  const length = random() < 0.5 ? 160 : 1 + int(480);
  const payload = toBase64(randomBytes(random, length));
  const streamSid = "MZ" + Array.from({ length: 32 }, () => pick([..."0123456789abcdef"])).join("");
  let media: Array<[string, Tree]> = [
    ["track", pick(["inbound", "outbound"])],
    ["chunk", digits(random)],
    ["timestamp", digits(random)],
    ["payload", payload],
  ];
  let top: Array<[string, Tree]> = [
    ["event", "media"],
    ["sequenceNumber", digits(random)],
    ["media", new Entries(media)],
    ["streamSid", streamSid],
  ];
  let style = PLAIN;
  let fastDecides = true;
  const kind = index % 12;
  const rebuild = () => {
    top = top.map(([k, v]) => [k, k === "media" ? new Entries(media) : v]);
  };
  switch (kind) {
    case 0: // Twilio's own order
      break;
    case 1: // any key order
      media = shuffle(random, media);
      rebuild();
      top = shuffle(random, top);
      break;
    case 2: // whitespace between tokens
      style = { ...PLAIN, whitespace: () => pick(["", " ", "\n", "\t", "\r\n  "]) };
      break;
    case 3: // extra fields the scanner can read (strings, numbers)
      media.push([pick(["extra", "payloadType", "constructor"]), pick(["x", 1.5, -0, 2e10])]);
      rebuild();
      top.push([pick(["tracks", "__proto__"]), pick(["b", 0])]);
      top = shuffle(random, top);
      break;
    case 4: // extra fields only JSON.parse reads (arrays, literals, unknown objects)
      top.push(["extra", pick([[1, 2], true, false, null, [new Entries([])], new Entries([])])]);
      if (random() < 0.3) media.push(["__proto__", "x"]);
      rebuild();
      fastDecides = false;
      break;
    case 5: // `/` escaped as `\/`
      style = { ...PLAIN, escape: escapeSlashes };
      fastDecides = !payload.includes("/");
      break;
    case 6: // \uXXXX escapes in keys and values
      style = { ...PLAIN, escape: escapeAsUnicode };
      fastDecides = false;
      break;
    case 7: { // invalid field values
      const bad = pick<[string, Tree]>([
        ["payload", payload.slice(0, -1)],
        ["payload", payload + "\n"],
        ["payload", ""],
        ["payload", payload.replace(/.$/, "-")],
        ["payload", 160],
        ["timestamp", "12a"],
        ["timestamp", 5],
        ["chunk", ""],
        ["chunk", "-1"],
        ["track", null],
      ]);
      media = media.map(([k, v]) => [k, k === bad[0] ? bad[1] : v]);
      rebuild();
      fastDecides = false; // invalid frames are left to the validated path
      break;
    }
    case 8: { // invalid top-level fields
      const bad = pick<[string, Tree]>([
        ["event", "Media"],
        ["event", "mark"],
        ["event", 1],
        ["sequenceNumber", 3],
        ["sequenceNumber", "3.0"],
        ["streamSid", 7],
        ["streamSid", new Entries([])],
        ["media", "AAAA"],
        ["media", new Entries([])],
      ]);
      top = top.map(([k, v]) => [k, k === bad[0] ? bad[1] : v]);
      // A well-formed frame of another event is settled as "not media".
      fastDecides = bad[0] === "event" && typeof bad[1] === "string";
      break;
    }
    case 9: { // missing fields
      if (random() < 0.5) top.splice(int(top.length), 1);
      else {
        media.splice(int(media.length), 1);
        rebuild();
      }
      fastDecides = false;
      break;
    }
    case 10: { // duplicate keys: JSON.parse keeps the last one
      const [key] = pick(top);
      top.push([key, pick<Tree>(["media", "stop", 1, digits(random), new Entries([])])]);
      fastDecides = false;
      break;
    }
    default: { // broken JSON around a valid frame, in Twilio's order or any other
      if (random() < 0.5) {
        media = shuffle(random, media);
        media.push(["extra", "x"]);
        rebuild();
        top = shuffle(random, top);
      }
      const text = write(new Entries(top), style);
      // A raw control character inside a string is invalid JSON, wherever the string is.
      const withControl = (value: string) =>
        text.replace(
          `"${value}"`,
          `"${value.slice(0, 1)}${pick(["\u0001", "\t", "\n"])}${value.slice(1)}"`,
        );
      const broken = pick([
        withControl(streamSid),
        withControl("inbound"),
        withControl("outbound"),
        withControl("x"),
        withControl("event"),
        text + " x",
        text + "}",
        text.slice(0, -1),
        "\ufeff" + text,
        text.replace(":", ""),
        text.replace(",", ",,"),
        text.replace('"event"', "event"),
        text.replace("{", "{,"),
        `[${text}]`,
        text.replace(`"${payload}"`, `"${payload.slice(0, 10)}\u0001${payload.slice(10)}"`),
      ]);
      return { text: broken, fastDecides: false };
    }
  }
  return { text: write(new Entries(top), style), fastDecides };
}

Deno.test("fastExtractTwilioMediaPayload() leaves what it cannot settle to JSON.parse", () => {
  const valid = JSON.parse(
    '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"AAEC"},"streamSid":"MZ1"}',
  );
  const declined = [
    { ...valid, extra: [1] },
    { ...valid, extra: true },
    { ...valid, extra: null },
    { ...valid, streamSid: 'MZ"1' },
    { ...valid, media: { ...valid.media, track: "in\nbound" } },
    { ...valid, other: { nested: {} } },
    { ...valid, media: { ...valid.media, payload: "AA" } },
  ].map((frame) => JSON.stringify(frame));
  declined.push(
    JSON.stringify(valid).replace('"MZ1"}', '"MZ1","event":"media"}'),
    JSON.stringify(valid).replace('{"event"', '{"\\u0065vent"'),
    JSON.stringify(valid) + " x",
  );
  for (const text of declined) assert.equal(fastExtractTwilioMediaPayload(text), undefined, text);
  // Well-formed frames of other events are settled without JSON.parse.
  const other = '{"event":"connected","protocol":"Call","version":"1.0.0"}';
  assert.equal(fastExtractTwilioMediaPayload(other), null);
});

Deno.test("extractTwilioMediaPayload() reads a Twilio media frame", () => {
  const text =
    '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"AAEC"},"streamSid":"MZ1"}';
  assert.deepEqual(extractTwilioMediaPayload(text), {
    streamSid: "MZ1",
    track: "inbound",
    timestampMs: 5,
    payload: "AAEC",
  });
  assert.equal(
    twilioMediaToOpenAIAppend(text),
    '{"type":"input_audio_buffer.append","audio":"AAEC"}',
  );
});

Deno.test("readTwilioFrame() parses other frames once and returns the result", () => {
  const mark = '{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"x"}}';
  assert.deepEqual(readTwilioFrame(mark), {
    kind: "message",
    result: {
      success: true,
      data: { event: "mark", sequenceNumber: "4", streamSid: "MZ1", mark: { name: "x" } },
    },
  });
  const broken = readTwilioFrame("{");
  assert.equal(broken.kind, "message");
  assert.equal(
    broken.kind === "message" && !broken.result.success && broken.result.error.code,
    "invalid_json",
  );
});

Deno.test("readRealtimeFrame() parses other events once and returns the result", () => {
  assert.deepEqual(readRealtimeFrame('{"type":"response.created","response":{"id":"r1"}}'), {
    kind: "event",
    result: { success: true, data: { type: "response.created", response: { id: "r1" } } },
  });
  assert.deepEqual(readRealtimeFrame('{"type":"response.output_audio.done"}'), {
    kind: "event",
    result: { success: true, data: { type: "other", rawType: "response.output_audio.done" } },
  });
});

Deno.test("extractTwilioMediaPayload() returns null for other events", () => {
  const texts = [
    '{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"x"}}',
    '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    '{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{"accountSid":"AC","callSid":"CA"}}',
    '{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"tracks":["inbound"]}}',
    "not json",
  ];
  for (const text of texts) {
    assert.equal(extractTwilioMediaPayload(text), null, text);
    assert.equal(twilioMediaToOpenAIAppend(text), null, text);
  }
});

Deno.test("twilioMediaToOpenAIAppend() equals the validated path on 6,000 generated frames", () => {
  const seed = 0xfa57;
  const random = createRandom(seed);
  let fastDecided = 0;
  let valid = 0;
  for (let index = 0; index < 6_000; index++) {
    const { text, fastDecides } = twilioMediaVariant(random, index);
    const where = `seed ${seed} case ${index}: ${text.slice(0, 300)}`;
    const slow = slowExtractTwilioMediaPayload(text);
    assert.deepEqual(extractTwilioMediaPayload(text), slow, where);
    const fast = fastExtractTwilioMediaPayload(text);
    if (fast !== undefined) {
      fastDecided++;
      assert.deepEqual(fast, slow, where);
    }
    if (fastDecides) assert.notEqual(fast, undefined, `fast path declined: ${where}`);
    assert.deepEqual(
      readTwilioFrame(text),
      slow === null
        ? { kind: "message", result: safeParseTwilioMessage(text) }
        : { kind: "media", media: slow },
      where,
    );
    const output = twilioMediaToOpenAIAppend(text);
    const expected = slow === null ? null : buildInputAudioBufferAppend(slow.payload);
    assert.equal(output, expected, where);
    if (output !== null && expected !== null) {
      valid++;
      assert.deepEqual(JSON.parse(output), JSON.parse(expected), where);
    }
  }
  // Every spelling class shows up, valid frames dominate, and the fast path takes most of them.
  assert.ok(valid > 3_000, `valid: ${valid}`);
  assert.ok(fastDecided > 2_000, `fastDecided: ${fastDecided}`);
});

// ---------------------------------------------------------------------------------------------
// OpenAI audio deltas
// ---------------------------------------------------------------------------------------------

function openAIDeltaVariant(random: () => number, index: number): Variant {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  // Deltas vary in size; a few large ones (600 ms of mu-law) keep the test fast.
  const delta = toBase64(randomBytes(random, 1 + int(index % 20 === 0 ? 4800 : 960)));
  let top: Array<[string, Tree]> = [
    ["type", "response.output_audio.delta"],
    ["event_id", `event_${int(1e9)}`],
    ["response_id", `resp_${int(1e9)}`],
    ["item_id", `item_${int(1e9)}`],
    ["output_index", 0],
    ["content_index", 0],
    ["delta", delta],
  ];
  let style = PLAIN;
  let fastDecides = true;
  switch (index % 11) {
    case 0:
      break;
    case 1:
      top = shuffle(random, top);
      break;
    case 2:
      style = { ...PLAIN, whitespace: () => pick(["", " ", "\n  "]) };
      break;
    case 3: // event_id is optional; extra readable fields are kept
      top = top.filter(([k]) => k !== "event_id");
      top.push(["obfuscation", "abc"], ["meta", 1]);
      break;
    case 4:
      top.push(["extra", pick([[], true, null, new Entries([["n", 1]])])]);
      fastDecides = false;
      break;
    case 5:
      style = { ...PLAIN, escape: escapeSlashes };
      fastDecides = !delta.includes("/");
      break;
    case 6:
      style = { ...PLAIN, escape: escapeAsUnicode };
      fastDecides = false;
      break;
    case 7: {
      const bad = pick<[string, Tree]>([
        ["delta", ""],
        ["delta", delta + "="],
        ["delta", delta.slice(1)],
        ["delta", 1],
        ["item_id", 1],
        ["response_id", null],
        ["event_id", 5],
        ["type", "response.output_audio.done"],
        ["type", "response.audio.delta"],
        ["type", 3],
      ]);
      top = top.map(([k, v]) => [k, k === bad[0] ? bad[1] : v]);
      // A well-formed event of another type is settled as "not a delta".
      fastDecides = bad[0] === "type" && typeof bad[1] === "string";
      break;
    }
    case 8:
      top.splice(int(top.length), 1);
      fastDecides = false;
      break;
    case 9: {
      const [key] = pick(top);
      top.push([key, pick<Tree>(["x", 1, new Entries([])])]);
      fastDecides = false;
      break;
    }
    default: {
      if (random() < 0.5) {
        top.push(["extra", "x"]);
        top = shuffle(random, top);
      }
      const text = write(new Entries(top), style);
      // A raw control character inside a string is invalid JSON, wherever the string is.
      const withControl = (pattern: RegExp) =>
        text.replace(pattern, (match) => match + pick(["\u0001", "\t", "\n"]));
      return {
        text: pick([
          text + "x",
          text.slice(0, -2),
          "\ufeff" + text,
          text.replace(",", ""),
          withControl(/:"event_/),
          withControl(/:"resp_/),
          withControl(/:"item_/),
          withControl(/"x/),
          withControl(/"type/),
        ]),
        fastDecides: false,
      };
    }
  }
  return { text: write(new Entries(top), style), fastDecides };
}

Deno.test("extractOpenAIAudioDelta() reads the ids and the audio", () => {
  const text =
    '{"type":"response.output_audio.delta","event_id":"e1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"/////w=="}';
  assert.deepEqual(extractOpenAIAudioDelta(text), {
    responseId: "resp_1",
    itemId: "item_1",
    delta: "/////w==",
  });
  assert.equal(
    openAIAudioDeltaToTwilioMedia(text, "MZ1"),
    '{"event":"media","streamSid":"MZ1","media":{"payload":"/////w=="}}',
  );
  assert.equal(extractOpenAIAudioDelta('{"type":"response.done","response":{}}'), null);
  assert.equal(openAIAudioDeltaToTwilioMedia('{"type":"error"}', "MZ1"), null);
});

Deno.test("openAIAudioDeltaToTwilioMedia() equals the validated path on 5,500 generated events", () => {
  const seed = 0xde17a;
  const random = createRandom(seed);
  let fastDecided = 0;
  let valid = 0;
  for (let index = 0; index < 5_500; index++) {
    const { text, fastDecides } = openAIDeltaVariant(random, index);
    const where = `seed ${seed} case ${index}: ${text.slice(0, 300)}`;
    const streamSid = index % 7 === 0 ? 'MZ"odd\\sid' : "MZ" + index;
    const slow = slowExtractOpenAIAudioDelta(text);
    assert.deepEqual(extractOpenAIAudioDelta(text), slow, where);
    const fast = fastExtractOpenAIAudioDelta(text);
    if (fast !== undefined) {
      fastDecided++;
      assert.deepEqual(fast, slow, where);
    }
    if (fastDecides) assert.notEqual(fast, undefined, `fast path declined: ${where}`);
    assert.deepEqual(
      readRealtimeFrame(text),
      slow === null
        ? { kind: "event", result: safeParseRealtimeServerEvent(text) }
        : { kind: "audio_delta", delta: slow },
      where,
    );
    const output = openAIAudioDeltaToTwilioMedia(text, streamSid);
    const expected = slow === null ? null : buildTwilioMedia(streamSid, slow.delta);
    assert.equal(output, expected, where);
    if (output !== null && expected !== null) {
      valid++;
      assert.deepEqual(JSON.parse(output), JSON.parse(expected), where);
    }
  }
  assert.ok(valid > 2_000, `valid: ${valid}`);
  assert.ok(fastDecided > 1_750, `fastDecided: ${fastDecided}`);
});

Deno.test("twilioMediaFromValidBase64() escapes the streamSid like buildTwilioMedia()", () => {
  for (const streamSid of ["MZ1", 'a"b', "back\\slash", "line\nbreak", "é😀", ""]) {
    assert.equal(
      twilioMediaFromValidBase64(streamSid, "AAAA"),
      buildTwilioMedia(streamSid, "AAAA"),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Coalescing
// ---------------------------------------------------------------------------------------------

Deno.test("concatBase64() encodes the concatenated bytes, not the concatenated text", () => {
  const random = createRandom(0xc0a1);
  for (let round = 0; round < 300; round++) {
    const chunks: Uint8Array[] = [];
    const count = Math.floor(random() * 8);
    for (let i = 0; i < count; i++) {
      const length = random() < 0.5 ? 160 : Math.floor(random() * 400);
      chunks.push(randomBytes(random, length));
    }
    const joined = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
    let offset = 0;
    for (const chunk of chunks) {
      joined.set(chunk, offset);
      offset += chunk.length;
    }
    const result = concatBase64(chunks.map(toBase64));
    assert.equal(result, toBase64(joined), `round ${round}`);
    assert.deepEqual(fromBase64(result ?? ""), joined);
  }
});

Deno.test("concatBase64() joins aligned chunks as text", () => {
  // 159 bytes = 53 groups of 3: no padding, so text concatenation is already correct.
  const a = toBase64(new Uint8Array(159).fill(1));
  const b = toBase64(new Uint8Array(160).fill(2));
  assert.equal(concatBase64([a, a, b]), a + a + b);
  assert.notEqual(concatBase64([b, a]), b + a);
  assert.equal(concatBase64([]), "");
});

Deno.test("concatBase64() returns null for invalid base64", () => {
  assert.equal(concatBase64(["AAAA", "AA"]), null);
  assert.equal(concatBase64(["AA A"]), null);
  assert.equal(concatBase64(["AA==", "!!!!"]), null);
});

Deno.test("coalesceTwilioPayloadsToAppend() builds one append from several frames", () => {
  const frames = [1, 2, 3, 4, 5].map((n) => toBase64(new Uint8Array(160).fill(n)));
  const text = coalesceTwilioPayloadsToAppend(frames);
  assert.ok(text !== null);
  const event = JSON.parse(text);
  assert.equal(event.type, "input_audio_buffer.append");
  const bytes = fromBase64(event.audio);
  assert.equal(bytes.length, 800);
  assert.deepEqual([bytes[0], bytes[159], bytes[160], bytes[799]], [1, 1, 2, 5]);
  assert.equal(text, buildInputAudioBufferAppend(event.audio));
  assert.equal(coalesceTwilioPayloadsToAppend([]), null);
  assert.equal(coalesceTwilioPayloadsToAppend(["", ""]), null);
  assert.equal(coalesceTwilioPayloadsToAppend(["AAAA", "not base64"]), null);
});
