// CPU per forwarded audio frame, both directions: the fast path against a plain
// JSON.parse/JSON.stringify relay with no validation (the baseline) and against the fully
// validated zod path. Results and how to read them: docs/benchmarks.md, "Wire codecs".
// Run: node_modules/.bin/deno bench -A supabase/functions/_shared/codec/media_fast_path_bench.ts
import {
  coalesceTwilioPayloadsToAppend,
  extractTwilioMediaPayload,
  openAIAudioDeltaToTwilioMedia,
  twilioMediaToOpenAIAppend,
} from "./media_fast_path.ts";
import { buildTwilioMedia, safeParseTwilioMessage } from "./twilio_media.ts";
import { buildInputAudioBufferAppend, safeParseRealtimeServerEvent } from "./openai_realtime.ts";

/** 20 ms of 8 kHz mu-law: the frame size Twilio sends. */
const TWILIO_FRAME_BYTES = 160;
/** A 100 ms assistant delta, in the range OpenAI sends. */
const OPENAI_DELTA_BYTES = 800;
const STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0";

function base64OfLength(length: number, seed: number): string {
  let binary = "";
  for (let i = 0; i < length; i++) binary += String.fromCharCode((i * 31 + seed * 7) & 0xff);
  return btoa(binary);
}

const twilioFrames = Array.from({ length: 64 }, (_, i) =>
  JSON.stringify({
    event: "media",
    sequenceNumber: String(i + 3),
    media: {
      track: "inbound",
      chunk: String(i + 1),
      timestamp: String(i * 20),
      payload: base64OfLength(TWILIO_FRAME_BYTES, i),
    },
    streamSid: STREAM_SID,
  }));

const openAIDeltas = Array.from({ length: 64 }, (_, i) =>
  JSON.stringify({
    type: "response.output_audio.delta",
    event_id: `event_CJ8dXhh7ddKhZw3s${i}`,
    response_id: "resp_CJ8dXWxGikLgkz1b7gaHa",
    item_id: "item_CJ8dXoTmPGDXTFoqYDD9h",
    output_index: 0,
    content_index: 0,
    delta: base64OfLength(OPENAI_DELTA_BYTES, i),
  }));

// Each iteration forwards one second of audio in one direction: 50 Twilio frames (20 ms each) or
// 10 OpenAI deltas (100 ms each). Batching keeps timer overhead out of microsecond measurements;
// divide the time per iteration by the frame count for the cost per frame.
const TWILIO_FRAMES_PER_SECOND = 50;
const OPENAI_DELTAS_PER_SECOND = 10;

// The same frames with keys in another order: the fast path's order-free scanner, not its exact
// layout match, handles these.
const reorderedTwilioFrames = twilioFrames.map((text) => {
  const { media, ...rest } = JSON.parse(text);
  const { payload, ...mediaRest } = media;
  return JSON.stringify({ media: { payload, ...mediaRest }, ...rest });
});
const reorderedOpenAIDeltas = openAIDeltas.map((text) => {
  const { delta, ...rest } = JSON.parse(text);
  return JSON.stringify({ delta, ...rest });
});

let sink = 0;
let next = 0;

Deno.bench("twilio media -> openai append (50 frames): JSON.parse/stringify relay", {
  group: "inbound",
  baseline: true,
}, () => {
  for (let i = 0; i < TWILIO_FRAMES_PER_SECOND; i++) {
    const frame = JSON.parse(twilioFrames[next++ & 63]);
    sink += JSON.stringify({ type: "input_audio_buffer.append", audio: frame.media.payload })
      .length;
  }
});

Deno.bench("twilio media -> openai append (50 frames): fast path", { group: "inbound" }, () => {
  for (let i = 0; i < TWILIO_FRAMES_PER_SECOND; i++) {
    sink += twilioMediaToOpenAIAppend(twilioFrames[next++ & 63])?.length ?? 0;
  }
});

Deno.bench("twilio media -> openai append (50 frames): fast path, other key order", {
  group: "inbound",
}, () => {
  for (let i = 0; i < TWILIO_FRAMES_PER_SECOND; i++) {
    sink += twilioMediaToOpenAIAppend(reorderedTwilioFrames[next++ & 63])?.length ?? 0;
  }
});

Deno.bench("twilio media -> openai append (50 frames): zod-validated path", {
  group: "inbound",
}, () => {
  for (let i = 0; i < TWILIO_FRAMES_PER_SECOND; i++) {
    const result = safeParseTwilioMessage(twilioFrames[next++ & 63]);
    if (result.success && result.data.event === "media") {
      sink += buildInputAudioBufferAppend(result.data.media.payload).length;
    }
  }
});

Deno.bench("openai delta -> twilio media (10 deltas): JSON.parse/stringify relay", {
  group: "outbound",
  baseline: true,
}, () => {
  for (let i = 0; i < OPENAI_DELTAS_PER_SECOND; i++) {
    const event = JSON.parse(openAIDeltas[next++ & 63]);
    sink += JSON.stringify({
      event: "media",
      streamSid: STREAM_SID,
      media: { payload: event.delta },
    }).length;
  }
});

Deno.bench("openai delta -> twilio media (10 deltas): fast path", { group: "outbound" }, () => {
  for (let i = 0; i < OPENAI_DELTAS_PER_SECOND; i++) {
    sink += openAIAudioDeltaToTwilioMedia(openAIDeltas[next++ & 63], STREAM_SID)?.length ?? 0;
  }
});

Deno.bench("openai delta -> twilio media (10 deltas): fast path, other key order", {
  group: "outbound",
}, () => {
  for (let i = 0; i < OPENAI_DELTAS_PER_SECOND; i++) {
    sink += openAIAudioDeltaToTwilioMedia(reorderedOpenAIDeltas[next++ & 63], STREAM_SID)?.length ??
      0;
  }
});

Deno.bench("openai delta -> twilio media (10 deltas): zod-validated path", {
  group: "outbound",
}, () => {
  for (let i = 0; i < OPENAI_DELTAS_PER_SECOND; i++) {
    const result = safeParseRealtimeServerEvent(openAIDeltas[next++ & 63]);
    if (result.success && result.data.type === "response.output_audio.delta") {
      sink += buildTwilioMedia(STREAM_SID, result.data.delta).length;
    }
  }
});

// Coalescing 5 caller frames (100 ms) per append: 10 appends per second instead of 50.
Deno.bench("50 frames -> 50 appends: JSON.parse/stringify relay", {
  group: "coalesce",
  baseline: true,
}, () => {
  for (let i = 0; i < TWILIO_FRAMES_PER_SECOND; i++) {
    const frame = JSON.parse(twilioFrames[next++ & 63]);
    sink += JSON.stringify({ type: "input_audio_buffer.append", audio: frame.media.payload })
      .length;
  }
});

Deno.bench("50 frames -> 10 appends: fast extract + byte-exact coalesce", {
  group: "coalesce",
}, () => {
  for (let append = 0; append < TWILIO_FRAMES_PER_SECOND / 5; append++) {
    const payloads: string[] = [];
    for (let i = 0; i < 5; i++) {
      const media = extractTwilioMediaPayload(twilioFrames[next++ & 63]);
      if (media !== null) payloads.push(media.payload);
    }
    sink += coalesceTwilioPayloadsToAppend(payloads)?.length ?? 0;
  }
});

globalThis.addEventListener("unload", () => {
  if (sink === -1) console.log(sink); // keeps `sink` observable so no work is optimized away
});
