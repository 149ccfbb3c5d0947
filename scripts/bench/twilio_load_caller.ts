/**
 * Speaks Twilio's side of a call for load benchmarks: the signed voice webhook to voice-frontdoor,
 * then the Media Streams WebSocket (signed upgrade, `connected`, `start` with the TwiML's
 * `<Parameter>`s, a `media` frame of 20 ms every 20 ms in Twilio's key order, `mark` echoes when
 * the audio before them has played, `clear` honoured, `stop` on hangup). Many calls share one
 * ticker (`tick`), so hundreds of real-time calls cost one timer, not hundreds.
 *
 * Much lighter than `tests/doubles/twilio_call_double.ts` (no TwiML engine, no recording of
 * every message): at hundreds of calls the benchmark's own process must not be the bottleneck.
 *
 * Timing probes (`timing_marker.ts`): every caller frame's audio starts with a marker stamped
 * when it was sent, so the model side measures the inbound hop by itself; assistant audio
 * received is handed to `onMedia` with its arrival time, for the outbound hop.
 * @module
 */
import { signTwilioRequest } from "../../tests/doubles/twilio_rest_double.ts";
import { base64DecodedLength } from "../../supabase/functions/_shared/codec/pcm.ts";
import { markerBase64, precomputeTails, wallClockUs } from "./timing_marker.ts";
import type { BridgeSocket as BenchSocket } from "../../supabase/functions/voice-stream/bridge_deps.ts";
import { connectNoDelayWebSocket } from "../../supabase/functions/voice-stream/nodelay_websocket.ts";

/** Media Streams frame length. */
export const FRAME_MS = 20;
/** Bytes in one 20 ms frame of 8 kHz mu-law. */
export const FRAME_BYTES = 160;
/** Twilio plays outbound audio at 8 bytes (8 kHz mu-law samples) per ms. */
const MULAW_BYTES_PER_MS = 8;
const OPEN = 1;
/** How the bridge lays out `media` (`twilioMediaFromValidBase64`); others are parsed as JSON. */
const MEDIA_PREFIX = '{"event":"media","streamSid":';
const PAYLOAD_KEY = ',"media":{"payload":"';

/** Options of `createCallerFleet`. */
export interface CallerFleetOptions {
  /** `http://127.0.0.1:<port>/functions/v1/voice-frontdoor` (also the signed public URL). */
  frontdoorUrl: string;
  authToken: string;
  accountSid: string;
  from: string;
  to: string;
  /** What the caller says, 8 kHz mu-law, looped (each frame starts with a timing marker). */
  callerAudio: Uint8Array;
  /** Called for each assistant `media` message: when (wall-clock µs), and its base64 audio. */
  onMedia?(arrivedAtUs: number, audioBase64: string): void;
  /**
   * `nodelay` (default): a WebSocket client with TCP_NODELAY (`nodelay_websocket.ts`); `deno`:
   * Deno's `WebSocket`, whose socket keeps Nagle's algorithm on.
   */
  socket?: "nodelay" | "deno";
}

/** One call's figures. */
export interface CallerCall {
  readonly index: number;
  readonly callSid: string;
  /** performance.now() when `start` was sent; NaN before. */
  startSentAtMs: number;
  /** performance.now() when the first assistant audio arrived; NaN before. */
  firstMediaAtMs: number;
  /** Set when the call failed to connect or was closed by the server. */
  failure: string | null;
  closed: boolean;
}

/** Counters of all calls since the last reset. */
export interface FleetCounters {
  framesSent: number;
  marksEchoed: number;
  mediaReceived: number;
  /** Assistant audio received, ms (8 bytes of mu-law per ms). */
  mediaReceivedMs: number;
  marksReceived: number;
  clearsReceived: number;
  otherReceived: number;
  /** How late frames went out against their 20 ms schedule (sum and max, ms). */
  sendLagSumMs: number;
  sendLagMaxMs: number;
}

