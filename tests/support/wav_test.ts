/**
 * Tests of the RIFF/WAVE reader and writer used for fixtures and call recordings.
 * @module
 */

import assert from "node:assert/strict";
import { mulawDecode } from "../../supabase/functions/_shared/codec/g711.ts";
import { readWav, writeStereoWav, writeWav } from "./wav.ts";

Deno.test("writeWav() and readWav() round-trip 16-bit PCM", () => {
  const samples = Int16Array.from([0, 1, -1, 32767, -32768, 1234, -4321]);
  const wav = readWav(writeWav({ sampleRate: 22050, channels: 1, format: "pcm16", data: samples }));
  assert.equal(wav.sampleRate, 22050);
  assert.equal(wav.channels, 1);
  assert.equal(wav.format, "pcm16");
  assert.deepEqual([...wav.samples[0]], [...samples]);
});

Deno.test("writeWav() writes mu-law with format tag 7 and a fact chunk", () => {
  const codes = Uint8Array.from([0xff, 0x7f, 0x00, 0x80, 0x2a]);
  const bytes = writeWav({ sampleRate: 8000, channels: 1, format: "mulaw", data: codes });
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint16(20, true), 7);
  assert.equal(view.getUint16(34, true), 8);
  assert.equal(new TextDecoder().decode(bytes.subarray(38, 42)), "fact");
  const wav = readWav(bytes);
  assert.equal(wav.format, "mulaw");
  assert.deepEqual([...wav.data], [...codes]);
  assert.deepEqual([...wav.samples[0]], [...mulawDecode(codes)]);
});

Deno.test("writeStereoWav() interleaves left and right and pads the shorter channel", () => {
  const left = Int16Array.from([1, 2, 3]);
  const right = Int16Array.from([-1]);
  const wav = readWav(writeStereoWav(left, right, 8000));
  assert.equal(wav.channels, 2);
  assert.deepEqual([...wav.samples[0]], [1, 2, 3]);
  assert.deepEqual([...wav.samples[1]], [-1, 0, 0]);
});

Deno.test("readWav() clamps data sizes a streaming writer left unset", () => {
  const bytes = writeWav({
    sampleRate: 22050,
    channels: 1,
    format: "pcm16",
    data: Int16Array.from([5, 6]),
  });
  const view = new DataView(bytes.buffer);
  view.setUint32(4, 0xffffffff, true);
  view.setUint32(40, 0x7ffff000, true);
  assert.deepEqual([...readWav(bytes).samples[0]], [5, 6]);
});

Deno.test("readWav() throws on a file that is not RIFF/WAVE", () => {
  assert.throws(() => readWav(new Uint8Array(44)), /missing RIFF\/WAVE header/);
});
