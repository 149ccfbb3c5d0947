import assert from "node:assert/strict";
import {
  addDays,
  formatSpokenDate,
  formatSpokenDateTime,
  formatSpokenTime,
  isValidTimeZone,
  spellConfirmationCode,
  toLocalDateTime,
  zonedTimeToUtc,
} from "./zoned_time.ts";

const NY = "America/New_York";

Deno.test("zonedTimeToUtc() converts standard and daylight time in New York", () => {
  assert.equal(
    zonedTimeToUtc("2026-11-24", "10:00", NY)?.toISOString(),
    "2026-11-24T15:00:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-07-01", "09:30", NY)?.toISOString(),
    "2026-07-01T13:30:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-01-01", "00:00", NY)?.toISOString(),
    "2026-01-01T05:00:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-12-31", "23:59", NY)?.toISOString(),
    "2027-01-01T04:59:00.000Z",
  );
});

Deno.test("zonedTimeToUtc() is correct on both sides of the DST transitions", () => {
  // 2026: clocks go forward on March 8 at 02:00, back on November 1 at 02:00 (New York).
  assert.equal(
    zonedTimeToUtc("2026-03-08", "01:59", NY)?.toISOString(),
    "2026-03-08T06:59:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-03-08", "03:00", NY)?.toISOString(),
    "2026-03-08T07:00:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-03-08", "09:00", NY)?.toISOString(),
    "2026-03-08T13:00:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-11-01", "09:00", NY)?.toISOString(),
    "2026-11-01T14:00:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-10-31", "09:00", NY)?.toISOString(),
    "2026-10-31T13:00:00.000Z",
  );
});

Deno.test("zonedTimeToUtc() refuses a skipped local time and takes the later of a repeated one", () => {
  assert.equal(zonedTimeToUtc("2026-03-08", "02:30", NY), null);
  // 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST); Postgres picks the latter.
  assert.equal(
    zonedTimeToUtc("2026-11-01", "01:30", NY)?.toISOString(),
    "2026-11-01T06:30:00.000Z",
  );
});

Deno.test("zonedTimeToUtc() handles zones east of Greenwich, half-hour offsets and bad input", () => {
  assert.equal(
    zonedTimeToUtc("2026-11-24", "10:00", "Europe/Berlin")?.toISOString(),
    "2026-11-24T09:00:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-11-24", "10:00", "Asia/Kolkata")?.toISOString(),
    "2026-11-24T04:30:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-11-24", "10:00", "Pacific/Kiritimati")?.toISOString(),
    "2026-11-23T20:00:00.000Z",
  );
  assert.equal(
    zonedTimeToUtc("2026-11-24", "10:00", "UTC")?.toISOString(),
    "2026-11-24T10:00:00.000Z",
  );
  assert.equal(zonedTimeToUtc("24/11/2026", "10:00", NY), null);
  assert.equal(zonedTimeToUtc("2026-11-24", "10am", NY), null);
});

Deno.test("zonedTimeToUtc() round-trips every half hour of a year through toLocalDateTime()", () => {
  let checked = 0;
  for (let day = "2026-01-01"; day < "2027-01-01"; day = addDays(day, 13)) {
    for (let minutes = 0; minutes < 24 * 60; minutes += 30) {
      const time = `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${
        String(minutes % 60).padStart(2, "0")
      }`;
      const instant = zonedTimeToUtc(day, time, NY);
      if (instant === null) continue;
      const local = toLocalDateTime(instant, NY);
      assert.deepEqual([local.date, local.time], [day, time]);
      checked++;
    }
  }
  assert.ok(checked > 1200);
});

Deno.test("toLocalDateTime() reads the wall clock and weekday", () => {
  assert.deepEqual(toLocalDateTime("2026-11-24T15:00:00.000Z", NY), {
    date: "2026-11-24",
    time: "10:00",
    weekday: "Tuesday",
  });
  assert.deepEqual(toLocalDateTime(Date.UTC(2026, 10, 25, 4, 30), NY), {
    date: "2026-11-24",
    time: "23:30",
    weekday: "Tuesday",
  });
  assert.equal(toLocalDateTime("2026-11-25T05:00:00.000Z", NY).time, "00:00");
});

Deno.test("formatSpokenDateTime() phrases an instant for speech in the org's zone", () => {
  assert.equal(
    formatSpokenDateTime("2026-11-24T15:00:00.000Z", NY),
    "Tuesday, November 24 at 10:00 AM",
  );
  assert.equal(
    formatSpokenDateTime("2026-11-24T19:30:00.000Z", NY),
    "Tuesday, November 24 at 2:30 PM",
  );
  assert.equal(
    formatSpokenDateTime("2026-11-24T17:00:00.000Z", NY),
    "Tuesday, November 24 at 12:00 PM",
  );
});

Deno.test("formatSpokenDate() and formatSpokenTime() phrase days and times", () => {
  assert.equal(formatSpokenDate("2026-11-24"), "Tuesday, November 24");
  assert.equal(formatSpokenTime("09:00"), "9:00 AM");
  assert.equal(formatSpokenTime("00:30"), "12:30 AM");
  assert.equal(formatSpokenTime("12:00"), "12:00 PM");
  assert.equal(formatSpokenTime("16:30"), "4:30 PM");
});

Deno.test("addDays() crosses months and years", () => {
  assert.equal(addDays("2026-11-30", 1), "2026-12-01");
  assert.equal(addDays("2026-12-31", 1), "2027-01-01");
  assert.equal(addDays("2028-02-28", 1), "2028-02-29");
});

Deno.test("spellConfirmationCode() spells a code character by character", () => {
  assert.equal(spellConfirmationCode("K7M3P9"), "K, 7, M, 3, P, 9");
  assert.equal(spellConfirmationCode("k7m-3p9"), "K, 7, M, 3, P, 9");
});

Deno.test("isValidTimeZone() accepts IANA names only", () => {
  assert.equal(isValidTimeZone(NY), true);
  assert.equal(isValidTimeZone("Mars/Olympus_Mons"), false);
});
