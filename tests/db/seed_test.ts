/**
 * supabase/seed.sql: the Harbor Dental demo org, and safe to run again.
 * @module
 */
import assert from "node:assert/strict";
import { createTestDatabase } from "../support/test_db.ts";
import { HARBOR_DENTAL } from "./fixtures.ts";

const SEED_URL = new URL("../../supabase/seed.sql", import.meta.url);

Deno.test("seed.sql creates Harbor Dental and can run twice", async () => {
  const db = await createTestDatabase({ seed: true });
  const sql = db.sql;
  try {
    await sql.unsafe(await Deno.readTextFile(SEED_URL));
    const [counts] = await sql`select
        (select count(*)::int from public.orgs where id = ${HARBOR_DENTAL.id}) as orgs,
        (select count(*)::int from public.org_phone_numbers where org_id = ${HARBOR_DENTAL.id})
          as numbers,
        (select count(*)::int from public.org_business_hours where org_id = ${HARBOR_DENTAL.id})
          as hours,
        (select count(*)::int from public.clients where org_id = ${HARBOR_DENTAL.id}) as clients`;
    assert.deepEqual({ ...counts }, { orgs: 1, numbers: 1, hours: 5, clients: 3 });
    const [org] = await sql`select name, timezone, appointment_minutes, transfer_number,
        sms_recovery_template from public.orgs where id = ${HARBOR_DENTAL.id}`;
    assert.equal(org.name, "Harbor Dental");
    assert.equal(org.timezone, "America/New_York");
    assert.equal(org.appointment_minutes, 30);
    assert.equal(org.transfer_number, "+15550100999");
    assert.match(org.sms_recovery_template, /\{first_name\}.*\{org_name\}/);
    const hours = await sql`select iso_weekday, opens_at, closes_at from public.org_business_hours
      where org_id = ${HARBOR_DENTAL.id} order by iso_weekday`;
    assert.deepEqual(
      hours.map((row) => `${row.iso_weekday} ${row.opens_at}-${row.closes_at}`),
      [1, 2, 3, 4, 5].map((day) => `${day} 09:00:00-17:00:00`),
    );
    const [jane] = await sql`select first_name, last_name from public.clients
      where org_id = ${HARBOR_DENTAL.id} and phone = ${HARBOR_DENTAL.janeDoePhone}`;
    assert.deepEqual({ ...jane }, { first_name: "Jane", last_name: "Doe" });
  } finally {
    await db.drop();
  }
});
