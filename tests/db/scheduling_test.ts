/**
 * Scheduling on a real database: providers with weekly hours, services with durations and
 * buffers, date overrides, booking rules (notice, horizon, granularity), DST days, and the RPCs
 * that search, book and move appointments per provider, including under races.
 *
 * Every step runs twice: on the PostgreSQL server of `DATABASE_URL` (skipped when unset) and on
 * embedded PGlite. PGlite has a single session, so there the race steps run their requests one
 * after another (the outcome they check is the same; only the server really interleaves them).
 * Dates are in 2030 for determinism, except the notice and horizon steps, which are relative to
 * now().
 * @module
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { createTestDatabase, type TestDatabase } from "../support/test_db.ts";
import {
  createClient,
  createOrg,
  createScheduledOrg,
  randomPhone,
  rpc,
  setBookingRules,
  startCall,
  type TestOrg,
  type WeeklyHours,
} from "./fixtures.ts";

type Sql = postgres.Sql;

interface Appointment {
  id: string;
  starts_at: string;
  ends_at: string;
  confirmation_code: string;
  status: string;
  service_id: string | null;
  service_name: string | null;
  provider_id: string;
  provider_name: string;
}

interface BookingResult {
  ok: boolean;
  code?: string;
  appointment?: Appointment;
}

interface LookupResult {
  org: {
    id: string;
    services: { providers: string[] }[];
    providers: { id: string; name: string }[];
    booking_rules: Record<string, number | null>;
  };
  client: { preferred_provider: { id: string; name: string } | null } | null;
  last_provider: { id: string; name: string } | null;
  upcoming_appointments: Appointment[];
}

/** One row of search_availability, in the function's own order. */
interface Slot {
  providerId: string;
  provider: string;
  /** Local wall-clock time in the org's zone, YYYY-MM-DD HH24:MI. */
  local: string;
  startsAt: string;
  endsAt: string;
  now: Date;
}

const MINUTE = 60_000;
const WEEKDAYS = [1, 2, 3, 4, 5];
const EVERY_DAY = [1, 2, 3, 4, 5, 6, 7];

/** The same ranges on each of `days`. */
function week(days: number[], ...ranges: [string, string][]): WeeklyHours {
  return Object.fromEntries(days.map((day) => [day, ranges]));
}

/** search_availability's rows, in the order it returns them (with ordinality). */
async function searchRows(
  sql: Sql,
  org: TestOrg,
  serviceId: string | null,
  from: string,
  options: { days?: number; provider?: string | null } = {},
): Promise<Slot[]> {
  const rows = await sql<
    {
      provider_id: string;
      provider_name: string;
      local: string;
      starts_at: Date;
      ends_at: Date;
      now: Date;
    }[]
  >`
    select s.provider_id, s.provider_name, s.starts_at, s.ends_at, now() as now,
      to_char(s.starts_at at time zone ${org.timezone}, 'YYYY-MM-DD HH24:MI') as local
    from public.search_availability(
      ${org.id}::uuid, ${serviceId}::uuid, ${from}::date, ${options.days ?? 1}::integer,
      ${options.provider ?? null}::uuid
    ) with ordinality as s (provider_id, provider_name, starts_at, ends_at, n)
    order by s.n`;
  return rows.map((row) => ({
    providerId: row.provider_id,
    provider: row.provider_name,
    local: row.local,
    startsAt: row.starts_at.toISOString(),
    endsAt: row.ends_at.toISOString(),
    now: row.now,
  }));
}

/** search_availability as "HH:MM Provider" (or "YYYY-MM-DD HH:MM Provider" with `withDate`). */
async function search(
  sql: Sql,
  org: TestOrg,
  serviceId: string | null,
  from: string,
  options: { days?: number; provider?: string | null; withDate?: boolean } = {},
): Promise<string[]> {
  return (await searchRows(sql, org, serviceId, from, options)).map((slot) =>
    `${options.withDate ? slot.local : slot.local.slice(11)} ${slot.provider}`
  );
}

/** A local wall-clock time of a zone as an ISO instant, resolved the way Postgres does. */
async function instant(sql: Sql, timezone: string, local: string): Promise<string> {
  const [{ at }] = await sql<{ at: Date }[]>`
    select (${local}::timestamp at time zone ${timezone}) as at`;
  return at.toISOString();
}

/** A new call from `caller` (default: a new number) that books through book_appointment. */
async function book(
  sql: Sql,
  org: TestOrg,
  startsAt: string,
  options: {
    service?: string | null;
    provider?: string | null;
    caller?: string;
    firstName?: string;
  } = {},
): Promise<BookingResult & { callSid: string; caller: string }> {
  const caller = options.caller ?? randomPhone();
  const callSid = await startCall(sql, { to: org.phoneNumber, from: caller });
  const result = await rpc<BookingResult>(sql, "book_appointment", [
    callSid,
    options.firstName ?? "Pat",
    "Lee",
    startsAt,
    options.service ?? null,
    options.provider ?? null,
  ]);
  return { ...result, callSid, caller };
}

function reschedule(
  sql: Sql,
  callSid: string,
  code: string,
  startsAt: string,
  options: { service?: string | null; provider?: string | null } = {},
): Promise<BookingResult> {
  return rpc<BookingResult>(sql, "reschedule_appointment", [
    callSid,
    code,
    startsAt,
    options.service ?? null,
    options.provider ?? null,
  ]);
}

/** Pairs of an org's booked appointments of one provider whose blocked ranges overlap. */
async function overlappingPairs(sql: Sql, orgId: string): Promise<number> {
  const [{ count }] = await sql<{ count: number }[]>`
    select count(*)::int as count
    from public.appointments a
    join public.appointments b
      on b.provider_id = a.provider_id and a.id < b.id and a.blocked && b.blocked
    where a.org_id = ${orgId} and b.org_id = ${orgId}
      and a.status = 'booked' and b.status = 'booked'`;
  return count;
}

/**
 * Every start is unique per provider (instant and local time) and in order; with `disjoint` (the
 * step is at least the length) a provider's slots also never overlap.
 */
function assertCleanGrid(slots: Slot[], { disjoint = true } = {}): void {
  const byProvider = new Map<string, Slot[]>();
  for (const slot of slots) {
    byProvider.set(slot.provider, [...(byProvider.get(slot.provider) ?? []), slot]);
  }
  for (const [provider, list] of byProvider) {
    for (let i = 1; i < list.length; i++) {
      assert.ok(list[i - 1].startsAt < list[i].startsAt, `${provider}: duplicate or out of order`);
      assert.ok(
        !disjoint || list[i - 1].endsAt <= list[i].startsAt,
        `${provider}: ${list[i - 1].local} overlaps`,
      );
    }
    const locals = list.map((slot) => slot.local);
    assert.equal(new Set(locals).size, locals.length, `${provider}: a local start twice`);
  }
}

function ceilTo(ms: number, stepMs: number): number {
  return Math.ceil(ms / stepMs) * stepMs;
}

function addDays(date: string, days: number): string {
  const at = new Date(`${date}T00:00:00Z`);
  at.setUTCDate(at.getUTCDate() + days);
  return at.toISOString().slice(0, 10);
}

