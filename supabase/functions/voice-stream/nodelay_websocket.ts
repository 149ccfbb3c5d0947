/**
 * A WebSocket client (RFC 6455, text messages) over a TCP socket with TCP_NODELAY, for the
 * bridge's OpenAI Realtime connection.
 *
 * Why not the platform's `WebSocket`: Deno's client socket leaves Nagle's algorithm on, and
 * writes a frame's header and payload separately once the payload exceeds 1,024 bytes. The
 * payload then waits for the peer's ACK of the header, which the peer delays (~40 ms on Linux):
 * every `session.update` (instructions + tools, several KB) and every large tool output is held
 * that long, and a small event sent while an earlier one is unacknowledged waits likewise
 * (docs/benchmarks.md, "voice-stream bridge"). Here each frame goes out in one write on a
 * no-delay socket.
 *
 * Scope: the client side of RFC 6455 as the Realtime API needs it: `ws:`/`wss:` URLs (TLS by
 * `Deno.startTls`), subprotocols, text messages (fragmented ones reassembled), ping/pong, the
 * closing handshake. Binary messages are accepted and ignored (the Realtime API sends none).
 * Violations by the server (masked frames, bad UTF-8, oversized messages, reserved bits) close
 * the connection with the RFC's codes, as browsers do.
 * @module
 */
import type { BridgeSocket } from "./bridge_deps.ts";
import { concatBytes } from "../_shared/codec/pcm.ts";

/** The magic GUID of RFC 6455 §1.3. */
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** A larger message from the server closes the connection with 1009. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** A handshake response larger than this is refused. */
const MAX_HANDSHAKE_BYTES = 16 * 1024;
/** After sending a close frame, wait this long for the server's before dropping the socket. */
const CLOSE_TIMEOUT_MS = 2_000;
const READ_CHUNK_BYTES = 4 * 1024;

const OPCODE_CONTINUATION = 0x0;
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** The TCP/TLS pieces the client needs; tests may pass their own. */
export interface NoDelayTransport {
  connect(options: { hostname: string; port: number }): Promise<Deno.TcpConn>;
  startTls(conn: Deno.TcpConn, options: { hostname: string }): Promise<Deno.Conn>;
}

const denoTransport: NoDelayTransport = {
  connect: (options) => Deno.connect({ ...options, transport: "tcp" }),
  startTls: (conn, options) => Deno.startTls(conn, options),
};

/** Options of `connectNoDelayWebSocket`. */
export interface NoDelayWebSocketOptions {
  transport?: NoDelayTransport;
  maxMessageBytes?: number;
  /** Extra handshake headers (e.g. a signature); names and values must be single-line. */
  headers?: Record<string, string>;
}

type Listener = (event: never) => void;

/** Masking keys come from a pool of CSPRNG bytes (RFC 6455 §5.3: unpredictable per frame). */
const maskPool = new Uint8Array(4096);
let maskPoolAt = maskPool.length;
function nextMaskKey(out: Uint8Array, at: number): void {
  if (maskPoolAt + 4 > maskPool.length) {
    crypto.getRandomValues(maskPool);
    maskPoolAt = 0;
  }
  out[at] = maskPool[maskPoolAt];
  out[at + 1] = maskPool[maskPoolAt + 1];
  out[at + 2] = maskPool[maskPoolAt + 2];
  out[at + 3] = maskPool[maskPoolAt + 3];
  maskPoolAt += 4;
}

/** Header + mask key at most (10 + 4), rounded up so that the payload starts 4-byte aligned. */
const TEXT_FRAME_PAYLOAD_OFFSET = 16;

