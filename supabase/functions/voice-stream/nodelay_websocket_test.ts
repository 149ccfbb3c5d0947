import assert from "node:assert/strict";
import { until } from "../../../tests/support/eventually.ts";
import type { BridgeSocket } from "./bridge_deps.ts";
import {
  acceptFor,
  connectNoDelayWebSocket,
  encodeClientFrame,
  encodeTextFrame,
  FrameReader,
  parseClosePayload,
} from "./nodelay_websocket.ts";

const encoder = new TextEncoder();
const TLS_DIR = new URL("../../../tests/fixtures/tls/", import.meta.url);

/** Records a client socket's events in order. */
function record(socket: BridgeSocket) {
  const events: string[] = [];
  const messages: string[] = [];
  let closeEvent: { code: number; reason: string; wasClean: boolean } | null = null;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => resolveClosed = resolve);
  let resolveOpen!: () => void;
  const opened = new Promise<void>((resolve) => resolveOpen = resolve);
  socket.addEventListener("open", () => {
    events.push("open");
    resolveOpen();
  });
  socket.addEventListener("message", (event) => {
    messages.push(event.data as string);
  });
  socket.addEventListener("error", () => events.push("error"));
  socket.addEventListener("close", (event) => {
    events.push("close");
    closeEvent = { code: event.code, reason: event.reason, wasClean: event.wasClean };
    resolveClosed();
  });
  return {
    events,
    messages,
    opened,
    closed,
    get close() {
      return closeEvent;
    },
  };
}

/** A Deno WebSocket server that echoes text and records what it saw. */
function startEchoServer(options: { tls?: boolean } = {}) {
  const seen: { protocol: string; closes: { code: number; reason: string }[] } = {
    protocol: "",
    closes: [],
  };
  const sockets: WebSocket[] = [];
  const tls = options.tls
    ? {
      cert: Deno.readTextFileSync(new URL("localhost.crt", TLS_DIR)),
      key: Deno.readTextFileSync(new URL("localhost.key", TLS_DIR)),
    }
    : {};
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {}, ...tls }, (req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response("no", { status: 401 });
    seen.protocol = req.headers.get("sec-websocket-protocol") ?? "";
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol: "realtime" });
    sockets.push(socket);
    socket.onopen = () => socket.send("hello");
    socket.onmessage = (event) => {
      if (event.data === "please close") socket.close(4000, "server says bye");
      else socket.send(event.data);
    };
    socket.onclose = (event) => seen.closes.push({ code: event.code, reason: event.reason });
    return response;
  });
  const port = server.addr.port;
  return {
    url: `${options.tls ? "wss" : "ws"}://${
      options.tls ? "localhost" : "127.0.0.1"
    }:${port}/v1/realtime?model=gpt-realtime`,
    seen,
    sockets,
    stop: () => server.shutdown(),
  };
}

const trustTestCa = {
  connect: (options: { hostname: string; port: number }) =>
    Deno.connect({ ...options, transport: "tcp" }),
  startTls: (conn: Deno.TcpConn, options: { hostname: string }) =>
    Deno.startTls(conn, {
      ...options,
      caCerts: [Deno.readTextFileSync(new URL("ca.crt", TLS_DIR))],
    }),
};

for (const tls of [false, true]) {
  Deno.test(`connectNoDelayWebSocket() exchanges text of every frame length class over ${tls ? "wss" : "ws"}`, async () => {
    const server = startEchoServer({ tls });
    try {
      const socket = connectNoDelayWebSocket(
        server.url,
        ["realtime", "openai-insecure-api-key.k"],
        {
          transport: tls ? trustTestCa : undefined,
        },
      );
      const client = record(socket);
      assert.equal(socket.readyState, 0);
      await client.opened;
      assert.equal(socket.readyState, 1);
      assert.equal(server.seen.protocol, "realtime, openai-insecure-api-key.k");
      const texts = [0, 1, 125, 126, 1_024, 1_025, 65_535, 65_536, 300_000].map((length) =>
        "x".repeat(length)
      );
      texts.push("Grüße, 你好, 👋 \u0000 end");
      for (const text of texts) socket.send(text);
      await until(() => client.messages.length === texts.length + 1, "the echoes");
      assert.deepEqual(client.messages, ["hello", ...texts]);
      socket.close(1000, "bye");
      assert.equal(socket.readyState, 2);
      await client.closed;
      assert.deepEqual(client.events, ["open", "close"]);
      assert.deepEqual(client.close, { code: 1000, reason: "bye", wasClean: true }, "echoed");
      await until(() => server.seen.closes.length === 1, "the server's close");
      assert.deepEqual(server.seen.closes, [{ code: 1000, reason: "bye" }]);
      assert.equal(socket.readyState, 3);
      socket.send("ignored after close");
    } finally {
      await server.stop();
    }
  });
}

