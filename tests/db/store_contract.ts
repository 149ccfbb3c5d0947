/**
 * The `Store` contract, run against each adapter on a real database: every method, mapped from
 * the RPCs' snake_case jsonb to the camelCase types of `store/types.ts`.
 * @module
 */
import assert from "node:assert/strict";
import { StoreError } from "../../supabase/functions/_shared/store/rpc.ts";
import type { Store } from "../../supabase/functions/_shared/store/types.ts";
import { createTestDatabase, type TestDatabase } from "../support/test_db.ts";
import {
  createClient,
  createOrg,
  HARBOR_DENTAL,
  randomCallSid,
  randomPhone,
  startCall,
} from "./fixtures.ts";

/** Builds the adapter under test on a prepared, seeded test database. */
export type MakeStore = (db: TestDatabase) => Store | Promise<Store>;

/** The first Monday at least 3 days ahead, `YYYY-MM-DD` in New York. */
function nextMonday(): string {
  for (let days = 3; days < 11; days++) {
    const date = new Date(Date.now() + days * 86_400_000);
    const local = new Intl.DateTimeFormat("en-CA", {
      timeZone: "America/New_York",
      weekday: "short",
    }).format(date);
    if (local === "Mon") {
      return new Intl.DateTimeFormat("en-CA", { timeZone: "America/New_York" }).format(date);
    }
  }
  throw new Error("Cannot find next Monday");
}

/**
 * Registers one Deno test, `name`, whose steps check every `Store` method.
 * @param name test name, e.g. `createPostgresStore() implements the store contract`
 * @param makeStore builds the adapter on the test database
 */