/** Writes a client frame's header and a fresh mask key so that they end at `payloadAt`. */
function writeHeader(frame: Uint8Array, payloadAt: number, opcode: number, length: number): number {
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const start = payloadAt - headerLength - 4;
  frame[start] = 0x80 | opcode;
  if (length < 126) {
    frame[start + 1] = 0x80 | length;
  } else if (length < 65_536) {
    frame[start + 1] = 0x80 | 126;
    frame[start + 2] = length >>> 8;
    frame[start + 3] = length & 0xff;
  } else {
    frame[start + 1] = 0x80 | 127;
    new DataView(frame.buffer, frame.byteOffset).setBigUint64(start + 2, BigInt(length));
  }
  nextMaskKey(frame, payloadAt - 4);
  return start;
}

/**
 * Builds one masked client frame: header, key and payload in one buffer (one write).
 * @param opcode frame opcode
 * @param payload unmasked payload bytes
 */
export function encodeClientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = new Uint8Array(headerLength + 4 + length);
  writeHeader(frame, headerLength + 4, opcode, length);
  const k0 = frame[headerLength];
  const k1 = frame[headerLength + 1];
  const k2 = frame[headerLength + 2];
  const k3 = frame[headerLength + 3];
  const start = headerLength + 4;
  let i = 0;
  const whole = length - (length & 3);
  for (; i < whole; i += 4) {
    frame[start + i] = payload[i] ^ k0;
    frame[start + i + 1] = payload[i + 1] ^ k1;
    frame[start + i + 2] = payload[i + 2] ^ k2;
    frame[start + i + 3] = payload[i + 3] ^ k3;
  }
  for (; i < length; i++) frame[start + i] = payload[i] ^ frame[headerLength + (i & 3)];
  return frame;
}

/**
 * Builds one masked text frame. ASCII text (every Realtime event the bridge sends, JSON with
 * base64 audio) is encoded straight into the frame and masked in place a 32-bit word at a time:
 * one allocation per message instead of two, on the bridge's busiest path (an append every 80 ms
 * per call). Other text goes through `encodeClientFrame`.
 */
export function encodeTextFrame(text: string): Uint8Array {
  const length = text.length;
  const buffer = new Uint8Array(TEXT_FRAME_PAYLOAD_OFFSET + length);
  const { read } = encoder.encodeInto(text, buffer.subarray(TEXT_FRAME_PAYLOAD_OFFSET));
  // Not all ASCII: some character took more than one byte, so the text did not fit.
  if (read !== length) {
    return encodeClientFrame(OPCODE_TEXT, encoder.encode(text));
  }
  const start = writeHeader(buffer, TEXT_FRAME_PAYLOAD_OFFSET, OPCODE_TEXT, length);
  // The key and the payload are 4-byte aligned in a fresh buffer: mask whole words, in the
  // platform's byte order on both sides, so each byte meets its key byte as RFC 6455 §5.3 says.
  const words = new Uint32Array(buffer.buffer, 0, (TEXT_FRAME_PAYLOAD_OFFSET + length) >>> 2);
  const keyWord = words[(TEXT_FRAME_PAYLOAD_OFFSET - 4) >>> 2];
  for (let w = TEXT_FRAME_PAYLOAD_OFFSET >>> 2; w < words.length; w++) words[w] ^= keyWord;
  const key = TEXT_FRAME_PAYLOAD_OFFSET - 4;
  for (let i = length - (length & 3); i < length; i++) {
    buffer[TEXT_FRAME_PAYLOAD_OFFSET + i] ^= buffer[key + (i & 3)];
  }
  return buffer.subarray(start);
}

/** `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2). */
export async function acceptFor(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(key + ACCEPT_GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** Why a handshake response is refused, or null when it is a valid 101 for `key`. */
export async function checkHandshakeResponse(
  head: string,
  key: string,
  protocols: readonly string[],
): Promise<string | null> {
  const lines = head.split("\r\n");
  const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0]);
  if (!status) return "malformed status line";
  if (status[1] !== "101") return `status ${status[1]}`;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  if (headers.get("upgrade")?.toLowerCase() !== "websocket") return "no Upgrade: websocket";
  if (!/\bupgrade\b/i.test(headers.get("connection") ?? "")) return "no Connection: upgrade";
  if (headers.get("sec-websocket-accept") !== await acceptFor(key)) return "bad accept key";
  const protocol = headers.get("sec-websocket-protocol");
  if (protocol !== undefined && !protocols.includes(protocol)) return "unrequested subprotocol";
  if (headers.has("sec-websocket-extensions")) return "unrequested extension";
  return null;
}