Deno.test("connectNoDelayWebSocket() reports the server's close code and reason", async () => {
  const server = startEchoServer();
  try {
    const socket = connectNoDelayWebSocket(server.url, ["realtime"]);
    const client = record(socket);
    await client.opened;
    socket.send("please close");
    await client.closed;
    assert.deepEqual(client.close, { code: 4000, reason: "server says bye", wasClean: true });
    assert.deepEqual(client.events, ["open", "close"]);
  } finally {
    await server.stop();
  }
});

Deno.test("connectNoDelayWebSocket() fires error then close 1006 when the upgrade is refused or nothing listens", async () => {
  const server = startEchoServer();
  try {
    // A plain HTTP answer (the server sees no upgrade header because the path is wrong is not
    // enough: send to a server that answers 401 to everything).
    const refusing = Deno.serve(
      { port: 0, hostname: "127.0.0.1", onListen() {} },
      () => new Response("unauthorized", { status: 401 }),
    );
    const refused = record(
      connectNoDelayWebSocket(`ws://127.0.0.1:${refusing.addr.port}/`, ["realtime"]),
    );
    await refused.closed;
    assert.deepEqual(refused.events, ["error", "close"]);
    assert.equal(refused.close!.code, 1006);
    await refusing.shutdown();

    const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const nobody = record(connectNoDelayWebSocket(`ws://127.0.0.1:${port}/`));
    await nobody.closed;
    assert.deepEqual(nobody.events, ["error", "close"]);
    assert.equal(nobody.close!.code, 1006);
  } finally {
    await server.stop();
  }
});

Deno.test("connectNoDelayWebSocket() refuses non-WebSocket URLs and header injection", () => {
  assert.throws(() => connectNoDelayWebSocket("https://example.com/"), SyntaxError);
  const bad: Record<string, string>[] = [{ "x-a": "1\r\nHost: evil" }, { "bad name": "1" }, {
    "x\n": "1",
  }];
  for (const headers of bad) {
    assert.throws(
      () => connectNoDelayWebSocket("ws://127.0.0.1:9/", [], { headers }),
      SyntaxError,
      JSON.stringify(headers),
    );
  }
});

Deno.test("connectNoDelayWebSocket() sends extra handshake headers", async () => {
  let signature: string | null = null;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    signature = req.headers.get("x-twilio-signature");
    return Deno.upgradeWebSocket(req).response;
  });
  try {
    const socket = connectNoDelayWebSocket(`ws://127.0.0.1:${server.addr.port}/`, [], {
      headers: { "x-twilio-signature": "c2lnbmVk" },
    });
    const client = record(socket);
    await client.opened;
    assert.equal(signature, "c2lnbmVk");
    socket.close();
    await client.closed;
  } finally {
    await server.shutdown();
  }
});

Deno.test("connectNoDelayWebSocket() closed while connecting never opens", async () => {
  const server = startEchoServer();
  try {
    const socket = connectNoDelayWebSocket(server.url);
    const client = record(socket);
    socket.close();
    await client.closed;
    assert.deepEqual(client.events, ["close"]);
    assert.equal(client.close!.code, 1006);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(client.events, ["close"], "no open after close");
  } finally {
    await server.stop();
  }
});

// ---------------------------------------------------------------------------------------------
// A raw server, to send what a Deno server never would.

interface RawPeer {
  conn: Deno.Conn;
  /** Writes an unmasked server frame. */
  frame(first: number, payload: Uint8Array, maskKey?: Uint8Array): Promise<void>;
  /** Reads the next client frame, unmasked. */
  read(): Promise<{ opcode: number; masked: boolean; payload: Uint8Array }>;
}

