import assert from "node:assert/strict";
import twilio from "twilio";
import { XMLParser } from "fast-xml-parser";
import { createMemoryLogger } from "../_shared/log.ts";
import { verifyStreamToken } from "../_shared/internal_auth.ts";
import type { CallEventInput } from "../_shared/store/types.ts";
import { createFrontdoorHandler, type FrontdoorDeps } from "./handler.ts";

const AUTH_TOKEN = "12345678901234567890123456789012";
const ACCOUNT_SID = "AC" + "1".repeat(32);
const CALL_SID = "CA" + "a".repeat(32);
const SECRET = "s".repeat(40);
const PUBLIC_BASE = "https://abc.supabase.co/functions/v1";
const PUBLIC_URL = `${PUBLIC_BASE}/voice-frontdoor`;
// What hosted Supabase shows the handler instead of the public URL.
const INTERNAL_URL = "http://edge-runtime.supabase.internal:9000/voice-frontdoor";
const NOW = Date.UTC(2026, 10, 22, 12, 0, 0);

function inboundParams(
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    AccountSid: ACCOUNT_SID,
    ApiVersion: "2010-04-01",
    CallSid: CALL_SID,
    CallStatus: "ringing",
    Called: "+15550100000",
    Caller: "+15551230001",
    Direction: "inbound",
    From: "+15551230001",
    To: "+15550100000",
    CallerName: "O'Brien & <Sons>",
    ...overrides,
  };
}

function setup(overrides: Partial<FrontdoorDeps> = {}) {
  const memory = createMemoryLogger("voice-frontdoor");
  const recorded: CallEventInput[] = [];
  const background: Promise<unknown>[] = [];
  const handler = createFrontdoorHandler({
    config: {
      publicFunctionsUrl: PUBLIC_BASE,
      twilioAuthToken: AUTH_TOKEN,
      twilioAccountSid: ACCOUNT_SID,
      internalSecret: SECRET,
      streamTokenTtlSeconds: 60,
    },
    log: memory.logger,
    clock: () => NOW,
    newTraceId: () => "11111111-2222-4333-8444-555555555555",
    recordCallEvent: (event) => {
      recorded.push(event);
      return Promise.resolve();
    },
    waitUntil: (promise) => background.push(promise),
    ...overrides,
  });
  return { handler, memory, recorded, background };
}

function signedRequest(
  params: Record<string, string>,
  options: {
    signUrl?: string;
    query?: string;
    token?: string;
    headers?: HeadersInit;
  } = {},
): Request {
  const query = options.query ?? "";
  const signature = twilio.getExpectedTwilioSignature(
    options.token ?? AUTH_TOKEN,
    (options.signUrl ?? PUBLIC_URL) + query,
    params,
  );
  return new Request(INTERNAL_URL + query, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": signature,
      ...options.headers,
    },
    body: new URLSearchParams(params).toString(),
  });
}

const xml = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  isArray: (name) => name === "Parameter",
});