/** The steps, against one database. `concurrent`: the races really run in parallel. */
async function schedulingSteps(
  t: Deno.TestContext,
  db: TestDatabase,
  concurrent: boolean,
): Promise<void> {
  const sql = db.sql;
  const raceNote = concurrent ? "" : " (run one after another: PGlite has one session)";

  await t.step(
    "search_availability() cuts each of several ranges a day per provider, stepping by the " +
      "service's length plus buffer or by the org's slot granularity",
    async () => {
      const org = await createScheduledOrg(sql, {
        providers: [
          {
            name: "Adams",
            hours: { 1: [["09:00", "12:00"], ["13:00", "15:00"]], 3: [["09:00", "10:00"]] },
          },
          { name: "Baker", hours: { 1: [["10:00", "11:00"], ["14:00", "16:30"]] } },
        ],
        services: [
          { name: "Checkup", minutes: 30, providers: ["Adams", "Baker"] },
          { name: "Cleaning", minutes: 60, bufferAfter: 15, providers: ["Adams", "Baker"] },
        ],
      });
      const { Checkup: checkup, Cleaning: cleaning } = org.services;
      // Monday 2030-03-11; default step: 30 minutes for Checkup.
      assert.deepEqual(await search(sql, org, checkup, "2030-03-11"), [
        "09:00 Adams",
        "09:30 Adams",
        "10:00 Adams",
        "10:00 Baker",
        "10:30 Adams",
        "10:30 Baker",
        "11:00 Adams",
        "11:30 Adams",
        "13:00 Adams",
        "13:30 Adams",
        "14:00 Adams",
        "14:00 Baker",
        "14:30 Adams",
        "14:30 Baker",
        "15:00 Baker",
        "15:30 Baker",
        "16:00 Baker",
      ]);
      // Cleaning steps by 60 + 15 minutes; the appointment (not its buffer) ends by closing.
      const cleanings = await searchRows(sql, org, cleaning, "2030-03-11");
      assert.deepEqual(cleanings.map((slot) => `${slot.local.slice(11)} ${slot.provider}`), [
        "09:00 Adams",
        "10:00 Baker",
        "10:15 Adams",
        "13:00 Adams",
        "14:00 Baker",
        "15:15 Baker",
      ]);
      for (const slot of cleanings) {
        assert.equal(Date.parse(slot.endsAt) - Date.parse(slot.startsAt), 60 * MINUTE);
      }
      assert.equal(cleanings[0].startsAt, "2030-03-11T13:00:00.000Z", "09:00 EDT");
      assert.deepEqual(await search(sql, org, checkup, "2030-03-12"), [], "nobody on Tuesday");
      assert.deepEqual(await search(sql, org, checkup, "2030-03-13"), [
        "09:00 Adams",
        "09:30 Adams",
      ]);
      assert.deepEqual(await search(sql, org, cleaning, "2030-03-13"), ["09:00 Adams"]);

      await setBookingRules(sql, org.id, { slotGranularityMinutes: 15 });
      const adamsCleaning = await search(sql, org, cleaning, "2030-03-11", {
        provider: org.providers.Adams,
      });
      assert.deepEqual(adamsCleaning.map((slot) => slot.slice(0, 5)), [
        "09:00",
        "09:15",
        "09:30",
        "09:45",
        "10:00",
        "10:15",
        "10:30",
        "10:45",
        "11:00",
        "13:00",
        "13:15",
        "13:30",
        "13:45",
        "14:00",
      ]);
      const checkups = await searchRows(sql, org, checkup, "2030-03-11");
      const count = (name: string) => checkups.filter((slot) => slot.provider === name).length;
      assert.equal(count("Adams"), 11 + 7, "09:00-11:30 and 13:00-14:30 every 15 minutes");
      assert.equal(count("Baker"), 3 + 9, "10:00-10:30 and 14:00-16:00 every 15 minutes");
      assert.ok(
        checkups.every((slot) =>
          Date.parse(slot.endsAt) - Date.parse(slot.startsAt) === 30 * MINUTE
        ),
      );
      assertCleanGrid(checkups, { disjoint: false });

      // A 60-minute booking takes the slots of the 30-minute service it overlaps, same provider.
      assert.equal((await book(sql, org, cleanings[0].startsAt, { service: cleaning })).ok, true);
      const after = await search(sql, org, checkup, "2030-03-11", {
        provider: org.providers.Adams,
      });
      assert.deepEqual(after.slice(0, 3).map((slot) => slot.slice(0, 5)), [
        "10:15",
        "10:30",
        "10:45",
      ]);
    },
  );

  await t.step(
    "date overrides: an org closure empties the day, org hours replace the week, a provider's " +
      "own override beats both, and a closed row beats hour rows of the same scope",
    async () => {
      const weekday = week(WEEKDAYS, ["09:00", "12:00"]);
      const org = await createScheduledOrg(sql, {
        providers: [{ name: "Adams", hours: weekday }, { name: "Baker", hours: weekday }],
        services: [{ name: "Visit", minutes: 60, providers: ["Adams", "Baker"] }],
        overrides: [
          // Wednesday: Christmas, the whole org is closed.
          { date: "2030-12-25", closed: true },
          // Tuesday: the org works other hours (two ranges); Baker is off sick.
          { date: "2030-12-24", opens: "09:00", closes: "10:00" },
          { date: "2030-12-24", opens: "15:00", closes: "17:00" },
          { date: "2030-12-24", provider: "Baker", closed: true },
          // Monday: Baker is off, Adams keeps the week.
          { date: "2030-12-23", provider: "Baker", closed: true },
          // Thursday: closed and hours for the org: closed wins.
          { date: "2030-12-26", closed: true },
          { date: "2030-12-26", opens: "09:00", closes: "12:00" },
          // Friday: closed and hours for Baker: closed wins; Adams keeps the week.
          { date: "2030-12-27", provider: "Baker", closed: true },
          { date: "2030-12-27", provider: "Baker", opens: "13:00", closes: "15:00" },
          // Saturday: Adams works extra hours.
          { date: "2030-12-28", provider: "Adams", opens: "10:00", closes: "12:00" },
          // Tuesday: the org is closed, but Adams is on call.
          { date: "2030-12-31", closed: true },
          { date: "2030-12-31", provider: "Adams", opens: "13:00", closes: "14:00" },
        ],
      });
      const visit = org.services.Visit;
      assert.deepEqual(await search(sql, org, visit, "2030-12-23", { days: 9, withDate: true }), [
        "2030-12-23 09:00 Adams",
        "2030-12-23 10:00 Adams",
        "2030-12-23 11:00 Adams",
        "2030-12-24 09:00 Adams",
        "2030-12-24 15:00 Adams",
        "2030-12-24 16:00 Adams",
        "2030-12-27 09:00 Adams",
        "2030-12-27 10:00 Adams",
        "2030-12-27 11:00 Adams",
        "2030-12-28 10:00 Adams",
        "2030-12-28 11:00 Adams",
        "2030-12-30 09:00 Adams",
        "2030-12-30 09:00 Baker",
        "2030-12-30 10:00 Adams",
        "2030-12-30 10:00 Baker",
        "2030-12-30 11:00 Adams",
        "2030-12-30 11:00 Baker",
        "2030-12-31 13:00 Adams",
      ]);
      assert.deepEqual(await search(sql, org, visit, "2030-12-25"), [], "closed for everyone");
      assert.deepEqual(await search(sql, org, visit, "2030-12-26"), [], "closed beats org hours");
      assert.deepEqual(
        await search(sql, org, visit, "2030-12-27", { provider: org.providers.Baker }),
        [],
        "closed beats Baker's own hours",
      );

      // Booking follows the same hours.
      const at = (local: string) => instant(sql, org.timezone, local);
      const code = async (local: string, provider: string | null = null) =>
        (await book(sql, org, await at(local), { service: visit, provider })).code;
      assert.equal(await code("2030-12-25 10:00"), "outside_hours");
      assert.equal(await code("2030-12-25 10:00", org.providers.Adams), "outside_hours");
      assert.equal(await code("2030-12-26 10:00"), "outside_hours");
      assert.equal(await code("2030-12-24 10:00"), "outside_hours", "the org's hours replace 9-12");
      assert.equal(await code("2030-12-24 09:00", org.providers.Baker), "outside_hours");
      assert.equal(await code("2030-12-28 10:00", org.providers.Baker), "outside_hours");
      const saturday = await book(sql, org, await at("2030-12-28 10:00"), { service: visit });
      assert.equal(saturday.appointment?.provider_name, "Adams");
      const onCall = await book(sql, org, await at("2030-12-31 13:00"), { service: visit });
      assert.equal(onCall.appointment?.provider_name, "Adams");
      const evening = await book(sql, org, await at("2030-12-24 16:00"), { service: visit });
      assert.equal(evening.ok, true);
      assert.equal(evening.appointment?.starts_at, "2030-12-24T21:00:00.000Z", "16:00 EST");
    },
  );

  await t.step(
    "buffers: a 30-minute booking with a 15-minute buffer blocks its provider's next start " +
      "inside the buffer, not another provider's",
    async () => {
      const morning = { 1: [["09:00", "12:00"]] } as WeeklyHours;
      const org = await createScheduledOrg(sql, {
        providers: [{ name: "Adams", hours: morning }, { name: "Baker", hours: morning }],
        services: [{ name: "Exam", minutes: 30, bufferAfter: 15, providers: ["Adams", "Baker"] }],
        rules: { slotGranularityMinutes: 15 },
      });
      const { Adams: adams, Baker: baker } = org.providers;
      const exam = org.services.Exam;
      const at = (local: string) => instant(sql, org.timezone, `2030-03-18 ${local}`);
      const bookAt = async (local: string, provider: string) =>
        await book(sql, org, await at(local), { service: exam, provider });
      const free = async (provider: string) =>
        (await search(sql, org, exam, "2030-03-18", { provider })).map((slot) => slot.slice(0, 5));

      const first = await bookAt("09:00", adams);
      assert.equal(first.ok, true);
      assert.equal(
        first.appointment?.ends_at,
        "2030-03-18T13:30:00.000Z",
        "the buffer is not billed",
      );
      const [row] = await sql`select buffer_after_minutes, blocked_until from public.appointments
        where id = ${first.appointment!.id}`;
      assert.equal(row.buffer_after_minutes, 15);
      assert.equal(row.blocked_until.toISOString(), "2030-03-18T13:45:00.000Z");

      assert.equal((await free(adams))[0], "09:45", "09:15 and 09:30 fall in 09:00-09:45");
      assert.equal((await free(baker))[0], "09:00");
      assert.equal((await bookAt("09:30", adams)).code, "slot_taken", "inside Adams's buffer");
      assert.equal((await bookAt("09:15", adams)).code, "slot_taken");
      assert.equal((await bookAt("09:30", baker)).ok, true, "Baker is free then");
      // A new booking's own buffer may not run into the next appointment either.
      assert.equal((await bookAt("11:15", adams)).ok, true);
      assert.equal((await bookAt("10:45", adams)).code, "slot_taken", "its buffer ends 11:30");
      assert.equal((await bookAt("09:45", adams)).ok, true, "starting as the buffer ends is fine");
      assert.deepEqual(await free(adams), ["10:30"], "10:30-11:15 touches the 11:15 booking");
      assert.deepEqual(await free(baker), ["10:15", "10:30", "10:45", "11:00", "11:15", "11:30"]);
      assert.equal(await overlappingPairs(sql, org.id), 0);

      // The exclusion constraint itself counts the buffer.
      const client = await createClient(sql, org.id);
      await assert.rejects(
        sql`insert into public.appointments
          (org_id, client_id, provider_id, service_id, buffer_after_minutes, starts_at, ends_at)
          values (${org.id}, ${client.id}, ${adams}, ${exam}, 15,
            '2030-03-18T15:00:00Z', '2030-03-18T15:15:00Z')`,
        { code: "23P01" },
        "11:00-11:15 EDT plus its buffer runs into the 11:15 booking",
      );
    },
  );

  await t.step(
    "min notice and horizon: search leaves those slots out and booking answers too_soon, " +
      "too_far or in_past (relative to now, on a local day in Tokyo)",
    async () => {
      const timezone = "Asia/Tokyo"; // UTC+9 all year: local days differ from UTC days.
      const org = await createScheduledOrg(sql, {
        timezone,
        providers: [{ name: "Kai", hours: week(EVERY_DAY, ["00:00", "24:00"]) }],
        services: [{ name: "Consult", minutes: 30, providers: ["Kai"] }],
        rules: { minNoticeMinutes: 120, bookingHorizonDays: 3 },
      });
      const consult = org.services.Consult;
      const [{ today }] = await sql<{ today: string }[]>`
        select to_char(now() at time zone ${timezone}, 'YYYY-MM-DD') as today`;
      const localMidnight = (date: string) => Date.parse(`${date}T00:00:00+09:00`);

      const soon = await searchRows(sql, org, consult, today, { days: 2 });
      const now = soon[0].now.getTime();
      const expected: string[] = [];
      for (let i = 0; i < 96; i++) {
        const start = localMidnight(today) + i * 30 * MINUTE;
        if (start > now + 120 * MINUTE) expected.push(new Date(start).toISOString());
      }
      assert.deepEqual(soon.map((slot) => slot.startsAt), expected, "nothing within 2 hours");

      const late = await searchRows(sql, org, consult, addDays(today, 2), { days: 4 });
      assert.deepEqual(
        [...new Set(late.map((slot) => slot.local.slice(0, 10)))],
        [addDays(today, 2), addDays(today, 3)],
        "nothing after the third local day from today",
      );
      assert.equal(late.length, 96);

      const [{ dbNow }] = await sql<{ dbNow: Date }[]>`select now() as "dbNow"`;
      const half = 30 * MINUTE;
      const tooSoon = new Date(ceilTo(dbNow.getTime() + MINUTE, half)).toISOString();
      const bookable = new Date(ceilTo(dbNow.getTime() + 125 * MINUTE, half)).toISOString();
      const past = new Date(ceilTo(dbNow.getTime() - 90 * MINUTE, half)).toISOString();
      const lastBookable = new Date(localMidnight(addDays(today, 4)) - half).toISOString();
      const tooFar = new Date(localMidnight(addDays(today, 4))).toISOString();

      const code = async (startsAt: string) => (await book(sql, org, startsAt)).code;
      assert.equal(await code(tooSoon), "too_soon");
      assert.equal(await code(past), "in_past");
      assert.equal(await code(tooFar), "too_far");
      assert.equal((await book(sql, org, lastBookable)).ok, true, "23:30 on the third day ahead");
      const booked = await book(sql, org, bookable);
      assert.equal(booked.ok, true, `bookable at ${bookable}`);

      const moveCode = booked.appointment!.confirmation_code;
      assert.equal((await reschedule(sql, booked.callSid, moveCode, tooSoon)).code, "too_soon");
      assert.equal((await reschedule(sql, booked.callSid, moveCode, tooFar)).code, "too_far");
      assert.equal((await reschedule(sql, booked.callSid, moveCode, past)).code, "in_past");
      const moved = await reschedule(
        sql,
        booked.callSid,
        moveCode,
        new Date(Date.parse(lastBookable) - half).toISOString(),
      );
      assert.equal(moved.ok, true);

      // Without rules the same slots open again.
      await setBookingRules(sql, org.id, { minNoticeMinutes: 0, bookingHorizonDays: null });
      assert.equal((await book(sql, org, tooSoon)).ok, true);
      assert.equal((await book(sql, org, tooFar)).ok, true);
    },
  );

  await t.step(
    "DST weeks with provider hours offer no duplicate and no non-existent local start " +
      "(New York 2030-03-10 and 2030-11-03, London 2030-03-31 and 2030-10-27)",
    async () => {
      const org = await createScheduledOrg(sql, {
        providers: [
          {
            name: "Adams",
            hours: {
              ...week(WEEKDAYS, ["09:00", "10:00"]),
              7: [["00:00", "04:00"], ["12:00", "13:00"]],
            },
          },
          { name: "Baker", hours: { 7: [["01:00", "03:30"]] } },
        ],
        services: [{ name: "Checkup", minutes: 30, providers: ["Adams", "Baker"] }],
      });
      const checkup = org.services.Checkup;
      const utc = (slots: Slot[]) =>
        slots.map((slot) => `${slot.startsAt.slice(11, 16)} ${slot.provider}`);

      // Sunday 2030-03-10: 02:00 EST jumps to 03:00 EDT, so 02:00 and 02:30 do not exist.
      const spring = await searchRows(sql, org, checkup, "2030-03-10");
      assert.deepEqual(utc(spring), [
        "05:00 Adams", // 00:00 EST
        "05:30 Adams",
        "06:00 Adams", // 01:00 EST
        "06:00 Baker",
        "06:30 Adams",
        "06:30 Baker",
        "07:00 Adams", // 03:00 EDT
        "07:00 Baker",
        "07:30 Adams",
        "16:00 Adams", // 12:00 EDT
        "16:30 Adams",
      ]);
      assert.ok(spring.every((slot) => !slot.local.includes(" 02:")), "no 02:xx on 2030-03-10");
      assertCleanGrid(spring);

      // Sunday 2030-11-03: 02:00 EDT falls back to 01:00 EST; 01:00 and 01:30 are offered once.
      const autumn = await searchRows(sql, org, checkup, "2030-11-03");
      assert.deepEqual(utc(autumn), [
        "04:00 Adams", // 00:00 EDT
        "04:30 Adams",
        "06:00 Adams", // 01:00 EST
        "06:00 Baker",
        "06:30 Adams",
        "06:30 Baker",
        "07:00 Adams",
        "07:00 Baker",
        "07:30 Adams",
        "07:30 Baker",
        "08:00 Adams",
        "08:00 Baker",
        "08:30 Adams",
        "17:00 Adams", // 12:00 EST
        "17:30 Adams",
      ]);
      assertCleanGrid(autumn);

      // The whole weeks around the changes, in one search each.
      for (const [from, adams, baker] of [["2030-03-08", 18, 3], ["2030-11-01", 20, 5]] as const) {
        const weekSlots = await searchRows(sql, org, checkup, from, { days: 7 });
        assertCleanGrid(weekSlots);
        assert.equal(weekSlots.filter((slot) => slot.provider === "Adams").length, adams, from);
        assert.equal(weekSlots.filter((slot) => slot.provider === "Baker").length, baker, from);
        assert.ok(weekSlots.every((slot) => /:(00|30)$/.test(slot.local)), "on the local grid");
      }
      const mondays = await searchRows(sql, org, checkup, "2030-03-08", { days: 4 });
      assert.equal(mondays[0].startsAt, "2030-03-08T14:00:00.000Z", "Friday 09:00 EST");
      assert.equal(mondays.at(-2)?.startsAt, "2030-03-11T13:00:00.000Z", "Monday 09:00 EDT");

      // Booking agrees: the first 01:00 (EDT) is not a slot, the repeated one (EST) is.
      const code = async (startsAt: string, provider: string | null = null) =>
        (await book(sql, org, startsAt, { service: checkup, provider })).code ?? "ok";
      assert.equal(await code("2030-11-03T05:00:00Z"), "outside_hours");
      assert.equal(await code("2030-11-03T06:00:00Z", org.providers.Baker), "ok");
      assert.equal(await code("2030-03-10T07:00:00Z", org.providers.Baker), "ok", "03:00 EDT");
      assert.equal(await code("2030-03-10T07:00:00Z", org.providers.Baker), "slot_taken");

      const london = await createScheduledOrg(sql, {
        timezone: "Europe/London",
        providers: [{ name: "Evans", hours: { 7: [["00:00", "03:00"]] } }],
        services: [{ name: "Hour", minutes: 60, providers: ["Evans"] }],
      });
      const hour = london.services.Hour;
      // 01:00 GMT jumps to 02:00 BST on 2030-03-31: local 01:00 does not exist.
      const londonSpring = await searchRows(sql, london, hour, "2030-03-31");
      assert.deepEqual(londonSpring.map((slot) => [slot.local.slice(11), slot.startsAt]), [
        ["00:00", "2030-03-31T00:00:00.000Z"],
        ["02:00", "2030-03-31T01:00:00.000Z"],
      ]);
      assertCleanGrid(londonSpring);
      // 02:00 BST falls back to 01:00 GMT on 2030-10-27: local 01:00 is offered once, as GMT.
      const londonAutumn = await searchRows(sql, london, hour, "2030-10-27");
      assert.deepEqual(londonAutumn.map((slot) => [slot.local.slice(11), slot.startsAt]), [
        ["00:00", "2030-10-26T23:00:00.000Z"],
        ["01:00", "2030-10-27T01:00:00.000Z"],
        ["02:00", "2030-10-27T02:00:00.000Z"],
      ]);
      assertCleanGrid(londonAutumn);
    },
  );

  await t.step(
    "search_availability() lists slots by time then provider name, only p_provider's when " +
      "given, and nothing for an unknown, inactive or foreign service",
    async () => {
      const monday = { 1: [["09:00", "10:00"]] } as WeeklyHours;
      const org = await createScheduledOrg(sql, {
        // Created out of name order, so the order below comes from the names.
        providers: [
          { name: "Zed", hours: { 1: [["09:00", "10:00"], ["10:00", "11:00"]] } },
          { name: "Amy", hours: monday },
          { name: "Moe", hours: monday },
          { name: "Old", hours: monday, active: false },
        ],
        services: [
          { name: "Checkup", minutes: 30, providers: ["Zed", "Amy", "Moe", "Old"] },
          { name: "Xray", minutes: 30, providers: ["Zed"] },
          { name: "Retired", minutes: 30, providers: ["Amy"], active: false },
        ],
      });
      const { Checkup: checkup, Xray: xray, Retired: retired } = org.services;
      assert.deepEqual(await search(sql, org, checkup, "2030-03-11"), [
        "09:00 Amy",
        "09:00 Moe",
        "09:00 Zed",
        "09:30 Amy",
        "09:30 Moe",
        "09:30 Zed",
        "10:00 Zed",
        "10:30 Zed",
      ]);
      const rows = await searchRows(sql, org, checkup, "2030-03-11");
      assert.equal(rows[0].providerId, org.providers.Amy);
      assert.deepEqual(
        await search(sql, org, checkup, "2030-03-11", { provider: org.providers.Moe }),
        ["09:00 Moe", "09:30 Moe"],
      );
      assert.deepEqual(
        await search(sql, org, xray, "2030-03-11", { provider: org.providers.Zed }),
        ["09:00 Zed", "09:30 Zed", "10:00 Zed", "10:30 Zed"],
      );
      assert.deepEqual(
        await search(sql, org, xray, "2030-03-11", { provider: org.providers.Amy }),
        [],
        "Amy does not offer X-rays",
      );
      assert.deepEqual(
        await search(sql, org, checkup, "2030-03-11", { provider: org.providers.Old }),
        [],
        "inactive provider",
      );
      assert.deepEqual(
        await search(sql, org, checkup, "2030-03-11", { provider: crypto.randomUUID() }),
        [],
      );
      assert.deepEqual(await search(sql, org, crypto.randomUUID(), "2030-03-11"), [], "unknown");
      assert.deepEqual(await search(sql, org, null, "2030-03-11"), [], "no service");
      assert.deepEqual(await search(sql, org, retired, "2030-03-11"), [], "inactive service");
      const other = await createScheduledOrg(sql, {
        providers: [{ name: "Amy", hours: monday }],
        services: [{ name: "Checkup", minutes: 30, providers: ["Amy"] }],
      });
      assert.deepEqual(await search(sql, org, other.services.Checkup, "2030-03-11"), [], "foreign");
      assert.deepEqual(
        await search(sql, other, checkup, "2030-03-11", { provider: org.providers.Amy }),
        [],
      );

      // Several days: each day's slots in the same order, days in order.
      const twoMondays = await search(sql, org, checkup, "2030-03-11", { days: 8, withDate: true });
      assert.equal(twoMondays.length, 16);
      assert.equal(twoMondays[8], "2030-03-18 09:00 Amy");
      assert.equal(twoMondays[15], "2030-03-18 10:30 Zed");

      // A booked slot leaves the list for its provider only.
      assert.equal(
        (await book(sql, org, "2030-03-11T13:00:00Z", {
          service: checkup,
          provider: org.providers.Moe,
        })).ok,
        true,
      );
      assert.deepEqual((await search(sql, org, checkup, "2030-03-11")).slice(0, 3), [
        "09:00 Amy",
        "09:00 Zed",
        "09:30 Amy",
      ]);
    },
  );

  await t.step(
    "book_appointment() books the provider asked for, else the first free provider offering " +
      "the service, and refuses unknown or mismatched services and providers",
    async () => {
      const morning = { 1: [["09:00", "12:00"]] } as WeeklyHours;
      const org = await createScheduledOrg(sql, {
        providers: [
          { name: "Moe", hours: morning },
          { name: "Amy", hours: morning },
          { name: "Zed", hours: morning },
          { name: "Old", hours: morning, active: false },
          { name: "Nia", hours: { 1: [["11:00", "12:00"]] } },
        ],
        services: [
          {
            name: "Checkup",
            minutes: 30,
            providers: ["Amy", "Moe", "Old", "Nia"],
            isDefault: true,
          },
          { name: "Xray", minutes: 20, providers: ["Zed"] },
          { name: "Retired", minutes: 30, providers: ["Amy"], active: false },
        ],
      });
      const { Amy: amy, Moe: moe, Zed: zed, Old: old } = org.providers;
      const { Checkup: checkup, Xray: xray, Retired: retired } = org.services;
      const at = (local: string) => instant(sql, org.timezone, `2030-03-11 ${local}`);

      const withMoe = await book(sql, org, await at("09:00"), { service: checkup, provider: moe });
      assert.equal(withMoe.ok, true);
      assert.deepEqual(
        {
          provider_id: withMoe.appointment?.provider_id,
          provider_name: withMoe.appointment?.provider_name,
          service_id: withMoe.appointment?.service_id,
          service_name: withMoe.appointment?.service_name,
          starts_at: withMoe.appointment?.starts_at,
          ends_at: withMoe.appointment?.ends_at,
          status: withMoe.appointment?.status,
        },
        {
          provider_id: moe,
          provider_name: "Moe",
          service_id: checkup,
          service_name: "Checkup",
          starts_at: "2030-03-11T13:00:00.000Z",
          ends_at: "2030-03-11T13:30:00.000Z",
          status: "booked",
        },
      );
      const [row] = await sql`select provider_id, service_id, buffer_after_minutes
        from public.appointments where id = ${withMoe.appointment!.id}`;
      assert.deepEqual({ ...row }, {
        provider_id: moe,
        service_id: checkup,
        buffer_after_minutes: 0,
      });
      const [call] =
        await sql`select outcome from public.calls where call_sid = ${withMoe.callSid}`;
      assert.equal(call.outcome, "booked");

      // Without a provider: the first free one offering the service, by name.
      const providerAt = async (local: string, service: string | null = checkup) => {
        const result = await book(sql, org, await at(local), { service });
        return result.ok ? result.appointment!.provider_name : result.code;
      };
      assert.equal(await providerAt("09:00"), "Amy", "Moe is taken at 09:00");
      assert.equal(await providerAt("09:00"), "slot_taken", "Zed and Old do not count");
      assert.equal(await providerAt("09:30"), "Amy");
      assert.equal(await providerAt("09:30"), "Moe");
      assert.equal(await providerAt("09:30"), "slot_taken");
      assert.equal(await providerAt("11:00"), "Amy");
      assert.equal(await providerAt("11:00"), "Moe");
      assert.equal(await providerAt("11:00"), "Nia", "Nia works from 11:00");
      assert.equal(await providerAt("10:00", null), "Amy", "no service: the default one");
      assert.equal(await providerAt("09:20", xray), "Zed", "X-rays step by 20 minutes");
      assert.equal(await providerAt("09:30", xray), "outside_hours");

      const code = async (options: { service?: string | null; provider?: string | null }) =>
        (await book(sql, org, await at("10:30"), options)).code;
      assert.equal(await code({ service: checkup, provider: zed }), "unknown_provider");
      assert.equal(await code({ provider: zed }), "unknown_provider", "default service");
      assert.equal(await code({ service: checkup, provider: old }), "unknown_provider", "inactive");
      assert.equal(
        await code({ service: checkup, provider: crypto.randomUUID() }),
        "unknown_provider",
      );
      assert.equal(await code({ service: xray, provider: amy }), "unknown_provider");
      assert.equal(await code({ service: retired }), "unknown_service", "inactive service");
      assert.equal(await code({ service: crypto.randomUUID() }), "unknown_service");
      assert.equal(
        (await book(sql, org, await at("09:00"), { service: checkup, provider: org.providers.Nia }))
          .code,
        "outside_hours",
        "Nia starts at 11:00",
      );
      assert.equal(
        (await book(sql, org, await at("09:10"), { service: checkup })).code,
        "outside_hours",
        "not on the slot grid",
      );

      const other = await createScheduledOrg(sql, {
        providers: [{ name: "Amy", hours: morning }],
        services: [{ name: "Checkup", minutes: 30, providers: ["Amy"] }],
      });
      assert.equal(await code({ service: other.services.Checkup }), "unknown_service");
      assert.equal(
        await code({ service: checkup, provider: other.providers.Amy }),
        "unknown_provider",
      );
      // Booked at the other org's number, this org's service is foreign there.
      assert.equal(
        (await book(sql, other, await at("10:30"), { service: checkup })).code,
        "unknown_service",
      );
      // No default service: the only active one is used; with two, none can be chosen.
      assert.equal(
        (await book(sql, other, await at("10:30"))).appointment?.service_name,
        "Checkup",
      );
      const twoServices = await createScheduledOrg(sql, {
        providers: [{ name: "Amy", hours: morning }],
        services: [
          { name: "Checkup", minutes: 30, providers: ["Amy"] },
          { name: "Cleaning", minutes: 60, providers: ["Amy"] },
        ],
      });
      assert.equal((await book(sql, twoServices, await at("10:00"))).code, "unknown_service");
      assert.equal(await overlappingPairs(sql, org.id), 0);
    },
  );

  await t.step(
    "an org made the old way (org_business_hours) books with the four-argument call, gets a " +
      "default provider and an 'Appointment' service",
    async () => {
      const org = await createOrg(sql, { name: "Legacy Clinic", appointmentMinutes: 30 });
      const providers = await sql`select id, name, is_default from public.providers
        where org_id = ${org.id}`;
      assert.deepEqual(providers.map((row) => [row.name, row.is_default]), [[
        "Legacy Clinic",
        true,
      ]]);
      const services = await sql`select id, name, duration_minutes, buffer_after_minutes, is_default
        from public.services where org_id = ${org.id}`;
      assert.deepEqual(
        services.map((
          row,
        ) => [row.name, row.duration_minutes, row.buffer_after_minutes, row.is_default]),
        [["Appointment", 30, 0, true]],
      );
      const [{ count: links }] = await sql`select count(*)::int as count
        from public.service_providers where service_id = ${services[0].id}
          and provider_id = ${providers[0].id}`;
      assert.equal(links, 1);
      const [{ count: hours }] = await sql`select count(*)::int as count
        from public.provider_hours where provider_id = ${providers[0].id}`;
      assert.equal(hours, 5, "Monday to Friday");

      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const result = await rpc<BookingResult>(sql, "book_appointment", [
        callSid,
        "Ada",
        "Lovelace",
        "2030-03-11T13:00:00Z",
      ]);
      assert.equal(result.ok, true);
      assert.equal(result.appointment?.provider_id, providers[0].id);
      assert.equal(result.appointment?.provider_name, "Legacy Clinic");
      assert.equal(result.appointment?.service_name, "Appointment");
      assert.equal(result.appointment?.ends_at, "2030-03-11T13:30:00.000Z");
      const rival = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      assert.equal(
        (await rpc(sql, "book_appointment", [rival, "Bo", "Ek", "2030-03-11T13:00:00Z"])).code,
        "slot_taken",
      );
      const [{ count }] = await sql`select count(*)::int as count from public.available_slots(
        ${org.id}, '2030-03-11')`;
      assert.equal(count, 15, "16 slots, one taken");

      // A writer that predates providers inserts without them: the default ones are filled in.
      const client = await createClient(sql, org.id);
      const [legacy] = await sql`insert into public.appointments
          (org_id, client_id, starts_at, ends_at)
        values (${org.id}, ${client.id}, '2030-03-11T14:00:00Z', '2030-03-11T14:30:00Z')
        returning provider_id, service_id, blocked_until`;
      assert.equal(legacy.provider_id, providers[0].id);
      assert.equal(legacy.service_id, services[0].id);
      assert.equal(legacy.blocked_until.toISOString(), "2030-03-11T14:30:00.000Z");
    },
  );

  await t.step({
    name: `50 bookings without a provider racing for one hour with 2 providers give one booking ` +
      `per provider and 48 slot_taken${raceNote}`,
    fn: async () => {
      const hours = week(WEEKDAYS, ["09:00", "17:00"]);
      const org = await createScheduledOrg(sql, {
        providers: [{ name: "Amy", hours }, { name: "Moe", hours }],
        services: [{ name: "Visit", minutes: 60, providers: ["Amy", "Moe"] }],
      });
      const startsAt = "2030-03-14T14:00:00Z"; // Thursday 10:00 EDT
      const callSids: string[] = [];
      for (let i = 0; i < 50; i++) {
        callSids.push(await startCall(sql, { to: org.phoneNumber, from: randomPhone() }));
      }
      const args = (sid: string, i: number) => [sid, `Caller${i}`, "Race", startsAt, null, null];
      let results: BookingResult[];
      if (concurrent) {
        const pool = postgres(db.url, { max: 50, onnotice: () => {} });
        try {
          // Open every connection first so the bookings really overlap.
          await Promise.all(callSids.map(() => pool`select 1`));
          results = await Promise.all(
            callSids.map((sid, i) => rpc<BookingResult>(pool, "book_appointment", args(sid, i))),
          );
        } finally {
          await pool.end();
        }
      } else {
        results = [];
        for (const [i, sid] of callSids.entries()) {
          results.push(await rpc<BookingResult>(sql, "book_appointment", args(sid, i)));
        }
      }
      const won = results.filter((result) => result.ok);
      assert.deepEqual(won.map((result) => result.appointment!.provider_name).sort(), [
        "Amy",
        "Moe",
      ]);
      assert.equal(results.filter((result) => result.code === "slot_taken").length, 48);
      const rows = await sql`select p.name from public.appointments a
        join public.providers p on p.id = a.provider_id
        where a.org_id = ${org.id} and a.status = 'booked' order by p.name`;
      assert.deepEqual(rows.map((row) => row.name), ["Amy", "Moe"]);
    },
  });

  await t.step(
    `a reschedule racing a new booking for the same provider and time never double-books, ` +
      `20 rounds${raceNote}`,
    async () => {
      const hours = week(EVERY_DAY, ["09:00", "17:00"]);
      const org = await createScheduledOrg(sql, {
        providers: [{ name: "Amy", hours }, { name: "Moe", hours }],
        services: [{ name: "Visit", minutes: 60, bufferAfter: 15, providers: ["Amy", "Moe"] }],
        rules: { slotGranularityMinutes: 60 },
      });
      const amy = org.providers.Amy;
      const pool = concurrent ? postgres(db.url, { max: 4, onnotice: () => {} }) : null;
      const wins = { reschedule: 0, booking: 0 };
      try {
        for (let round = 0; round < 20; round++) {
          const day = addDays("2030-06-03", round);
          const from = await instant(sql, org.timezone, `${day} 09:00`);
          const target = await instant(sql, org.timezone, `${day} 13:00`);
          const mover = await book(sql, org, from, { provider: amy });
          assert.equal(mover.ok, true);
          const code = mover.appointment!.confirmation_code;
          const rivalSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
          const moveArgs = [mover.callSid, code, target, null, amy];
          const bookArgs = [rivalSid, "Rival", "Lee", target, null, amy];
          let moved: BookingResult;
          let booked: BookingResult;
          if (pool) {
            [moved, booked] = await Promise.all([
              rpc<BookingResult>(pool, "reschedule_appointment", moveArgs),
              rpc<BookingResult>(pool, "book_appointment", bookArgs),
            ]);
          } else if (round % 2 === 0) {
            moved = await rpc<BookingResult>(sql, "reschedule_appointment", moveArgs);
            booked = await rpc<BookingResult>(sql, "book_appointment", bookArgs);
          } else {
            booked = await rpc<BookingResult>(sql, "book_appointment", bookArgs);
            moved = await rpc<BookingResult>(sql, "reschedule_appointment", moveArgs);
          }
          assert.equal(Number(moved.ok) + Number(booked.ok), 1, `round ${round}: one winner`);
          const loser = moved.ok ? booked : moved;
          assert.equal(loser.code, "slot_taken", `round ${round}`);
          if (moved.ok) wins.reschedule++;
          else wins.booking++;
          const rows = await sql`select starts_at from public.appointments
            where org_id = ${org.id} and provider_id = ${amy} and status = 'booked'
              and starts_at = ${target}`;
          assert.equal(rows.length, 1, `round ${round}: Amy holds ${target} once`);
          const [{ starts_at: moverStart }] = await sql`select starts_at from public.appointments
            where id = ${mover.appointment!.id}`;
          assert.equal(moverStart.toISOString(), moved.ok ? target : from);
        }
      } finally {
        await pool?.end();
      }
      assert.equal(wins.reschedule + wins.booking, 20);
      assert.equal(await overlappingPairs(sql, org.id), 0);
      const [{ moe }] = await sql`select count(*)::int as moe from public.appointments
        where org_id = ${org.id} and provider_id = ${org.providers.Moe}`;
      assert.equal(moe, 0, "both asked for Amy: Moe is never used instead");
    },
  );

  await t.step(
    "reschedule_appointment() keeps the current provider when free, else moves to another " +
      "offering the service, and may change the service",
    async () => {
      const morning = { 1: [["09:00", "12:00"]] } as WeeklyHours;
      const org = await createScheduledOrg(sql, {
        providers: [{ name: "Amy", hours: morning }, { name: "Moe", hours: morning }],
        services: [
          { name: "Checkup", minutes: 30, providers: ["Amy", "Moe"], isDefault: true },
          { name: "Cleaning", minutes: 60, bufferAfter: 15, providers: ["Amy"] },
        ],
        rules: { slotGranularityMinutes: 15 },
      });
      const { Amy: amy, Moe: moe } = org.providers;
      const { Checkup: checkup, Cleaning: cleaning } = org.services;
      const at = (local: string) => instant(sql, org.timezone, `2030-03-11 ${local}`);
      const first = await book(sql, org, await at("09:00"), { service: checkup, provider: amy });
      assert.equal((await book(sql, org, await at("10:00"), { provider: amy })).ok, true);
      const code = first.appointment!.confirmation_code;
      const move = (local: string, options: { service?: string; provider?: string } = {}) =>
        at(local).then((startsAt) => reschedule(sql, first.callSid, code, startsAt, options));

      const toMoe = await move("10:00");
      assert.equal(toMoe.appointment?.provider_name, "Moe", "Amy is busy at 10:00");
      assert.equal(toMoe.appointment?.confirmation_code, code);
      const staysWithMoe = await move("11:00");
      assert.equal(staysWithMoe.appointment?.provider_name, "Moe", "the current provider first");
      assert.equal(
        (await move("11:00", { provider: moe, service: cleaning })).code,
        "unknown_provider",
      );
      assert.equal((await move("11:00", { service: crypto.randomUUID() })).code, "unknown_service");
      assert.equal((await move("10:00", { provider: amy })).code, "slot_taken");
      const cleaningMove = await move("11:00", { service: cleaning });
      assert.equal(cleaningMove.ok, true);
      assert.deepEqual(
        [
          cleaningMove.appointment?.service_name,
          cleaningMove.appointment?.provider_name,
          cleaningMove.appointment?.ends_at,
        ],
        ["Cleaning", "Amy", "2030-03-11T16:00:00.000Z"],
      );
      const [row] = await sql`select buffer_after_minutes, blocked_until from public.appointments
        where id = ${first.appointment!.id}`;
      assert.equal(row.buffer_after_minutes, 15);
      assert.equal(row.blocked_until.toISOString(), "2030-03-11T16:15:00.000Z");
      // Without naming the service the appointment's own (Cleaning) is kept.
      const earlier = await move("10:30");
      assert.deepEqual(
        [earlier.appointment?.service_name, earlier.appointment?.ends_at],
        ["Cleaning", "2030-03-11T15:30:00.000Z"],
      );
      const back = await move("09:00", { service: checkup });
      assert.deepEqual(
        [back.appointment?.service_name, back.appointment?.provider_name],
        ["Checkup", "Amy"],
      );
      assert.equal(await overlappingPairs(sql, org.id), 0);
    },
  );

  await t.step(
    "lookup_caller() returns services with provider names, providers, booking rules, the " +
      "preferred and last provider, and upcoming appointments with service and provider",
    async () => {
      const morning = { 1: [["09:00", "12:00"]] } as WeeklyHours;
      const org = await createScheduledOrg(sql, {
        providers: [
          { name: "Moe", hours: morning },
          { name: "Amy", hours: morning },
          { name: "Old", hours: morning, active: false },
        ],
        services: [
          {
            name: "Checkup",
            minutes: 30,
            providers: ["Moe", "Amy", "Old"],
            isDefault: true,
            instructions: "Please arrive 10 minutes early.",
          },
          { name: "Cleaning", minutes: 60, bufferAfter: 15, providers: ["Moe"] },
          { name: "Retired", minutes: 30, providers: ["Amy"], active: false },
        ],
        rules: { minNoticeMinutes: 60, slotGranularityMinutes: 15 },
      });
      const { Amy: amy, Moe: moe } = org.providers;
      const { Checkup: checkup, Cleaning: cleaning } = org.services;
      const client = await createClient(sql, org.id, { firstName: "Ada", lastName: "King" });
      await sql`update public.clients set preferred_provider_id = ${moe} where id = ${client.id}`;
      // Past appointments (written directly: booking refuses the past). The cancelled one is
      // later but does not count.
      await sql`insert into public.appointments
          (org_id, client_id, provider_id, service_id, starts_at, ends_at, status)
        values
          (${org.id}, ${client.id}, ${amy}, ${checkup}, '2025-01-06T14:00:00Z',
            '2025-01-06T14:30:00Z', 'booked'),
          (${org.id}, ${client.id}, ${moe}, ${checkup}, '2025-02-03T14:00:00Z',
            '2025-02-03T14:30:00Z', 'cancelled')`;
      const cleaningBooked = await book(sql, org, "2030-03-11T13:00:00Z", {
        service: cleaning,
        caller: client.phone,
      });
      const checkupBooked = await book(sql, org, "2030-03-18T14:00:00Z", {
        provider: amy,
        caller: client.phone,
      });
      assert.equal(cleaningBooked.ok && checkupBooked.ok, true);

      const result = await rpc<LookupResult>(sql, "lookup_caller", [
        org.phoneNumber,
        client.phone,
      ]);
      assert.deepEqual(result.org.services, [
        {
          id: checkup,
          name: "Checkup",
          duration_minutes: 30,
          buffer_after_minutes: 0,
          instructions: "Please arrive 10 minutes early.",
          is_default: true,
          providers: ["Amy", "Moe"],
        },
        {
          id: cleaning,
          name: "Cleaning",
          duration_minutes: 60,
          buffer_after_minutes: 15,
          instructions: "",
          is_default: false,
          providers: ["Moe"],
        },
      ]);
      assert.deepEqual(result.org.providers, [{ id: amy, name: "Amy" }, { id: moe, name: "Moe" }]);
      assert.deepEqual(result.org.booking_rules, {
        min_notice_minutes: 60,
        booking_horizon_days: null,
        slot_granularity_minutes: 15,
      });
      assert.equal(result.org.id, org.id);
      assert.deepEqual(result.client?.preferred_provider, { id: moe, name: "Moe" });
      assert.deepEqual(result.last_provider, { id: amy, name: "Amy" });
      assert.deepEqual(
        result.upcoming_appointments.map((
          appointment: Appointment,
        ) => [
          appointment.starts_at,
          appointment.service_name,
          appointment.provider_name,
          appointment.service_id,
          appointment.provider_id,
        ]),
        [
          ["2030-03-11T13:00:00.000Z", "Cleaning", "Moe", cleaning, moe],
          ["2030-03-18T14:00:00.000Z", "Checkup", "Amy", checkup, amy],
        ],
      );
      assert.equal(
        result.upcoming_appointments[0].confirmation_code,
        cleaningBooked.appointment!.confirmation_code,
      );

      // An inactive preferred provider is not offered; a stranger has neither.
      await sql`update public.providers set active = false where id = ${moe}`;
      const later = await rpc<LookupResult>(sql, "lookup_caller", [
        org.phoneNumber,
        client.phone,
      ]);
      assert.equal(later.client?.preferred_provider, null);
      assert.deepEqual(later.org.providers, [{ id: amy, name: "Amy" }]);
      assert.deepEqual(
        later.org.services.map((service: { providers: string[] }) => service.providers),
        [
          ["Amy"],
          [],
        ],
      );
      const stranger = await rpc<LookupResult>(sql, "lookup_caller", [
        org.phoneNumber,
        randomPhone(),
      ]);
      assert.equal(stranger.client, null);
      assert.equal(stranger.last_provider, null);
      assert.deepEqual(stranger.upcoming_appointments, []);
    },
  );

  await t.step(
    "claim_sms() confirmations name the service and the provider ({service}, {provider})",
    async () => {
      const morning = { 1: [["09:00", "12:00"]] } as WeeklyHours;
      const setup = {
        providers: [{ name: "Dr. Moe", hours: morning }],
        services: [{ name: "Cleaning", minutes: 60, providers: ["Dr. Moe"] }],
      };
      const org = await createScheduledOrg(sql, { name: "Bayside Dental", ...setup });
      const [{ template }] = await sql`select sms_confirmation_template as template
        from public.orgs where id = ${org.id}`;
      assert.match(template, /\{service\}/);
      assert.match(template, /\{provider\}/);
      const booked = await book(sql, org, "2030-03-11T13:00:00Z", { firstName: "Ada" });
      const claim = await rpc<{ claimed: boolean; body: string }>(sql, "claim_sms", [
        booked.callSid,
        "confirmation",
        null,
      ]);
      assert.equal(claim.claimed, true);
      assert.equal(
        claim.body,
        "Hi Ada, your Cleaning with Dr. Moe at Bayside Dental is booked for Monday, March 11 " +
          `at 9:00 AM. Confirmation code: ${booked.appointment!.confirmation_code}.`,
      );

      const custom = await createScheduledOrg(sql, {
        ...setup,
        smsConfirmationTemplate: "{provider} sees you for {service} on {when} ({code}).",
      });
      const customBooked = await book(sql, custom, "2030-03-11T14:00:00Z");
      const customClaim = await rpc<{ body: string }>(sql, "claim_sms", [
        customBooked.callSid,
        "confirmation",
        null,
      ]);
      assert.equal(
        customClaim.body,
        `Dr. Moe sees you for Cleaning on Monday, March 11 at 10:00 AM ` +
          `(${customBooked.appointment!.confirmation_code}).`,
      );
    },
  );

  await t.step(
    "legacy mirror: editing org_business_hours edits the default provider's week, and " +
      "orgs.appointment_minutes the default service's length",
    async () => {
      const org = await createOrg(sql);
      const [provider] = await sql`select id from public.providers
        where org_id = ${org.id} and is_default`;
      const [service] = await sql`select id from public.services
        where org_id = ${org.id} and is_default`;
      const mirroredWeek = async () =>
        (await sql`select iso_weekday, to_char(opens_at, 'HH24:MI') as opens,
            to_char(closes_at, 'HH24:MI') as closes
          from public.provider_hours where provider_id = ${provider.id}
          order by iso_weekday, opens_at`).map((row) =>
          `${row.iso_weekday} ${row.opens}-${row.closes}`
        );
      assert.deepEqual(await mirroredWeek(), WEEKDAYS.map((day) => `${day} 09:00-17:00`));

      await sql`update public.org_business_hours set closes_at = '12:00'
        where org_id = ${org.id} and iso_weekday = 1`;
      await sql`insert into public.org_business_hours (org_id, iso_weekday, opens_at, closes_at)
        values (${org.id}, 1, '13:00', '15:00'), (${org.id}, 6, '10:00', '12:00')`;
      await sql`delete from public.org_business_hours where org_id = ${org.id} and iso_weekday = 2`;
      assert.deepEqual(await mirroredWeek(), [
        "1 09:00-12:00",
        "1 13:00-15:00",
        "3 09:00-17:00",
        "4 09:00-17:00",
        "5 09:00-17:00",
        "6 10:00-12:00",
      ]);
      const [{ count: providerCount }] = await sql`select count(*)::int as count
        from public.providers where org_id = ${org.id}`;
      assert.equal(providerCount, 1, "still the one default provider");
      assert.deepEqual(await search(sql, org, service.id, "2030-03-12"), [], "Tuesday is off");
      assert.equal((await search(sql, org, service.id, "2030-03-16")).length, 4, "Saturday");

      await sql`update public.orgs set appointment_minutes = 45 where id = ${org.id}`;
      const [{ duration }] = await sql`select duration_minutes as duration from public.services
        where id = ${service.id}`;
      assert.equal(duration, 45);
      assert.deepEqual(
        (await search(sql, org, service.id, "2030-03-11")).map((slot) => slot.slice(0, 5)),
        ["09:00", "09:45", "10:30", "11:15", "13:00", "13:45"],
      );
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const booked = await rpc<BookingResult>(sql, "book_appointment", [
        callSid,
        "Ada",
        "Lee",
        "2030-03-11T13:45:00Z",
      ]);
      assert.equal(booked.appointment?.ends_at, "2030-03-11T14:30:00.000Z", "45 minutes");
      const [{ count: slotCount }] = await sql`select count(*)::int as count
        from public.available_slots(${org.id}, '2030-03-11')`;
      assert.equal(slotCount, 5);
    },
  );
}

