/**
 * Scripted calls shared by the end-to-end tests and the demo: what the OpenAI Realtime double
 * says and does, and what the caller (Twilio call double) says, for the demo org of seed.sql.
 * @module
 */
import type { ScenarioEntry } from "../doubles/openai_realtime_double.ts";
import type { CallerStep } from "../doubles/twilio_call_double.ts";
import { loadFixture } from "../support/audio_fixtures.ts";

/** The first Tuesday at least 3 days ahead, as `YYYY-MM-DD` in New York (the demo org's zone). */
export function nextTuesday(nowMs: number = Date.now()): string {
  for (let days = 3; days < 11; days++) {
    const date = new Date(nowMs + days * 86_400_000);
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: "America/New_York",
      weekday: "short",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
    }).formatToParts(date);
    const get = (type: string) => parts.find((part) => part.type === type)!.value;
    if (get("weekday") === "Tue") return `${get("year")}-${get("month")}-${get("day")}`;
  }
  throw new Error("Cannot find next Tuesday");
}

/**
 * Jane Doe calls: greeted by name (when the bridge put her record in the instructions), she
 * interrupts the greeting and asks for a cleaning on Tuesday with Dr. Lee, her preferred provider,
 * who is off that day; she takes ten o'clock with Sam Ortiz instead, confirms, and says goodbye.
 */
export function bookingScenario(date: string, time = "10:00"): ScenarioEntry[] {
  return [
    (session) =>
      JSON.stringify(session.sessionUpdates.at(-1) ?? {}).includes("Jane")
        ? { kind: "assistant_audio", fixture: "agent_greeting_jane" }
        : { kind: "assistant_audio", fixture: "agent_greeting_generic" },
    { kind: "caller", fixture: "caller_book_cleaning" },
    {
      kind: "function_call",
      name: "check_availability",
      arguments: { service: "Cleaning", provider: "Dr. Lee", date },
      then: { kind: "assistant_audio", fixture: "agent_offer_tuesday" },
    },
    { kind: "caller", fixture: "caller_confirm" },
    {
      kind: "function_call",
      name: "book_appointment",
      arguments: {
        first_name: "Jane",
        last_name: "Doe",
        service: "Cleaning",
        provider: "Sam Ortiz",
        date,
        time,
        confirmed_by_caller: true,
      },
      then: { kind: "assistant_audio", fixture: "agent_booked" },
    },
    { kind: "caller", fixture: "caller_bye" },
    {
      kind: "function_call",
      name: "end_call",
      arguments: { reason: "caller said goodbye" },
      then: { kind: "assistant_audio", fixture: "agent_goodbye" },
    },
    { kind: "end" },
  ];
}

/** Jane's side of `bookingScenario`: she talks over the greeting once. */
export function bookingCallerScript(): CallerStep[] {
  return [
    { waitForAgentAudioMs: 1500, timeoutMs: 15_000 },
    { send: loadFixture("caller_book_cleaning"), label: "asks for Tuesday (barge-in)" },
    { waitForAgentAudioMs: 1000, timeoutMs: 15_000 },
    { waitForAgentSilenceMs: 700, timeoutMs: 15_000 },
    { send: loadFixture("caller_confirm"), label: "confirms" },
    { waitForAgentAudioMs: 800, timeoutMs: 15_000 },
    { waitForAgentSilenceMs: 700, timeoutMs: 15_000 },
    { send: loadFixture("caller_bye"), label: "says goodbye" },
    { silenceMs: 20_000 },
  ];
}

/** The assistant says `greeting`, the caller says goodbye, the assistant ends the call. */
export function goodbyeScenario(greeting: ScenarioEntry, goodbyeMs: number): ScenarioEntry[] {
  return [
    greeting,
    { kind: "caller", fixture: "caller_bye" },
    {
      kind: "function_call",
      name: "end_call",
      arguments: { reason: "caller said goodbye" },
      then: { kind: "assistant_audio", durationMs: goodbyeMs, transcript: "Goodbye!" },
    },
    { kind: "end" },
  ];
}

/** The greeting of `longCall`: said once, by the call's first stream. */
export const LONG_CALL_GREETING = "Hello, thanks for calling Harbor Dental. How can I help?";

/** A long conversation for handover tests: the model's scenario and the caller's script. */
export interface LongCall {
  /** Per connection: the first greets, every later one continues (no greeting). */
  scenario: (connectionIndex: number) => ScenarioEntry[];
  callerScript: CallerStep[];
  /** Caller transcripts handed out so far (`Caller line 1`, `Caller line 2`, ...). */
  callerLines(): number;
}

/**
 * A caller who says `callerTurns` things, each answered by a short reply (every third one after a
 * tool call that changes nothing, `cancel_appointment` for an unknown code), then the assistant
 * ends the call. Transcripts are numbered across connections, so every turn of the whole call is
 * unique and its order checkable, however the streams split it.
 */
export function longCall(options: { callerTurns: number; replyMs?: number }): LongCall {
  let callerLines = 0;
  let replies = 0;
  const replyMs = options.replyMs ?? 800;
  // A getter: the double reads a caller step's transcript when it commits the caller's audio,
  // so the numbering follows the order of commits whichever connection makes them.
  const callerStep = () => ({
    kind: "caller" as const,
    get transcript() {
      return `Caller line ${++callerLines}.`;
    },
  });
  const reply: ScenarioEntry = () => {
    if (callerLines >= options.callerTurns) {
      return {
        kind: "function_call",
        name: "end_call",
        arguments: { reason: "caller said goodbye" },
        then: { kind: "assistant_audio", durationMs: 600, transcript: "Goodbye!" },
      };
    }
    replies++;
    const audio = {
      kind: "assistant_audio" as const,
      durationMs: replyMs,
      transcript: `Reply ${replies}.`,
    };
    return replies % 3 === 0
      ? {
        kind: "function_call",
        name: "cancel_appointment",
        arguments: { confirmation_code: "ZZZZ99" },
        then: audio,
      }
      : audio;
  };
  const turns: ScenarioEntry[] = [];
  for (let i = 0; i < options.callerTurns + 4; i++) turns.push(callerStep(), reply);
  const callerScript: CallerStep[] = [
    { waitForAgentAudioMs: 1000, timeoutMs: 10_000 },
    { waitForAgentSilenceMs: 700, timeoutMs: 10_000 },
  ];
  for (let i = 0; i < options.callerTurns; i++) {
    callerScript.push(
      { send: loadFixture("caller_bye"), label: `caller line ${i + 1}` },
      { waitForAgentAudioMs: 300, timeoutMs: 6_000 },
      // A thinking pause: the natural pause a stream waits for to hand over.
      { waitForAgentSilenceMs: 1200, timeoutMs: 6_000 },
    );
  }
  callerScript.push({ silenceMs: 8_000 }, { hangup: true });
  return {
    scenario: (connectionIndex) =>
      connectionIndex === 0
        ? [{ kind: "assistant_audio", durationMs: 1200, transcript: LONG_CALL_GREETING }, ...turns]
        : [...turns],
    callerScript,
    callerLines: () => callerLines,
  };
}
