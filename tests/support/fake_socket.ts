/**
 * An in-memory WebSocket speaking whatever the test plays (Twilio Media Streams, OpenAI
 * Realtime): it records what the code under test sends and lets the test deliver frames and
 * closes as the peer. Implements the bridge's `BridgeSocket` surface.
 * @module
 */

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/** A fake socket; the test plays the peer. */
export class FakeSocket {
  readyState: number;
  /** Every frame the code under test sent. */
  readonly sent: string[] = [];
  /** Every `close()` the code under test made. */
  readonly closeCalls: { code?: number; reason?: string }[] = [];
  /** Code and reason of the close event, once closed. */
  closedWith: { code: number; reason: string } | null = null;
  readonly #listeners = new Map<string, ((event: Event) => void)[]>();

  /** @param open start open (an accepted server socket) or connecting (a client socket) */
  constructor(open = true) {
    this.readyState = open ? OPEN : CONNECTING;
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error("Cannot send: the socket is not open");
    this.sent.push(data);
  }

  close(code?: number, reason?: string): void {
    this.closeCalls.push({ code, reason });
    if (this.readyState >= CLOSING) return;
    this.readyState = CLOSING;
    // Like a real socket, the close event comes later, not inside `close()`.
    queueMicrotask(() => this.peerClose(code ?? 1005, reason ?? ""));
  }

  addEventListener(type: string, listener: (event: never) => void): void {
    const list = this.#listeners.get(type) ?? [];
    list.push(listener as (event: Event) => void);
    this.#listeners.set(type, list);
  }

  /** Completes a client socket's handshake. */
  acceptOpen(): void {
    this.readyState = OPEN;
    this.#emit("open", new Event("open"));
  }

  /** Delivers a frame from the peer (ignored once closed, as a real socket would). */
  deliver(data: string | Uint8Array | ArrayBuffer): void {
    if (this.readyState !== OPEN) return;
    this.#emit("message", new MessageEvent("message", { data }));
  }

  /** The peer closes (or the connection drops). */
  peerClose(code: number, reason = ""): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.closedWith = { code, reason };
    this.#emit("close", new CloseEvent("close", { code, reason, wasClean: code !== 1006 }));
  }

  /** True once closed by either side. */
  get closed(): boolean {
    return this.readyState === CLOSED;
  }

  #emit(type: string, event: Event): void {
    for (const listener of this.#listeners.get(type) ?? []) listener(event);
  }
}
