/**
 * Speech fixtures in Twilio Media Streams' audio encoding (raw G.711 mu-law, 8 kHz, mono), for the
 * doubles and the end-to-end tests. What each file says: `tests/fixtures/audio/README.md`;
 * regenerate with `scripts/fixtures/make_audio_fixtures.ts`.
 * @module
 */

/** Audio sample rate of every fixture (Twilio's `audio/x-mulaw` rate). */
export const FIXTURE_SAMPLE_RATE_HZ = 8000;

/** mu-law bytes per millisecond at the fixtures' rate (one byte per sample). */
export const MULAW_BYTES_PER_MS = FIXTURE_SAMPLE_RATE_HZ / 1000;

/** mu-law code of digital silence (decodes to 0). */
export const MULAW_SILENCE = 0xff;

/** Each fixture's name and the words it speaks (the transcript a scripted double reports). */
export const FIXTURE_TRANSCRIPTS = {
  caller_book_cleaning: "Hi, I'd like to book a cleaning for next Tuesday at ten.",
  caller_confirm: "Yes, that's right, please book it.",
  caller_interrupt: "Actually, wait, can you make it Tuesday?",
  caller_bye: "Thanks, bye.",
  agent_greeting_jane: "Hi Jane, thanks for calling Harbor Dental. How can I help you today?",
  agent_offer_tuesday: "I have Tuesday at ten available. Shall I book it for Jane Doe?",
  agent_booked: "You're all set. See you on Tuesday.",
  agent_goodbye: "Goodbye!",
  agent_greeting_generic: "Hi there, thanks for calling. How can I help you today?",
} as const;

/** Name of a committed audio fixture (file `tests/fixtures/audio/<name>.ulaw`). */
export type FixtureName = keyof typeof FIXTURE_TRANSCRIPTS;

/** Every fixture name, in a stable order. */
export const FIXTURE_NAMES = Object.keys(FIXTURE_TRANSCRIPTS) as readonly FixtureName[];

/** Directory holding the committed `.ulaw` files. */
export const FIXTURE_DIR_URL = new URL("../fixtures/audio/", import.meta.url);

const cache = new Map<FixtureName, Uint8Array>();

/**
 * Raw mu-law bytes of a fixture (8 kHz mono, no header). Cached; returns a fresh copy each call
 * so callers may modify it.
 * @param name fixture name, one of `FIXTURE_NAMES`
 */
export function loadFixture(name: FixtureName): Uint8Array {
  let bytes = cache.get(name);
  if (bytes === undefined) {
    if (!(name in FIXTURE_TRANSCRIPTS)) {
      throw new Error(`Cannot load fixture: unknown name ${name}`);
    }
    bytes = Deno.readFileSync(new URL(`${name}.ulaw`, FIXTURE_DIR_URL));
    cache.set(name, bytes);
  }
  return bytes.slice();
}

/**
 * Duration of mu-law audio at the fixtures' rate, in whole milliseconds (rounded down).
 * @param bytes mu-law bytes
 */
export function mulawDurationMs(bytes: Uint8Array): number {
  return Math.floor(bytes.length / MULAW_BYTES_PER_MS);
}

/**
 * Digital silence in mu-law (all `0xFF`), e.g. the gaps between caller utterances.
 * @param durationMs length of the silence
 */
export function mulawSilence(durationMs: number): Uint8Array {
  return new Uint8Array(Math.round(durationMs * MULAW_BYTES_PER_MS)).fill(MULAW_SILENCE);
}
