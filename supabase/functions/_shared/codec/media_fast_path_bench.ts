// CPU per forwarded audio frame, both directions: the fast path against a plain
// JSON.parse/JSON.stringify relay (the baseline) and against the fully validated zod path.
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

let sink = 0;
let next = 0;

Deno.bench("twilio media -> openai append: JSON.parse/stringify relay", {
  group: "inbound",
  baseline: true,
}, () => {
  const frame = JSON.parse(twilioFrames[next++ & 63]);
  sink += JSON.stringify({ type: "input_audio_buffer.append", audio: frame.media.payload }).length;
});

Deno.bench("twilio media -> openai append: fast path", { group: "inbound" }, () => {
  sink += twilioMediaToOpenAIAppend(twilioFrames[next++ & 63])?.length ?? 0;
});

Deno.bench("twilio media -> openai append: zod-validated path", { group: "inbound" }, () => {
  const result = safeParseTwilioMessage(twilioFrames[next++ & 63]);
  if (result.success && result.data.event === "media") {
    sink += buildInputAudioBufferAppend(result.data.media.payload).length;
  }
});

Deno.bench("openai delta -> twilio media: JSON.parse/stringify relay", {
  group: "outbound",
  baseline: true,
}, () => {
  const event = JSON.parse(openAIDeltas[next++ & 63]);
  sink += JSON.stringify({ event: "media", streamSid: STREAM_SID, media: { payload: event.delta } })
    .length;
});

Deno.bench("openai delta -> twilio media: fast path", { group: "outbound" }, () => {
  sink += openAIAudioDeltaToTwilioMedia(openAIDeltas[next++ & 63], STREAM_SID)?.length ?? 0;
});

Deno.bench("openai delta -> twilio media: zod-validated path", { group: "outbound" }, () => {
  const result = safeParseRealtimeServerEvent(openAIDeltas[next++ & 63]);
  if (result.success && result.data.type === "response.output_audio.delta") {
    sink += buildTwilioMedia(STREAM_SID, result.data.delta).length;
  }
});

// Coalescing: 5 Twilio frames (100 ms) into one append, per 5 frames.
Deno.bench("5 frames -> 5 appends: JSON.parse/stringify relay", {
  group: "coalesce",
  baseline: true,
}, () => {
  for (let i = 0; i < 5; i++) {
    const frame = JSON.parse(twilioFrames[next++ & 63]);
    sink += JSON.stringify({ type: "input_audio_buffer.append", audio: frame.media.payload })
      .length;
  }
});

Deno.bench("5 frames -> 1 append: fast extract + byte-exact coalesce", { group: "coalesce" }, () => {
  const payloads: string[] = [];
  for (let i = 0; i < 5; i++) {
    const media = extractTwilioMediaPayload(twilioFrames[next++ & 63]);
    if (media !== null) payloads.push(media.payload);
  }
  sink += coalesceTwilioPayloadsToAppend(payloads)?.length ?? 0;
});

globalThis.addEventListener("unload", () => {
  if (sink === -1) console.log(sink); // keeps `sink` observable so no work is optimized away
});