/**
 * Opens a WebSocket to `url` (`ws:` or `wss:`) with TCP_NODELAY on. The returned socket behaves
 * like the platform's for the bridge: `readyState`, `send`, `close` and `open`/`message`/
 * `close`/`error` listeners; a failed connection or handshake fires `error`, then `close` with
 * code 1006.
 * @param url the server's URL
 * @param protocols subprotocols to offer (`Sec-WebSocket-Protocol`)
 */
export function connectNoDelayWebSocket(
  url: string,
  protocols: readonly string[] = [],
  options: NoDelayWebSocketOptions = {},
): BridgeSocket {
  const target = new URL(url);
  if (target.protocol !== "ws:" && target.protocol !== "wss:") {
    throw new SyntaxError(`Cannot connect: ${target.protocol} is not ws: or wss:`);
  }
  const headers = Object.entries(options.headers ?? {});
  for (const [name, value] of headers) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n]/.test(value)) {
      throw new SyntaxError(`Cannot connect: invalid header ${JSON.stringify(name)}`);
    }
  }
  const socket = new NoDelayWebSocket(options.maxMessageBytes ?? MAX_MESSAGE_BYTES);
  void socket.connect(target, protocols, headers, options.transport ?? denoTransport);
  return socket;
}

/** The client's connection: the states and events of the platform's `WebSocket`. */
class NoDelayWebSocket implements BridgeSocket {
  #readyState = CONNECTING;
  #conn: Deno.Conn | null = null;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #closeEmitted = false;
  // Writes go out one at a time, in order; frames queued meanwhile leave together.
  #queued: Uint8Array[] = [];
  // The write loop in progress, if any: `#flush()` returns it, so awaiting it waits for every
  // frame queued so far (a close frame included) to reach the kernel.
  #writing: Promise<void> | null = null;
  readonly #listeners: Record<string, Listener[]> = { open: [], message: [], close: [], error: [] };
  readonly #maxMessageBytes: number;

  constructor(maxMessageBytes: number) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  get readyState(): number {
    return this.#readyState;
  }

