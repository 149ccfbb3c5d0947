import assert from "node:assert/strict";
import { encodeTwilioForm, safeParseTwilioForm, type TwilioFormParams } from "./twilio_form.ts";
import { createRandom } from "../../../../tests/support/random.ts";

function parseOk(body: string): TwilioFormParams {
  const result = safeParseTwilioForm(body);
  if (!result.success) throw new Error(`expected success, got ${result.error.message}`);
  return result.data;
}

Deno.test("safeParseTwilioForm() parses a Twilio voice webhook body", () => {
  const body = "AccountSid=AC123&CallSid=CA456&From=%2B14155551212&To=%2B18005551212" +
    "&CallStatus=ringing&Direction=inbound&CallerName=O%27Brien+%26+Sons";
  assert.deepEqual(parseOk(body), {
    AccountSid: "AC123",
    CallSid: "CA456",
    From: "+14155551212",
    To: "+18005551212",
    CallStatus: "ringing",
    Direction: "inbound",
    CallerName: "O'Brien & Sons",
  });
});

Deno.test("safeParseTwilioForm() decodes + as space and percent-escapes as UTF-8", () => {
  assert.deepEqual(parseOk("a=hello+world&b=%2B1&c=caf%C3%A9&d=%F0%9F%98%80&e+f=1"), {
    a: "hello world",
    b: "+1",
    c: "café",
    d: "😀",
    "e f": "1",
  });
});

Deno.test("safeParseTwilioForm() keeps repeated names as arrays in order", () => {
  assert.deepEqual(parseOk("Digits=1&x=a&Digits=2&Digits=1"), {
    Digits: ["1", "2", "1"],
    x: "a",
  });
});

Deno.test("safeParseTwilioForm() handles empty values, bare names and empty pairs", () => {
  assert.deepEqual(parseOk(""), {});
  assert.deepEqual(parseOk("a=&b&&c=1=2&=v&"), { a: "", b: "", c: "1=2", "": "v" });
});

Deno.test("safeParseTwilioForm() keeps __proto__ as an ordinary field", () => {
  const data = parseOk("__proto__=x&constructor=y&toString=z");
  assert.equal(Object.getPrototypeOf(data), Object.prototype);
  assert.deepEqual(Object.keys(data), ["__proto__", "constructor", "toString"]);
  assert.equal(Object.getOwnPropertyDescriptor(data, "__proto__")?.value, "x");
  assert.equal(data.constructor, "y");
});

Deno.test("safeParseTwilioForm() rejects malformed percent-encoding without throwing", () => {
  for (const body of ["a=%", "a=%zz", "a=%E9", "a=%C3", "%=1", "ok=1&b=100%", "a=%ED%A0%80"]) {
    const result = safeParseTwilioForm(body);
    assert.ok(!result.success, body);
    assert.equal(result.error.code, "invalid_encoding");
    assert.match(result.error.message, /^Cannot parse form body: pair \d+/);
  }
});

const CHARACTERS = [..."aZ09 +&=%?#/'\"<>-_.~*!éü日本😀\n\t"];

function randomText(random: () => number, maxLength: number): string {
  let text = "";
  const length = Math.floor(random() * maxLength);
  for (let i = 0; i < length; i++) text += CHARACTERS[Math.floor(random() * CHARACTERS.length)];
  return text;
}

Deno.test("safeParseTwilioForm() agrees with URLSearchParams on 2,000 well-formed bodies", () => {
  const random = createRandom(0xf0e1);
  for (let round = 0; round < 2_000; round++) {
    const search = new URLSearchParams();
    const pairs = Math.floor(random() * 6);
    for (let i = 0; i < pairs; i++) {
      // Reuse names now and then so repeated keys are exercised.
      const name = random() < 0.3 ? "Digits" : randomText(random, 8);
      search.append(name, randomText(random, 12));
    }
    const body = search.toString();
    const expected: Record<string, string | string[]> = {};
    for (const name of new Set(search.keys())) {
      const values = search.getAll(name);
      expected[name] = values.length === 1 ? values[0] : values;
    }
    assert.deepEqual(parseOk(body), expected, body);
  }
});

Deno.test("encodeTwilioForm() encodes fields in order, repeats arrays and skips undefined", () => {
  assert.equal(
    encodeTwilioForm({
      To: "+14155551212",
      From: "+18005551212",
      Body: "Call from O'Brien & Sons: 50% off",
      StatusCallback: undefined,
      Timeout: 20,
      Record: false,
      StatusCallbackEvent: ["initiated", "completed"],
    }),
    "To=%2B14155551212&From=%2B18005551212&Body=Call+from+O%27Brien+%26+Sons%3A+50%25+off" +
      "&Timeout=20&Record=false&StatusCallbackEvent=initiated&StatusCallbackEvent=completed",
  );
  assert.equal(encodeTwilioForm({}), "");
});

Deno.test("encodeTwilioForm() round-trips through safeParseTwilioForm()", () => {
  const random = createRandom(0x20ad);
  for (let round = 0; round < 1_000; round++) {
    const params: Record<string, string | string[]> = {};
    const count = Math.floor(random() * 5);
    for (let i = 0; i < count; i++) {
      const name = `${randomText(random, 6)}${i}`;
      params[name] = random() < 0.2
        ? [randomText(random, 8), randomText(random, 8)]
        : randomText(random, 20);
    }
    assert.deepEqual(parseOk(encodeTwilioForm(params)), params);
  }
});

Deno.test("encodeTwilioForm() encodes TwiML bodies losslessly", () => {
  const twiml =
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi &amp; bye</Say></Response>';
  assert.deepEqual(parseOk(encodeTwilioForm({ Twiml: twiml })), { Twiml: twiml });
});
