import assert from "node:assert/strict";
import { bytesToBase64 } from "../../supabase/functions/_shared/codec/pcm.ts";
import { startFrameDelayPeer } from "./frame_delay_peer.ts";
import { matchClears } from "./frame_delay_bench.ts";
import { wallClockUs, writeMarker } from "./timing_marker.ts";
import { FRAME_BYTES } from "./twilio_load_caller.ts";

Deno.test("frame delay peer: every frame of an append is timed, not only the last", async () => {
  const frames: number[] = [];
  const appends: Array<[number, number]> = [];
  const port = 41_000 + Math.floor(Math.random() * 1_000);
  const peer = startFrameDelayPeer({
    port,
    assistantAudio: new Uint8Array(800).fill(0xff),
    speedFactor: 4,
    talkResponseMs: 300,
    talkTurnMs: 1_000,
    bargeResponseMs: 400,
    bargeAfterMs: 100,
    bargeGapMs: 50,
    onFrame: (delayMs) => frames.push(delayMs),
    onAppend: (count, last) => appends.push([count, last]),
  });
  const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime`, ["realtime"]);
  const created = new Promise((resolve) => socket.onmessage = resolve);
  await new Promise((resolve) => socket.onopen = resolve);
  await created;
  // Four frames sent 60, 40, 20 and 0 ms ago, joined into one append.
  const audio = new Uint8Array(4 * FRAME_BYTES).fill(0xff);
  const now = wallClockUs();
  for (let k = 0; k < 4; k++) writeMarker(audio, k * FRAME_BYTES, now - (60 - 20 * k) * 1000);
  socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: bytesToBase64(audio) }));
  const deadline = performance.now() + 2_000;
  while (frames.length < 4 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  socket.close();
  await peer.close();
  assert.equal(frames.length, 4);
  assert.equal(appends.length, 1);
  assert.equal(appends[0][0], 4);
  for (let k = 0; k < 4; k++) {
    const expected = 60 - 20 * k;
    assert.ok(
      frames[k] >= expected && frames[k] < expected + 50,
      `frame ${k}: ${frames[k]} ms, expected about ${expected}`,
    );
  }
});

Deno.test("matchClears: each clear belongs to the latest speech_started before it", () => {
  const starts = Float64Array.from([1_000_000, 1_100_000, 1_200_000]);
  const clears = Float64Array.from([1_201_500, 1_000_800, 1_102_000]);
  assert.deepEqual([...matchClears(starts, clears)], [0.8, 2, 1.5]);
  // A clear before any speech_started is not counted.
  assert.deepEqual([...matchClears(starts, Float64Array.from([999_000]))], []);
});
