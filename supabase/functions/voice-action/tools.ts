/**
 * Runs the assistant's tools (see `_shared/tools/catalog.ts`) against the store, for one call:
 * the org and the caller's phone come from the call, never from the model. Each tool answers with
 * an `output` object written for the model (what happened, what to say or do next) and, for
 * `end_call` and `transfer_to_human`, the effect voice-stream carries out.
 * @module
 */
import type { Logger } from "../_shared/log.ts";
import type { ParsedToolCall, ToolArguments } from "../_shared/tools/catalog.ts";
import { normalizeTime } from "../_shared/tools/catalog.ts";
import { streamEndKey, type ToolEffect } from "../_shared/tools/protocol.ts";
import type {
  BookingErrorCode,
  CallerContext,
  CallRecord,
  Slot,
  Store,
} from "../_shared/store/types.ts";
import type { TwilioRestClient } from "../_shared/twilio/rest_client.ts";
import { recordBestEffort, transferCall } from "./call_control.ts";
import { sendCallSms } from "./sms.ts";
import {
  addDays,
  formatSpokenDate,
  formatSpokenDateTime,
  formatSpokenTime,
  spellConfirmationCode,
  toLocalDateTime,
  zonedTimeToUtc,
} from "./zoned_time.ts";

/** At most this many times are listed per day: the model offers two or three anyway. */
export const MAX_SLOTS_LISTED = 8;
/** Days after a full day searched for the next free time. */
export const NEXT_AVAILABLE_SEARCH_DAYS = 7;

/** What the tools use. */
export interface ToolDeps {
  store: Pick<
    Store,
    | "availableSlots"
    | "bookAppointment"
    | "cancelAppointment"
    | "rescheduleAppointment"
    | "claimSms"
    | "recordSmsResult"
    | "recordCallEvent"
  >;
  twilio: Pick<TwilioRestClient, "sendSms" | "updateCall">;
  /** Runs background work past the response (the confirmation text). */
  waitUntil: (promise: Promise<unknown>) => void;
  /** `?route=sms-status` URL for texts. */
  smsStatusCallbackUrl: string;
}

/** The call a tool runs for. */
export interface ToolContext {
  callSid: string;
  traceId: string;
  call: CallRecord;
  caller: CallerContext;
  nowMs: number;
  log: Logger;
}

/** A tool's answer. */
export interface ToolResult {
  output: Record<string, unknown>;
  effect: ToolEffect | null;
  /** See `bookingInProgress` in `_shared/tools/protocol.ts`. */
  bookingInProgress?: boolean;
  /** Short label for the `tool_call` log line: `ok`, or why the tool refused. */
  outcome: string;
}

/**
 * Runs one validated tool call. Store failures are thrown (the handler answers 503); refusals
 * (slot taken, not confirmed, ...) are outputs the model can act on.
 */
export function runTool(
  tool: ParsedToolCall,
  ctx: ToolContext,
  deps: ToolDeps,
): Promise<ToolResult> {
  switch (tool.name) {
    case "check_availability":
      return checkAvailability(tool.arguments, ctx, deps);
    case "book_appointment":
      return bookAppointment(tool.arguments, ctx, deps);
    case "cancel_appointment":
      return cancelAppointment(tool.arguments, ctx, deps);
    case "reschedule_appointment":
      return rescheduleAppointment(tool.arguments, ctx, deps);
    case "transfer_to_human":
      return transferToHuman(tool.arguments, ctx, deps);
    case "end_call":
      return endCall(tool.arguments, ctx, deps);
  }
}

interface LocalSlot {
  time: string;
  spoken: string;
}

function localSlots(slots: Slot[], date: string, timeZone: string, window: Window): LocalSlot[] {
  const out: LocalSlot[] = [];
  for (const slot of slots) {
    const local = toLocalDateTime(slot.startsAt, timeZone);
    if (local.date !== date) continue;
    if (window.after && local.time < window.after) continue;
    if (window.before && local.time >= window.before) continue;
    out.push({ time: local.time, spoken: formatSpokenDateTime(slot.startsAt, timeZone) });
  }
  return out;
}

interface Window {
  after?: string;
  before?: string;
}

