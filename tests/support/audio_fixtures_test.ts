/**
 * Tests that the committed speech fixtures load and are what their README says.
 * @module
 */

import assert from "node:assert/strict";
import { concatBytes } from "../../supabase/functions/_shared/codec/pcm.ts";
import { mulawDecode } from "../../supabase/functions/_shared/codec/g711.ts";
import {
  FIXTURE_DIR_URL,
  FIXTURE_NAMES,
  loadFixture,
  mulawDurationMs,
  mulawSilence,
} from "./audio_fixtures.ts";

Deno.test("loadFixture() loads every committed fixture as speech-level mu-law", () => {
  let totalBytes = 0;
  for (const name of FIXTURE_NAMES) {
    const bytes = loadFixture(name);
    totalBytes += bytes.length;
    assert.ok(mulawDurationMs(bytes) >= 400, `${name} is too short`);
    const samples = mulawDecode(bytes);
    let energy = 0;
    for (const sample of samples) energy += sample * sample;
    const dbfs = 10 * Math.log10(energy / samples.length / 32768 ** 2);
    // Speech well above the double's default VAD threshold (-40 dBFS) and below clipping.
    assert.ok(dbfs > -35 && dbfs < -6, `${name} level ${dbfs.toFixed(1)} dBFS`);
  }
  assert.ok(totalBytes < 400 * 1024, `fixtures total ${totalBytes} bytes`);
});

Deno.test("loadFixture() returns a copy each call", () => {
  const first = loadFixture("agent_goodbye");
  first[0] ^= 0xff;
  assert.notEqual(loadFixture("agent_goodbye")[0], first[0]);
});

Deno.test("loadFixture() has a README row for every fixture", () => {
  const readme = Deno.readTextFileSync(new URL("README.md", FIXTURE_DIR_URL));
  for (const name of FIXTURE_NAMES) assert.match(readme, new RegExp(`\`${name}\\.ulaw\``));
});

Deno.test("mulawSilence() and concatBytes() build digital silence around speech", () => {
  const silence = mulawSilence(20);
  assert.equal(silence.length, 160);
  assert.ok(silence.every((code) => code === 0xff));
  const joined = concatBytes([silence, Uint8Array.of(1, 2), silence]);
  assert.equal(joined.length, 322);
  assert.deepEqual([...joined.subarray(160, 162)], [1, 2]);
});
