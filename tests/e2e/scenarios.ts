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
 * interrupts the greeting, asks for Tuesday at ten, confirms, and says goodbye.
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
      arguments: { date },
      then: { kind: "assistant_audio", fixture: "agent_offer_tuesday" },
    },
    { kind: "caller", fixture: "caller_confirm" },
    {
      kind: "function_call",
      name: "book_appointment",
      arguments: {
        first_name: "Jane",
        last_name: "Doe",
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

/** The model connection drops in the middle of the greeting. */
export function droppedModelScenario(): ScenarioEntry[] {
  return [{ kind: "assistant_audio", fixture: "agent_greeting_generic" }];
}