Deno.test("createFrontdoorHandler() accepts a Twilio-signed call seen at the internal URL", async () => {
  const { handler, recorded, background, memory } = setup();
  const response = await handler(
    signedRequest(inboundParams(), { query: "?org=harbor%27s" }),
  );
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /text\/xml/);
  const doc = xml.parse(await response.text());
  const connect = doc.Response.Connect;
  assert.deepEqual(Object.keys(doc.Response), ["Connect"]);
  assert.equal(
    connect["@action"],
    `${PUBLIC_BASE}/voice-action?route=connect-action`,
  );
  assert.equal(
    connect.Stream["@url"],
    "wss://abc.supabase.co/functions/v1/voice-stream",
  );
  const parameters = Object.fromEntries(
    connect.Stream.Parameter.map((
      p: Record<string, string>,
    ) => [p["@name"], p["@value"]]),
  );
  assert.deepEqual(Object.keys(parameters).sort(), [
    "callSid",
    "from",
    "to",
    "token",
    "traceId",
  ]);
  assert.equal(parameters.callSid, CALL_SID);
  assert.equal(parameters.from, "+15551230001");
  assert.equal(parameters.traceId, "11111111-2222-4333-8444-555555555555");
  // The token is one voice-stream accepts, until it expires, for this call only.
  const claims = { callSid: CALL_SID, traceId: parameters.traceId };
  assert.deepEqual(
    await verifyStreamToken(SECRET, parameters.token, {
      ...claims,
      nowMs: NOW + 59_000,
    }),
    { ok: true },
  );
  assert.deepEqual(
    await verifyStreamToken(SECRET, parameters.token, {
      ...claims,
      nowMs: NOW + 61_000,
    }),
    {
      ok: false,
      reason: "expired",
    },
  );
  const otherCall = {
    callSid: "CA" + "b".repeat(32),
    traceId: parameters.traceId,
    nowMs: NOW,
  };
  assert.equal(
    (await verifyStreamToken(SECRET, parameters.token, otherCall)).ok,
    false,
  );
  await Promise.all(background);
  assert.equal(recorded.length, 1);
  assert.equal(recorded[0].kind, "call_incoming");
  assert.equal(recorded[0].idempotencyKey, `incoming:${CALL_SID}`);
  const [line] = memory.entries("call_incoming");
  assert.equal(line.traceId, parameters.traceId);
  assert.equal(line.from, "***0001");
  assert.ok(!memory.lines.join("").includes("5551230001"));
});

Deno.test("createFrontdoorHandler() escapes parameters in the TwiML", async () => {
  const { handler } = setup();
  const from = "client:O'Brien&<Sons>\"";
  const response = await handler(signedRequest(inboundParams({ From: from })));
  assert.equal(response.status, 200);
  const text = await response.text();
  assert.ok(!text.includes("<Sons>"));
  const doc = xml.parse(text);
  const fromParam = doc.Response.Connect.Stream.Parameter.find((
    p: Record<string, string>,
  ) => p["@name"] === "from");
  assert.equal(xmlUnescape(fromParam["@value"]), from);
});

function xmlUnescape(value: string): string {
  return value.replace(/&apos;/g, "'").replace(/&quot;/g, '"').replace(
    /&lt;/g,
    "<",
  ).replace(
    /&gt;/g,
    ">",
  )
    .replace(/&amp;/g, "&");
}

Deno.test("createFrontdoorHandler() accepts withheld caller ids", async () => {
  for (const from of ["anonymous", "client:alice", "+266696687"]) {
    const { handler } = setup();
    const response = await handler(
      signedRequest(inboundParams({ From: from, Caller: from })),
    );
    assert.equal(response.status, 200, from);
  }
});

Deno.test("createFrontdoorHandler() refuses tampered parameters, URL, account and token with 403", async () => {
  const cases: [string, () => Request][] = [
    ["parameter", () => {
      const request = signedRequest(inboundParams());
      const body = new URLSearchParams(inboundParams({ From: "+15559999999" }))
        .toString();
      return new Request(request.url, {
        method: "POST",
        headers: request.headers,
        body,
      });
    }],
    ["url", () => signedRequest(inboundParams(), { signUrl: INTERNAL_URL })],
    ["query", () => {
      const request = signedRequest(inboundParams(), { query: "?a=1" });
      return new Request(INTERNAL_URL + "?a=2", {
        method: "POST",
        headers: request.headers,
        body: request.body,
      });
    }],
    [
      "token",
      () => signedRequest(inboundParams(), { token: "another-auth-token" }),
    ],
    [
      "account",
      () => signedRequest(inboundParams({ AccountSid: "AC" + "2".repeat(32) })),
    ],
    ["missing", () => {
      const request = signedRequest(inboundParams());
      const headers = new Headers(request.headers);
      headers.delete("x-twilio-signature");
      return new Request(request.url, {
        method: "POST",
        headers,
        body: request.body,
      });
    }],
  ];
  for (const [name, make] of cases) {
    const { handler, memory, recorded } = setup();
    const response = await handler(make());
    assert.equal(response.status, 403, name);
    assert.equal(await response.text(), "", name);
    assert.equal(recorded.length, 0, name);
    const [line] = memory.entries("security_rejected");
    assert.ok(line, name);
    const expected = { missing: "signature_missing", account: "account_mismatch" }[name] ??
      "signature_mismatch";
    assert.equal(line.reason, expected, name);
  }
});

