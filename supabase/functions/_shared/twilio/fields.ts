/**
 * Zod schemas for the identifiers Twilio puts in webhooks (CallSid, AccountSid, caller ids).
 * @module
 */
import { z } from "zod";

/** `CA` + 32 hex: a Twilio call. */
export const callSidSchema = z.string().regex(/^CA[0-9a-fA-F]{32}$/, "must be CA + 32 hex");
/** `AC` + 32 hex: a Twilio account. */
export const accountSidSchema = z.string().regex(/^AC[0-9a-fA-F]{32}$/, "must be AC + 32 hex");
/** `SM`/`MM` + 32 hex: a Twilio message. */
export const messageSidSchema = z.string().regex(/^(SM|MM)[0-9a-fA-F]{32}$/, "must be SM + 32 hex");
/** An E.164 phone number. */
export const e164Schema = z.string().regex(/^\+[1-9]\d{6,14}$/, "must be an E.164 number");

const WITHHELD_CALLER_IDS = new Set([
  "anonymous",
  "restricted",
  "unknown",
  "private",
  "unavailable",
]);

/**
 * A caller id as Twilio sends it: E.164, a withheld marker (`anonymous`, ...), a Twilio Client
 * identity (`client:alice`) or a SIP URI. All are valid calls; only E.164 can be texted back.
 */
export const callerIdSchema = z.string().trim().min(1).max(256).refine(
  (value) =>
    // Postgres text cannot store U+0000; such an id would make the call unrecordable.
    !value.includes("\u0000") && (e164Schema.safeParse(value).success ||
      WITHHELD_CALLER_IDS.has(value.toLowerCase()) ||
      /^(client|sip):\S+$/i.test(value) ||
      /^\+?\d{2,15}$/.test(value)),
  "must be a phone number, a withheld caller id or a client/sip identity",
);

/** True when a caller id is a phone number that can receive an SMS. */
export function isTextableNumber(value: string | null | undefined): value is string {
  return typeof value === "string" && e164Schema.safeParse(value).success;
}
