/**
 * Row level security and grants, table by table, as PostgREST would run requests: anon, a member
 * of org A, a member of org B, a signed-in user of no org, and the service role.
 * @module
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { type ApiRole, createTestDatabase, withRole } from "../support/test_db.ts";
import {
  addMember,
  createClient,
  createOrg,
  createUser,
  randomPhone,
  rpc,
  startCall,
  type TestOrg,
} from "./fixtures.ts";

const TABLES = [
  "orgs",
  "org_business_hours",
  "org_phone_numbers",
  "org_members",
  "clients",
  "calls",
  "call_events",
  "call_turns",
  "appointments",
  "sms_messages",
  "sms_opt_outs",
  "providers",
  "provider_hours",
  "services",
  "service_providers",
  "schedule_overrides",
] as const;
/** Scheduling setup: members read it; only the service role writes it. */
const SCHEDULING_TABLES = [
  "providers",
  "provider_hours",
  "services",
  "service_providers",
  "schedule_overrides",
] as const;
type Table = typeof TABLES[number];

/** SQL listing the org of each visible row of a table. */
function orgIdsQuery(table: Table): string {
  switch (table) {
    case "orgs":
      return "select id as org_id from public.orgs";
    case "call_events":
    case "call_turns":
      return `select c.org_id from public.${table} x join public.calls c on c.id = x.call_id`;
    default:
      return `select org_id from public.${table}`;
  }
}

interface OrgFixture {
  org: TestOrg;
  clientId: string;
  appointmentId: string;
  providerId: string;
  serviceId: string;
}

/** An org with one row in every table. */
async function populatedOrg(sql: postgres.Sql, userId: string): Promise<OrgFixture> {
  const org = await createOrg(sql);
  await addMember(sql, org.id, userId);
  const client = await createClient(sql, org.id, { firstName: "Row" });
  const callSid = await startCall(sql, { to: org.phoneNumber, from: client.phone });
  await sql`select public.append_call_turns(${callSid},
    '[{"sequence":0,"speaker":"caller","text":"hello"}]'::jsonb)`;
  const booked = await rpc<{ appointment: { id: string } }>(sql, "book_appointment", [
    callSid,
    "Row",
    "Owner",
    "2030-04-01T13:00:00Z",
  ]);
  await rpc(sql, "claim_sms", [callSid, "recovery", null]);
  await sql`insert into public.sms_opt_outs (org_id, phone) values (${org.id}, ${randomPhone()})`;
  // The legacy hours made the default provider (with provider_hours) and service; add overrides.
  const [{ provider_id: providerId, service_id: serviceId }] = await sql`
    select provider_id, service_id from public.appointments where id = ${booked.appointment.id}`;
  await sql`insert into public.schedule_overrides (org_id, provider_id, override_date, closed)
    values (${org.id}, null, '2030-12-25', true), (${org.id}, ${providerId}, '2030-12-24', true)`;
  return { org, clientId: client.id, appointmentId: booked.appointment.id, providerId, serviceId };
}

