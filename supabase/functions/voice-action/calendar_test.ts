import assert from "node:assert/strict";
import ICAL from "ical.js";
import type { CalendarFeed, CalendarFeedEvent } from "../_shared/store/types.ts";
import {
  buildCalendar,
  calendarFeedUrl,
  calendarSequence,
  escapeText,
  feedTokenSha256,
  foldLine,
  formatUtc,
  isFeedToken,
  MAX_LINE_OCTETS,
} from "./calendar.ts";

// Monday, November 23, 2026, 12:00 in New York.
const NOW = Date.UTC(2026, 10, 23, 17, 0, 0);

function event(overrides: Partial<CalendarFeedEvent> = {}): CalendarFeedEvent {
  return {
    id: "6f1c2a34-0000-4000-8000-000000000001",
    startsAt: "2026-11-24T14:00:00.000Z",
    endsAt: "2026-11-24T14:30:00.000Z",
    status: "booked",
    confirmationCode: "K7M3PA",
    serviceName: "Cleaning",
    providerName: "Sam Ortiz",
    clientFirstName: "Jane",
    clientPhoneMasked: "•••• 0001",
    createdAt: "2026-11-20T10:00:00.000Z",
    updatedAt: "2026-11-20T10:00:00.000Z",
    ...overrides,
  };
}

function feed(events: CalendarFeedEvent[], overrides: Partial<CalendarFeed> = {}): CalendarFeed {
  return {
    feedId: "feed-1",
    org: {
      id: "00000000-0000-4000-8000-000000000001",
      name: "Harbor Dental",
      timezone: "America/New_York",
      slug: "harbor-dental",
    },
    provider: null,
    events,
    ...overrides,
  };
}

const encoder = new TextEncoder();

// ical.js knows neither RFC 7986's NAME nor X-WR-CALNAME; calendar apps read both as TEXT.
for (const name of ["name", "x-wr-calname"]) {
  ICAL.design.icalendar.property[name] = { defaultType: "text" };
}

/** Physical lines of a feed; asserts CRLF endings and the 75-octet limit on each. */
function physicalLines(text: string): string[] {
  assert.ok(text.endsWith("\r\n"), "ends with CRLF");
  const lines = text.slice(0, -2).split("\r\n");
  for (const line of lines) {
    assert.ok(!line.includes("\n") && !line.includes("\r"), `bare line break in ${line}`);
    assert.ok(encoder.encode(line).length <= MAX_LINE_OCTETS, `longer than 75 octets: ${line}`);
    assert.ok(!line.includes("\uFFFD"), "no character split");
  }
  return lines;
}

/** Parses with ical.js, the oracle, and returns the calendar and its events. */
function parse(text: string): { calendar: ICAL.Component; events: ICAL.Event[] } {
  const calendar = new ICAL.Component(ICAL.parse(text));
  return {
    calendar,
    events: calendar.getAllSubcomponents("vevent").map((vevent) => new ICAL.Event(vevent)),
  };
}

Deno.test("escapeText() escapes backslash, semicolon, comma and line breaks", () => {
  assert.equal(escapeText("a\\b;c,d\ne"), "a\\\\b\\;c\\,d\\ne");
  assert.equal(escapeText("one\r\ntwo\rthree"), "one\\ntwo\\nthree");
  assert.equal(escapeText('Dr. O\'Brien: "Ann"'), 'Dr. O\'Brien: "Ann"');
});

Deno.test("escapeText() drops control characters TEXT cannot hold and keeps tabs", () => {
  assert.equal(escapeText("Ja\u0000ne\u0007\u001B[31m\u007F\tx"), "Jane[31m\tx");
  // A lone surrogate (a cut emoji) becomes U+FFFD rather than invalid UTF-8.
  assert.equal(escapeText("Jo\uD83D"), "Jo\uFFFD");
});

Deno.test("foldLine() leaves lines of 75 octets alone and folds longer ones with a space", () => {
  const exact = "X".repeat(75);
  assert.equal(foldLine(exact), exact);
  const folded = foldLine("X".repeat(76));
  assert.equal(folded, "X".repeat(75) + "\r\n X");
  const long = foldLine("Y".repeat(75 + 74 + 10));
  assert.deepEqual(long.split("\r\n").map((line) => line.length), [75, 75, 11]);
});