function describeWindow(window: Window): string {
  if (window.after && window.before) {
    return ` between ${formatSpokenTime(window.after)} and ${formatSpokenTime(window.before)}`;
  }
  if (window.after) return ` after ${formatSpokenTime(window.after)}`;
  if (window.before) return ` before ${formatSpokenTime(window.before)}`;
  return "";
}

async function checkAvailability(
  args: ToolArguments["check_availability"],
  ctx: ToolContext,
  deps: ToolDeps,
): Promise<ToolResult> {
  const { org } = ctx.caller;
  const today = toLocalDateTime(ctx.nowMs, org.timezone);
  const window: Window = {
    after: args.after ? normalizeTime(args.after) : undefined,
    before: args.before ? normalizeTime(args.before) : undefined,
  };
  const base = {
    date: args.date,
    day: formatSpokenDate(args.date),
    today: `${today.weekday}, ${today.date}`,
  };
  if (window.after && window.before && window.after >= window.before) {
    return {
      output: {
        ...base,
        available: false,
        message: "The 'after' time must be earlier than the 'before' time. Call again with a " +
          "valid window.",
      },
      effect: null,
      outcome: "refused:bad_window",
    };
  }
  if (args.date < today.date) {
    return {
      output: {
        ...base,
        available: false,
        message: `${base.day} has already passed. Today is ${formatSpokenDate(today.date)}. ` +
          "Ask the caller for a day from today on.",
      },
      effect: null,
      bookingInProgress: true,
      outcome: "refused:in_past",
    };
  }
  const slots = localSlots(
    await deps.store.availableSlots(org.id, args.date),
    args.date,
    org.timezone,
    window,
  );
  if (slots.length > 0) {
    return {
      output: {
        ...base,
        available: true,
        slots: slots.slice(0, MAX_SLOTS_LISTED),
        more_times: Math.max(0, slots.length - MAX_SLOTS_LISTED),
        instructions: "Offer the caller two or three of these times, read as `spoken`. Book " +
          "with the slot's `time` and this `date`.",
      },
      effect: null,
      bookingInProgress: true,
      outcome: "ok",
    };
  }
  // A full day: look ahead so the assistant can offer the next free day at once.
  const days = Array.from(
    { length: NEXT_AVAILABLE_SEARCH_DAYS },
    (_, i) => addDays(args.date, i + 1),
  );
  const ahead = await Promise.all(
    days.map(async (date) => ({
      date,
      slots: localSlots(await deps.store.availableSlots(org.id, date), date, org.timezone, window),
    })),
  );
  const next = ahead.find((day) => day.slots.length > 0) ?? null;
  return {
    output: {
      ...base,
      available: false,
      slots: [],
      message: `There are no free times on ${base.day}${describeWindow(window)}.` +
        (next
          ? ` The next free times are on ${formatSpokenDate(next.date)}: offer those instead.`
          : ` Nothing is free in the ${NEXT_AVAILABLE_SEARCH_DAYS} days after either; ask ` +
            "the caller for a later day or offer a transfer."),
      next_available: next
        ? { date: next.date, day: formatSpokenDate(next.date), slots: next.slots.slice(0, 3) }
        : null,
    },
    effect: null,
    bookingInProgress: true,
    outcome: "ok:none_free",
  };
}

/** What the model should know and do when the database refuses a booking change. */
function refusal(code: BookingErrorCode, action: "book" | "cancel" | "reschedule"): string {
  switch (code) {
    case "slot_taken":
      return "That time was just taken by someone else. Apologize, call check_availability " +
        "again and offer other times.";
    case "outside_hours":
      return "That is not a bookable time: it is outside opening hours or not on the " +
        "appointment grid. Only offer times check_availability returned.";
    case "in_past":
      return action === "cancel"
        ? "That appointment has already started or passed, so it cannot be cancelled."
        : "That time has already passed (or the appointment already started). Offer a future time.";
    case "not_found":
      return "No upcoming appointment with that confirmation code was found for the phone " +
        "number this call comes from. Ask the caller to read the code again, letter by letter.";
    case "invalid_input":
      return action === "book"
        ? "The booking could not be tied to the caller: the number is withheld or not a phone " +
          "number. Offer to transfer the caller to a person."
        : "The confirmation code or time was not understood. Ask the caller to repeat it.";
    case "unknown_call":
    case "unknown_org":
      return "Appointments cannot be managed on this call. Apologize and offer to transfer the " +
        "caller to a person.";
  }
}