function rawServer(
  respond: (key: string) => Promise<string> | string,
  onPeer: (peer: RawPeer) => Promise<void>,
): { url: string; done: Promise<void> } {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const port = (listener.addr as Deno.NetAddr).port;
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    let pending = new Uint8Array(0);
    const fill = async (need: number) => {
      while (pending.length < need) {
        const chunk = new Uint8Array(65_536);
        const n = await conn.read(chunk);
        if (n === null) throw new Error("client closed");
        const merged = new Uint8Array(pending.length + n);
        merged.set(pending);
        merged.set(chunk.subarray(0, n), pending.length);
        pending = merged;
      }
    };
    const take = (n: number) => {
      const out = pending.slice(0, n);
      pending = pending.slice(n);
      return out;
    };
    let head = "";
    while (!head.includes("\r\n\r\n")) {
      await fill(pending.length + 1);
      head = new TextDecoder().decode(pending);
    }
    take(head.indexOf("\r\n\r\n") + 4);
    const key = /sec-websocket-key: *(\S+)/i.exec(head)![1];
    await conn.write(encoder.encode(await respond(key)));
    const peer: RawPeer = {
      conn,
      async frame(first, payload, maskKey) {
        const header = payload.length < 126
          ? [first, (maskKey ? 0x80 : 0) | payload.length]
          : [first, (maskKey ? 0x80 : 0) | 126, payload.length >> 8, payload.length & 0xff];
        const body = maskKey ? payload.map((byte, i) => byte ^ maskKey[i & 3]) : payload;
        const bytes = new Uint8Array([...header, ...(maskKey ?? []), ...body]);
        await conn.write(bytes);
      },
      async read() {
        await fill(2);
        const opcode = pending[0] & 0x0f;
        const masked = (pending[1] & 0x80) !== 0;
        let length = pending[1] & 0x7f;
        let offset = 2;
        if (length === 126) {
          await fill(4);
          length = (pending[2] << 8) | pending[3];
          offset = 4;
        }
        await fill(offset + 4 + length);
        const frame = take(offset + 4 + length);
        const key = frame.subarray(offset, offset + 4);
        const payload = frame.subarray(offset + 4).map((byte, i) => byte ^ key[i & 3]);
        return { opcode, masked, payload };
      },
    };
    try {
      await onPeer(peer);
    } finally {
      try {
        conn.close();
      } catch {
        // closed by the client
      }
    }
  })();
  return { url: `ws://127.0.0.1:${port}/`, done };
}

