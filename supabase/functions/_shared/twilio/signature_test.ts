import assert from "node:assert/strict";
import twilio from "twilio";
import {
  computeTwilioBodyHash,
  computeTwilioSignature,
  importTwilioSigningKey,
  toggleDefaultPort,
  type TwilioSignedParams,
  validateTwilioSignature,
  validateTwilioSignatureWithBody,
} from "./signature.ts";
import { createRandom } from "../../../../tests/support/random.ts";

// Twilio's documented example (security docs, "Validating signatures from Twilio").
const DOC_TOKEN = "12345";
const DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2";
const DOC_PARAMS = {
  CallSid: "CA1234567890ABCDE",
  Caller: "+14158675309",
  Digits: "1234",
  From: "+14158675309",
  To: "+18005551212",
};
const DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";

/** The twilio package's oracle; it takes mutable records. */
function oracleSignature(token: string, url: string, params: TwilioSignedParams): string {
  return twilio.getExpectedTwilioSignature(token, url, params as Record<string, string>);
}

function oracleValidates(
  token: string,
  signature: string,
  url: string,
  params: TwilioSignedParams,
): boolean {
  try {
    return twilio.validateRequest(token, signature, url, params as Record<string, string>);
  } catch {
    return false; // it parses the URL with new URL() on its fallback path
  }
}

Deno.test("computeTwilioSignature() reproduces Twilio's documented example", async () => {
  assert.equal(await computeTwilioSignature(DOC_TOKEN, DOC_URL, DOC_PARAMS), DOC_SIGNATURE);
  assert.equal(oracleSignature(DOC_TOKEN, DOC_URL, DOC_PARAMS), DOC_SIGNATURE);
});

Deno.test("validateTwilioSignature() accepts the documented example", async () => {
  assert.equal(await validateTwilioSignature(DOC_TOKEN, DOC_SIGNATURE, DOC_URL, DOC_PARAMS), true);
});

Deno.test("validateTwilioSignature() rejects tampering and missing input", async () => {
  const check = (
    token: string,
    signature: string | null,
    url: string,
    params: TwilioSignedParams,
  ) => validateTwilioSignature(token, signature, url, params);
  assert.equal(
    await check(DOC_TOKEN, DOC_SIGNATURE, DOC_URL, { ...DOC_PARAMS, Digits: "1235" }),
    false,
  );
  assert.equal(await check(DOC_TOKEN, DOC_SIGNATURE, DOC_URL, { ...DOC_PARAMS, Extra: "" }), false);
  const { Digits: _digits, ...withoutDigits } = DOC_PARAMS;
  assert.equal(await check(DOC_TOKEN, DOC_SIGNATURE, DOC_URL, withoutDigits), false);
  assert.equal(
    await check(DOC_TOKEN, DOC_SIGNATURE, DOC_URL.replace("foo=1", "foo=2"), DOC_PARAMS),
    false,
  );
  assert.equal(
    await check(DOC_TOKEN, DOC_SIGNATURE, "http://mycompany.com/myapp.php?foo=1&bar=2", DOC_PARAMS),
    false,
  );
  assert.equal(await check(DOC_TOKEN, "RSOYDt4T1cUTdK1PDd93/VVr8B9=", DOC_URL, DOC_PARAMS), false);
  assert.equal(await check(DOC_TOKEN, DOC_SIGNATURE.slice(0, -1), DOC_URL, DOC_PARAMS), false);
  assert.equal(await check("12346", DOC_SIGNATURE, DOC_URL, DOC_PARAMS), false);
  assert.equal(await check(DOC_TOKEN, null, DOC_URL, DOC_PARAMS), false);
  assert.equal(await check(DOC_TOKEN, "", DOC_URL, DOC_PARAMS), false);
  assert.equal(await check("", DOC_SIGNATURE, DOC_URL, DOC_PARAMS), false);
});

Deno.test("computeTwilioSignature() rejects an empty auth token", async () => {
  await assert.rejects(computeTwilioSignature("", DOC_URL, {}), TypeError);
});

Deno.test("computeTwilioSignature() signs repeated names like the twilio package", async () => {
  const params = { Digits: ["2", "1", "2", "10"], a: "x", B: ["", "é"] };
  const expected = oracleSignature("token", "https://h.example/p", params);
  assert.equal(await computeTwilioSignature("token", "https://h.example/p", params), expected);
  // Duplicates are removed and values sorted, so order and repetition do not matter.
  const reordered = { a: "x", B: ["é", ""], Digits: ["10", "1", "2"] };
  assert.equal(await computeTwilioSignature("token", "https://h.example/p", reordered), expected);
});