function sendConfirmation(ctx: ToolContext, deps: ToolDeps): void {
  deps.waitUntil(sendCallSms(
    { store: deps.store, twilio: deps.twilio, statusCallbackUrl: deps.smsStatusCallbackUrl },
    { callSid: ctx.callSid, kind: "confirmation", log: ctx.log },
  ));
}

async function bookAppointment(
  args: ToolArguments["book_appointment"],
  ctx: ToolContext,
  deps: ToolDeps,
): Promise<ToolResult> {
  const { org } = ctx.caller;
  const time = normalizeTime(args.time);
  const spokenRequest = `${formatSpokenDate(args.date)} at ${formatSpokenTime(time)}`;
  const name = [args.first_name, args.last_name].filter((part) => part !== "").join(" ");
  if (!args.confirmed_by_caller) {
    return {
      output: {
        booked: false,
        reason: "needs_confirmation",
        instructions:
          `Nothing is booked yet. Read back to the caller: ${name}, ${spokenRequest}. ` +
          "Ask them to confirm, then call book_appointment again with confirmed_by_caller true.",
      },
      effect: null,
      bookingInProgress: true,
      outcome: "refused:needs_confirmation",
    };
  }
  const startsAt = zonedTimeToUtc(args.date, time, org.timezone);
  if (startsAt === null) {
    return {
      output: { booked: false, reason: "outside_hours", message: refusal("outside_hours", "book") },
      effect: null,
      bookingInProgress: true,
      outcome: "refused:outside_hours",
    };
  }
  const result = await deps.store.bookAppointment({
    callSid: ctx.callSid,
    firstName: args.first_name,
    lastName: args.last_name,
    startsAt: startsAt.toISOString(),
  });
  if (!result.ok) {
    return {
      output: { booked: false, reason: result.code, message: refusal(result.code, "book") },
      effect: null,
      bookingInProgress: true,
      outcome: `refused:${result.code}`,
    };
  }
  const { appointment } = result;
  const when = formatSpokenDateTime(appointment.startsAt, org.timezone);
  sendConfirmation(ctx, deps);
  return {
    output: {
      booked: true,
      confirmation_code: appointment.confirmationCode,
      when,
      say: `You're all set, ${args.first_name}: your appointment is on ${when}. Your ` +
        `confirmation code is ${spellConfirmationCode(appointment.confirmationCode)}.`,
    },
    effect: null,
    bookingInProgress: false,
    outcome: "ok",
  };
}

async function cancelAppointment(
  args: ToolArguments["cancel_appointment"],
  ctx: ToolContext,
  deps: ToolDeps,
): Promise<ToolResult> {
  const result = await deps.store.cancelAppointment({
    callSid: ctx.callSid,
    confirmationCode: args.confirmation_code,
  });
  if (!result.ok) {
    return {
      output: { cancelled: false, reason: result.code, message: refusal(result.code, "cancel") },
      effect: null,
      outcome: `refused:${result.code}`,
    };
  }
  const when = formatSpokenDateTime(result.appointment.startsAt, ctx.caller.org.timezone);
  return {
    output: {
      cancelled: true,
      when,
      say: `Your appointment on ${when} is cancelled.`,
    },
    effect: null,
    bookingInProgress: false,
    outcome: "ok",
  };
}

async function rescheduleAppointment(
  args: ToolArguments["reschedule_appointment"],
  ctx: ToolContext,
  deps: ToolDeps,
): Promise<ToolResult> {
  const { org } = ctx.caller;
  const startsAt = zonedTimeToUtc(args.date, normalizeTime(args.time), org.timezone);
  if (startsAt === null) {
    return {
      output: {
        rescheduled: false,
        reason: "outside_hours",
        message: refusal("outside_hours", "reschedule"),
      },
      effect: null,
      bookingInProgress: true,
      outcome: "refused:outside_hours",
    };
  }
  const result = await deps.store.rescheduleAppointment({
    callSid: ctx.callSid,
    confirmationCode: args.confirmation_code,
    startsAt: startsAt.toISOString(),
  });
  if (!result.ok) {
    return {
      output: {
        rescheduled: false,
        reason: result.code,
        message: refusal(result.code, "reschedule"),
      },
      effect: null,
      bookingInProgress: true,
      outcome: `refused:${result.code}`,
    };
  }
  const { appointment } = result;
  const when = formatSpokenDateTime(appointment.startsAt, org.timezone);
  sendConfirmation(ctx, deps);
  return {
    output: {
      rescheduled: true,
      confirmation_code: appointment.confirmationCode,
      when,
      say: `Done: your appointment is now on ${when}. Your confirmation code stays ` +
        `${spellConfirmationCode(appointment.confirmationCode)}.`,
    },
    effect: null,
    bookingInProgress: false,
    outcome: "ok",
  };
}