const upgrade = async (key: string) =>
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${await acceptFor(
    key,
  )}\r\n\r\n`;

Deno.test("connectNoDelayWebSocket() refuses a 101 with the wrong accept key", async () => {
  const server = rawServer(
    () =>
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
    async () => {},
  );
  const client = record(connectNoDelayWebSocket(server.url));
  await client.closed;
  assert.deepEqual(client.events, ["error", "close"]);
  assert.equal(client.close!.code, 1006);
  await server.done.catch(() => {});
});

Deno.test("connectNoDelayWebSocket() joins fragments, answers pings and masks every frame", async () => {
  let pong: { opcode: number; masked: boolean; payload: Uint8Array } | null = null;
  let echoed: { opcode: number; masked: boolean; payload: Uint8Array } | null = null;
  const server = rawServer(upgrade, async (peer) => {
    await peer.frame(0x01, encoder.encode("Hel"));
    await peer.frame(0x89, encoder.encode("are you there")); // a ping between fragments
    await peer.frame(0x00, encoder.encode("lo, "));
    await peer.frame(0x80, encoder.encode("world"));
    await peer.frame(0x82, new Uint8Array([1, 2, 3])); // binary: ignored
    await peer.frame(0x8a, new Uint8Array()); // unsolicited pong: ignored
    await peer.frame(0x81, encoder.encode("second"));
    pong = await peer.read();
    echoed = await peer.read();
    await peer.frame(0x88, new Uint8Array([0x03, 0xe8]));
    await peer.read(); // the client's close reply
  });
  const socket = connectNoDelayWebSocket(server.url);
  const client = record(socket);
  await until(() => client.messages.length === 2, "two messages");
  assert.deepEqual(client.messages, ["Hello, world", "second"]);
  socket.send("masked?");
  await client.closed;
  await server.done;
  assert.equal(pong!.opcode, 0xa);
  assert.equal(pong!.masked, true);
  assert.equal(new TextDecoder().decode(pong!.payload), "are you there");
  assert.equal(echoed!.masked, true);
  assert.equal(new TextDecoder().decode(echoed!.payload), "masked?");
  assert.deepEqual(client.close, { code: 1000, reason: "", wasClean: true });
});

for (
  const [what, send, code] of [
    [
      "a masked server frame",
      (p: RawPeer) => p.frame(0x81, encoder.encode("hi"), new Uint8Array([1, 2, 3, 4])),
      1002,
    ],
    ["invalid UTF-8", (p: RawPeer) => p.frame(0x81, new Uint8Array([0xc3, 0x28])), 1007],
    ["a control frame over 125 bytes", (p: RawPeer) => p.frame(0x89, new Uint8Array(126)), 1002],
    ["reserved bits", (p: RawPeer) => p.frame(0xc1, encoder.encode("x")), 1002],
    ["a stray continuation", (p: RawPeer) => p.frame(0x80, encoder.encode("x")), 1002],
    ["an unknown opcode", (p: RawPeer) => p.frame(0x83, encoder.encode("x")), 1002],
  ] as const
) {
  Deno.test(`connectNoDelayWebSocket() closes with ${code} on ${what}`, async () => {
    let reply: { opcode: number; payload: Uint8Array } | null = null;
    const server = rawServer(upgrade, async (peer) => {
      await send(peer);
      reply = await peer.read();
    });
    const client = record(connectNoDelayWebSocket(server.url));
    await client.closed;
    await server.done;
    assert.equal(client.close!.code, code);
    assert.equal(client.close!.wasClean, false);
    assert.equal(reply!.opcode, 0x8, "the client tells the server why");
    assert.equal((reply!.payload[0] << 8) | reply!.payload[1], code);
    assert.equal(client.messages.length, 0);
  });
}

Deno.test("connectNoDelayWebSocket() delivers a large message and the one after it without a delayed-ACK stall", async () => {
  // Deno's WebSocket client holds a >1 KB message's payload (and any message sent while one is
  // unacknowledged) for the peer's delayed ACK, ~40 ms on Linux. The best of five tries must be
  // far below that.
  const arrivals: number[] = [];
  let sentAt = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (event) => {
      if (event.data === "small") arrivals.push(performance.now() - sentAt);
    };
    return response;
  });
  try {
    for (let i = 0; i < 5; i++) {
      const socket = connectNoDelayWebSocket(`ws://127.0.0.1:${server.addr.port}/`);
      const client = record(socket);
      await client.opened;
      sentAt = performance.now();
      socket.send("s".repeat(20_000));
      socket.send("small");
      await until(() => arrivals.length === i + 1, "the small message");
      socket.close();
      await client.closed;
    }
    assert.ok(Math.min(...arrivals) < 25, `arrivals ${arrivals.map((ms) => ms.toFixed(1))} ms`);
  } finally {
    await server.shutdown();
  }
});

Deno.test("FrameReader parses the same messages whatever the read boundaries", () => {
  const frames = [
    [0x81, 5, ...encoder.encode("first")],
    [0x01, 2, ...encoder.encode("sp")],
    [0x80, 3, ...encoder.encode("lit")],
    [0x89, 1, 0x2a],
    [0x81, 126, 0x01, 0x00, ...new Uint8Array(256).fill(0x61)],
  ].flat();
  const bytes = new Uint8Array(frames);
  const expected = ["text:first", "text:split", "ping:42", `text:${"a".repeat(256)}`];
  const describe = (frame: NonNullable<ReturnType<FrameReader["next"]>>) =>
    "error" in frame
      ? `error:${frame.code}`
      : "text" in frame
      ? `text:${frame.text}`
      : `ping:${frame.payload.join(",")}`;
  for (const step of [1, 2, 3, 7, 64, bytes.length]) {
    const reader = new FrameReader();
    const out: string[] = [];
    for (let at = 0; at < bytes.length; at += step) {
      reader.push(bytes.subarray(at, at + step));
      for (let frame = reader.next(); frame !== null; frame = reader.next()) {
        out.push(describe(frame));
      }
    }
    assert.deepEqual(out, expected, `read ${step} bytes at a time`);
  }
});

