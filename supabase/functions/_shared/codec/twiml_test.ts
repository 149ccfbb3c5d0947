import assert from "node:assert/strict";
import twilio from "twilio";
import { XMLParser } from "fast-xml-parser";
import { escapeXml, renderTwiml, type TwimlVerb } from "./twiml.ts";
import { createRandom } from "../../../../tests/support/random.ts";

// Attribute order is not significant in XML; child order is, so keep it.
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  preserveOrder: true,
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  // Decodes numeric character references such as &#xA; as every XML parser does.
  htmlEntities: true,
});

function parseXml(xml: string): unknown {
  return parser.parse(xml);
}

type VoiceResponse = InstanceType<typeof twilio.twiml.VoiceResponse>;

/** Drops undefined attributes, which the twilio builder would print as "undefined". */
function defined<T extends Record<string, unknown>>(attributes: T): T {
  return Object.fromEntries(
    Object.entries(attributes).filter(([, value]) => value !== undefined),
  ) as T;
}

/** Renders the same verbs with the twilio package's builder: the oracle. */
function renderWithTwilio(verbs: readonly TwimlVerb[]): string {
  const response: VoiceResponse = new twilio.twiml.VoiceResponse();
  for (const verb of verbs) {
    switch (verb.verb) {
      case "Say":
        response.say(defined({ voice: verb.voice, language: verb.language }) as never, verb.text);
        break;
      case "Pause":
        response.pause(defined({ length: verb.length }));
        break;
      case "Hangup":
        response.hangup();
        break;
      case "Redirect":
        response.redirect(defined({ method: verb.method }), verb.url);
        break;
      case "Record": {
        const { verb: _verb, ...attributes } = verb;
        response.record(defined(attributes) as never);
        break;
      }
      case "Dial": {
        const { verb: _verb, number, text, ...attributes } = verb;
        if (number !== undefined) response.dial(defined(attributes) as never).number(number);
        else response.dial(defined(attributes) as never, text);
        break;
      }
      case "Connect": {
        const connect = response.connect(defined({ action: verb.action, method: verb.method }));
        const { parameters = [], ...streamAttributes } = verb.stream;
        const stream = connect.stream(defined(streamAttributes) as never);
        for (const parameter of parameters) stream.parameter(parameter);
        break;
      }
    }
  }
  return response.toString();
}

function assertSameDocument(verbs: readonly TwimlVerb[]): void {
  const ours = renderTwiml(verbs);
  const theirs = renderWithTwilio(verbs);
  assert.deepEqual(parseXml(ours), parseXml(theirs), `ours:   ${ours}\ntheirs: ${theirs}`);
}

const STREAM_URL = "wss://example.supabase.co/functions/v1/voice-stream";

Deno.test("renderTwiml() renders the connect-stream answer exactly", () => {
  assert.equal(
    renderTwiml([
      {
        verb: "Connect",
        action: "https://example.supabase.co/functions/v1/voice-action?step=after-stream",
        stream: {
          url: STREAM_URL,
          parameters: [{ name: "callSid", value: "CA123" }, { name: "tenant", value: "t&1" }],
        },
      },
    ]),
    '<?xml version="1.0" encoding="UTF-8"?><Response>' +
      '<Connect action="https://example.supabase.co/functions/v1/voice-action?step=after-stream">' +
      `<Stream url="${STREAM_URL}">` +
      '<Parameter name="callSid" value="CA123"/><Parameter name="tenant" value="t&amp;1"/>' +
      "</Stream></Connect></Response>",
  );
});

Deno.test("renderTwiml() renders an empty response", () => {
  assert.equal(renderTwiml([]), '<?xml version="1.0" encoding="UTF-8"?><Response/>');
});

Deno.test("renderTwiml() matches the twilio package on every verb", () => {
  assertSameDocument([
    { verb: "Say", text: "Thanks for calling O'Brien & <Sons>.", voice: "Polly.Joanna" },
    { verb: "Say", text: "Grüße, 日本語, 😀", language: "de-DE" },
    { verb: "Pause", length: 2 },
    { verb: "Pause" },
    {
      verb: "Record",
      action: "https://x.example/voicemail?a=1&b=2",
      maxLength: 120,
      playBeep: true,
      recordingStatusCallback: "https://x.example/recording#rc=3&rp=all",
      timeout: 5,
      transcribe: false,
      finishOnKey: "#",
    },
    { verb: "Dial", number: "+14155551212", callerId: "+18005551212", timeout: 20, action: "/a" },
    { verb: "Dial", text: "+14155551212" },
    {
      verb: "Connect",
      action: "https://x.example/after",
      stream: {
        url: STREAM_URL,
        name: 'call "1"',
        statusCallback: "https://x.example/stream-status",
        parameters: [{ name: "who", value: "O'Brien & <Sons>" }, { name: "ü", value: "😀" }],
      },
    },
    { verb: "Redirect", url: "https://x.example/next?x=1&y='2'", method: "POST" },
    { verb: "Hangup" },
  ]);
});