/** Edge cases found by probing the RPCs; each failed before its fix in the migrations. */
async function edgeCaseSteps(t: Deno.TestContext, db: TestDatabase, concurrent: boolean) {
  const sql = db.sql;
  await t.step(
    "search_availability() and book_appointment() keep an appointment inside the hours in real " +
      "time on the day clocks go forward",
    async () => {
      // Sunday 2030-03-10 in New York: 00:00-03:00 local is 05:00Z-07:00Z (02:00 EST -> 03:00 EDT).
      const org = await createScheduledOrg(sql, {
        providers: [{ name: "Night", hours: { 7: [["00:00", "03:00"]] } }],
        services: [{ name: "Long", minutes: 120, providers: ["Night"] }],
        rules: { slotGranularityMinutes: 60 },
      });
      const rows = await sql<{ starts_at: Date; ends_at: Date }[]>`
        select starts_at, ends_at from public.search_availability(
          ${org.id}, ${org.services.Long}, '2030-03-10', 1)`;
      // 01:00 EST + 2 h is 04:00 EDT, past the 03:00 close: only the 00:00 start fits.
      assert.deepEqual(rows.map((row) => row.starts_at.toISOString()), [
        "2030-03-10T05:00:00.000Z",
      ]);
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const late = await rpc<BookingResult>(sql, "book_appointment", [
        callSid,
        "Ann",
        "Lee",
        "2030-03-10T06:00:00Z",
      ]);
      assert.equal(late.code, "outside_hours");
    },
  );

  await t.step(
    "legacy hours: an org whose provider or service already has the default's name adopts it",
    async () => {
      const org = await createOrg(sql, {
        name: `Clash ${crypto.randomUUID().slice(0, 8)}`,
        hours: [],
      });
      await sql`delete from public.providers where org_id = ${org.id}`;
      await sql`delete from public.services where org_id = ${org.id}`;
      const [named] = await sql<
        { name: string }[]
      >`select name from public.orgs where id = ${org.id}`;
      await sql`insert into public.providers (org_id, name) values (${org.id}, ${named.name.toUpperCase()})`;
      await sql`insert into public.services (org_id, name, duration_minutes)
        values (${org.id}, 'appointment', 30)`;
      await sql`insert into public.org_business_hours (org_id, iso_weekday, opens_at, closes_at)
        values (${org.id}, 1, '09:00', '12:00')`;
      const providers = await sql`select is_default from public.providers where org_id = ${org.id}`;
      assert.deepEqual(providers.map((row) => row.is_default), [true]);
      const services = await sql`select is_default from public.services where org_id = ${org.id}`;
      assert.deepEqual(services.map((row) => row.is_default), [true]);
      const [{ count }] = await sql`select count(*)::int from public.provider_hours
        where org_id = ${org.id}`;
      assert.equal(count, 1);
    },
  );

  await t.step(
    `legacy hours: two transactions editing one org's week both succeed${
      concurrent ? "" : " (one after another: PGlite has one session)"
    }`,
    async () => {
      const org = await createOrg(sql);
      const edit = (day: number, opens: string) =>
        sql.begin(async (tx) => {
          await tx`update public.org_business_hours set opens_at = ${opens}
            where org_id = ${org.id} and iso_weekday = ${day}`;
          await tx`select pg_sleep(0.05)`;
        });
      if (concurrent) {
        const pool = postgres(db.url, { max: 2, onnotice: () => {} });
        try {
          await Promise.all([
            pool.begin(async (tx) => {
              await tx`update public.org_business_hours set opens_at = '08:00'
                where org_id = ${org.id} and iso_weekday = 1`;
              await tx`select pg_sleep(0.05)`;
            }),
            pool.begin(async (tx) => {
              await tx`update public.org_business_hours set opens_at = '10:00'
                where org_id = ${org.id} and iso_weekday = 2`;
              await tx`select pg_sleep(0.05)`;
            }),
          ]);
        } finally {
          await pool.end();
        }
      } else {
        await edit(1, "08:00");
        await edit(2, "10:00");
      }
      const hours = await sql<{ iso_weekday: number; opens_at: string }[]>`
        select h.iso_weekday, h.opens_at from public.provider_hours h
        join public.providers p on p.id = h.provider_id and p.is_default
        where h.org_id = ${org.id} and h.iso_weekday in (1, 2) order by 1`;
      assert.deepEqual(hours.map((row) => `${row.iso_weekday} ${row.opens_at}`), [
        "1 08:00:00",
        "2 10:00:00",
      ]);
    },
  );
}

Deno.test({
  name: "scheduling on PostgreSQL (DATABASE_URL)",
  ignore: !Deno.env.get("DATABASE_URL"),
  async fn(t) {
    const db = await createTestDatabase();
    try {
      await schedulingSteps(t, db, true);
      await edgeCaseSteps(t, db, true);
    } finally {
      await db.drop();
    }
  },
});

Deno.test("scheduling on embedded PGlite", async (t) => {
  const db = await createTestDatabase({ serverUrl: null });
  try {
    await schedulingSteps(t, db, false);
    await edgeCaseSteps(t, db, false);
  } finally {
    await db.drop();
  }
});