Deno.test("FrameReader refuses messages over its limit, whole or fragmented", () => {
  const whole = new FrameReader(100);
  whole.push(new Uint8Array([0x81, 126, 0x00, 101]));
  assert.deepEqual(whole.next(), { error: "message too big", code: 1009 });
  const fragmented = new FrameReader(100);
  fragmented.push(new Uint8Array([0x01, 60, ...new Uint8Array(60)]));
  fragmented.push(new Uint8Array([0x80, 60, ...new Uint8Array(60)]));
  assert.deepEqual(fragmented.next(), { error: "message too big", code: 1009 });
  const huge = new FrameReader();
  huge.push(new Uint8Array([0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]));
  assert.deepEqual(huge.next(), { error: "message too big", code: 1009 });
});

Deno.test("encodeClientFrame() masks with a fresh key per frame", () => {
  const payload = encoder.encode("x".repeat(300));
  const keys = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const frame = encodeClientFrame(0x1, payload);
    assert.equal(frame[0], 0x81);
    assert.equal(frame[1], 0x80 | 126);
    assert.equal((frame[2] << 8) | frame[3], 300);
    const key = frame.subarray(4, 8);
    keys.add(key.join(","));
    const unmasked = frame.subarray(8).map((byte, j) => byte ^ key[j & 3]);
    assert.deepEqual(unmasked, payload);
  }
  assert.ok(keys.size >= 99, "keys repeat");
});

/** Reads a client frame back: FIN + opcode, payload length, unmasked payload. */
function unmaskFrame(frame: Uint8Array): { first: number; payload: Uint8Array } {
  let length = frame[1] & 0x7f;
  let at = 2;
  if (length === 126) {
    length = (frame[2] << 8) | frame[3];
    at = 4;
  } else if (length === 127) {
    length = Number(new DataView(frame.buffer, frame.byteOffset).getBigUint64(2));
    at = 10;
  }
  assert.ok(frame[1] & 0x80, "masked");
  assert.equal(frame.length, at + 4 + length);
  const key = frame.slice(at, at + 4);
  return {
    first: frame[0],
    payload: frame.slice(at + 4).map((byte, j) => byte ^ key[j & 3]),
  };
}

Deno.test("encodeTextFrame() builds the frame encodeClientFrame builds, for every length class", () => {
  const lengths = [0, 1, 2, 3, 4, 5, 6, 7, 125, 126, 127, 903, 65_535, 65_536, 70_001];
  for (const length of lengths) {
    // Varied content: a key applied to the wrong byte would show.
    const text = Array.from({ length }, (_, i) => String.fromCharCode(32 + ((i * 7) % 95)))
      .join("");
    const frame = unmaskFrame(encodeTextFrame(text));
    assert.equal(frame.first, 0x81, `length ${length}`);
    assert.deepEqual(frame.payload, encoder.encode(text), `length ${length}`);
    assert.deepEqual(unmaskFrame(encodeClientFrame(0x1, encoder.encode(text))), frame);
  }
  // Not ASCII: encoded by the general path, still one correct frame.
  for (const text of ["Grüße", "你好 👋", `${"x".repeat(200)}é`]) {
    const frame = unmaskFrame(encodeTextFrame(text));
    assert.equal(frame.first, 0x81);
    assert.deepEqual(frame.payload, encoder.encode(text));
  }
});

Deno.test("encodeTextFrame() masks with a fresh key per frame", () => {
  const keys = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const frame = encodeTextFrame("y".repeat(300));
    keys.add(frame.subarray(4, 8).join(","));
  }
  assert.ok(keys.size >= 99, "keys repeat");
});

Deno.test("parseClosePayload() accepts valid codes only", () => {
  assert.deepEqual(parseClosePayload(new Uint8Array()), { code: 1005, reason: "" });
  assert.deepEqual(parseClosePayload(new Uint8Array([0x0f, 0xa0, 0x68, 0x69])), {
    code: 4000,
    reason: "hi",
  });
  for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000]) {
    assert.equal(parseClosePayload(new Uint8Array([code >> 8, code & 0xff])).code, null, `${code}`);
  }
  assert.equal(parseClosePayload(new Uint8Array([0x03])).code, null);
  assert.equal(parseClosePayload(new Uint8Array([0x03, 0xe8, 0xff])).code, null);
});
