/**
 * supabase/seed.sql and supabase/orgs/harbor-dental.toml: the Harbor Dental demo org, and the
 * seed is safe to run again.
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
        (select count(*)::int from public.providers where org_id = ${HARBOR_DENTAL.id})
          as providers,
        (select count(*)::int from public.provider_hours where org_id = ${HARBOR_DENTAL.id})
          as hours,
        (select count(*)::int from public.services where org_id = ${HARBOR_DENTAL.id}) as services,
        (select count(*)::int from public.schedule_overrides where org_id = ${HARBOR_DENTAL.id})
          as overrides,
        (select count(*)::int from public.clients where org_id = ${HARBOR_DENTAL.id}) as clients`;
    assert.deepEqual({ ...counts }, {
      orgs: 1,
      numbers: 1,
      providers: 2,
      hours: 13,
      services: 3,
      overrides: 2,
      clients: 3,
    });
    const [org] = await sql`select name, timezone, appointment_minutes, transfer_number,
        sms_recovery_template from public.orgs where id = ${HARBOR_DENTAL.id}`;
    assert.equal(org.name, "Harbor Dental");
    assert.equal(org.timezone, "America/New_York");
    assert.equal(org.appointment_minutes, 30);
    assert.equal(org.transfer_number, "+15550100999");
    assert.match(org.sms_recovery_template, /\{first_name\}.*\{org_name\}/);
    const hours = await sql`select p.name, h.iso_weekday, h.opens_at, h.closes_at
      from public.provider_hours h join public.providers p on p.id = h.provider_id
      where h.org_id = ${HARBOR_DENTAL.id} and h.iso_weekday in (1, 2)
      order by p.name, h.iso_weekday, h.opens_at`;
    assert.deepEqual(
      hours.map((row) => `${row.name} ${row.iso_weekday} ${row.opens_at}-${row.closes_at}`),
      [
        "Dr. Lee 1 09:00:00-12:00:00",
        "Dr. Lee 1 13:00:00-17:00:00",
        "Sam Ortiz 1 09:00:00-17:00:00",
        "Sam Ortiz 2 09:00:00-17:00:00",
      ],
      "Dr. Lee is off on Tuesdays",
    );
    const services = await sql`select s.name, s.duration_minutes, s.is_default,
        array_agg(p.name order by p.name) as providers
      from public.services s
      join public.service_providers sp on sp.service_id = s.id
      join public.providers p on p.id = sp.provider_id
      where s.org_id = ${HARBOR_DENTAL.id}
      group by s.id order by s.name`;
    assert.deepEqual(services.map((row) => ({ ...row })), [
      { name: "Check-up", duration_minutes: 30, is_default: false, providers: ["Dr. Lee"] },
      {
        name: "Cleaning",
        duration_minutes: 30,
        is_default: true,
        providers: ["Dr. Lee", "Sam Ortiz"],
      },
      { name: "New patient exam", duration_minutes: 60, is_default: false, providers: ["Dr. Lee"] },
    ]);
    const [jane] = await sql`select c.first_name, c.last_name, p.name as preferred_provider
      from public.clients c left join public.providers p on p.id = c.preferred_provider_id
      where c.org_id = ${HARBOR_DENTAL.id} and c.phone = ${HARBOR_DENTAL.janeDoePhone}`;
    assert.deepEqual({ ...jane }, {
      first_name: "Jane",
      last_name: "Doe",
      preferred_provider: "Dr. Lee",
    });
  } finally {
    await db.drop();
  }
});