Deno.test("createFrontdoorHandler() refuses bad method, media type, size and fields", async () => {
  const { handler } = setup();
  const get = await handler(new Request(INTERNAL_URL));
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
  const json = await handler(
    new Request(INTERNAL_URL, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    }),
  );
  assert.equal(json.status, 415);
  const big = inboundParams({ Padding: "x".repeat(70 * 1024) });
  assert.equal((await handler(signedRequest(big))).status, 413);
  const bad = await handler(
    signedRequest(inboundParams({ CallSid: "CA123", To: "" })),
  );
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /CallSid/);
  const missing = inboundParams();
  delete missing.From;
  const noFrom = await handler(signedRequest(missing));
  assert.equal(noFrom.status, 400);
  assert.match(await noFrom.text(), /From/);
});

Deno.test("createFrontdoorHandler() answers apology TwiML when something unexpected breaks", async () => {
  const { handler, memory } = setup({
    newTraceId: () => {
      throw new Error("entropy exhausted");
    },
  });
  const response = await handler(signedRequest(inboundParams()));
  assert.equal(response.status, 200);
  const doc = xml.parse(await response.text());
  assert.ok(doc.Response.Say);
  assert.equal(doc.Response.Hangup, "");
  assert.equal(memory.entries("frontdoor_failed").length, 1);
});

Deno.test("createFrontdoorHandler() answers before the call is recorded", async () => {
  let release!: () => void;
  const slowStore = new Promise<void>((resolve) => release = resolve);
  const { handler, background } = setup({ recordCallEvent: () => slowStore });
  const response = await handler(signedRequest(inboundParams()));
  assert.equal(response.status, 200);
  assert.equal(background.length, 1);
  release();
  await Promise.all(background);
});

Deno.test("createFrontdoorHandler() retries recording the call while the store is down", async () => {
  let failures = 2;
  const attempts: CallEventInput[] = [];
  const pauses: number[] = [];
  const { handler, background, memory } = setup({
    recordCallEvent: (event) => {
      attempts.push(event);
      return failures-- > 0 ? Promise.reject(new Error("connect ECONNREFUSED")) : Promise.resolve();
    },
    sleep: (ms) => {
      pauses.push(ms);
      return Promise.resolve();
    },
  });
  const response = await handler(signedRequest(inboundParams()));
  assert.equal(response.status, 200);
  await Promise.all(background);
  assert.equal(attempts.length, 3);
  assert.deepEqual(pauses, [250, 500]);
  assert.equal(memory.entries("call_record_retry").length, 2);
  assert.equal(memory.entries("call_record_retry")[0].callSid, CALL_SID);
});

Deno.test("createFrontdoorHandler() gives up recording the call after its last retry", async () => {
  const { handler, background } = setup({
    recordCallEvent: () => Promise.reject(new Error("connect ECONNREFUSED")),
    sleep: () => Promise.resolve(),
  });
  assert.equal((await handler(signedRequest(inboundParams()))).status, 200);
  await assert.rejects(Promise.all(background), /ECONNREFUSED/);
});

Deno.test("createFrontdoorHandler() does not retry a record the database refused as invalid", async () => {
  let attempts = 0;
  const { handler, background } = setup({
    recordCallEvent: () => {
      attempts++;
      return Promise.reject(Object.assign(new Error("invalid byte sequence"), { code: "22021" }));
    },
    sleep: () => Promise.resolve(),
  });
  assert.equal((await handler(signedRequest(inboundParams()))).status, 200);
  await assert.rejects(Promise.all(background), /invalid byte sequence/);
  assert.equal(attempts, 1);
});