Deno.test("foldLine() counts UTF-8 octets and never splits a multi-byte character", () => {
  // 2-, 3- and 4-octet characters, at every offset against the fold.
  for (const char of ["é", "•", "日", "😀"]) {
    for (let prefix = 0; prefix < 5; prefix++) {
      const line = "S".repeat(prefix) + `SUMMARY:${char.repeat(60)}`;
      const folded = foldLine(line);
      const parts = folded.split("\r\n");
      for (const [index, part] of parts.entries()) {
        const octets = encoder.encode(part).length;
        assert.ok(octets <= 75, `${char} +${prefix}: part ${index} has ${octets} octets`);
        if (index > 0) assert.ok(part.startsWith(" "));
        // Each part is well-formed on its own: the fold fell between characters.
        assert.equal(part.toWellFormed(), part);
        assert.ok(!new TextDecoder().decode(encoder.encode(part)).includes("\uFFFD"));
      }
      assert.equal(parts.map((part, i) => (i === 0 ? part : part.slice(1))).join(""), line);
      // Folding is as tight as it may be: the next character would not have fit.
      for (const [index, part] of parts.slice(0, -1).entries()) {
        const next = [...parts[index + 1].slice(1)][0];
        assert.ok(encoder.encode(part + next).length > 75, `${char} +${prefix}: loose fold`);
      }
    }
  }
});

Deno.test("formatUtc() writes RFC 5545 UTC date-times", () => {
  assert.equal(formatUtc("2026-11-24T14:00:00.000Z"), "20261124T140000Z");
  assert.equal(formatUtc("2026-11-24T09:00:00-05:00"), "20261124T140000Z");
  assert.equal(formatUtc(NOW), "20261123T170000Z");
  assert.throws(() => formatUtc("soon"), RangeError);
});

Deno.test("calendarSequence() grows with every change and is 0 for an untouched event", () => {
  assert.equal(calendarSequence(event()), 0);
  assert.equal(
    calendarSequence(event({ updatedAt: "2026-11-20T10:05:30.900Z" })),
    330,
  );
  assert.equal(calendarSequence(event({ updatedAt: "2026-11-19T00:00:00.000Z" })), 0);
});

Deno.test("buildCalendar() writes a publishable VCALENDAR with CRLF lines ical.js reads", () => {
  const text = buildCalendar(feed([event()]), { nowMs: NOW });
  const lines = physicalLines(text);
  assert.equal(lines[0], "BEGIN:VCALENDAR");
  assert.equal(lines.at(-1), "END:VCALENDAR");
  for (
    const expected of [
      "VERSION:2.0",
      "CALSCALE:GREGORIAN",
      "METHOD:PUBLISH",
      "X-WR-CALNAME:Harbor Dental",
      "X-WR-TIMEZONE:America/New_York",
      "REFRESH-INTERVAL;VALUE=DURATION:PT15M",
      "X-PUBLISHED-TTL:PT15M",
    ]
  ) {
    assert.ok(lines.includes(expected), expected);
  }
  assert.ok(lines.some((line) => line.startsWith("PRODID:-//")));

  const { calendar, events } = parse(text);
  assert.equal(calendar.getFirstPropertyValue("method"), "PUBLISH");
  assert.equal(calendar.getFirstPropertyValue("x-wr-calname"), "Harbor Dental");
  assert.equal(events.length, 1);
  const [booked] = events;
  assert.equal(booked.uid, "6f1c2a34-0000-4000-8000-000000000001@appointments.voice-frontdoor");
  assert.equal(booked.startDate.toJSDate().toISOString(), "2026-11-24T14:00:00.000Z");
  assert.equal(booked.endDate.toJSDate().toISOString(), "2026-11-24T14:30:00.000Z");
  assert.equal(booked.startDate.zone, ICAL.Timezone.utcTimezone);
  assert.equal(booked.summary, "Cleaning: Jane (•••• 0001)");
  assert.equal(
    booked.description,
    "Service: Cleaning\nProvider: Sam Ortiz\nClient: Jane (•••• 0001)\nConfirmation code: K7M3PA",
  );
  assert.equal(booked.sequence, 0);
  assert.equal(booked.component.getFirstPropertyValue("status"), "CONFIRMED");
  assert.equal(booked.component.getFirstPropertyValue("transp"), "OPAQUE");
  const stamp = booked.component.getFirstPropertyValue("dtstamp") as ICAL.Time;
  assert.equal(stamp.toJSDate().getTime(), NOW);
  const created = booked.component.getFirstPropertyValue("created") as ICAL.Time;
  assert.equal(created.toJSDate().toISOString(), "2026-11-20T10:00:00.000Z");
});

