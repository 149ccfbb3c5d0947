import assert from "node:assert/strict";
import { createMemoryLogger } from "../_shared/log.ts";
import { signTwilioRequest } from "../../../tests/doubles/twilio_rest_double.ts";
import type { BridgeSocket } from "./bridge_deps.ts";
import { createStreamHandler, type StreamDeps } from "./handler.ts";

const AUTH_TOKEN = "handler-test-twilio-auth-token-0000";
const PUBLIC_BASE = "https://abc.supabase.co/functions/v1";
/** What Twilio signs: the `<Stream url>` exactly as written. */
const PUBLIC_STREAM_URL = "wss://abc.supabase.co/functions/v1/voice-stream";
/** What hosted Supabase shows the handler as `req.url` instead (protocols.md §1). */
const INTERNAL_URL = "http://edge-runtime.supabase.internal:9000/voice-stream";
const CALL_SID = "CA" + "a".repeat(32);
const OPEN = 1;

/** A socket that only has to exist and close: the bridge is tested in bridge_test.ts. */
class IdleSocket implements BridgeSocket {
  readyState = OPEN;
  readonly #closeListeners: ((event: CloseEvent) => void)[] = [];
  send(): void {}
  close(): void {
    this.peerClose();
  }
  addEventListener(type: string, listener: (event: never) => void): void {
    if (type === "close") this.#closeListeners.push(listener as (event: CloseEvent) => void);
  }
  peerClose(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    for (const listener of this.#closeListeners) listener(new CloseEvent("close", { code: 1000 }));
  }
}

interface Harness {
  handler: (req: Request) => Promise<Response>;
  logs: ReturnType<typeof createMemoryLogger>;
  upgrades: Request[];
  sockets: IdleSocket[];
  background: Promise<unknown>[];
  connects: number;
}

/** The handler with recording fakes; `upgrade: "deno"` keeps the real `Deno.upgradeWebSocket`. */
function createHarness(options: { upgrade?: "fake" | "deno" } = {}): Harness {
  const logs = createMemoryLogger("voice-stream");
  const harness: Harness = {
    handler: () => Promise.reject(new Error("not built")),
    logs,
    upgrades: [],
    sockets: [],
    background: [],
    connects: 0,
  };
  const deps: StreamDeps = {
    config: {
      twilioAuthToken: AUTH_TOKEN,
      publicFunctionsUrl: PUBLIC_BASE,
      internalSecret: "handler-test-internal-secret".padEnd(40, "x"),
      openaiRealtimeUrl: "wss://realtime.test/v1/realtime",
      openaiRealtimeModel: "gpt-realtime",
      openaiApiKey: "sk-test",
      openaiVoice: "marin",
      openaiTranscriptionModel: "gpt-4o-mini-transcribe",
      audioPipeline: "passthrough",
      lookupBudgetMs: 150,
      maxCallSeconds: 380,
    },
    log: logs.logger,
    clock: Date.now,
    now: () => performance.now(),
    timers: {
      setTimeout: (callback, ms) => setTimeout(callback, ms),
      clearTimeout: (id) => clearTimeout(id as number),
    },
    store: {
      lookupCaller: () => Promise.resolve(null),
      appendCallTurns: (_callSid, turns) => Promise.resolve(turns.length),
      recordCallMetrics: () => Promise.resolve(),
    },
    connectRealtime() {
      harness.connects++;
      throw new Error("No model session expected in handler tests");
    },
    voiceAction: {
      callTool: () => Promise.reject(new Error("unexpected")),
      control: () => Promise.resolve(),
      streamEnded: () => Promise.resolve(),
    },
    tools: [],
    waitUntil: (promise) => harness.background.push(promise),
    upgradeWebSocket: options.upgrade === "deno" ? undefined : (req) => {
      harness.upgrades.push(req);
      const socket = new IdleSocket();
      harness.sockets.push(socket);
      // A 101 cannot be built outside the runtime; any marker response will do here.
      return { socket: socket as unknown as WebSocket, response: new Response("upgraded") };
    },
  };
  harness.handler = createStreamHandler(deps);
  return harness;
}

function upgradeRequest(url: string, signature?: string): Request {
  const headers: Record<string, string> = {
    upgrade: "websocket",
    connection: "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
  };
  if (signature !== undefined) headers["x-twilio-signature"] = signature;
  return new Request(url, { headers });
}

function assertRejected(h: Harness, response: Response, reason: string): void {
  assert.equal(response.status, 403);
  assert.equal(h.upgrades.length, 0, "no upgrade");
  assert.equal(h.background.length, 0, "no bridge started");
  const [rejected] = h.logs.entries("security_rejected");
  assert.equal(rejected?.reason, reason);
  assert.equal(rejected.level, "warn");
}

Deno.test("createStreamHandler() answers 426 to requests that are not WebSocket upgrades", async () => {
  const h = createHarness();
  for (
    const req of [
      new Request(INTERNAL_URL),
      new Request(INTERNAL_URL, { method: "POST", body: "CallSid=CA1" }),
      new Request(INTERNAL_URL, { headers: { upgrade: "h2c" } }),
    ]
  ) {
    const response = await h.handler(req);
    assert.equal(response.status, 426);
    assert.equal(response.headers.get("upgrade"), "websocket");
    await response.body?.cancel();
  }
  assert.equal(h.upgrades.length, 0);
  assert.equal(h.logs.entries("request_rejected").length, 3);
});

Deno.test("createStreamHandler() refuses an upgrade without x-twilio-signature with 403", async () => {
  const h = createHarness();
  const response = await h.handler(upgradeRequest(INTERNAL_URL));
  assertRejected(h, response, "signature_missing");
});

Deno.test("createStreamHandler() refuses an upgrade with a wrong signature with 403", async () => {
  for (
    const signature of [
      await signTwilioRequest("another-auth-token", PUBLIC_STREAM_URL),
      "not a signature",
      "",
    ]
  ) {
    const h = createHarness();
    const response = await h.handler(upgradeRequest(INTERNAL_URL, signature));
    assertRejected(h, response, signature === "" ? "signature_missing" : "signature_mismatch");
  }
});

Deno.test("createStreamHandler() refuses a signature computed over the internal req.url", async () => {
  // Signing what the function sees instead of the public wss:// URL is the classic proxy bug.
  for (
    const signedUrl of [
      INTERNAL_URL,
      "https://abc.supabase.co/functions/v1/voice-stream",
      "wss://abc.supabase.co/voice-stream",
    ]
  ) {
    const h = createHarness();
    const signature = await signTwilioRequest(AUTH_TOKEN, signedUrl);
    const response = await h.handler(upgradeRequest(INTERNAL_URL, signature));
    assertRejected(h, response, "signature_mismatch");
  }
});

Deno.test("createStreamHandler() upgrades a request signed over the public wss:// URL", async () => {
  const h = createHarness();
  const signature = await signTwilioRequest(AUTH_TOKEN, PUBLIC_STREAM_URL);
  const response = await h.handler(upgradeRequest(INTERNAL_URL, signature));
  assert.equal(await response.text(), "upgraded");
  assert.equal(h.upgrades.length, 1);
  assert.equal(h.background.length, 1, "the bridge keeps the worker alive");
  assert.equal(h.logs.entries("security_rejected").length, 0);
  // The bridge's promise settles when the stream closes.
  h.sockets[0].peerClose();
  await Promise.all(h.background);
  assert.equal(h.connects, 0);
});

Deno.test("createStreamHandler() serves real WebSocket upgrades on loopback", async () => {
  const h = createHarness({ upgrade: "deno" });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req) => h.handler(req),
  );
  const localUrl = `ws://127.0.0.1:${server.addr.port}/voice-stream`;
  try {
    // Not an upgrade.
    const plain = await fetch(localUrl.replace(/^ws:/, "http:"));
    assert.equal(plain.status, 426);
    await plain.body?.cancel();

    // Signed over the local URL the server sees: the handshake fails.
    const wrong = new WebSocket(localUrl, {
      headers: { "x-twilio-signature": await signTwilioRequest(AUTH_TOKEN, localUrl) },
    });
    const wrongOutcome = await new Promise<string>((resolve) => {
      wrong.onopen = () => resolve("open");
      wrong.onerror = () => resolve("error");
      wrong.onclose = () => resolve("close");
    });
    assert.notEqual(wrongOutcome, "open");
    assert.equal(h.logs.entries("security_rejected")[0]?.reason, "signature_mismatch");

    // Signed over the public URL: it opens, and a start without a token is closed with 1008.
    const right = new WebSocket(localUrl, {
      headers: { "x-twilio-signature": await signTwilioRequest(AUTH_TOKEN, PUBLIC_STREAM_URL) },
    });
    await new Promise<void>((resolve, reject) => {
      right.onopen = () => resolve();
      right.onerror = () => reject(new Error("Cannot open the stream"));
    });
    const closed = new Promise<number>((resolve) => right.onclose = (event) => resolve(event.code));
    right.send(JSON.stringify({
      event: "start",
      sequenceNumber: "1",
      start: {
        accountSid: "AC" + "1".repeat(32),
        streamSid: "MZ" + "1".repeat(32),
        callSid: CALL_SID,
        tracks: ["inbound"],
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
        customParameters: { callSid: CALL_SID, traceId: "trace-1" },
      },
      streamSid: "MZ" + "1".repeat(32),
    }));
    assert.equal(await closed, 1008);
    await Promise.all(h.background);
    assert.equal(h.logs.entries("security_rejected")[1]?.reason, "token_missing");
    assert.equal(h.connects, 0, "no model session for an unauthenticated stream");
  } finally {
    await server.shutdown();
  }
});