/** Counters at zero (a fleet's start, and a report's before it is filled). */
export function emptyFleetCounters(): FleetCounters {
  return {
    framesSent: 0,
    marksEchoed: 0,
    mediaReceived: 0,
    mediaReceivedMs: 0,
    marksReceived: 0,
    clearsReceived: 0,
    otherReceived: 0,
    sendLagSumMs: 0,
    sendLagMaxMs: 0,
  };
}

/** A set of calls driven by one ticker. */
export interface CallerFleet {
  readonly calls: readonly CallerCall[];
  readonly counters: FleetCounters;
  resetCounters(): void;
  /** Places a call; resolves once its stream is open and `start` is sent. */
  startCall(): Promise<CallerCall>;
  /** Sends due frames and due mark echoes of every call. */
  tick(nowMs: number): void;
  /** Hangs up every call (`stop`, then close) and waits for the sockets to close. */
  hangupAll(): Promise<void>;
}

interface LiveCall extends CallerCall {
  socket: BenchSocket | null;
  streamSid: string;
  messageSequence: number;
  frameIndex: number;
  nextFrameAtMs: number;
  frameInLoop: number;
  /** When Twilio's playout buffer runs dry. */
  playoutEndMs: number;
  pendingMarks: Array<{ name: string; dueMs: number }>;
  closedPromise: Promise<void>;
}

const XML_ENTITIES: Record<string, string> = {
  "&amp;": "&",
  "&lt;": "<",
  "&gt;": ">",
  "&quot;": '"',
  "&apos;": "'",
};

function xmlUnescape(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos);/g, (entity) => XML_ENTITIES[entity]);
}

function randomSid(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return prefix + Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Reads `<Stream url>` and its `<Parameter>`s from the frontdoor's TwiML. */
export function parseStreamTwiml(
  twiml: string,
): { url: string; parameters: Record<string, string> } | null {
  const stream = /<Stream\b[^>]*\burl="([^"]*)"/.exec(twiml);
  if (!stream) return null;
  const parameters: Record<string, string> = {};
  for (const match of twiml.matchAll(/<Parameter\b[^>]*\bname="([^"]*)"[^>]*\bvalue="([^"]*)"/g)) {
    parameters[xmlUnescape(match[1])] = xmlUnescape(match[2]);
  }
  return { url: xmlUnescape(stream[1]), parameters };
}

