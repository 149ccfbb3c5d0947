/**
 * Speaks iCalendar (RFC 5545, with RFC 7986's refresh interval): writes an org's or a provider's
 * appointments as a feed calendar apps subscribe to, and names the feed's URL token. Pure: no I/O,
 * the time of writing is an argument.
 * @module
 */
import type { CalendarFeed, CalendarFeedEvent } from "../_shared/store/types.ts";

/** Media type of a feed (RFC 5545 section 8.1). */
export const CALENDAR_CONTENT_TYPE = "text/calendar; charset=utf-8";

/** The `route` query parameter of a feed URL. */
export const CALENDAR_ROUTE = "calendar";

/** Longest content line in octets, CRLF excluded (RFC 5545 section 3.1). */
export const MAX_LINE_OCTETS = 75;

/** How often subscribers should fetch again (RFC 7986 REFRESH-INTERVAL, X-PUBLISHED-TTL). */
export const FEED_REFRESH_INTERVAL = "PT15M";

/** Right-hand side of every UID: an appointment keeps its UID in every feed and every refresh. */
export const CALENDAR_UID_DOMAIN = "appointments.voice-frontdoor";

/** Product identifier of the feeds (RFC 5545 section 3.7.3). */
export const CALENDAR_PRODUCT_ID = "-//Voice Front Door//Calendar Feed 1.0//EN";

/** Random bytes in a feed token: 32, so 43 base64url characters. */
export const FEED_TOKEN_BYTES = 32;

const FEED_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const CRLF = "\r\n";

/** Options of `buildCalendar`. */
export interface BuildCalendarOptions {
  /** When the feed is written, milliseconds since the epoch: every event's DTSTAMP. */
  nowMs: number;
  /** Right-hand side of UIDs. Defaults to `CALENDAR_UID_DOMAIN`. */
  uidDomain?: string;
}

/**
 * Writes a feed as one VCALENDAR with a VEVENT per appointment, CRLF line endings, lines folded
 * at 75 octets.
 * @param feed the org or provider and its appointments
 * @param options the time of writing
 */
export function buildCalendar(feed: CalendarFeed, options: BuildCalendarOptions): string {
  const stamp = formatUtc(options.nowMs);
  const domain = options.uidDomain ?? CALENDAR_UID_DOMAIN;
  const org = oneLine(feed.org.name);
  const name = feed.provider ? `${org}: ${oneLine(feed.provider.name)}` : org;
  const lines = [
    "BEGIN:VCALENDAR",
    "VERSION:2.0",
    `PRODID:${CALENDAR_PRODUCT_ID}`,
    "CALSCALE:GREGORIAN",
    "METHOD:PUBLISH",
    `NAME:${escapeText(name)}`,
    `X-WR-CALNAME:${escapeText(name)}`,
    `X-WR-TIMEZONE:${escapeText(feed.org.timezone)}`,
    `REFRESH-INTERVAL;VALUE=DURATION:${FEED_REFRESH_INTERVAL}`,
    `X-PUBLISHED-TTL:${FEED_REFRESH_INTERVAL}`,
  ];
  for (const event of feed.events) lines.push(...eventLines(event, stamp, domain));
  lines.push("END:VCALENDAR");
  return lines.map(foldLine).join(CRLF) + CRLF;
}

function eventLines(event: CalendarFeedEvent, stamp: string, domain: string): string[] {
  const cancelled = event.status === "cancelled";
  const service = oneLine(event.serviceName ?? "") || "Appointment";
  const provider = oneLine(event.providerName ?? "");
  const client = clientLabel(event);
  const summary = `${cancelled ? "Cancelled: " : ""}${service}${client ? `: ${client}` : ""}`;
  const description = [
    `Service: ${service}`,
    provider ? `Provider: ${provider}` : null,
    client ? `Client: ${client}` : null,
    `Confirmation code: ${event.confirmationCode}`,
    cancelled ? "This appointment was cancelled." : null,
  ].filter((line) => line !== null).join("\n");
  return [
    "BEGIN:VEVENT",
    `UID:${escapeText(`${event.id}@${domain}`)}`,
    `DTSTAMP:${stamp}`,
    `DTSTART:${formatUtc(event.startsAt)}`,
    `DTEND:${formatUtc(event.endsAt)}`,
    `SUMMARY:${escapeText(summary)}`,
    `DESCRIPTION:${escapeText(description)}`,
    `STATUS:${cancelled ? "CANCELLED" : "CONFIRMED"}`,
    // A cancelled appointment no longer makes anyone busy.
    `TRANSP:${cancelled ? "TRANSPARENT" : "OPAQUE"}`,
    // Caller details: calendars that honour it hide them from people the calendar is shared with.
    "CLASS:PRIVATE",
    `SEQUENCE:${calendarSequence(event)}`,
    `CREATED:${formatUtc(event.createdAt)}`,
    `LAST-MODIFIED:${formatUtc(event.updatedAt)}`,
    "END:VEVENT",
  ];
}

