/**
 * Test data for the database tests, written with the superuser connection of
 * `tests/support/test_db.ts`. Every helper makes fresh rows (random ids, numbers and emails), so
 * tests never depend on each other even when they share one database (the embedded PGlite server
 * has exactly one).
 * @module
 */
import type postgres from "postgres";

/** The seeded demo org (supabase/seed.sql). */
export const HARBOR_DENTAL = {
  id: "00000000-0000-4000-8000-000000000001",
  phoneNumber: "+15550100000",
  janeDoePhone: "+15551230001",
} as const;

/** A random North American E.164 number in the 555 range. */
export function randomPhone(): string {
  const digits = crypto.getRandomValues(new Uint32Array(2));
  return `+1555${String(digits[0] % 10_000_000).padStart(7, "0")}${digits[1] % 10}`;
}

/** A random Twilio-shaped Call SID (`CA` + 32 hex). */
export function randomCallSid(): string {
  return `CA${crypto.randomUUID().replaceAll("-", "")}`;
}

/** An org created for one test. */
export interface TestOrg {
  id: string;
  phoneNumber: string;
  timezone: string;
  appointmentMinutes: number;
}

/** Options of `createOrg`. */
export interface CreateOrgOptions {
  name?: string;
  /** Defaults to America/New_York. */
  timezone?: string;
  /** Defaults to 30. */
  appointmentMinutes?: number;
  /** [isoWeekday, opens, closes]; defaults to Monday-Friday 09:00-17:00. */
  hours?: [number, string, string][];
  smsRecoveryTemplate?: string;
}

/** Creates an org with one phone number and its business hours. */
export async function createOrg(
  sql: postgres.Sql,
  options: CreateOrgOptions = {},
): Promise<TestOrg> {
  const id = crypto.randomUUID();
  const phoneNumber = randomPhone();
  const timezone = options.timezone ?? "America/New_York";
  const appointmentMinutes = options.appointmentMinutes ?? 30;
  const hours = options.hours ??
    [1, 2, 3, 4, 5].map((day): [number, string, string] => [day, "09:00", "17:00"]);
  await sql`
    insert into public.orgs (id, name, timezone, appointment_minutes, transfer_number)
    values (${id}, ${options.name ?? `Test org ${id.slice(0, 8)}`}, ${timezone},
      ${appointmentMinutes}, '+15550100999')`;
  if (options.smsRecoveryTemplate) {
    await sql`update public.orgs set sms_recovery_template = ${options.smsRecoveryTemplate}
      where id = ${id}`;
  }
  await sql`insert into public.org_phone_numbers (phone_number, org_id) values (${phoneNumber}, ${id})`;
  for (const [day, opens, closes] of hours) {
    await sql`insert into public.org_business_hours (org_id, iso_weekday, opens_at, closes_at)
      values (${id}, ${day}, ${opens}, ${closes})`;
  }
  return { id, phoneNumber, timezone, appointmentMinutes };
}

/** Creates a signed-up user (auth.users) and returns its id. */
export async function createUser(sql: postgres.Sql): Promise<string> {
  const id = crypto.randomUUID();
  await sql`insert into auth.users (id, email) values (${id}, ${`${id}@example.test`})`;
  return id;
}

/** Makes `userId` a member of `orgId`. */
export async function addMember(
  sql: postgres.Sql,
  orgId: string,
  userId: string,
  role: "owner" | "staff" = "staff",
): Promise<void> {
  await sql`insert into public.org_members (org_id, user_id, role) values (${orgId}, ${userId}, ${role})`;
}

/** Creates a client of an org and returns its id. */
export async function createClient(
  sql: postgres.Sql,
  orgId: string,
  client: { phone?: string; firstName?: string | null; lastName?: string | null } = {},
): Promise<{ id: string; phone: string }> {
  const phone = client.phone ?? randomPhone();
  const [row] = await sql<{ id: string }[]>`
    insert into public.clients (org_id, phone, first_name, last_name)
    values (${orgId}, ${phone}, ${client.firstName ?? null}, ${client.lastName ?? null})
    returning id`;
  return { id: row.id, phone };
}

/** Records the first events of an answered call (ringing, then in-progress) and returns its sid. */
export async function startCall(
  sql: postgres.Sql,
  call: { to: string; from: string; callSid?: string },
): Promise<string> {
  const callSid = call.callSid ?? randomCallSid();
  await sql`select public.record_call_event(
    p_call_sid => ${callSid}, p_idempotency_key => ${`${callSid}:ringing`},
    p_kind => 'call_incoming', p_from => ${call.from}, p_to => ${call.to}, p_status => 'ringing')`;
  await sql`select public.record_call_event(
    p_call_sid => ${callSid}, p_idempotency_key => ${`${callSid}:in-progress`},
    p_kind => 'stream_started', p_status => 'in-progress')`;
  return callSid;
}

/** Calls a jsonb-returning RPC with positional text arguments and returns its parsed result. */
export async function rpc<T = Record<string, unknown>>(
  sql: postgres.Sql | postgres.TransactionSql,
  name: string,
  args: unknown[],
): Promise<T> {
  const placeholders = args.map((_, index) => `$${index + 1}`).join(", ");
  // deno-lint-ignore no-explicit-any
  const rows = await sql.unsafe(`select public.${name}(${placeholders}) as result`, args as any[]);
  return rows[0].result as T;
}