/** Creates an empty fleet. */
export function createCallerFleet(options: CallerFleetOptions): CallerFleet {
  const calls: LiveCall[] = [];
  const counters = emptyFleetCounters();
  // Frames are marker + precomputed base64 of the rest: the callers must stay cheap at 500 calls.
  const tails = precomputeTails(options.callerAudio, FRAME_BYTES);

  const send = (call: LiveCall, text: string) => {
    if (call.socket && call.socket.readyState === OPEN) call.socket.send(text);
  };

  const onMedia = (call: LiveCall, payload: string, arrivedAtMs: number) => {
    counters.mediaReceived++;
    const durationMs = base64DecodedLength(payload) / MULAW_BYTES_PER_MS;
    counters.mediaReceivedMs += durationMs;
    if (Number.isNaN(call.firstMediaAtMs)) call.firstMediaAtMs = arrivedAtMs;
    call.playoutEndMs = Math.max(call.playoutEndMs, arrivedAtMs) + durationMs;
    options.onMedia?.(wallClockUs(), payload);
  };

  const onServerMessage = (call: LiveCall, text: string) => {
    const arrivedAtMs = performance.now();
    // The bridge's media layout (most messages, 2 KB each): the payload without a JSON parse.
    if (text.startsWith(MEDIA_PREFIX) && text.endsWith('"}}')) {
      const start = text.indexOf(PAYLOAD_KEY, MEDIA_PREFIX.length);
      if (start !== -1) {
        onMedia(call, text.slice(start + PAYLOAD_KEY.length, text.length - 3), arrivedAtMs);
        return;
      }
    }
    let message: {
      event?: string;
      media?: { payload?: string };
      mark?: { name?: string };
    };
    try {
      message = JSON.parse(text);
    } catch {
      counters.otherReceived++;
      return;
    }
    switch (message.event) {
      case "media":
        onMedia(call, message.media?.payload ?? "", arrivedAtMs);
        break;
      case "mark": {
        counters.marksReceived++;
        const name = message.mark?.name ?? "";
        if (call.playoutEndMs <= arrivedAtMs && call.pendingMarks.length === 0) {
          echoMark(call, name);
        } else {
          call.pendingMarks.push({ name, dueMs: Math.max(call.playoutEndMs, arrivedAtMs) });
        }
        break;
      }
      case "clear": {
        counters.clearsReceived++;
        call.playoutEndMs = arrivedAtMs;
        for (const mark of call.pendingMarks.splice(0)) echoMark(call, mark.name);
        break;
      }
      default:
        counters.otherReceived++;
    }
  };

  const echoMark = (call: LiveCall, name: string) => {
    send(
      call,
      `{"event":"mark","sequenceNumber":"${++call
        .messageSequence}","streamSid":"${call.streamSid}","mark":{"name":${
        JSON.stringify(name)
      }}}`,
    );
    counters.marksEchoed++;
  };

  const sendFrame = (call: LiveCall, nowMs: number) => {
    const tail = tails[call.frameInLoop];
    call.frameInLoop = (call.frameInLoop + 1) % tails.length;
    const sequence = call.frameIndex;
    // Twilio's key order (the bridge's exact-layout fast path expects it).
    const text = `{"event":"media","sequenceNumber":"${++call
      .messageSequence}","media":{"track":"inbound","chunk":"${sequence + 1}","timestamp":"${
      sequence * FRAME_MS
    }","payload":"${markerBase64()}${tail}"},"streamSid":"${call.streamSid}"}`;
    const lag = nowMs - call.nextFrameAtMs;
    counters.sendLagSumMs += lag;
    if (lag > counters.sendLagMaxMs) counters.sendLagMaxMs = lag;
    // The marker is stamped as the text is built: the no-delay client hands a frame to the
    // kernel within send() when no write is pending (one frame per 20 ms per socket: practically
    // always).
    call.socket!.send(text);
    counters.framesSent++;
    call.frameIndex++;
    call.nextFrameAtMs += FRAME_MS;
  };

  const startCall = async (): Promise<CallerCall> => {
    const index = calls.length;
    let resolveClosed!: () => void;
    const call: LiveCall = {
      index,
      callSid: randomSid("CA"),
      startSentAtMs: NaN,
      firstMediaAtMs: NaN,
      failure: null,
      closed: false,
      socket: null,
      streamSid: randomSid("MZ"),
      messageSequence: 0,
      frameIndex: 0,
      nextFrameAtMs: Infinity,
      frameInLoop: (index * 7) % tails.length,
      playoutEndMs: 0,
      pendingMarks: [],
      closedPromise: new Promise((resolve) => resolveClosed = resolve),
    };
    calls.push(call);
    const params = {
      AccountSid: options.accountSid,
      ApiVersion: "2010-04-01",
      CallSid: call.callSid,
      CallStatus: "ringing",
      Called: options.to,
      Caller: options.from,
      Direction: "inbound",
      From: options.from,
      To: options.to,
    };
    const webhook = await fetch(options.frontdoorUrl, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": await signTwilioRequest(
          options.authToken,
          options.frontdoorUrl,
          params,
        ),
      },
      body: new URLSearchParams(params).toString(),
    });
    const stream = parseStreamTwiml(await webhook.text());
    if (webhook.status !== 200 || !stream) {
      call.failure = `webhook ${webhook.status}`;
      call.closed = true;
      resolveClosed();
      return call;
    }
    const signature = await signTwilioRequest(options.authToken, stream.url, {});
    const wsUrl = stream.url.replace(/^wss:/, "ws:");
    const headers = { "x-twilio-signature": signature };
    const socket: BenchSocket = options.socket === "deno"
      ? new WebSocket(wsUrl, { headers }) as unknown as BenchSocket
      : connectNoDelayWebSocket(wsUrl, [], { headers });
    call.socket = socket;
    socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") onServerMessage(call, event.data);
    });
    socket.addEventListener("close", () => {
      if (!call.closed && call.failure === null) call.failure = "closed by server";
      call.closed = true;
      call.nextFrameAtMs = Infinity;
      resolveClosed();
    });
    socket.addEventListener("error", () => {});
    await new Promise<void>((resolve) => {
      socket.addEventListener("open", () => resolve());
      socket.addEventListener("close", () => resolve());
    });
    if (socket.readyState !== OPEN) {
      call.failure ??= "upgrade refused";
      return call;
    }
    send(call, JSON.stringify({ event: "connected", protocol: "Call", version: "1.0.0" }));
    send(
      call,
      JSON.stringify({
        event: "start",
        sequenceNumber: String(++call.messageSequence),
        start: {
          accountSid: options.accountSid,
          streamSid: call.streamSid,
          callSid: call.callSid,
          tracks: ["inbound"],
          mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
          customParameters: stream.parameters,
        },
        streamSid: call.streamSid,
      }),
    );
    call.startSentAtMs = performance.now();
    // Each Twilio stream runs on its own 20 ms clock: calls set up one after another every 20 ms
    // would otherwise all send in the same millisecond.
    call.nextFrameAtMs = call.startSentAtMs + FRAME_MS * (1 + Math.random());
    return call;
  };

  return {
    calls,
    counters,
    resetCounters() {
      for (const key of Object.keys(counters) as (keyof FleetCounters)[]) counters[key] = 0;
    },
    startCall,
    tick(nowMs) {
      for (const call of calls) {
        if (call.closed || call.socket === null) continue;
        while (call.nextFrameAtMs <= nowMs) sendFrame(call, nowMs);
        while (call.pendingMarks.length > 0 && call.pendingMarks[0].dueMs <= nowMs) {
          echoMark(call, call.pendingMarks.shift()!.name);
        }
      }
    },
    async hangupAll() {
      for (const call of calls) {
        if (call.closed || call.socket === null) continue;
        call.nextFrameAtMs = Infinity;
        call.closed = true;
        send(
          call,
          JSON.stringify({
            event: "stop",
            sequenceNumber: String(++call.messageSequence),
            streamSid: call.streamSid,
            stop: { accountSid: options.accountSid, callSid: call.callSid },
          }),
        );
        call.socket.close(1000);
      }
      await Promise.race([
        Promise.all(calls.map((call) => call.closedPromise)),
        new Promise((resolve) => setTimeout(resolve, 10_000)),
      ]);
    },
  };
}

/** How a ramp of calls ended: open, failed, and open calls still without assistant audio. */
export interface RampOutcome {
  open: number;
  failed: number;
  withoutAudio: number;
}

/**
 * Waits (at most `timeoutMs`) until every open call of the fleet heard its first assistant
 * audio, then counts how the ramp went.
 */
export async function awaitFirstAudio(
  fleet: CallerFleet,
  timeoutMs = 20_000,
): Promise<RampOutcome> {
  const waiting = () =>
    fleet.calls.filter((call) => !call.closed && Number.isNaN(call.firstMediaAtMs)).length;
  const deadline = performance.now() + timeoutMs;
  while (waiting() > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    open: fleet.calls.filter((call) => !call.closed).length,
    failed: fleet.calls.filter((call) => call.failure !== null).length,
    withoutAudio: waiting(),
  };
}
