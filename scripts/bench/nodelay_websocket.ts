/**
 * Speaks the client side of WebSocket (RFC 6455, text frames, `ws:` only) over a TCP socket with
 * TCP_NODELAY, for the Twilio side of the bridge benchmark.
 *
 * Why: Deno's `WebSocket` client leaves Nagle's algorithm on (strace shows
 * `setsockopt(TCP_NODELAY, 0)` on its socket), so a client sending a small frame every 20 ms
 * while the server also talks back sees frames held for up to ~40 ms (Nagle waiting for the
 * peer's delayed ACK). Twilio's media servers are not Deno clients; the benchmark must not charge
 * that stall to the bridge under test.
 *
 * Frames are masked with an all-zero key (valid per RFC 6455 and free to apply); fragmented,
 * binary and oversized server frames are not expected from the bridge and close the socket.
 * @module
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const OPCODE_TEXT = 0x1;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

/** The WebSocket surface the benchmark's callers use. */
export interface BenchSocket {
  readonly readyState: number;
  /** Sends a text frame; `onWritten` gets the time its bytes were handed to the kernel. */
  send(text: string, onWritten?: (atMs: number) => void): void;
  close(code?: number): void;
  addEventListener(type: "open" | "close" | "error", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: string }) => void): void;
}

function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const out = new Uint8Array(headerLength + 4 + length);
  out[0] = 0x80 | opcode;
  if (length < 126) {
    out[1] = 0x80 | length;
  } else if (length < 65_536) {
    out[1] = 0x80 | 126;
    out[2] = length >>> 8;
    out[3] = length & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(length));
  }
  // Mask key 0,0,0,0 (bytes already zero): the payload goes out as is.
  out.set(payload, headerLength + 4);
  return out;
}

/**
 * Opens `ws://host:port/path` with extra request headers; TCP_NODELAY on.
 * @param url a `ws:` URL
 * @param headers extra handshake headers (e.g. `x-twilio-signature`)
 */
export function connectNoDelayWebSocket(url: string, headers: Record<string, string>): BenchSocket {
  const target = new URL(url);
  if (target.protocol !== "ws:") throw new TypeError("Cannot connect: only ws: URLs");
  const listeners: Record<string, Array<(event: { data: string }) => void>> = {
    open: [],
    message: [],
    close: [],
    error: [],
  };
  const emit = (type: string, data = "") => {
    for (const listener of listeners[type]) listener({ data });
  };
  let readyState = 0;
  let conn: Deno.TcpConn | null = null;
  // Frames queued while a write is in flight go out together in the next write: one kernel
  // write per event-loop turn at most, and each frame's time is when its bytes were written.
  let queued: Uint8Array[] = [];
  let queuedCallbacks: Array<(atMs: number) => void> = [];
  let writing = false;
  let drained: Promise<void> = Promise.resolve();

  const flush = async () => {
    writing = true;
    try {
      while (queued.length > 0 && conn) {
        const parts = queued;
        const callbacks = queuedCallbacks;
        queued = [];
        queuedCallbacks = [];
        let bytes = parts[0];
        if (parts.length > 1) {
          bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
          let offset = 0;
          for (const part of parts) {
            bytes.set(part, offset);
            offset += part.length;
          }
        }
        const writtenAtMs = performance.now();
        for (const callback of callbacks) callback(writtenAtMs);
        let offset = 0;
        while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
      }
    } catch {
      finish();
    } finally {
      writing = false;
    }
  };

  const write = (bytes: Uint8Array, onWritten?: (atMs: number) => void) => {
    queued.push(bytes);
    if (onWritten) queuedCallbacks.push(onWritten);
    if (conn && !writing) drained = flush();
  };

  const finish = () => {
    if (readyState === 3) return;
    readyState = 3;
    try {
      conn?.close();
    } catch {
      // already closed
    }
    emit("close");
  };

  (async () => {
    try {
      conn = await Deno.connect({ hostname: target.hostname, port: Number(target.port || 80) });
      conn.setNoDelay(true);
      const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
      const request = [
        `GET ${target.pathname}${target.search} HTTP/1.1`,
        `Host: ${target.host}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
        ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
        "",
        "",
      ].join("\r\n");
      await conn.write(encoder.encode(request));
      let buffer = new Uint8Array(0);
      const chunk = new Uint8Array(64 * 1024);
      const append = (bytes: Uint8Array) => {
        const merged = new Uint8Array(buffer.length + bytes.length);
        merged.set(buffer);
        merged.set(bytes, buffer.length);
        buffer = merged;
      };
      // Handshake response.
      while (true) {
        const n = await conn.read(chunk);
        if (n === null) throw new Error("closed during handshake");
        append(chunk.subarray(0, n));
        const text = decoder.decode(buffer);
        const end = text.indexOf("\r\n\r\n");
        if (end === -1) continue;
        if (!/^HTTP\/1\.1 101/.test(text)) throw new Error(text.split("\r\n")[0]);
        buffer = buffer.slice(encoder.encode(text.slice(0, end + 4)).length);
        break;
      }
      readyState = 1;
      if (queued.length > 0) drained = flush();
      emit("open");
      // Frames.
      while (readyState === 1 || readyState === 2) {
        while (buffer.length >= 2) {
          const opcode = buffer[0] & 0x0f;
          let length = buffer[1] & 0x7f;
          let offset = 2;
          if (length === 126) {
            if (buffer.length < 4) break;
            length = (buffer[2] << 8) | buffer[3];
            offset = 4;
          } else if (length === 127) {
            if (buffer.length < 10) break;
            length = Number(new DataView(buffer.buffer, buffer.byteOffset).getBigUint64(2));
            offset = 10;
          }
          if ((buffer[0] & 0x80) === 0 || (buffer[1] & 0x80) !== 0) {
            throw new Error("unexpected fragmented or masked frame");
          }
          if (buffer.length < offset + length) break;
          const payload = buffer.subarray(offset, offset + length);
          buffer = buffer.slice(offset + length);
          if (opcode === OPCODE_TEXT) {
            emit("message", decoder.decode(payload));
          } else if (opcode === OPCODE_PING) {
            write(frame(OPCODE_PONG, payload));
          } else if (opcode === OPCODE_CLOSE) {
            if (readyState === 1) write(frame(OPCODE_CLOSE, payload.slice(0, 2)));
            await drained;
            finish();
            return;
          }
        }
        const n = await conn.read(chunk);
        if (n === null) break;
        append(chunk.subarray(0, n));
      }
      finish();
    } catch {
      emit("error");
      finish();
    }
  })();

  return {
    get readyState() {
      return readyState;
    },
    send(text, onWritten) {
      if (readyState !== 1) return;
      write(frame(OPCODE_TEXT, encoder.encode(text)), onWritten);
    },
    close(code = 1000) {
      if (readyState !== 1) {
        if (readyState === 0) finish();
        return;
      }
      readyState = 2;
      write(frame(OPCODE_CLOSE, new Uint8Array([code >>> 8, code & 0xff])));
      // The server answers with its close frame; give up waiting after a while.
      setTimeout(finish, 2_000);
    },
    addEventListener(type: string, listener: (event: { data: string }) => void) {
      listeners[type].push(listener);
    },
  };
}