Deno.test("validateTwilioSignature() checks a Media Streams upgrade over the wss URL", async () => {
  const url = "wss://project.supabase.co/functions/v1/voice-stream";
  const signature = oracleSignature("token", url, {});
  assert.equal(await validateTwilioSignature("token", signature, url, {}), true);
  assert.equal(await validateTwilioSignature("token", signature, url + "/", {}), false);
});

Deno.test("toggleDefaultPort() adds or removes only the scheme's default port", () => {
  assert.equal(toggleDefaultPort("https://h.example/p?q=1"), "https://h.example:443/p?q=1");
  assert.equal(toggleDefaultPort("https://h.example:443/p"), "https://h.example/p");
  assert.equal(toggleDefaultPort("wss://h.example/s"), "wss://h.example:443/s");
  assert.equal(toggleDefaultPort("http://h.example"), "http://h.example:80");
  assert.equal(toggleDefaultPort("ws://u:p@h.example:80/s"), "ws://u:p@h.example/s");
  assert.equal(toggleDefaultPort("https://[::1]/p"), "https://[::1]:443/p");
  assert.equal(toggleDefaultPort("https://[::1]:443/p"), "https://[::1]/p");
  assert.equal(toggleDefaultPort("HTTPS://h.example/p"), "HTTPS://h.example:443/p");
  assert.equal(toggleDefaultPort("https://h.example:8443/p"), null);
  assert.equal(toggleDefaultPort("ftp://h.example/p"), null);
  assert.equal(toggleDefaultPort("not a url"), null);
});

Deno.test("validateTwilioSignature() accepts signatures over either default-port form", async () => {
  const params = { CallSid: "CA1" };
  const withoutPort = "https://h.example/voice?x='1'";
  const withPort = "https://h.example:443/voice?x='1'";
  const signedWithPort = oracleSignature("token", withPort, params);
  const signedWithoutPort = oracleSignature("token", withoutPort, params);
  assert.equal(await validateTwilioSignature("token", signedWithPort, withoutPort, params), true);
  assert.equal(await validateTwilioSignature("token", signedWithoutPort, withPort, params), true);
  // A non-default port is part of the configured URL: we never strip it (the twilio package does).
  const custom = "https://h.example:8443/voice";
  const signedWithoutCustomPort = oracleSignature("token", "https://h.example/voice", params);
  assert.equal(
    await validateTwilioSignature("token", signedWithoutCustomPort, custom, params),
    false,
  );
  assert.equal(oracleValidates("token", signedWithoutCustomPort, custom, params), true);
});