Deno.test("row level security", async (t) => {
  const db = await createTestDatabase();
  const sql = db.sql;
  try {
    const userA = await createUser(sql);
    const userB = await createUser(sql);
    const outsider = await createUser(sql);
    const a = await populatedOrg(sql, userA);
    const b = await populatedOrg(sql, userB);
    const ours = new Set([a.org.id, b.org.id]);
    const asUser = (userId: string) => ({ sub: userId, role: "authenticated" });
    const visibleOrgs = async (role: ApiRole, claims: Record<string, unknown>, table: Table) => {
      const rows = await withRole(
        sql,
        role,
        claims,
        async (tx) =>
          (await tx.unsafe<{ org_id: string }[]>(orgIdsQuery(table))).map((row) => row.org_id),
      );
      return [...new Set(rows.filter((id) => ours.has(id)))].sort();
    };

    await t.step("every table in public has row level security enabled", async () => {
      const rows = await sql`select c.relname, c.relrowsecurity from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind = 'r'`;
      // call_continuations and calendar_feeds are the service role's alone:
      // tests/db/call_continuations_test.ts, tests/db/calendar_feed_test.ts.
      assert.deepEqual(
        rows.map((row) => row.relname).sort(),
        [...TABLES, "call_continuations", "calendar_feeds"].sort(),
      );
      assert.ok(rows.every((row) => row.relrowsecurity), "RLS enabled on every table");
    });

    for (const table of TABLES) {
      await t.step(`${table}: anon reads nothing`, async () => {
        await assert.rejects(
          withRole(
            sql,
            "anon",
            { role: "anon" },
            (tx) => tx.unsafe(`select * from public.${table}`),
          ),
          { code: "42501" },
        );
      });
      await t.step(`${table}: members read their own org's rows only`, async () => {
        assert.deepEqual(await visibleOrgs("authenticated", asUser(userA), table), [a.org.id]);
        assert.deepEqual(await visibleOrgs("authenticated", asUser(userB), table), [b.org.id]);
        assert.deepEqual(await visibleOrgs("authenticated", asUser(outsider), table), []);
      });
      await t.step(`${table}: the service role reads every org's rows`, async () => {
        assert.deepEqual(
          await visibleOrgs("service_role", { role: "service_role" }, table),
          [a.org.id, b.org.id].sort(),
        );
      });
    }

    await t.step("clients: members write their own org's clients only", async () => {
      const asA = <T>(fn: (tx: postgres.TransactionSql) => Promise<T>) =>
        withRole(sql, "authenticated", asUser(userA), fn);
      const inserted = await asA((tx) =>
        tx`insert into public.clients (org_id, phone, first_name)
          values (${a.org.id}, ${randomPhone()}, 'New') returning id`
      );
      assert.equal(inserted.length, 1);
      await assert.rejects(
        asA((tx) =>
          tx`insert into public.clients (org_id, phone) values (${b.org.id}, ${randomPhone()})`
        ),
        { code: "42501" },
      );
      const updatedOwn = await asA((tx) =>
        tx`update public.clients set notes = 'vip' where id = ${a.clientId}`
      );
      assert.equal(updatedOwn.count, 1);
      const updatedOther = await asA((tx) =>
        tx`update public.clients set notes = 'hacked' where id = ${b.clientId}`
      );
      assert.equal(updatedOther.count, 0);
      await assert.rejects(
        asA((tx) => tx`update public.clients set org_id = ${b.org.id} where id = ${a.clientId}`),
        { code: "42501" },
      );
      const deletedOther = await asA((tx) =>
        tx`delete from public.clients where id = ${b.clientId}`
      );
      assert.equal(deletedOther.count, 0);
      const [{ notes }] = await sql`select notes from public.clients where id = ${b.clientId}`;
      assert.equal(notes, "");
      await assert.rejects(
        withRole(
          sql,
          "anon",
          { role: "anon" },
          (tx) =>
            tx`insert into public.clients (org_id, phone) values (${a.org.id}, ${randomPhone()})`,
        ),
        { code: "42501" },
      );
    });

    await t.step("appointments: members write their own org's appointments only", async () => {
      const asA = <T>(fn: (tx: postgres.TransactionSql) => Promise<T>) =>
        withRole(sql, "authenticated", asUser(userA), fn);
      const [created] = await asA((tx) =>
        tx`insert into public.appointments (org_id, client_id, starts_at, ends_at)
          values (${a.org.id}, ${a.clientId}, '2030-04-02T13:00:00Z', '2030-04-02T13:30:00Z')
          returning confirmation_code`
      );
      assert.match(created.confirmation_code, /^[ACDEFHJKMNPRTUVWXY346789]{6}$/);
      // Another org's client cannot be attached, even from one's own org.
      await assert.rejects(
        asA((tx) =>
          tx`insert into public.appointments (org_id, client_id, starts_at, ends_at)
            values (${a.org.id}, ${b.clientId}, '2030-04-03T13:00:00Z', '2030-04-03T13:30:00Z')`
        ),
        { code: "23503" },
      );
      await assert.rejects(
        asA((tx) =>
          tx`insert into public.appointments (org_id, client_id, starts_at, ends_at)
            values (${b.org.id}, ${b.clientId}, '2030-04-03T13:00:00Z', '2030-04-03T13:30:00Z')`
        ),
        { code: "42501" },
      );
      const cancelOwn = await asA((tx) =>
        tx`update public.appointments set status = 'cancelled' where id = ${a.appointmentId}`
      );
      assert.equal(cancelOwn.count, 1);
      const cancelOther = await asA((tx) =>
        tx`update public.appointments set status = 'cancelled' where id = ${b.appointmentId}`
      );
      assert.equal(cancelOther.count, 0);
      const deleteOther = await asA((tx) =>
        tx`delete from public.appointments where id = ${b.appointmentId}`
      );
      assert.equal(deleteOther.count, 0);
      const [{ status }] = await sql`select status from public.appointments
        where id = ${b.appointmentId}`;
      assert.equal(status, "booked");
    });

    const readOnly = TABLES.filter((table) => table !== "clients" && table !== "appointments");
    await t.step("members cannot write the tables the functions own", async () => {
      for (const table of readOnly) {
        const column = table === "orgs"
          ? "name"
          : table === "call_events" || table === "call_turns"
          ? "call_id"
          : "org_id";
        for (
          const text of [
            `delete from public.${table}`,
            `update public.${table} set ${column} = ${column}`,
            `insert into public.${table} default values`,
          ]
        ) {
          await assert.rejects(
            withRole(sql, "authenticated", asUser(userA), (tx) => tx.unsafe(text)),
            { code: "42501" },
            `${table}: ${text}`,
          );
        }
      }
    });

    await t.step(
      "scheduling tables: members cannot insert, update or delete even their own org's rows",
      async () => {
        const asA = (text: string, params: string[] = []) =>
          withRole(sql, "authenticated", asUser(userA), (tx) => tx.unsafe(text, params));
        const attempts: [string, string[]][] = [
          ["insert into public.providers (org_id, name) values ($1, 'Dr New')", [a.org.id]],
          ["update public.providers set name = 'Renamed' where org_id = $1", [a.org.id]],
          ["update public.providers set active = false where id = $1", [a.providerId]],
          ["delete from public.providers where id = $1", [a.providerId]],
          [
            `insert into public.provider_hours (org_id, provider_id, iso_weekday, opens_at, closes_at)
              values ($1, $2, 6, '09:00', '12:00')`,
            [a.org.id, a.providerId],
          ],
          ["update public.provider_hours set closes_at = '23:00' where org_id = $1", [a.org.id]],
          [
            "insert into public.services (org_id, name, duration_minutes) values ($1, 'New', 30)",
            [a.org.id],
          ],
          ["update public.services set duration_minutes = 5 where id = $1", [a.serviceId]],
          [
            `insert into public.service_providers (org_id, service_id, provider_id)
              values ($1, $2, $3)`,
            [a.org.id, a.serviceId, a.providerId],
          ],
          ["delete from public.service_providers where org_id = $1", [a.org.id]],
          [
            `insert into public.schedule_overrides (org_id, override_date, closed)
              values ($1, '2030-07-04', true)`,
            [a.org.id],
          ],
          ["update public.schedule_overrides set closed = false where org_id = $1", [a.org.id]],
          ["delete from public.schedule_overrides where org_id = $1", [a.org.id]],
        ];
        for (const [text, params] of attempts) {
          await assert.rejects(asA(text, params), { code: "42501" }, text);
        }
        for (const table of SCHEDULING_TABLES) {
          await assert.rejects(
            withRole(
              sql,
              "anon",
              { role: "anon" },
              (tx) => tx.unsafe(`insert into public.${table} default values`),
            ),
            { code: "42501" },
            `anon: ${table}`,
          );
        }
        const [{ count }] = await sql`select count(*)::int as count from public.providers
          where org_id = ${a.org.id} and active and name <> 'Renamed'`;
        assert.equal(count, 1, "nothing changed");
      },
    );

    await t.step(
      "appointments: members cannot attach another org's provider or service",
      async () => {
        const asA = <T>(fn: (tx: postgres.TransactionSql) => Promise<T>) =>
          withRole(sql, "authenticated", asUser(userA), fn);
        await assert.rejects(
          asA((tx) =>
            tx`insert into public.appointments (org_id, client_id, provider_id, starts_at, ends_at)
              values (${a.org.id}, ${a.clientId}, ${b.providerId},
                '2030-04-08T13:00:00Z', '2030-04-08T13:30:00Z')`
          ),
          { code: "23503" },
        );
        await assert.rejects(
          asA((tx) =>
            tx`update public.appointments set service_id = ${b.serviceId}
              where id = ${a.appointmentId}`
          ),
          { code: "23503" },
        );
        const [own] = await asA((tx) =>
          tx`insert into public.appointments (org_id, client_id, provider_id, starts_at, ends_at)
            values (${a.org.id}, ${a.clientId}, ${a.providerId},
              '2030-04-08T13:00:00Z', '2030-04-08T13:30:00Z')
            returning provider_id, service_id`
        );
        assert.deepEqual({ ...own }, { provider_id: a.providerId, service_id: a.serviceId });
      },
    );

    await t.step("the service role writes every table", async () => {
      await withRole(sql, "service_role", { role: "service_role" }, async (tx) => {
        const updated = await tx`update public.orgs set greeting = greeting
          where id in ${tx([a.org.id, b.org.id])}`;
        assert.equal(updated.count, 2);
        await tx`insert into public.sms_opt_outs (org_id, phone) values (${b.org.id}, ${randomPhone()})`;
        const [provider] = await tx`insert into public.providers (org_id, name)
          values (${b.org.id}, 'Dr Service') returning id`;
        await tx`insert into public.provider_hours
          (org_id, provider_id, iso_weekday, opens_at, closes_at)
          values (${b.org.id}, ${provider.id}, 6, '09:00', '12:00')`;
        await tx`insert into public.service_providers (org_id, service_id, provider_id)
          values (${b.org.id}, ${b.serviceId}, ${provider.id})`;
        const services = await tx`update public.services set instructions = 'Bring your card'
          where id = ${b.serviceId}`;
        assert.equal(services.count, 1);
        await tx`insert into public.schedule_overrides
          (org_id, provider_id, override_date, opens_at, closes_at)
          values (${b.org.id}, ${provider.id}, '2030-12-28', '10:00', '12:00')`;
      });
    });

    await t.step("only the service role may execute the RPCs", async () => {
      const rows = await sql`select p.oid::regprocedure::text as name,
          has_function_privilege('anon', p.oid, 'execute') as anon,
          has_function_privilege('authenticated', p.oid, 'execute') as authenticated,
          has_function_privilege('service_role', p.oid, 'execute') as service_role
        from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public'`;
      assert.ok(rows.length >= 12, "all RPCs are there");
      for (const row of rows) {
        assert.deepEqual(
          [row.anon, row.authenticated, row.service_role],
          [false, false, true],
          row.name,
        );
      }
      for (const role of ["anon", "authenticated"] as const) {
        await assert.rejects(
          withRole(
            sql,
            role,
            asUser(userA),
            (tx) => tx`select public.lookup_caller(${a.org.phoneNumber}, ${randomPhone()})`,
          ),
          { code: "42501" },
        );
      }
      const [{ result }] = await withRole(
        sql,
        "service_role",
        { role: "service_role" },
        (tx) => tx`select public.lookup_caller(${a.org.phoneNumber}, ${randomPhone()}) as result`,
      );
      assert.equal(result.org.id, a.org.id);
    });

    await t.step("private helpers are not callable by API users", async () => {
      const rows = await sql`select p.oid::regprocedure::text as name,
          has_function_privilege('anon', p.oid, 'execute') as anon,
          has_function_privilege('authenticated', p.oid, 'execute') as authenticated
        from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'private'`;
      for (const row of rows) {
        assert.equal(row.anon, false, row.name);
        // Policies call member_org_ids() as the signed-in user; nothing else is theirs.
        assert.equal(row.authenticated, row.name === "private.member_org_ids()", row.name);
      }
    });
  } finally {
    await db.drop();
  }
});
