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
  AppointmentSummary,
  BookingErrorCode,
  CallerContext,
  CallRecord,
  OrgSettings,
  ProviderInfo,
  ProviderSlot,
  ServiceInfo,
  Store,
} from "../_shared/store/types.ts";
import type { TwilioRestClient } from "../_shared/twilio/rest_client.ts";
import { recordBestEffort, transferCall } from "./call_control.ts";
import { resolveProvider, resolveService } from "./schedule_names.ts";
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
    | "searchAvailability"
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

/** A time offered to the caller, with the providers free then. */
interface OfferedTime {
  time: string;
  spoken: string;
  providers: string[];
}

interface Window {
  after?: string;
  before?: string;
}

/** Groups one local day's provider slots by start time, within the caller's window. */
function offeredTimes(
  slots: ProviderSlot[],
  date: string,
  timeZone: string,
  window: Window,
): OfferedTime[] {
  const byStart = new Map<string, OfferedTime>();
  for (const slot of slots) {
    const local = toLocalDateTime(slot.startsAt, timeZone);
    if (local.date !== date) continue;
    if (window.after && local.time < window.after) continue;
    if (window.before && local.time >= window.before) continue;
    const offered = byStart.get(slot.startsAt);
    if (offered) {
      if (!offered.providers.includes(slot.providerName)) offered.providers.push(slot.providerName);
    } else {
      byStart.set(slot.startsAt, {
        time: local.time,
        spoken: formatSpokenDateTime(slot.startsAt, timeZone),
        providers: [slot.providerName],
      });
    }
  }
  return [...byStart.values()];
}

/** The first local day of `slots` with a time in the window, with its offered times. */
function firstDayWith(
  slots: ProviderSlot[],
  fromDate: string,
  days: number,
  timeZone: string,
  window: Window,
): { date: string; times: OfferedTime[] } | null {
  for (let i = 0; i < days; i++) {
    const date = addDays(fromDate, i);
    const times = offeredTimes(slots, date, timeZone, window);
    if (times.length > 0) return { date, times };
  }
  return null;
}

function describeWindow(window: Window): string {
  if (window.after && window.before) {
    return ` between ${formatSpokenTime(window.after)} and ${formatSpokenTime(window.before)}`;
  }
  if (window.after) return ` after ${formatSpokenTime(window.after)}`;
  if (window.before) return ` before ${formatSpokenTime(window.before)}`;
  return "";
}

/** True when the org has several providers, so each offered time names one. */
function namesProviders(org: OrgSettings): boolean {
  return org.providers.length > 1;
}

