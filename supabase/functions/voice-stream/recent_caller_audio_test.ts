import assert from "node:assert/strict";
import { RecentCallerAudio } from "./recent_caller_audio.ts";
import { concatBase64 } from "../_shared/codec/media_fast_path.ts";
import { MAX_CARRIED_CALLER_AUDIO_CHARS, MAX_CARRIED_CALLER_AUDIO_MS } from "./handover.ts";

/** Base64 of `count` bytes counting up from `first` (distinct content per entry). */
function audio(first: number, count: number): string {
  let binary = "";
  for (let i = 0; i < count; i++) binary += String.fromCharCode((first + i) & 0xff);
  return btoa(binary);
}

Deno.test("RecentCallerAudio: nothing kept gives null", () => {
  assert.equal(new RecentCallerAudio().since(0), null);
});

Deno.test("RecentCallerAudio: entries at or after fromMs, joined as concatBase64 joins them", () => {
  const ring = new RecentCallerAudio();
  // 640 bytes per 80 ms append: padded base64 ("=="), so joining must re-encode.
  const entries = [audio(0, 640), audio(7, 640), audio(50, 640), audio(99, 160)];
  entries.forEach((entry, i) => ring.keep(1000 + i * 80, entry));
  assert.equal(ring.since(0), concatBase64(entries));
  assert.equal(ring.since(1080), concatBase64(entries.slice(1)));
  assert.equal(ring.since(1240), entries[3]);
  assert.equal(ring.since(1241), null);
});

Deno.test("RecentCallerAudio: entries older than the window are dropped", () => {
  const ring = new RecentCallerAudio({ windowMs: 1000 });
  ring.keep(0, audio(1, 300));
  ring.keep(500, audio(2, 300));
  ring.keep(1400, audio(3, 300));
  assert.equal(ring.size, 2);
  assert.equal(ring.since(0), concatBase64([audio(2, 300), audio(3, 300)]));
});

Deno.test("RecentCallerAudio: a full ring drops the oldest and reads entries across its end", () => {
  // A 160-character ring and 48-byte entries (64 characters each).
  const ring = new RecentCallerAudio({ capacityChars: 160, maxResultChars: 1000 });
  const kept: string[] = [];
  for (let i = 0; i < 20; i++) {
    const entry = audio(i * 13, 48);
    ring.keep(i, entry);
    kept.push(entry);
    // At most two 64-character entries fit in 160 characters; the ring wraps every 2.5 entries,
    // so entries straddle its end.
    assert.equal(ring.size, Math.min(2, i + 1));
    assert.equal(ring.since(0), kept.slice(-2).join(""));
  }
});

Deno.test("RecentCallerAudio: the entry count is bounded", () => {
  const ring = new RecentCallerAudio({ maxEntries: 4 });
  for (let i = 0; i < 10; i++) ring.keep(i, audio(i, 3));
  assert.equal(ring.size, 4);
  assert.equal(ring.since(0), [6, 7, 8, 9].map((i) => audio(i, 3)).join(""));
});

Deno.test("RecentCallerAudio: the result keeps the newest whole base64 groups within the limit", () => {
  const ring = new RecentCallerAudio();
  const entries: string[] = [];
  // 9 s of 80 ms appends in 8 s of window: more characters than the result limit.
  for (let t = 0; t <= MAX_CARRIED_CALLER_AUDIO_MS; t += 80) {
    const entry = audio(t / 80, 639); // 639 bytes: whole groups, joined without re-encoding
    ring.keep(t, entry);
    entries.push(entry);
  }
  const joined = entries.join("");
  const result = ring.since(0)!;
  assert.equal(result.length, MAX_CARRIED_CALLER_AUDIO_CHARS);
  assert.equal(result, joined.slice(joined.length - MAX_CARRIED_CALLER_AUDIO_CHARS));
  assert.equal(result.length % 4, 0);
});

Deno.test("RecentCallerAudio: an entry larger than the ring keeps its newest groups", () => {
  const ring = new RecentCallerAudio({ capacityChars: 100, maxResultChars: 100 });
  const big = audio(5, 300); // 400 characters
  ring.keep(0, big);
  assert.equal(ring.since(0), big.slice(big.length - 100));
  ring.keep(1, audio(1, 3));
  assert.equal(ring.since(1), audio(1, 3));
});
