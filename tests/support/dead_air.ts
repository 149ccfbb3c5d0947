/**
 * Dead air on a call, read from the Twilio call double's record (call-ms, see
 * `twilio_call_double.ts`): the stretches after the call was answered where the caller hears
 * nothing from the product while still on the line. Sound is agent audio as played, `<Say>` at
 * the double's speaking rate, the caller's own speech (their turn), and `<Record>` (the caller's
 * turn to leave a message). Only meaningful for calls paced in real time (`pacing: "realtime"`):
 * at higher speeds the product's real-time delays stretch in call-ms.
 * @module
 */
import type { CallRecord } from "../doubles/twilio_call_double.ts";
import { base64ToBytes } from "../../supabase/functions/_shared/codec/pcm.ts";

/** mu-law code of silence: frames holding only this are not speech. */
const MULAW_SILENCE = 0xff;
/** Media Streams frame length, in ms. */
const FRAME_MS = 20;
/** The double's default `<Say>` rate, in call-ms per character. */
const DEFAULT_SAY_MS_PER_CHARACTER = 60;
/** The double's default `<Record timeout>`, in seconds. */
const DEFAULT_RECORD_TIMEOUT_SECONDS = 5;

/** An interval of sound on the line, in call-ms. */
export interface SoundInterval {
  startMs: number;
  endMs: number;
  source: "agent" | "say" | "caller" | "record";
}

/** A silent stretch, in call-ms. */
export interface DeadAirGap {
  startMs: number;
  endMs: number;
  durationMs: number;
}

/** Options of `deadAirGaps`. */
export interface DeadAirOptions {
  /** The call's `sayMsPerCharacter`. Defaults to the double's 60. */
  sayMsPerCharacter?: number;
  /** Start of the window. Defaults to when the call was answered (its first TwiML). */
  fromMs?: number;
  /** End of the window. Defaults to the call's end (the caller is no longer on the line). */
  untilMs?: number;
}

/**
 * Every interval of sound on the call, unmerged.
 * @param call the double's record of a finished call
 * @param sayMsPerCharacter the call's `<Say>` rate
 */
export function soundIntervals(
  call: CallRecord,
  sayMsPerCharacter = DEFAULT_SAY_MS_PER_CHARACTER,
): SoundInterval[] {
  const intervals: SoundInterval[] = [];
  for (const chunk of call.agentChunks) {
    if (chunk.playedMs > 0) {
      intervals.push({
        startMs: chunk.startMs,
        endMs: chunk.startMs + chunk.playedMs,
        source: "agent",
      });
    }
  }
  for (const say of call.says) {
    intervals.push({
      startMs: say.atMs,
      endMs: say.atMs + say.text.length * sayMsPerCharacter,
      source: "say",
    });
  }
  for (const verb of call.verbs) {
    if (verb.verb !== "Record") continue;
    const timeoutSec = Number(verb.attributes.timeout ?? DEFAULT_RECORD_TIMEOUT_SECONDS);
    intervals.push({ startMs: verb.atMs, endMs: verb.atMs + timeoutSec * 1000, source: "record" });
  }
  for (const sent of call.sentEvents) {
    const message = sent.message as { event?: string; media?: { payload?: string } };
    if (message.event !== "media" || typeof message.media?.payload !== "string") continue;
    const bytes = base64ToBytes(message.media.payload);
    if (bytes === null || bytes.every((byte) => byte === MULAW_SILENCE)) continue;
    // The frame was sent when due: its audio covers the 20 ms before the next one.
    intervals.push({ startMs: sent.atMs, endMs: sent.atMs + FRAME_MS, source: "caller" });
  }
  return intervals.sort((a, b) => a.startMs - b.startMs);
}

/**
 * The silent stretches of a call between `fromMs` and `untilMs`, longest first.
 * @param call the double's record of a finished call
 * @param options window and `<Say>` rate
 */
export function deadAirGaps(call: CallRecord, options: DeadAirOptions = {}): DeadAirGap[] {
  const fromMs = options.fromMs ?? call.documents[0]?.atMs ?? 0;
  const untilMs = options.untilMs ?? call.durationMs ?? fromMs;
  const gaps: DeadAirGap[] = [];
  let coveredUntilMs = fromMs;
  for (const interval of soundIntervals(call, options.sayMsPerCharacter)) {
    if (interval.startMs >= untilMs) break;
    if (interval.endMs <= coveredUntilMs) continue;
    if (interval.startMs > coveredUntilMs) {
      gaps.push({
        startMs: coveredUntilMs,
        endMs: interval.startMs,
        durationMs: interval.startMs - coveredUntilMs,
      });
    }
    coveredUntilMs = Math.max(coveredUntilMs, interval.endMs);
  }
  if (untilMs > coveredUntilMs) {
    gaps.push({ startMs: coveredUntilMs, endMs: untilMs, durationMs: untilMs - coveredUntilMs });
  }
  return gaps.sort((a, b) => b.durationMs - a.durationMs);
}

/**
 * The longest silent stretch (0 when there is none).
 * @param call the double's record of a finished call
 * @param options window and `<Say>` rate
 */
export function longestDeadAirMs(call: CallRecord, options: DeadAirOptions = {}): number {
  return deadAirGaps(call, options)[0]?.durationMs ?? 0;
}