/** "Jane (•••• 2233)", "Jane", "•••• 2233", or "" when neither is known. */
function clientLabel(event: CalendarFeedEvent): string {
  const name = oneLine(event.clientFirstName ?? "") || null;
  const phone = oneLine(event.clientPhoneMasked ?? "") || null;
  if (name && phone) return `${name} (${phone})`;
  return name ?? phone ?? "";
}

/** A name as one line: control characters dropped, runs of white space made one space. */
function oneLine(value: string): string {
  // deno-lint-ignore no-control-regex
  return value.replace(/[\u0000-\u0008\u000E-\u001F\u007F]/g, "").replace(/\s+/g, " ").trim();
}

/**
 * The event's SEQUENCE: whole seconds from its creation to its last change, so every change a
 * subscriber should apply raises it, and it stays far below 2^31.
 * @param event its `createdAt` and `updatedAt`
 */
export function calendarSequence(event: Pick<CalendarFeedEvent, "createdAt" | "updatedAt">) {
  const seconds = Math.floor((Date.parse(event.updatedAt) - Date.parse(event.createdAt)) / 1000);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
}

/**
 * A UTC DATE-TIME (RFC 5545 section 3.3.5, form 2): `20261123T170000Z`.
 * @param at milliseconds since the epoch, or an ISO 8601 string
 */
export function formatUtc(at: number | string): string {
  const date = new Date(at);
  if (Number.isNaN(date.getTime())) throw new RangeError(`Cannot format ${at}: not a date`);
  return date.toISOString().replace(/\.\d{3}/, "").replace(/[-:]/g, "");
}

/**
 * Escapes a TEXT value (RFC 5545 section 3.3.11): backslash, semicolon and comma get a backslash,
 * line breaks become `\n`; other control characters, which TEXT cannot hold, are dropped.
 * @param value any text, caller-provided names included
 */
export function escapeText(value: string): string {
  return value
    .toWellFormed()
    .replace(/\r\n?/g, "\n")
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000B-\u001F\u007F]/g, "")
    .replace(/[\\;,\n]/g, (char) => char === "\n" ? "\\n" : `\\${char}`);
}

/**
 * Folds a content line (RFC 5545 section 3.1): no physical line longer than 75 octets of UTF-8,
 * continuation lines start with one space, and no character is split across lines.
 * @param line one unfolded content line, without CRLF
 */
export function foldLine(line: string): string {
  let folded = "";
  let current = "";
  let octets = 0;
  let limit = MAX_LINE_OCTETS;
  for (const char of line) {
    const size = utf8Octets(char.codePointAt(0)!);
    if (octets + size > limit) {
      folded += current + CRLF + " ";
      current = "";
      octets = 0;
      // The leading space of a continuation line counts towards its 75 octets.
      limit = MAX_LINE_OCTETS - 1;
    }
    current += char;
    octets += size;
  }
  return folded + current;
}

function utf8Octets(codePoint: number): number {
  if (codePoint < 0x80) return 1;
  if (codePoint < 0x800) return 2;
  if (codePoint < 0x10000) return 3;
  return 4;
}

/**
 * True when `token` has the shape of a feed token (43 base64url characters). Anything else is
 * answered like an unknown token without a lookup.
 */
export function isFeedToken(token: string | null): token is string {
  return token !== null && FEED_TOKEN_PATTERN.test(token);
}

/**
 * The lowercase hex SHA-256 of a feed token's UTF-8: what the database stores and looks up.
 * @param token the URL's token
 */
export async function feedTokenSha256(token: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * A feed's public URL.
 * @param functionsBaseUrl the public functions base, e.g. `https://<ref>.supabase.co/functions/v1`
 * @param token the feed's token
 */
export function calendarFeedUrl(functionsBaseUrl: string, token: string): string {
  const base = functionsBaseUrl.replace(/\/+$/, "");
  return `${base}/voice-action?route=${CALENDAR_ROUTE}&token=${encodeURIComponent(token)}`;
}
