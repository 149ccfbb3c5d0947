/**
 * Wall-clock time in an org's IANA time zone, via `Intl.DateTimeFormat` (no time-zone database of
 * our own): local date + time to a UTC instant (DST-correct), instants to local dates and times,
 * and the phrases the assistant reads out ("Tuesday, November 24 at 10:00 AM").
 * @module
 */

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

const partsFormatters = new Map<string, Intl.DateTimeFormat>();
const spokenFormatters = new Map<string, Intl.DateTimeFormat>();

function partsFormatter(timeZone: string): Intl.DateTimeFormat {
  let formatter = partsFormatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      weekday: "long",
      hourCycle: "h23",
    });
    partsFormatters.set(timeZone, formatter);
  }
  return formatter;
}

function spokenFormatter(timeZone: string): Intl.DateTimeFormat {
  let formatter = spokenFormatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone,
      weekday: "long",
      month: "long",
      day: "numeric",
      hour: "numeric",
      minute: "2-digit",
      hour12: true,
    });
    spokenFormatters.set(timeZone, formatter);
  }
  return formatter;
}

/** A wall-clock reading in a time zone. */
export interface LocalDateTime {
  /** `YYYY-MM-DD` */
  date: string;
  /** `HH:MM`, 24-hour */
  time: string;
  /** English weekday name, e.g. `Tuesday` */
  weekday: string;
}

/** True when `timeZone` is an IANA zone this runtime knows. */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    partsFormatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

/**
 * The wall clock in `timeZone` at `instant`.
 * @param instant a Date, ms since the epoch, or an ISO 8601 string
 */
export function toLocalDateTime(instant: Date | number | string, timeZone: string): LocalDateTime {
  const parts = readParts(new Date(instant).getTime(), timeZone);
  return {
    date: `${parts.year}-${parts.month}-${parts.day}`,
    time: `${parts.hour}:${parts.minute}`,
    weekday: parts.weekday,
  };
}

function readParts(ms: number, timeZone: string): Record<string, string> {
  const parts: Record<string, string> = {};
  for (const part of partsFormatter(timeZone).formatToParts(new Date(ms))) {
    parts[part.type] = part.value;
  }
  // Some ICU versions print midnight as 24 even with h23.
  if (parts.hour === "24") parts.hour = "00";
  return parts;
}

/** The wall clock at `ms` read as if it were UTC, minute precision. */
function wallClockMs(ms: number, timeZone: string): number {
  const p = readParts(ms, timeZone);
  return Date.UTC(
    Number(p.year),
    Number(p.month) - 1,
    Number(p.day),
    Number(p.hour),
    Number(p.minute),
  );
}

/** The zone's offset from UTC at `ms`, in ms (negative west of Greenwich). */
function offsetMs(ms: number, timeZone: string): number {
  const floored = Math.floor(ms / MINUTE_MS) * MINUTE_MS;
  return wallClockMs(floored, timeZone) - floored;
}

/**
 * The UTC instant at which the wall clock in `timeZone` reads `date` `time`.
 *
 * Returns null for a local time that does not exist (skipped when clocks go forward), matching
 * the slot grid, which drops such times. For a local time that happens twice (clocks going back)
 * it returns the later instant, the offset in force after the transition, as Postgres resolves
 * `timestamp at time zone` there, so the instant matches the database's slot.
 * @param date `YYYY-MM-DD`
 * @param time `HH:MM` (24-hour)
 */
export function zonedTimeToUtc(date: string, time: string, timeZone: string): Date | null {
  const dateMatch = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  const timeMatch = /^(\d{1,2}):(\d{2})$/.exec(time);
  if (!dateMatch || !timeMatch) return null;
  const wall = Date.UTC(
    Number(dateMatch[1]),
    Number(dateMatch[2]) - 1,
    Number(dateMatch[3]),
    Number(timeMatch[1]),
    Number(timeMatch[2]),
  );
  if (Number.isNaN(wall)) return null;
  // The true instant lies within 14 h of `wall`; a zone changes offset at most once around it,
  // so the offsets a day before and after (and at `wall`) cover every candidate.
  const offsets = new Set([
    offsetMs(wall - DAY_MS, timeZone),
    offsetMs(wall, timeZone),
    offsetMs(wall + DAY_MS, timeZone),
  ]);
  let best: number | null = null;
  for (const offset of offsets) {
    const candidate = wall - offset;
    if (wallClockMs(candidate, timeZone) !== wall) continue;
    if (best === null || candidate > best) best = candidate;
  }
  return best === null ? null : new Date(best);
}

/** "Tuesday, November 24 at 10:00 AM": how the assistant reads an instant out. */
export function formatSpokenDateTime(instant: Date | number | string, timeZone: string): string {
  const parts: Record<string, string> = {};
  for (const part of spokenFormatter(timeZone).formatToParts(new Date(instant))) {
    parts[part.type] = part.value;
  }
  // Built from parts: ICU versions differ in literals (" at ", narrow no-break spaces).
  return `${parts.weekday}, ${parts.month} ${parts.day} at ${parts.hour}:${parts.minute} ${parts.dayPeriod}`;
}

/** "Tuesday, November 24" for a calendar day (`YYYY-MM-DD`). */
export function formatSpokenDate(date: string): string {
  const [year, month, day] = date.split("-").map(Number);
  const formatter = new Intl.DateTimeFormat("en-US", {
    timeZone: "UTC",
    weekday: "long",
    month: "long",
    day: "numeric",
  });
  const parts: Record<string, string> = {};
  for (const part of formatter.formatToParts(new Date(Date.UTC(year, month - 1, day)))) {
    parts[part.type] = part.value;
  }
  return `${parts.weekday}, ${parts.month} ${parts.day}`;
}

/** "10:00 AM" for a local `HH:MM`. */
export function formatSpokenTime(time: string): string {
  const [hours, minutes] = time.split(":").map(Number);
  const period = hours < 12 ? "AM" : "PM";
  const hour12 = hours % 12 === 0 ? 12 : hours % 12;
  return `${hour12}:${String(minutes).padStart(2, "0")} ${period}`;
}

/** The calendar day `days` after `date` (`YYYY-MM-DD`). */
export function addDays(date: string, days: number): string {
  const [year, month, day] = date.split("-").map(Number);
  return new Date(Date.UTC(year, month - 1, day + days)).toISOString().slice(0, 10);
}

/** A confirmation code as the assistant spells it: `K7M3P9` -> `K, 7, M, 3, P, 9`. */
export function spellConfirmationCode(code: string): string {
  return [...code.replace(/[^A-Za-z0-9]/g, "").toUpperCase()].join(", ");
}
