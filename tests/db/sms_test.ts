/**
 * SMS RPCs on a real database: a text is claimed exactly once under concurrency, refused for
 * withheld, invalid and opted-out numbers, rendered from the org's templates, and its delivery
 * status only moves forward.
 * @module
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { createTestDatabase } from "../support/test_db.ts";
import { createClient, createOrg, randomCallSid, randomPhone, rpc, startCall } from "./fixtures.ts";

interface Claim {
  claimed: boolean;
  reason?: string;
  sms_id?: string;
  to?: string;
  from?: string;
  body?: string;
}

Deno.test("SMS RPCs", async (t) => {
  const db = await createTestDatabase();
  const sql = db.sql;
  const claim = (callSid: string, kind: string, body: string | null = null) =>
    rpc<Claim>(sql, "claim_sms", [callSid, kind, body]);
  const smsRow = async (id: string) =>
    (await sql`select status, message_sid, error_code from public.sms_messages where id = ${id}`)[
      0
    ];

  try {
    await t.step("claim_sms() renders the recovery template for a known caller", async () => {
      const org = await createOrg(sql, {
        name: "Bayside Vets",
        smsRecoveryTemplate: "Hi {first_name}, {org_name} here. Call us back!",
      });
      const client = await createClient(sql, org.id, { firstName: "Noor" });
      const callSid = await startCall(sql, { to: org.phoneNumber, from: client.phone });
      const result = await claim(callSid, "recovery");
      assert.equal(result.claimed, true);
      assert.equal(result.to, client.phone);
      assert.equal(result.from, org.phoneNumber, "sent from the number the caller dialled");
      assert.equal(result.body, "Hi Noor, Bayside Vets here. Call us back!");
      assert.equal((await smsRow(result.sms_id!)).status, "claimed");
    });

    await t.step("claim_sms() falls back to a neutral greeting for an unknown caller", async () => {
      const org = await createOrg(sql, {
        name: "Bayside Vets",
        smsRecoveryTemplate: "Hi {first_name}, {org_name} here.",
      });
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      assert.equal((await claim(callSid, "recovery")).body, "Hi there, Bayside Vets here.");
    });

    await t.step("claim_sms() renders a confirmation with the local time and code", async () => {
      const org = await createOrg(sql, { name: "Harbor Test" });
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const booked = await rpc<{ appointment: { confirmation_code: string } }>(
        sql,
        "book_appointment",
        [callSid, "Ola", "Nordmann", "2030-03-11T13:30:00Z"],
      );
      const result = await claim(callSid, "confirmation");
      assert.equal(
        result.body,
        `Hi Ola, your appointment at Harbor Test is booked for Monday, March 11 at 9:30 AM. ` +
          `Confirmation code: ${booked.appointment.confirmation_code}.`,
      );
      const other = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      await assert.rejects(claim(other, "confirmation"), { code: "P0002" });
    });

    await t.step("claim_sms() claims each kind once per call", async () => {
      const org = await createOrg(sql);
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      assert.equal((await claim(callSid, "recovery", "Custom body")).body, "Custom body");
      assert.deepEqual(await claim(callSid, "recovery"), {
        claimed: false,
        reason: "already_claimed",
      });
      assert.equal((await claim(callSid, "confirmation", "See you soon")).claimed, true);
      await assert.rejects(claim(callSid, "marketing"), { code: "22023" });
    });

    await t.step("claim_sms() refuses withheld, invalid and opted-out numbers", async () => {
      const org = await createOrg(sql);
      for (const from of ["+266696687", "+7378742833", "anonymous", "Restricted", "12345"]) {
        const callSid = await startCall(sql, { to: org.phoneNumber, from });
        assert.deepEqual(await claim(callSid, "recovery"), {
          claimed: false,
          reason: "invalid_number",
        }, from);
      }
      const optedOut = randomPhone();
      await sql`insert into public.sms_opt_outs (org_id, phone) values (${org.id}, ${optedOut})`;
      const callSid = await startCall(sql, { to: org.phoneNumber, from: optedOut });
      assert.deepEqual(await claim(callSid, "recovery"), { claimed: false, reason: "opted_out" });
      assert.deepEqual(await claim(randomCallSid(), "recovery"), {
        claimed: false,
        reason: "unknown_call",
      });
      const stray = await startCall(sql, { to: randomPhone(), from: randomPhone() });
      assert.deepEqual(await claim(stray, "recovery"), { claimed: false, reason: "unknown_call" });
    });

    await t.step("claim_sms() lets exactly one of 50 concurrent claims win", async () => {
      const org = await createOrg(sql);
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const pool = postgres(db.url, { max: 50, onnotice: () => {} });
      try {
        await Promise.all(Array.from({ length: 50 }, () => pool`select 1`));
        const results = await Promise.all(
          Array.from(
            { length: 50 },
            () =>
              rpc<Claim>(pool as unknown as postgres.Sql, "claim_sms", [callSid, "recovery", null]),
          ),
        );
        assert.equal(results.filter((result) => result.claimed).length, 1);
        assert.equal(
          results.filter((result) => result.reason === "already_claimed").length,
          49,
        );
      } finally {
        await pool.end();
      }
    });

    await t.step("update_sms_status() only moves the delivery status forward", async () => {
      const org = await createOrg(sql);
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const { sms_id: smsId } = await claim(callSid, "recovery");
      const messageSid = `SM${crypto.randomUUID().replaceAll("-", "")}`;
      assert.equal(await rpc(sql, "record_sms_result", [smsId, messageSid, "queued", null]), true);
      assert.deepEqual({ ...(await smsRow(smsId!)) }, {
        status: "queued",
        message_sid: messageSid,
        error_code: null,
      });
      const update = (status: string, errorCode: string | null = null) =>
        rpc<boolean>(sql, "update_sms_status", [messageSid, status, errorCode]);
      assert.equal(await update("sent"), true);
      assert.equal(await update("sending"), true, "a late status is known but not applied");
      assert.equal((await smsRow(smsId!)).status, "sent");
      assert.equal(await update("undelivered", "30003"), true);
      assert.equal(await update("delivered"), true);
      assert.deepEqual({ ...(await smsRow(smsId!)) }, {
        status: "undelivered",
        message_sid: messageSid,
        error_code: "30003",
      });
      assert.equal(await update("delivered"), true);
      assert.equal(await rpc(sql, "update_sms_status", ["SMunknown", "sent", null]), false);
    });

    await t.step("record_sms_result() records a failed send", async () => {
      const org = await createOrg(sql);
      const callSid = await startCall(sql, { to: org.phoneNumber, from: randomPhone() });
      const { sms_id: smsId } = await claim(callSid, "recovery");
      assert.equal(await rpc(sql, "record_sms_result", [smsId, null, "failed", "21610"]), true);
      assert.deepEqual({ ...(await smsRow(smsId!)) }, {
        status: "failed",
        message_sid: null,
        error_code: "21610",
      });
      assert.equal(
        await rpc(sql, "record_sms_result", [crypto.randomUUID(), null, "failed", null]),
        false,
      );
    });
  } finally {
    await db.drop();
  }
});