/** A service or provider the model named that does not fit: what to ask the caller. */
function nameRefusal(
  resolved: { reason: string; message: string },
  base: Record<string, unknown>,
  kind: "service" | "provider",
): ToolResult {
  return {
    output: {
      ...base,
      available: false,
      reason: `${kind}_${resolved.reason}`,
      message: resolved.message,
    },
    effect: null,
    bookingInProgress: true,
    outcome: `refused:${kind}_${resolved.reason}`,
  };
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
  const base: Record<string, unknown> = {
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
  const service = resolveService(org, args.service);
  if (!service.ok) return nameRefusal(service, base, "service");
  let provider: ProviderInfo | null = null;
  if (args.provider !== undefined) {
    const resolved = resolveProvider(org, service.value, args.provider);
    if (!resolved.ok) return nameRefusal(resolved, base, "provider");
    provider = resolved.value;
  }
  base.service = service.value.name;
  base.provider = provider?.name ?? null;
  const search = (fromDay: string, days: number, providerId: string | null) =>
    deps.store.searchAvailability({
      orgId: org.id,
      serviceId: service.value.id,
      fromDay,
      days,
      providerId,
    });
  const howToOffer = namesProviders(org)
    ? "Offer the caller two or three of these times, each with one of its providers (e.g. " +
      "'10 AM with Dr. Lee, or 11 with Sam'), times read as `spoken`. Book with the slot's " +
      "`time`, this `date`, the service and the provider the caller chose."
    : "Offer the caller two or three of these times, read as `spoken`. Book with the slot's " +
      "`time` and this `date`.";

  const times = offeredTimes(
    await search(args.date, 1, provider?.id ?? null),
    args.date,
    org.timezone,
    window,
  );
  if (times.length > 0) {
    return {
      output: {
        ...base,
        available: true,
        slots: times.slice(0, MAX_SLOTS_LISTED),
        more_times: Math.max(0, times.length - MAX_SLOTS_LISTED),
        instructions: howToOffer,
      },
      effect: null,
      bookingInProgress: true,
      outcome: "ok",
    };
  }
  // The caller's provider is off or full that day: the others of the service may not be.
  if (provider) {
    const others = offeredTimes(await search(args.date, 1, null), args.date, org.timezone, window);
    if (others.length > 0) {
      return {
        output: {
          ...base,
          available: false,
          slots: [],
          message: `${provider.name} has no free times for ${service.value.name} on ` +
            `${base.day}${describeWindow(window)}, but other providers do. Tell the caller, and ` +
            `offer these instead or another day with ${provider.name}.`,
          other_providers: { slots: others.slice(0, MAX_SLOTS_LISTED), instructions: howToOffer },
        },
        effect: null,
        bookingInProgress: true,
        outcome: "ok:provider_unavailable",
      };
    }
  }
  // A full day: look ahead (one query) so the assistant can offer the next free day at once.
  const aheadFrom = addDays(args.date, 1);
  const next = firstDayWith(
    await search(aheadFrom, NEXT_AVAILABLE_SEARCH_DAYS, provider?.id ?? null),
    aheadFrom,
    NEXT_AVAILABLE_SEARCH_DAYS,
    org.timezone,
    window,
  );
  const who = provider ? ` with ${provider.name}` : "";
  return {
    output: {
      ...base,
      available: false,
      slots: [],
      message: `There are no free times for ${service.value.name}${who} on ${base.day}` +
        `${describeWindow(window)}.` +
        (next
          ? ` The next free times are on ${formatSpokenDate(next.date)}: offer those instead.`
          : ` Nothing is free in the ${NEXT_AVAILABLE_SEARCH_DAYS} days after either; ask ` +
            "the caller for a later day or offer a transfer."),
      next_available: next
        ? { date: next.date, day: formatSpokenDate(next.date), slots: next.times.slice(0, 3) }
        : null,
    },
    effect: null,
    bookingInProgress: true,
    outcome: "ok:none_free",
  };
}

/** What the model should know and do when the database refuses a booking change. */
function refusal(
  code: BookingErrorCode,
  action: "book" | "cancel" | "reschedule",
  org: OrgSettings,
): string {
  switch (code) {
    case "slot_taken":
      return "That time was just taken by someone else. Apologize, call check_availability " +
        "again and offer other times.";
    case "outside_hours":
      return "That is not a bookable time: it is outside the provider's hours or not on the " +
        "appointment grid. Only offer times check_availability returned, with their providers.";
    case "in_past":
      return action === "cancel"
        ? "That appointment has already started or passed, so it cannot be cancelled."
        : "That time has already passed (or the appointment already started). Offer a future time.";
    case "too_soon":
      return `That time is too soon: appointments need at least ` +
        `${formatNotice(org.bookingRules.minNoticeMinutes)} notice. Offer a later time from ` +
        "check_availability.";
    case "too_far":
      return `That is too far ahead: appointments can be booked at most ` +
        `${org.bookingRules.bookingHorizonDays ?? 0} days ahead. Offer an earlier day.`;
    case "unknown_service":
      return "That service cannot be booked here. Use a service from the services list of the " +
        "caller record.";
    case "unknown_provider":
      return "That provider does not offer this service. Call check_availability without a " +
        "provider and offer the providers it returns.";
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

/** "90 minutes", "2 hours", "1 day". */
function formatNotice(minutes: number): string {
  if (minutes % 1440 === 0) return plural(minutes / 1440, "day");
  if (minutes % 60 === 0) return plural(minutes / 60, "hour");
  return plural(minutes, "minute");
}

function plural(count: number, unit: string): string {
  return `${count} ${unit}${count === 1 ? "" : "s"}`;
}

function sendConfirmation(ctx: ToolContext, deps: ToolDeps): void {
  deps.waitUntil(sendCallSms(
    { store: deps.store, twilio: deps.twilio, statusCallbackUrl: deps.smsStatusCallbackUrl },
    { callSid: ctx.callSid, kind: "confirmation", log: ctx.log },
  ));
}

/** "cleaning with Sam Ortiz", or "appointment" for a single-provider org's default service. */
function describeAppointment(appointment: AppointmentSummary, org: OrgSettings): string {
  const service = (appointment.serviceName ?? "appointment").toLowerCase();
  return namesProviders(org) && appointment.providerName
    ? `${service} with ${appointment.providerName}`
    : service;
}

/** The service's instructions as a sentence to say after booking, or "". */
function serviceInstructions(org: OrgSettings, serviceId: string | null): string {
  const text = org.services.find((service) => service.id === serviceId)?.instructions.trim() ?? "";
  return text === "" ? "" : ` ${/[.!?]$/.test(text) ? text : `${text}.`}`;
}

/** The service and provider a booking change names, resolved; or the refusal to return. */
function resolveBookingNames(
  org: OrgSettings,
  args: { service?: string; provider?: string },
  serviceRequired: boolean,
): { service: ServiceInfo | null; provider: ProviderInfo | null } | ToolResult {
  let service: ServiceInfo | null = null;
  if (serviceRequired || args.service !== undefined) {
    const resolved = resolveService(org, args.service);
    if (!resolved.ok) return nameRefusal(resolved, {}, "service");
    service = resolved.value;
  }
  let provider: ProviderInfo | null = null;
  if (args.provider !== undefined) {
    const resolved = resolveProvider(org, service, args.provider);
    if (!resolved.ok) return nameRefusal(resolved, {}, "provider");
    provider = resolved.value;
  }
  return { service, provider };
}

async function bookAppointment(
  args: ToolArguments["book_appointment"],
  ctx: ToolContext,
  deps: ToolDeps,
): Promise<ToolResult> {
  const { org } = ctx.caller;
  const names = resolveBookingNames(org, args, true);
  if ("output" in names) return withBookingFlag(names, "booked");
  const service = names.service!;
  const time = normalizeTime(args.time);
  const spokenRequest = `${formatSpokenDate(args.date)} at ${formatSpokenTime(time)}`;
  const name = [args.first_name, args.last_name].filter((part) => part !== "").join(" ");
  if (!args.confirmed_by_caller) {
    const what = service.name + (names.provider ? ` with ${names.provider.name}` : "");
    return {
      output: {
        booked: false,
        reason: "needs_confirmation",
        instructions:
          `Nothing is booked yet. Read back to the caller: ${name}, ${what}, ${spokenRequest}. ` +
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
      output: {
        booked: false,
        reason: "outside_hours",
        message: refusal("outside_hours", "book", org),
      },
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
    serviceId: service.id,
    providerId: names.provider?.id ?? null,
  });
  if (!result.ok) {
    return {
      output: { booked: false, reason: result.code, message: refusal(result.code, "book", org) },
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
      service: appointment.serviceName,
      provider: appointment.providerName,
      say: `You're all set, ${args.first_name}: your ${describeAppointment(appointment, org)} ` +
        `is on ${when}.${serviceInstructions(org, appointment.serviceId)} Your confirmation ` +
        `code is ${spellConfirmationCode(appointment.confirmationCode)}.`,
    },
    effect: null,
    bookingInProgress: false,
    outcome: "ok",
  };
}

/** A name refusal of a booking change, in that tool's output shape. */
function withBookingFlag(result: ToolResult, flag: "booked" | "rescheduled"): ToolResult {
  const { available: _available, ...rest } = result.output;
  return { ...result, output: { [flag]: false, ...rest } };
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
      output: {
        cancelled: false,
        reason: result.code,
        message: refusal(result.code, "cancel", ctx.caller.org),
      },
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
  const names = resolveBookingNames(org, args, false);
  if ("output" in names) return withBookingFlag(names, "rescheduled");
  const startsAt = zonedTimeToUtc(args.date, normalizeTime(args.time), org.timezone);
  if (startsAt === null) {
    return {
      output: {
        rescheduled: false,
        reason: "outside_hours",
        message: refusal("outside_hours", "reschedule", org),
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
    serviceId: names.service?.id ?? null,
    providerId: names.provider?.id ?? null,
  });
  if (!result.ok) {
    return {
      output: {
        rescheduled: false,
        reason: result.code,
        message: refusal(result.code, "reschedule", org),
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
      service: appointment.serviceName,
      provider: appointment.providerName,
      say: `Done: your ${describeAppointment(appointment, org)} is now on ${when}. Your ` +
        `confirmation code stays ${spellConfirmationCode(appointment.confirmationCode)}.`,
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