  send(data: string): void {
    if (this.#readyState === CONNECTING) {
      throw new DOMException("WebSocket is not open", "InvalidStateError");
    }
    if (this.#readyState !== OPEN) return;
    this.#enqueue(encodeTextFrame(data));
  }

  close(code?: number, reason = ""): void {
    if (this.#readyState === CLOSING || this.#readyState === CLOSED) return;
    if (this.#readyState === CONNECTING) {
      this.#readyState = CLOSING;
      this.#finish(1006, "closed before open", false);
      return;
    }
    this.#readyState = CLOSING;
    this.#enqueue(closeFrame(code ?? null, reason));
    this.#closeTimer = setTimeout(
      () => this.#finish(1006, "no close frame from server", false),
      CLOSE_TIMEOUT_MS,
    );
  }

  addEventListener(type: string, listener: Listener): void {
    this.#listeners[type]?.push(listener);
  }

  /** Connects, shakes hands and reads until the connection ends; never rejects. */
  async connect(
    target: URL,
    protocols: readonly string[],
    headers: readonly [string, string][],
    transport: NoDelayTransport,
  ): Promise<void> {
    try {
      const secure = target.protocol === "wss:";
      const port = Number(target.port || (secure ? 443 : 80));
      const tcp = await transport.connect({ hostname: target.hostname, port });
      tcp.setNoDelay(true);
      const conn = secure ? await transport.startTls(tcp, { hostname: target.hostname }) : tcp;
      this.#conn = conn;
      if (this.#readyState !== CONNECTING) {
        // close() was called while connecting: it finished the socket before this connection
        // existed, so the connection is closed here.
        this.#finish(1006, "closed before open", false);
        closeQuietly(conn);
        return;
      }
      const reader = new FrameReader(this.#maxMessageBytes);
      const chunk = new Uint8Array(READ_CHUNK_BYTES);
      await handshake(conn, target, protocols, headers, reader, chunk);
      if (this.#readyState !== CONNECTING) {
        this.#finish(1006, "closed before open", false);
        return;
      }
      this.#readyState = OPEN;
      this.#emit("open", { type: "open" });
      void this.#flush();
      await this.#readFrames(conn, reader, chunk);
    } catch (error) {
      if (!this.#closeEmitted) {
        this.#emit("error", { type: "error" });
        // The reason says why (refused, TLS, handshake): operators see it in model_connect_failed.
        this.#finish(1006, `connection failed: ${String(error)}`.slice(0, 200), false);
      }
    }
  }

  /** Reads frames until a close frame, a violation or the end of the TCP connection. */
  async #readFrames(conn: Deno.Conn, reader: FrameReader, chunk: Uint8Array): Promise<void> {
    while (true) {
      const frame = reader.next();
      if (frame === null) {
        if (this.#closeEmitted) return;
        const n = await conn.read(chunk);
        if (n === null) break;
        reader.push(chunk.subarray(0, n));
        continue;
      }
      if ("error" in frame) {
        this.#fail(frame.code, frame.error);
        return;
      }
      if (frame.opcode === OPCODE_TEXT) {
        if (this.#readyState === OPEN) this.#emit("message", { type: "message", data: frame.text });
      } else if (frame.opcode === OPCODE_PING) {
        if (this.#readyState === OPEN) this.#enqueue(encodeClientFrame(OPCODE_PONG, frame.payload));
      } else if (frame.opcode === OPCODE_CLOSE) {
        await this.#closeReceived(frame.payload);
        return;
      }
    }
    // TCP closed without a close frame.
    if (!this.#closeEmitted) {
      this.#emit("error", { type: "error" });
      this.#finish(1006, "connection lost", false);
    }
  }

  /** The server's close frame: echo it (the server then closes the TCP connection) and finish. */
  async #closeReceived(payload: Uint8Array): Promise<void> {
    const { code, reason } = parseClosePayload(payload);
    if (code === null) {
      this.#fail(1002, "bad close frame");
      return;
    }
    if (this.#readyState === OPEN) {
      this.#enqueue(closeFrame(code === 1005 ? null : code, ""));
      this.#readyState = CLOSING;
    }
    await this.#flush();
    this.#finish(code, reason, true);
  }

  #emit(type: string, event: unknown): void {
    for (const listener of this.#listeners[type]) {
      try {
        (listener as (event: unknown) => void)(event);
      } catch (error) {
        // A listener's error must not break the connection (like EventTarget's reporting).
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #finish(code: number, reason: string, wasClean: boolean): void {
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    this.#readyState = CLOSED;
    clearTimeout(this.#closeTimer);
    this.#queued = [];
    if (this.#conn) closeQuietly(this.#conn);
    this.#emit("close", { code, reason, wasClean });
  }

  /** A protocol violation: tell the server why (best effort), then drop the connection. */
  #fail(code: number, reason: string): void {
    if (this.#readyState === OPEN) {
      this.#enqueue(closeFrame(code, reason));
      this.#readyState = CLOSING;
    }
    void this.#flush().finally(() => this.#finish(code, reason, false));
  }

  async #writeQueued(socket: Deno.Conn): Promise<void> {
    try {
      while (this.#queued.length > 0) {
        const parts = this.#queued;
        this.#queued = [];
        const bytes = parts.length === 1 ? parts[0] : concatBytes(parts);
        // One write almost always takes the whole frame; the loop covers a short write.
        let offset = await socket.write(bytes);
        while (offset < bytes.length) offset += await socket.write(bytes.subarray(offset));
      }
    } catch {
      this.#queued = [];
      if (!this.#closeEmitted) {
        this.#emit("error", { type: "error" });
        this.#finish(1006, "write failed", false);
      }
    } finally {
      // In the same turn as the last empty-queue check: a frame queued after it starts a new loop.
      this.#writing = null;
    }
  }

  #flush(): Promise<void> {
    if (this.#writing) return this.#writing;
    if (this.#conn === null || this.#queued.length === 0) return Promise.resolve();
    // The loop awaits its first write before it can finish, so `#writing` is set before it clears.
    this.#writing = this.#writeQueued(this.#conn);
    return this.#writing;
  }

  #enqueue(frame: Uint8Array): void {
    this.#queued.push(frame);
    void this.#flush();
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * The opening handshake: the upgrade request, then the response's headers (to CRLFCRLF), checked;
 * bytes after them are frames, pushed to `reader`.
 */
async function handshake(
  conn: Deno.Conn,
  target: URL,
  protocols: readonly string[],
  headers: readonly [string, string][],
  reader: FrameReader,
  chunk: Uint8Array,
): Promise<void> {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const request = [
    `GET ${target.pathname}${target.search} HTTP/1.1`,
    `Host: ${target.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...(protocols.length > 0 ? [`Sec-WebSocket-Protocol: ${protocols.join(", ")}`] : []),
    ...headers.map(([name, value]) => `${name}: ${value}`),
    "",
    "",
  ].join("\r\n");
  await writeAll(conn, encoder.encode(request));
  let head = new Uint8Array(0);
  while (true) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error("closed during handshake");
    head = concatBytes([head, chunk.subarray(0, n)]);
    const end = indexOfHeaderEnd(head);
    if (end === -1) {
      if (head.length > MAX_HANDSHAKE_BYTES) throw new Error("handshake response too large");
      continue;
    }
    const refused = await checkHandshakeResponse(
      new TextDecoder().decode(head.subarray(0, end)),
      key,
      protocols,
    );
    if (refused) throw new Error(`handshake refused: ${refused}`);
    reader.push(head.subarray(end + 4));
    return;
  }
}

function closeFrame(code: number | null, reason: string): Uint8Array {
  if (code === null) return encodeClientFrame(OPCODE_CLOSE, new Uint8Array(0));
  const text = encoder.encode(reason).subarray(0, 123);
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return encodeClientFrame(OPCODE_CLOSE, payload);
}

/** Code and reason of a close frame; code null when the payload is invalid (RFC 6455 §7.4). */
export function parseClosePayload(payload: Uint8Array): { code: number | null; reason: string } {
  if (payload.length === 0) return { code: 1005, reason: "" };
  if (payload.length === 1) return { code: null, reason: "" };
  const code = (payload[0] << 8) | payload[1];
  const valid = (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 &&
    code !== 1006) || (code >= 3000 && code <= 4999);
  if (!valid) return { code: null, reason: "" };
  try {
    return { code, reason: strictDecoder.decode(payload.subarray(2)) };
  } catch {
    return { code: null, reason: "" };
  }
}

type ReadFrame =
  | { opcode: typeof OPCODE_TEXT; text: string }
  | { opcode: typeof OPCODE_PING | typeof OPCODE_CLOSE; payload: Uint8Array }
  | { error: string; code: number };

/**
 * Parses server frames from the bytes read so far: complete text messages (fragments joined),
 * pings and close frames; pongs and binary messages are consumed silently.
 */
export class FrameReader {
  #buffer = new Uint8Array(0);
  #start = 0;
  #end = 0;
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #fragmentOpcode = 0;

  constructor(private readonly maxMessageBytes: number = MAX_MESSAGE_BYTES) {}

  /** Adds bytes read from the socket (copied). */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#end + bytes.length > this.#buffer.length) {
      const live = this.#end - this.#start;
      if (live + bytes.length <= this.#buffer.length) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(Math.max(READ_CHUNK_BYTES, 2 * (live + bytes.length)));
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
      }
      this.#start = 0;
      this.#end = live;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** The next complete frame of interest, or null when more bytes are needed. */
  next(): ReadFrame | null {
    while (true) {
      const available = this.#end - this.#start;
      if (available < 2) return null;
      const b = this.#buffer;
      const at = this.#start;
      const fin = (b[at] & 0x80) !== 0;
      const opcode = b[at] & 0x0f;
      if ((b[at] & 0x70) !== 0) return { error: "reserved bits set", code: 1002 };
      if ((b[at + 1] & 0x80) !== 0) return { error: "masked server frame", code: 1002 };
      let length = b[at + 1] & 0x7f;
      let headerLength = 2;
      if (length === 126) {
        if (available < 4) return null;
        length = (b[at + 2] << 8) | b[at + 3];
        headerLength = 4;
      } else if (length === 127) {
        if (available < 10) return null;
        const high = (b[at + 2] << 24 | b[at + 3] << 16 | b[at + 4] << 8 | b[at + 5]) >>> 0;
        const low = (b[at + 6] << 24 | b[at + 7] << 16 | b[at + 8] << 8 | b[at + 9]) >>> 0;
        if (high !== 0 || low > this.maxMessageBytes) {
          return { error: "message too big", code: 1009 };
        }
        length = low;
        headerLength = 10;
      }
      const control = opcode >= 0x8;
      if (control && (!fin || length > 125)) return { error: "bad control frame", code: 1002 };
      if (length > this.maxMessageBytes) return { error: "message too big", code: 1009 };
      if (available < headerLength + length) return null;
      const payload = b.subarray(at + headerLength, at + headerLength + length);
      this.#start = at + headerLength + length;
      if (this.#start === this.#end) this.#start = this.#end = 0;

      switch (opcode) {
        case OPCODE_PING:
          return { opcode, payload: payload.slice() };
        case OPCODE_CLOSE:
          return { opcode, payload: payload.slice() };
        case OPCODE_PONG:
          continue;
        case OPCODE_TEXT:
        case OPCODE_BINARY: {
          if (this.#fragmentOpcode !== 0) {
            return { error: "new message inside a fragmented one", code: 1002 };
          }
          if (fin) {
            if (opcode === OPCODE_BINARY) continue;
            const text = decodeText(payload);
            return text === null ? { error: "invalid UTF-8", code: 1007 } : { opcode, text };
          }
          this.#fragmentOpcode = opcode;
          this.#fragments = [payload.slice()];
          this.#fragmentBytes = length;
          continue;
        }
        case OPCODE_CONTINUATION: {
          if (this.#fragmentOpcode === 0) return { error: "unexpected continuation", code: 1002 };
          this.#fragmentBytes += length;
          if (this.#fragmentBytes > this.maxMessageBytes) {
            return { error: "message too big", code: 1009 };
          }
          this.#fragments.push(payload.slice());
          if (!fin) continue;
          const messageOpcode = this.#fragmentOpcode;
          const whole = concatBytes(this.#fragments);
          this.#fragments = [];
          this.#fragmentOpcode = 0;
          this.#fragmentBytes = 0;
          if (messageOpcode === OPCODE_BINARY) continue;
          const text = decodeText(whole);
          return text === null
            ? { error: "invalid UTF-8", code: 1007 }
            : { opcode: OPCODE_TEXT, text };
        }
        default:
          return { error: `unknown opcode ${opcode}`, code: 1002 };
      }
    }
  }
}

function decodeText(bytes: Uint8Array): string | null {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}

function indexOfHeaderEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}
