/**
 * Booking RPCs on a real database: slot generation across time zones and DST changes, the
 * booking rules and their stable error codes, and 50 bookings racing for one slot.
 * @module
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { createTestDatabase } from "../support/test_db.ts";
import { createClient, createOrg, randomCallSid, randomPhone, rpc, startCall } from "./fixtures.ts";

const EVERY_DAY_NIGHT_HOURS: [number, string, string][] = [1, 2, 3, 4, 5, 6, 7].map((
  day,
) => [day, "00:00", "06:00"]);
const CODE_PATTERN = /^[ACDEFHJKMNPRTUVWXY346789]{6}$/;

type Sql = postgres.Sql;

async function slots(sql: Sql, orgId: string, day: string, fn = "public.available_slots") {
  const rows = await sql.unsafe<{ starts_at: Date; ends_at: Date }[]>(
    `select starts_at, ends_at from ${fn}($1, $2) order by starts_at`,
    [orgId, day],
  );
  return rows.map((row) => [row.starts_at.toISOString(), row.ends_at.toISOString()]);
}

function starts(list: string[][]): string[] {
  return list.map(([start]) => start.slice(11, 16));
}

function assertNoOverlap(list: string[][]): void {
  for (let i = 1; i < list.length; i++) {
    assert.ok(list[i - 1][1] <= list[i][0], `${list[i - 1]} overlaps ${list[i]}`);
  }
}

Deno.test("booking RPCs", async (t) => {
  const db = await createTestDatabase();
  const sql = db.sql;
  try {
    await t.step(
      "available_slots() cuts business hours into slots on the org's clock",
      async () => {
        const org = await createOrg(sql);
        // Friday 2030-03-08 is still EST (UTC-5); Monday 2030-03-11 is EDT (UTC-4).
        const friday = await slots(sql, org.id, "2030-03-08");
        const monday = await slots(sql, org.id, "2030-03-11");
        assert.equal(friday.length, 16);
        assert.deepEqual(friday[0], ["2030-03-08T14:00:00.000Z", "2030-03-08T14:30:00.000Z"]);
        assert.deepEqual(friday[15], ["2030-03-08T21:30:00.000Z", "2030-03-08T22:00:00.000Z"]);
        assert.equal(monday.length, 16);
        assert.deepEqual(monday[0], ["2030-03-11T13:00:00.000Z", "2030-03-11T13:30:00.000Z"]);
        assert.deepEqual(await slots(sql, org.id, "2030-03-09"), [], "closed on Saturday");
      },
    );

    await t.step("available_slots() uses the appointment length and every interval", async () => {
      const org = await createOrg(sql, {
        appointmentMinutes: 45,
        hours: [[1, "09:00", "12:00"], [1, "13:00", "14:40"]],
      });
      const list = await slots(sql, org.id, "2030-03-11");
      // 09:00-12:00 holds four 45-minute slots; 13:00-14:40 holds two (14:30 would end at 15:15).
      assert.deepEqual(starts(list), ["13:00", "13:45", "14:30", "15:15", "17:00", "17:45"]);
      assert.deepEqual(list[0], ["2030-03-11T13:00:00.000Z", "2030-03-11T13:45:00.000Z"]);
    });

    await t.step("slot_grid() drops the local hour skipped in New York on 2026-03-08", async () => {
      const org = await createOrg(sql, { hours: EVERY_DAY_NIGHT_HOURS });
      const grid = await slots(sql, org.id, "2026-03-08", "private.slot_grid");
      // 00:00-02:00 EST is 05:00-07:00Z; 02:00-02:59 does not exist; 03:00-06:00 EDT is 07:00-10:00Z.
      assert.deepEqual(starts(grid), [
        "05:00",
        "05:30",
        "06:00",
        "06:30",
        "07:00",
        "07:30",
        "08:00",
        "08:30",
        "09:00",
        "09:30",
      ]);
      assert.equal(grid.at(-1)?.[1], "2026-03-08T10:00:00.000Z");
      assertNoOverlap(grid);
    });

    await t.step(
      "slot_grid() offers the repeated hour once in New York on 2026-11-01",
      async () => {
        const org = await createOrg(sql, { hours: EVERY_DAY_NIGHT_HOURS });
        const grid = await slots(sql, org.id, "2026-11-01", "private.slot_grid");
        // 00:00 EDT = 04:00Z; the ambiguous 01:00 and 01:30 resolve to EST (06:00Z, 06:30Z).
        assert.deepEqual(starts(grid), [
          "04:00",
          "04:30",
          "06:00",
          "06:30",
          "07:00",
          "07:30",
          "08:00",
          "08:30",
          "09:00",
          "09:30",
          "10:00",
          "10:30",
        ]);
        assertNoOverlap(grid);
      },
    );

    await t.step("available_slots() is DST-correct on future change days", async () => {
      const newYork = await createOrg(sql, { hours: EVERY_DAY_NIGHT_HOURS });
      const spring = await slots(sql, newYork.id, "2030-03-10");
      assert.equal(spring.length, 10);
      assert.equal(spring[0][0], "2030-03-10T05:00:00.000Z");
      assert.equal(spring[4][0], "2030-03-10T07:00:00.000Z", "03:00 EDT follows 01:30 EST");
      const autumn = await slots(sql, newYork.id, "2030-11-03");
      assert.equal(autumn.length, 12);
      assertNoOverlap(autumn);

      const london = await createOrg(sql, {
        timezone: "Europe/London",
        hours: [[7, "00:00", "04:00"], [1, "09:00", "17:00"], [5, "09:00", "17:00"]],
      });
      // Clocks go from 01:00 GMT to 02:00 BST on Sunday 2030-03-31.
      assert.deepEqual(starts(await slots(sql, london.id, "2030-03-31")), [
        "00:00",
        "00:30",
        "01:00",
        "01:30",
        "02:00",
        "02:30",
      ]);
      // Friday 2030-10-25 is BST (UTC+1); Monday 2030-10-28 is GMT.
      assert.equal((await slots(sql, london.id, "2030-10-25"))[0][0], "2030-10-25T08:00:00.000Z");
      assert.equal((await slots(sql, london.id, "2030-10-28"))[0][0], "2030-10-28T09:00:00.000Z");

      const sydney = await createOrg(sql, {
        timezone: "Australia/Sydney",
        hours: [[7, "00:00", "06:00"], [1, "09:00", "17:00"], [5, "09:00", "17:00"]],
      });
      // Local days start the previous UTC day: AEDT is UTC+11 until Sunday 2030-04-07.
      assert.equal((await slots(sql, sydney.id, "2030-04-05"))[0][0], "2030-04-04T22:00:00.000Z");
      assert.equal((await slots(sql, sydney.id, "2030-04-08"))[0][0], "2030-04-07T23:00:00.000Z");
      // Clocks go from 02:00 AEST to 03:00 AEDT on Sunday 2030-10-06.
      const sydneySpring = await slots(sql, sydney.id, "2030-10-06");
      assert.equal(sydneySpring.length, 10);
      assert.equal(sydneySpring[0][0], "2030-10-05T14:00:00.000Z");
      assert.equal(sydneySpring[4][0], "2030-10-05T16:00:00.000Z");
      assertNoOverlap(sydneySpring);
    });

    await t.step("available_slots() leaves out slots that have already started", async () => {
      const org = await createOrg(sql, {
        timezone: "UTC",
        hours: [1, 2, 3, 4, 5, 6, 7].map((day) => [day, "00:00", "24:00"]),
      });
      const [{ today, now }] = await sql<{ today: string; now: Date }[]>`
        select to_char(now() at time zone 'UTC', 'YYYY-MM-DD') as today, now() as now`;
      const grid = await slots(sql, org.id, today, "private.slot_grid");
      const available = await slots(sql, org.id, today);
      assert.equal(grid.length, 48);
      assert.ok(available.every(([start]) => new Date(start) > now));
      assert.equal(available.length, grid.filter(([start]) => new Date(start) > now).length);
      assert.ok(available.length < grid.length, "the slot at 00:00 today has started");
    });

    await t.step("book_appointment() books a slot for the caller and marks the call", async () => {
      const org = await createOrg(sql);
      const caller = randomPhone();
      const callSid = await startCall(sql, { to: org.phoneNumber, from: caller });
      const result = await rpc<{ ok: boolean; appointment: Record<string, string> }>(
        sql,
        "book_appointment",
        [callSid, " Ada ", "Lovelace", "2030-03-11T13:30:00Z"],
      );
      assert.equal(result.ok, true);
      assert.equal(result.appointment.starts_at, "2030-03-11T13:30:00.000Z");
      assert.equal(result.appointment.ends_at, "2030-03-11T14:00:00.000Z");
      assert.equal(result.appointment.status, "booked");
      assert.match(result.appointment.confirmation_code, CODE_PATTERN);
      const [client] = await sql`
        select first_name, last_name from public.clients where org_id = ${org.id} and phone = ${caller}`;
      assert.deepEqual({ ...client }, { first_name: "Ada", last_name: "Lovelace" });
      const [call] = await sql`select outcome from public.calls where call_sid = ${callSid}`;
      assert.equal(call.outcome, "booked");
      assert.ok(!starts(await slots(sql, org.id, "2030-03-11")).includes("13:30"));
    });

    await t.step("book_appointment() keeps the names of a known client", async () => {
      const org = await createOrg(sql);
      const client = await createClient(sql, org.id, { firstName: "Grace", lastName: null });
      const callSid = await startCall(sql, { to: org.phoneNumber, from: client.phone });
      const result = await rpc(sql, "book_appointment", [
        callSid,
        "Gracie",
        "Hopper",
        "2030-03-11T14:00:00Z",
      ]);
      assert.equal(result.ok, true);
      const [row] =
        await sql`select first_name, last_name from public.clients where id = ${client.id}`;
      assert.deepEqual({ ...row }, { first_name: "Grace", last_name: "Hopper" });
    });

    await t.step("book_appointment() returns stable codes for every refusal", async () => {
      const org = await createOrg(sql);
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const code = async (args: unknown[]) => (await rpc(sql, "book_appointment", args)).code;
      assert.equal(await code([callSid, "Ann", "Lee", "2030-03-11T13:10:00Z"]), "outside_hours");
      assert.equal(await code([callSid, "Ann", "Lee", "2030-03-11T12:30:00Z"]), "outside_hours");
      assert.equal(await code([callSid, "Ann", "Lee", "2030-03-11T21:00:00Z"]), "outside_hours");
      assert.equal(await code([callSid, "Ann", "Lee", "2030-03-09T15:00:00Z"]), "outside_hours");
      assert.equal(await code([callSid, "Ann", "Lee", "2020-03-09T13:00:00Z"]), "in_past");
      assert.equal(await code([callSid, "  ", "Lee", "2030-03-11T13:00:00Z"]), "invalid_input");
      assert.equal(await code([callSid, "Ann", "Lee", null]), "invalid_input");
      assert.equal(
        await code([randomCallSid(), "Ann", "Lee", "2030-03-11T13:00:00Z"]),
        "unknown_call",
      );

      const strayCall = await startCall(sql, { to: randomPhone(), from: randomPhone() });
      assert.equal(await code([strayCall, "Ann", "Lee", "2030-03-11T13:00:00Z"]), "unknown_org");
      const withheld = await startCall(sql, { to: org.phoneNumber, from: "+266696687" });
      assert.equal(await code([withheld, "Ann", "Lee", "2030-03-11T13:00:00Z"]), "invalid_input");
      const anonymous = await startCall(sql, { to: org.phoneNumber, from: "anonymous" });
      assert.equal(await code([anonymous, "Ann", "Lee", "2030-03-11T13:00:00Z"]), "invalid_input");

      assert.equal(
        (await rpc(sql, "book_appointment", [callSid, "Ann", "Lee", "2030-03-11T13:00:00Z"])).ok,
        true,
      );
      const other = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      assert.equal(await code([other, "Bo", "Ek", "2030-03-11T13:00:00Z"]), "slot_taken");
    });

    await t.step("the exclusion constraint forbids overlapping active appointments", async () => {
      const org = await createOrg(sql, { appointmentMinutes: 60 });
      const client = await createClient(sql, org.id);
      const insert = (startsAt: string, endsAt: string, status = "booked") =>
        sql`insert into public.appointments (org_id, client_id, starts_at, ends_at, status)
          values (${org.id}, ${client.id}, ${startsAt}, ${endsAt}, ${status})`;
      await insert("2030-03-11T13:00:00Z", "2030-03-11T14:00:00Z");
      await assert.rejects(insert("2030-03-11T13:30:00Z", "2030-03-11T14:30:00Z"), {
        code: "23P01",
      });
      await insert("2030-03-11T14:00:00Z", "2030-03-11T15:00:00Z"); // touching is fine
      await insert("2030-03-11T13:30:00Z", "2030-03-11T14:30:00Z", "cancelled");
      const other = await createOrg(sql);
      const otherClient = await createClient(sql, other.id);
      await sql`insert into public.appointments (org_id, client_id, starts_at, ends_at)
        values (${other.id}, ${otherClient.id}, '2030-03-11T13:00:00Z', '2030-03-11T14:00:00Z')`;
    });

    await t.step("cancel_appointment() touches only the caller's own appointments", async () => {
      const org = await createOrg(sql);
      const caller = randomPhone();
      const bookingCall = await startCall(sql, { to: org.phoneNumber, from: caller });
      const booked = await rpc<{ appointment: { confirmation_code: string } }>(
        sql,
        "book_appointment",
        [bookingCall, "Cy", "Young", "2030-03-12T13:00:00Z"],
      );
      const code = booked.appointment.confirmation_code;
      const stranger = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      assert.equal((await rpc(sql, "cancel_appointment", [stranger, code])).code, "not_found");
      const otherOrg = await createOrg(sql);
      const sameCallerElsewhere = await startCall(sql, { to: otherOrg.phoneNumber, from: caller });
      assert.equal(
        (await rpc(sql, "cancel_appointment", [sameCallerElsewhere, code])).code,
        "not_found",
      );
      assert.equal((await rpc(sql, "cancel_appointment", [stranger, ""])).code, "invalid_input");

      const laterCall = await startCall(sql, { to: org.phoneNumber, from: caller });
      const spoken = `${code.slice(0, 3).toLowerCase()}-${code.slice(3)}`;
      const cancelled = await rpc<{ ok: boolean; appointment: { status: string } }>(
        sql,
        "cancel_appointment",
        [laterCall, spoken],
      );
      assert.equal(cancelled.ok, true);
      assert.equal(cancelled.appointment.status, "cancelled");
      assert.equal((await rpc(sql, "cancel_appointment", [laterCall, code])).code, "not_found");
      assert.ok(starts(await slots(sql, org.id, "2030-03-12")).includes("13:00"), "slot is free");
      const [call] = await sql`select outcome from public.calls where call_sid = ${laterCall}`;
      assert.equal(call.outcome, "cancelled");
    });

    await t.step(
      "reschedule_appointment() moves the caller's appointment and keeps its code",
      async () => {
        const org = await createOrg(sql, { appointmentMinutes: 60 });
        const caller = randomPhone();
        const callSid = await startCall(sql, { to: org.phoneNumber, from: caller });
        const first = await rpc<{ appointment: { id: string; confirmation_code: string } }>(
          sql,
          "book_appointment",
          [callSid, "Di", "Prince", "2030-03-13T13:00:00Z"],
        );
        const code = first.appointment.confirmation_code;
        const rival = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
        await rpc(sql, "book_appointment", [rival, "Ed", "Wood", "2030-03-13T15:00:00Z"]);

        const reschedule = (sid: string, startsAt: string) =>
          rpc<{ ok: boolean; code?: string; appointment?: Record<string, string> }>(
            sql,
            "reschedule_appointment",
            [sid, code, startsAt],
          );
        assert.equal((await reschedule(callSid, "2030-03-13T15:00:00Z")).code, "slot_taken");
        assert.equal((await reschedule(callSid, "2030-03-13T13:30:00Z")).code, "outside_hours");
        assert.equal((await reschedule(callSid, "2021-03-13T13:00:00Z")).code, "in_past");
        assert.equal((await reschedule(rival, "2030-03-13T16:00:00Z")).code, "not_found");
        // One hour later overlaps the appointment's own current time: allowed.
        const moved = await reschedule(callSid, "2030-03-13T14:00:00Z");
        assert.equal(moved.ok, true);
        assert.equal(moved.appointment?.id, first.appointment.id);
        assert.equal(moved.appointment?.confirmation_code, code);
        assert.equal(moved.appointment?.starts_at, "2030-03-13T14:00:00.000Z");
        assert.equal(moved.appointment?.ends_at, "2030-03-13T15:00:00.000Z");
      },
    );

    await t.step(
      "book_appointment() lets exactly one of 50 concurrent bookings win a slot",
      async () => {
        const org = await createOrg(sql);
        const callSids: string[] = [];
        for (let i = 0; i < 50; i++) {
          callSids.push(await startCall(sql, { to: org.phoneNumber, from: randomPhone() }));
        }
        const pool = postgres(db.url, { max: 50, onnotice: () => {} });
        try {
          // Open every connection first so the bookings really overlap.
          await Promise.all(callSids.map(() => pool`select 1`));
          const results = await Promise.all(
            callSids.map((sid, i) =>
              rpc(pool as unknown as Sql, "book_appointment", [
                sid,
                `Caller${i}`,
                "Race",
                "2030-03-14T13:00:00Z",
              ])
            ),
          );
          const codes = results.map((result) => (result.ok ? "ok" : String(result.code)));
          assert.equal(codes.filter((code) => code === "ok").length, 1);
          assert.equal(codes.filter((code) => code === "slot_taken").length, 49);
        } finally {
          await pool.end();
        }
        const [{ count }] = await sql`select count(*)::int as count from public.appointments
        where org_id = ${org.id} and status = 'booked'`;
        assert.equal(count, 1);
      },
    );
  } finally {
    await db.drop();
  }
});