Deno.test("escapeXml() escapes the five XML specials", () => {
  assert.equal(
    escapeXml(`O'Brien & <Sons> "Ltd"`),
    "O&apos;Brien &amp; &lt;Sons&gt; &quot;Ltd&quot;",
  );
  assert.equal(escapeXml("&amp;"), "&amp;amp;");
});

Deno.test("escapeXml() keeps tab, LF and CR as character references", () => {
  assert.equal(escapeXml("a\tb\nc\rd"), "a&#x9;b&#xA;c&#xD;d");
  const xml = renderTwiml([{ verb: "Say", text: "line 1\r\nline 2", voice: "a\tb" }]);
  assert.deepEqual(parseXml(xml), [
    { "?xml": [{ "#text": "" }], ":@": { "@_version": "1.0", "@_encoding": "UTF-8" } },
    {
      Response: [{
        Say: [{ "#text": "line 1\r\nline 2" }],
        ":@": { "@_voice": "a\tb" },
      }],
    },
  ]);
});

Deno.test("escapeXml() drops characters XML cannot carry", () => {
  assert.equal(escapeXml("a\u0000b\u0001c\u001Fd\uFFFEe\uFFFF"), "abcde");
  assert.equal(escapeXml("x\uD800y\uDC00z"), "xyz");
  assert.equal(escapeXml("ok 😀"), "ok 😀");
  const xml = renderTwiml([{ verb: "Say", text: "bell\u0007" }]);
  assert.equal(xml.includes("\u0007"), false);
});

const PIECES = [
  "O'Brien",
  " & ",
  "<Sons>",
  '"quoted"',
  "a>b",
  "&amp;",
  "café",
  "日本",
  "😀",
  "x=1&y=2",
  " ",
  "  spaced  ",
  "https://x.example/p?q='1'",
  "]]>",
  "<!-- -->",
];

function randomText(random: () => number): string {
  let text = "";
  const count = 1 + Math.floor(random() * 4);
  for (let i = 0; i < count; i++) text += PIECES[Math.floor(random() * PIECES.length)];
  return text;
}

function randomVerb(random: () => number): TwimlVerb {
  const maybe = (value: string) => (random() < 0.5 ? value : undefined);
  switch (Math.floor(random() * 7)) {
    case 0:
      return {
        verb: "Say",
        text: randomText(random),
        voice: maybe("alice"),
        language: maybe("en-GB"),
      };
    case 1:
      return { verb: "Pause", length: random() < 0.5 ? Math.floor(random() * 10) : undefined };
    case 2:
      return { verb: "Hangup" };
    case 3:
      return {
        verb: "Redirect",
        url: randomText(random),
        method: random() < 0.5 ? "GET" : undefined,
      };
    case 4:
      return {
        verb: "Record",
        action: maybe(randomText(random)),
        maxLength: random() < 0.5 ? 60 : undefined,
        playBeep: random() < 0.5 ? random() < 0.5 : undefined,
        recordingStatusCallback: maybe(randomText(random)),
        timeout: random() < 0.5 ? 3 : undefined,
        transcribe: random() < 0.5 ? false : undefined,
      };
    case 5:
      return random() < 0.5
        ? { verb: "Dial", number: randomText(random), callerId: maybe("+18005551212") }
        : {
          verb: "Dial",
          text: randomText(random),
          timeout: 15,
          action: maybe(randomText(random)),
        };
    default:
      return {
        verb: "Connect",
        action: maybe(randomText(random)),
        stream: {
          url: STREAM_URL,
          name: maybe(randomText(random)),
          statusCallback: maybe(randomText(random)),
          parameters: Array.from(
            { length: Math.floor(random() * 3) },
            () => ({ name: randomText(random), value: randomText(random) }),
          ),
        },
      };
  }
}

Deno.test("renderTwiml() matches the twilio package on 500 random documents", () => {
  const random = createRandom(0x7a1);
  for (let round = 0; round < 500; round++) {
    const verbs = Array.from({ length: Math.floor(random() * 5) }, () => randomVerb(random));
    assertSameDocument(verbs);
  }
});