export function runStoreContract(name: string, makeStore: MakeStore): void {
  Deno.test(name, async (t) => {
    const db = await createTestDatabase({ seed: true });
    const sql = db.sql;
    const store = await makeStore(db);
    try {
      await t.step(
        "lookupCaller() returns the org, the known caller and VAD settings",
        async () => {
          const context = await store.lookupCaller(
            HARBOR_DENTAL.phoneNumber,
            HARBOR_DENTAL.janeDoePhone,
          );
          assert.ok(context);
          assert.deepEqual(context.client, {
            id: "00000000-0000-4000-8000-000000000101",
            firstName: "Jane",
            lastName: "Doe",
            phone: HARBOR_DENTAL.janeDoePhone,
            preferredProvider: { id: HARBOR_DENTAL.drLeeId, name: "Dr. Lee" },
          });
          const {
            greeting,
            persona,
            smsRecoveryTemplate,
            emergencyKeywords,
            services,
            providers,
            bookingRules,
            ...org
          } = context.org;
          assert.deepEqual(org, {
            id: HARBOR_DENTAL.id,
            name: "Harbor Dental",
            timezone: "America/New_York",
            appointmentMinutes: 30,
            transferNumber: "+15550100999",
            maxCallSeconds: 600,
            voice: "alloy",
            languages: ["en"],
            vad: { threshold: 0.6, silenceDurationMs: 400, prefixPaddingMs: 300 },
            phoneNumber: HARBOR_DENTAL.phoneNumber,
          });
          assert.deepEqual(providers, [
            { id: HARBOR_DENTAL.drLeeId, name: "Dr. Lee" },
            { id: HARBOR_DENTAL.samOrtizId, name: "Sam Ortiz" },
          ]);
          assert.deepEqual(
            services.map((service) => [service.name, service.durationMinutes, service.providers]),
            [
              ["Check-up", 30, ["Dr. Lee"]],
              ["Cleaning", 30, ["Dr. Lee", "Sam Ortiz"]],
              ["New patient exam", 60, ["Dr. Lee"]],
            ],
          );
          const exam = services.find((service) => service.name === "New patient exam");
          assert.equal(exam?.bufferAfterMinutes, 15);
          assert.match(exam?.instructions ?? "", /arrive 10 minutes early/);
          assert.equal(services.find((service) => service.isDefault)?.name, "Cleaning");
          assert.deepEqual(bookingRules, {
            minNoticeMinutes: 60,
            bookingHorizonDays: 90,
            slotGranularityMinutes: 30,
          });
          assert.equal(context.lastProvider, null);
          assert.match(greeting, /Harbor Dental/);
          assert.ok(persona.length > 0);
          assert.match(smsRecoveryTemplate, /\{first_name\}/);
          assert.ok(emergencyKeywords.includes("emergency"));
          assert.equal(await store.lookupCaller(randomPhone(), HARBOR_DENTAL.janeDoePhone), null);
        },
      );

      await t.step("lookupCaller() lists upcoming appointments as ISO UTC strings", async () => {
        const org = await createOrg(sql);
        const caller = randomPhone();
        const callSid = await startCall(sql, { to: org.phoneNumber, from: caller });
        await store.bookAppointment({
          callSid,
          firstName: "Kim",
          lastName: "Lee",
          startsAt: "2030-03-11T09:00:00-04:00",
        });
        await store.recordCallEvent({
          callSid,
          idempotencyKey: `${callSid}:completed`,
          kind: "status_callback",
          status: "completed",
        });
        const context = await store.lookupCaller(org.phoneNumber, caller);
        assert.equal(context?.client?.firstName, "Kim");
        assert.equal(context?.upcomingAppointments.length, 1);
        assert.equal(context?.upcomingAppointments[0].startsAt, "2030-03-11T13:00:00.000Z");
        assert.equal(context?.upcomingAppointments[0].endsAt, "2030-03-11T13:30:00.000Z");
        assert.equal(context?.upcomingAppointments[0].serviceName, "Appointment");
        assert.equal(context?.lastCallOutcome, "booked");
        const stranger = await store.lookupCaller(org.phoneNumber, randomPhone());
        assert.equal(stranger?.client, null);
        assert.deepEqual(stranger?.upcomingAppointments, []);
      });

      await t.step("recordCallEvent() is idempotent and never moves backwards", async () => {
        const org = await createOrg(sql);
        const callSid = randomCallSid();
        const first = await store.recordCallEvent({
          callSid,
          idempotencyKey: `${callSid}:1`,
          kind: "call_incoming",
          traceId: "trace-contract",
          from: randomPhone(),
          to: org.phoneNumber,
          status: "ringing",
          payload: { CallStatus: "ringing" },
        });
        assert.deepEqual(first, {
          inserted: true,
          status: "ringing",
          outcome: null,
          orgId: org.id,
        });
        const completed = await store.recordCallEvent({
          callSid,
          idempotencyKey: `${callSid}:2`,
          kind: "status_callback",
          status: "completed",
          durationSeconds: 12.4,
          occurredAt: new Date().toISOString(),
        });
        assert.deepEqual(completed, {
          inserted: true,
          status: "completed",
          outcome: "completed",
          orgId: org.id,
        });
        const late = await store.recordCallEvent({
          callSid,
          idempotencyKey: `${callSid}:3`,
          kind: "status_callback",
          status: "ringing",
        });
        assert.equal(late.status, "completed");
        const replay = await store.recordCallEvent({
          callSid,
          idempotencyKey: `${callSid}:1`,
          kind: "call_incoming",
          status: "ringing",
        });
        assert.equal(replay.inserted, false);
        const call = await store.getCall(callSid);
        assert.equal(call?.traceId, "trace-contract");
      });

      await t.step("appendCallTurns() counts only new turns", async () => {
        const org = await createOrg(sql);
        const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
        const turns = [
          { sequence: 0, speaker: "assistant" as const, text: "Hello!", startMs: 0, endMs: 820.6 },
          { sequence: 1, speaker: "caller" as const, text: "Hi." },
        ];
        assert.equal(await store.appendCallTurns(callSid, turns), 2);
        assert.equal(await store.appendCallTurns(callSid, turns), 0);
        assert.equal(await store.appendCallTurns(callSid, []), 0);
        const rows = await sql`select t.end_ms from public.call_turns t
          join public.calls c on c.id = t.call_id where c.call_sid = ${callSid} order by sequence`;
        assert.deepEqual(rows.map((row) => row.end_ms), [821, null]);
      });

      await t.step("recordCallMetrics() and getCall() round-trip a call", async () => {
        const org = await createOrg(sql);
        const client = await createClient(sql, org.id, { firstName: "Ivy" });
        const callSid = await startCall(sql, { to: org.phoneNumber, from: client.phone });
        await store.recordCallMetrics(callSid, {
          lookupMs: 3.7,
          firstAudioMs: 640,
          bargeIns: 2,
          toolCalls: 1,
          modelInputTokens: 1200,
          modelOutputTokens: 300,
          streamSeconds: 42.5,
        });
        const [row] = await sql`select lookup_ms, barge_ins, stream_seconds::float8 as seconds
          from public.calls where call_sid = ${callSid}`;
        assert.deepEqual({ ...row }, { lookup_ms: 4, barge_ins: 2, seconds: 42.5 });
        assert.deepEqual(await store.getCall(callSid), {
          callSid,
          orgId: org.id,
          traceId: null,
          from: client.phone,
          to: org.phoneNumber,
          status: "in-progress",
          outcome: null,
          clientFirstName: "Ivy",
        });
        assert.equal(await store.getCall(randomCallSid()), null);
      });

      await t.step(
        "searchAvailability() returns each provider's free slots in time order",
        async () => {
          // The seed's Harbor Dental on a Monday: Dr. Lee and Sam both offer cleanings from 09:00.
          const date = nextMonday();
          const slots = await store.searchAvailability({
            orgId: HARBOR_DENTAL.id,
            serviceId: HARBOR_DENTAL.cleaningId,
            fromDay: date,
            days: 1,
          });
          const firstTwo = slots.slice(0, 2).map((slot) => [slot.providerName, slot.startsAt]);
          assert.equal(firstTwo[0][1], firstTwo[1][1], "both providers free at opening");
          assert.deepEqual(firstTwo.map(([name]) => name), ["Dr. Lee", "Sam Ortiz"]);
          assert.match(slots[0].startsAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00\.000Z$/);
          const onlySam = await store.searchAvailability({
            orgId: HARBOR_DENTAL.id,
            serviceId: HARBOR_DENTAL.cleaningId,
            fromDay: date,
            days: 1,
            providerId: HARBOR_DENTAL.samOrtizId,
          });
          assert.ok(onlySam.length > 0);
          assert.ok(onlySam.every((slot) => slot.providerId === HARBOR_DENTAL.samOrtizId));
        },
      );

      await t.step("availableSlots() returns ISO UTC strings", async () => {
        const org = await createOrg(sql, { hours: [[1, "09:00", "10:00"]] });
        assert.deepEqual(await store.availableSlots(org.id, "2030-03-11"), [
          { startsAt: "2030-03-11T13:00:00.000Z", endsAt: "2030-03-11T13:30:00.000Z" },
          { startsAt: "2030-03-11T13:30:00.000Z", endsAt: "2030-03-11T14:00:00.000Z" },
        ]);
        assert.deepEqual(await store.availableSlots(org.id, "2030-03-12"), []);
      });

      await t.step(
        "bookAppointment(), rescheduleAppointment() and cancelAppointment()",
        async () => {
          const org = await createOrg(sql);
          const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
          const booked = await store.bookAppointment({
            callSid,
            firstName: "Uma",
            lastName: "Thurman",
            startsAt: "2030-03-11T14:00:00.000Z",
          });
          assert.equal(booked.ok, true);
          if (!booked.ok) return;
          assert.deepEqual(Object.keys(booked.appointment).sort(), [
            "confirmationCode",
            "endsAt",
            "id",
            "providerId",
            "providerName",
            "serviceId",
            "serviceName",
            "startsAt",
            "status",
          ]);
          assert.equal(booked.appointment.serviceName, "Appointment");
          assert.equal(booked.appointment.startsAt, "2030-03-11T14:00:00.000Z");
          assert.equal(booked.appointment.status, "booked");
          const code = booked.appointment.confirmationCode;
          assert.deepEqual(
            await store.bookAppointment({
              callSid,
              firstName: "Uma",
              lastName: "Thurman",
              startsAt: "2030-03-11T14:00:00.000Z",
            }),
            { ok: false, code: "slot_taken" },
          );
          assert.deepEqual(
            await store.bookAppointment({
              callSid: randomCallSid(),
              firstName: "Uma",
              lastName: "Thurman",
              startsAt: "2030-03-11T14:30:00.000Z",
            }),
            { ok: false, code: "unknown_call" },
          );
          const moved = await store.rescheduleAppointment({
            callSid,
            confirmationCode: code,
            startsAt: "2030-03-11T15:00:00.000Z",
          });
          assert.equal(moved.ok && moved.appointment.startsAt, "2030-03-11T15:00:00.000Z");
          assert.equal(moved.ok && moved.appointment.confirmationCode, code);
          const cancelled = await store.cancelAppointment({ callSid, confirmationCode: code });
          assert.equal(cancelled.ok && cancelled.appointment.status, "cancelled");
          assert.deepEqual(await store.cancelAppointment({ callSid, confirmationCode: code }), {
            ok: false,
            code: "not_found",
          });
        },
      );

      await t.step("claimSms(), recordSmsResult() and updateSmsStatus()", async () => {
        const org = await createOrg(sql, { smsRecoveryTemplate: "Hi {first_name}!" });
        const caller = randomPhone();
        const callSid = await startCall(sql, { to: org.phoneNumber, from: caller });
        const claim = await store.claimSms(callSid, "recovery");
        assert.equal(claim.claimed, true);
        if (!claim.claimed) return;
        assert.deepEqual({ ...claim, smsId: "" }, {
          claimed: true,
          smsId: "",
          to: caller,
          from: org.phoneNumber,
          body: "Hi there!",
        });
        assert.deepEqual(await store.claimSms(callSid, "recovery"), {
          claimed: false,
          reason: "already_claimed",
        });
        assert.equal((await store.claimSms(callSid, "confirmation", "See you")).claimed, true);
        const messageSid = `SM${crypto.randomUUID().replaceAll("-", "")}`;
        await store.recordSmsResult(claim.smsId, { messageSid, status: "queued" });
        assert.equal(await store.updateSmsStatus(messageSid, "delivered"), true);
        assert.equal(await store.updateSmsStatus(messageSid, "sent"), true);
        assert.equal(await store.updateSmsStatus("SMnope", "sent", "30003"), false);
        const [row] = await sql`select status from public.sms_messages where id = ${claim.smsId}`;
        assert.equal(row.status, "delivered");
      });

      await t.step(
        "saveCallContinuation(), takeCallHandover() and claimCallContinuation() are single use",
        async () => {
          const org = await createOrg(sql);
          const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
          const state = { version: 1, nextSequence: 7, recentTurns: [{ text: "Hi <there>" }] };
          const id = await store.saveCallContinuation(callSid, "trace-handover", state);
          assert.match(id, /^[0-9a-f-]{36}$/);
          assert.equal(await store.claimCallContinuation(id, randomCallSid()), null);
          assert.deepEqual(await store.takeCallHandover(callSid), {
            continuationId: id,
            traceId: "trace-handover",
            kind: "handover",
          });
          assert.equal(await store.takeCallHandover(callSid), null, "taken once");
          assert.deepEqual(await store.claimCallContinuation(id, callSid), state);
          assert.equal(await store.claimCallContinuation(id, callSid), null, "claimed once");
          assert.equal(await store.claimCallContinuation(crypto.randomUUID(), callSid), null);
          assert.equal(await store.takeCallHandover(randomCallSid()), null);
        },
      );

      await t.step(
        "takeCallHandover() resumes a dropped stream from its newest checkpoint, three times at most",
        async () => {
          const org = await createOrg(sql);
          const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
          await store.saveCallCheckpoint(callSid, "trace-cp", { version: 1, nextSequence: 2 });
          const newest = await store.saveCallCheckpoint(callSid, "trace-cp", {
            version: 1,
            nextSequence: 4,
          });
          const [{ pending }] = await sql`select count(*)::int as pending
            from public.call_continuations k join public.calls c on c.id = k.call_id
            where c.call_sid = ${callSid} and k.dispatched_at is null`;
          assert.equal(pending, 1, "a new checkpoint replaces the pending one");
          assert.deepEqual(await store.takeCallHandover(callSid), {
            continuationId: newest,
            traceId: "trace-cp",
            kind: "checkpoint",
          });
          assert.deepEqual(await store.claimCallContinuation(newest, callSid), {
            version: 1,
            nextSequence: 4,
          });
          // Two more drops resume; the fourth gets no checkpoint (the apology follows).
          for (let drop = 2; drop <= 4; drop++) {
            const id = await store.saveCallCheckpoint(callSid, "trace-cp", { version: 1, drop });
            const taken = await store.takeCallHandover(callSid);
            assert.equal(taken?.continuationId ?? null, drop <= 3 ? id : null, `drop ${drop}`);
          }
          // A stream whose end was reported (a goodbye, a transfer) is never resumed.
          const ended = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
          await store.saveCallCheckpoint(ended, null, { version: 1 });
          await store.recordCallEvent({
            callSid: ended,
            idempotencyKey: `stream-end:${ended}`,
            kind: "stream_ended",
          });
          assert.equal(await store.takeCallHandover(ended), null);
          // A handover wins over a checkpoint, and supersedes it.
          const handed = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
          await store.saveCallCheckpoint(handed, null, { version: 1 });
          const handover = await store.saveCallContinuation(handed, null, { version: 1 });
          assert.equal((await store.takeCallHandover(handed))?.continuationId, handover);
          assert.equal(await store.takeCallHandover(handed), null, "the checkpoint went with it");
        },
      );

      await t.step("a database error surfaces as a StoreError with its SQLSTATE", async () => {
        const error = await store.recordCallEvent({
          callSid: randomCallSid(),
          idempotencyKey: crypto.randomUUID(),
          kind: "status_callback",
          outcome: "exploded",
        }).then(() => null, (caught) => caught);
        assert.ok(error instanceof StoreError, String(error));
        assert.equal(error.code, "22023");
      });
    } finally {
      await store.close();
      await db.drop();
    }
  });
}