Deno.test("buildCalendar() marks cancelled appointments CANCELLED and raises SEQUENCE on change", () => {
  const text = buildCalendar(
    feed([
      event({
        status: "cancelled",
        updatedAt: "2026-11-21T10:00:00.000Z",
      }),
    ]),
    { nowMs: NOW },
  );
  const [cancelled] = parse(text).events;
  assert.equal(cancelled.component.getFirstPropertyValue("status"), "CANCELLED");
  assert.equal(cancelled.component.getFirstPropertyValue("transp"), "TRANSPARENT");
  assert.equal(cancelled.summary, "Cancelled: Cleaning: Jane (•••• 0001)");
  assert.equal(cancelled.sequence, 86_400);
  const modified = cancelled.component.getFirstPropertyValue("last-modified") as ICAL.Time;
  assert.equal(modified.toJSDate().toISOString(), "2026-11-21T10:00:00.000Z");
});

Deno.test("buildCalendar() round-trips hostile and long names through escaping and folding", () => {
  const hostile = [
    "Jane; DROP, \\ TABLE\nEND:VEVENT\r\nBEGIN:VEVENT",
    "Zoë-Chloé Ñúñez 日本語の名前 😀👩‍⚕️".repeat(3),
    "\u0000\u001B",
  ];
  const events = hostile.map((name, index) =>
    event({
      id: `00000000-0000-4000-8000-00000000000${index}`,
      clientFirstName: name,
      serviceName: `Deep cleaning, polish; and ${"é".repeat(index * 40)}`,
      providerName: "Dr. Lee, DDS",
    })
  );
  const text = buildCalendar(
    feed(events, { provider: { id: "prov-lee", name: 'Dr. Lee; "Room 2"' } }),
    { nowMs: NOW },
  );
  physicalLines(text);
  const { calendar, events: parsed } = parse(text);
  assert.equal(calendar.getFirstPropertyValue("name"), 'Harbor Dental: Dr. Lee; "Room 2"');
  assert.equal(calendar.getFirstPropertyValue("x-wr-calname"), 'Harbor Dental: Dr. Lee; "Room 2"');
  assert.equal(parsed.length, 3, "an injected END:VEVENT stays text");
  const service = (index: number) => `Deep cleaning, polish; and ${"é".repeat(index * 40)}`.trim();
  // Names are one line in a summary; escaping keeps an injected END:VEVENT text either way.
  assert.equal(
    parsed[0].summary,
    `${service(0)}: Jane; DROP, \\ TABLE END:VEVENT BEGIN:VEVENT (•••• 0001)`,
  );
  assert.equal(parsed[1].summary, `${service(1)}: ${hostile[1]} (•••• 0001)`);
  // Only control characters: the name is as good as unknown.
  assert.equal(parsed[2].summary, `${service(2)}: •••• 0001`);
  assert.match(parsed[0].description, /Provider: Dr\. Lee, DDS/);
});

Deno.test("buildCalendar() names unknown services and clients plainly and writes an empty feed", () => {
  const text = buildCalendar(
    feed([event({ serviceName: null, clientFirstName: null, clientPhoneMasked: null })]),
    { nowMs: NOW },
  );
  const [only] = parse(text).events;
  assert.equal(only.summary, "Appointment");
  assert.doesNotMatch(only.description, /Client:/);

  const empty = buildCalendar(feed([]), { nowMs: NOW });
  physicalLines(empty);
  assert.equal(parse(empty).events.length, 0);
});

Deno.test("isFeedToken() accepts 43 base64url characters only", () => {
  assert.ok(isFeedToken("A".repeat(42) + "_"));
  assert.ok(isFeedToken("abcDEF0123456789-_abcDEF0123456789-_abcdefg"));
  for (
    const bad of [
      null,
      "",
      "A".repeat(42),
      "A".repeat(44),
      "A".repeat(42) + "=",
      "A".repeat(42) + "/",
    ]
  ) {
    assert.equal(isFeedToken(bad), false, String(bad));
  }
});

Deno.test("feedTokenSha256() is the lowercase hex SHA-256 of the token", async () => {
  // FIPS 180-2 test vector: SHA-256("abc").
  assert.equal(
    await feedTokenSha256("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("calendarFeedUrl() points at voice-action's calendar route", () => {
  assert.equal(
    calendarFeedUrl("https://abc.supabase.co/functions/v1/", "tok_en-1"),
    "https://abc.supabase.co/functions/v1/voice-action?route=calendar&token=tok_en-1",
  );
});