/**
 * True when any of `texts` contains one of the org's emergency keywords (case-insensitive, whole
 * words or phrases).
 */
export function mentionsEmergency(texts: (string | undefined)[], keywords: string[]): boolean {
  const haystack = texts.filter((text): text is string => !!text).join(" \n ").toLowerCase();
  if (haystack === "") return false;
  return keywords.some((keyword) => {
    const needle = keyword.trim().toLowerCase();
    if (needle === "") return false;
    const escaped = needle.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\s+/g, "\\s+");
    return new RegExp(`(^|[^\\p{L}\\p{N}])${escaped}($|[^\\p{L}\\p{N}])`, "u").test(haystack);
  });
}

async function transferToHuman(
  args: ToolArguments["transfer_to_human"],
  ctx: ToolContext,
  deps: ToolDeps,
): Promise<ToolResult> {
  const { org } = ctx.caller;
  if (!org.transferNumber) {
    return {
      output: {
        transferred: false,
        reason: "no_transfer_number",
        instructions: "Nobody can take the call right now. Offer to take a message (name and " +
          "what it is about) or suggest calling back during opening hours.",
      },
      effect: null,
      outcome: "refused:no_transfer_number",
    };
  }
  const emergency = args.emergency === true ||
    mentionsEmergency([args.reason, args.caller_words], org.emergencyKeywords);
  if (!emergency) {
    return {
      output: {
        transferring: true,
        instructions: "Tell the caller in one short sentence that you are connecting them to a " +
          "person now. The transfer starts as soon as you finish speaking.",
      },
      effect: "transfer",
      bookingInProgress: false,
      outcome: "ok",
    };
  }
  // Emergencies skip the assistant's last words: the call is redirected now.
  const result = await transferCall(
    { store: deps.store, twilio: deps.twilio },
    { callSid: ctx.callSid, org, reason: `emergency: ${args.reason}`, log: ctx.log },
  );
  if (result.status === "failed") {
    return {
      output: {
        transferred: false,
        reason: "transfer_failed",
        instructions: "The transfer did not go through. Apologize, and if this is an emergency " +
          "tell the caller to hang up and call emergency services.",
      },
      effect: null,
      outcome: "failed:transfer",
    };
  }
  return {
    output: {
      transferred: true,
      emergency: true,
      instructions: "The caller is being connected to a person right now. Say nothing more.",
    },
    effect: null,
    bookingInProgress: false,
    outcome: result.status === "call_ended" ? "ok:call_ended" : "ok:emergency_transfer",
  };
}

/**
 * Runs `end_call`. Needs neither the call's row nor the database (its write is best effort), so
 * the handler runs it without looking the call up: the assistant can always hang up.
 */
export async function endCall(
  args: ToolArguments["end_call"],
  ctx: Pick<ToolContext, "callSid" | "traceId" | "log">,
  deps: Pick<ToolDeps, "store">,
): Promise<ToolResult> {
  // The end is handled: the `<Connect action>` request that follows the stream hangs up. Best
  // effort: ending the call must not depend on the database.
  await recordBestEffort(deps.store, {
    callSid: ctx.callSid,
    idempotencyKey: streamEndKey(ctx.callSid),
    kind: "stream_ended",
    traceId: ctx.traceId,
    payload: { reason: "assistant_ended", detail: args.reason },
  }, ctx.log);
  return {
    output: {
      ending: true,
      instructions: "Say a short, warm goodbye now. The call ends when you finish speaking.",
    },
    effect: "end_call",
    bookingInProgress: false,
    outcome: "ok",
  };
}