Deno.test("importTwilioSigningKey() caches keys per token", async () => {
  const first = importTwilioSigningKey("cache-token");
  assert.equal(importTwilioSigningKey("cache-token"), first);
  // More tokens than the cache holds still sign correctly.
  for (let i = 0; i < 40; i++) {
    const token = `token-${i}`;
    assert.equal(
      await computeTwilioSignature(token, DOC_URL, DOC_PARAMS),
      oracleSignature(token, DOC_URL, DOC_PARAMS),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Random agreement with the twilio package
// ---------------------------------------------------------------------------------------------

const CHARACTERS = [..."aZ09 +&=%?#/'\"<>-_.~é日😀", "\ud800", "\n"];

function randomText(random: () => number, maxLength: number): string {
  let text = "";
  const length = Math.floor(random() * maxLength);
  for (let i = 0; i < length; i++) text += CHARACTERS[Math.floor(random() * CHARACTERS.length)];
  return text;
}

interface SignatureCase {
  readonly token: string;
  readonly url: string;
  readonly params: Record<string, string | string[]>;
}

function randomCase(random: () => number): SignatureCase {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const token = random() < 0.8
    ? Array.from({ length: 32 }, () => pick([..."0123456789abcdef"])).join("")
    : "t" + randomText(random, 10);
  const scheme = pick(["https", "wss", "http"]);
  const port = pick(["", "", ":443", ":8443"]);
  const path = "/" + pick(["functions/v1/voice-frontdoor", "voice", "a b/é", "x'y"]);
  const query = random() < 0.5
    ? "?" + pick(["foo=1&bar=2", "step=after&n='1'", "q=é&x=%20", "bodySHA256=abc"])
    : "";
  const url = `${scheme}://${
    pick(["mycompany.com", "h.example", "p.supabase.co"])
  }${port}${path}${query}`;
  const params: Record<string, string | string[]> = {};
  const count = scheme === "wss" ? 0 : Math.floor(random() * 8);
  for (let i = 0; i < count; i++) {
    const name = random() < 0.3 ? pick(["Digits", "CallSid", "From", "To"]) : randomText(random, 8);
    if (random() < 0.2) {
      params[name] = Array.from(
        { length: 1 + Math.floor(random() * 4) },
        () => random() < 0.3 ? "1" : randomText(random, 6),
      );
    } else {
      params[name] = random() < 0.15 ? "" : randomText(random, 16);
    }
  }
  return { token, url, params };
}

function tamper(random: () => number, c: SignatureCase): SignatureCase {
  const names = Object.keys(c.params);
  const choice = Math.floor(random() * 3);
  if (choice === 0 || names.length === 0) return { ...c, url: c.url + "x" };
  const name = names[Math.floor(random() * names.length)];
  const value = c.params[name];
  if (choice === 1) {
    const changed = typeof value === "string" ? value + "!" : [...value, "extra-value"];
    return { ...c, params: { ...c.params, [name]: changed } };
  }
  // Removing a pair whose name and value are both empty signs the same string: not tampering.
  if (name === "" && (value === "" || (Array.isArray(value) && value.every((v) => v === "")))) {
    return { ...c, url: c.url + "x" };
  }
  const { [name]: _removed, ...rest } = c.params;
  return { ...c, params: rest };
}

Deno.test("computeTwilioSignature() agrees with the twilio package on 1,000 random requests", async () => {
  const random = createRandom(0x5161);
  for (let round = 0; round < 1_000; round++) {
    const c = randomCase(random);
    const where = `round ${round}: ${JSON.stringify(c)}`;
    const expected = oracleSignature(c.token, c.url, c.params);
    assert.equal(await computeTwilioSignature(c.token, c.url, c.params), expected, where);
    assert.equal(await validateTwilioSignature(c.token, expected, c.url, c.params), true, where);
    assert.equal(oracleValidates(c.token, expected, c.url, c.params), true, where);
    const bad = tamper(random, c);
    assert.equal(
      await validateTwilioSignature(bad.token, expected, bad.url, bad.params),
      false,
      where,
    );
    assert.equal(oracleValidates(bad.token, expected, bad.url, bad.params), false, where);
    const flipped = expected.slice(0, 5) + (expected[5] === "A" ? "B" : "A") + expected.slice(6);
    assert.equal(await validateTwilioSignature(c.token, flipped, c.url, c.params), false, where);
  }
});

// ---------------------------------------------------------------------------------------------
// JSON bodies (bodySHA256)
// ---------------------------------------------------------------------------------------------

Deno.test("computeTwilioBodyHash() equals the twilio package's body hash", async () => {
  for (const body of ["", "{}", '{"a":"é😀"}', "x".repeat(10_000)]) {
    assert.equal(await computeTwilioBodyHash(body), twilio.getExpectedBodyHash(body));
  }
});

Deno.test("validateTwilioSignatureWithBody() agrees with the twilio package", async () => {
  const random = createRandom(0xb0d1);
  for (let round = 0; round < 200; round++) {
    const body = JSON.stringify({ n: round, text: randomText(random, 40) });
    const url = `https://h.example/functions/v1/voice-action?x=${round}&bodySHA256=${
      twilio.getExpectedBodyHash(body)
    }`;
    const signature = oracleSignature("token", url, {});
    assert.equal(await validateTwilioSignatureWithBody("token", signature, url, body), true);
    assert.equal(twilio.validateRequestWithBody("token", signature, url, body), true);
    const otherBody = body.replace("}", ',"x":1}');
    assert.equal(await validateTwilioSignatureWithBody("token", signature, url, otherBody), false);
    assert.equal(twilio.validateRequestWithBody("token", signature, url, otherBody), false);
    assert.equal(await validateTwilioSignatureWithBody("token", null, url, body), false);
    assert.equal(
      await validateTwilioSignatureWithBody("token", signature, url + "&y=1", body),
      false,
    );
  }
});

Deno.test("validateTwilioSignatureWithBody() rejects a missing hash or unparsable URL", async () => {
  const url = "https://h.example/hook";
  const signature = oracleSignature("token", url, {});
  assert.equal(await validateTwilioSignatureWithBody("token", signature, url, "{}"), false);
  assert.equal(await validateTwilioSignatureWithBody("token", "x", "not a url", "{}"), false);
});
