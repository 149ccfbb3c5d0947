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
  drLeeId: "00000000-0000-4000-8000-000000000201",
  samOrtizId: "00000000-0000-4000-8000-000000000202",
  cleaningId: "00000000-0000-4000-8000-000000000301",
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

/** Weekly hours of a provider: ISO weekday (1 = Monday ... 7 = Sunday) to its [opens, closes]. */
export type WeeklyHours = Partial<Record<number, [string, string][]>>;

/** A provider of `createScheduledOrg`. */
export interface ProviderSpec {
  name: string;
  /** Defaults to none: the provider works only on override days. */
  hours?: WeeklyHours;
  /** Defaults to true. */
  active?: boolean;
}

/** A service of `createScheduledOrg`. */
export interface ServiceSpec {
  name: string;
  minutes: number;
  /** Defaults to 0. */
  bufferAfter?: number;
  /** Names of the providers (of `providers`) offering it. */
  providers: string[];
  instructions?: string;
  /** Defaults to false. */
  isDefault?: boolean;
  /** Defaults to true. */
  active?: boolean;
}

/** A date override: the whole org (no `provider`) or one provider; closed, or other hours. */
export interface OverrideSpec {
  /** Local date, YYYY-MM-DD. */
  date: string;
  /** Provider name; none for the whole org. */
  provider?: string;
  closed?: boolean;
  opens?: string;
  closes?: string;
}

/** Booking rules of an org (orgs columns); unset ones keep the column defaults. */
export interface BookingRules {
  minNoticeMinutes?: number;
  bookingHorizonDays?: number | null;
  slotGranularityMinutes?: number | null;
}

/** Options of `createScheduledOrg`. */
export interface CreateScheduledOrgOptions {
  name?: string;
  /** Defaults to America/New_York. */
  timezone?: string;
  providers: ProviderSpec[];
  services: ServiceSpec[];
  overrides?: OverrideSpec[];
  rules?: BookingRules;
  smsConfirmationTemplate?: string;
}

/** An org created with providers and services, and their ids by name. */
export interface ScheduledOrg extends TestOrg {
  providers: Record<string, string>;
  services: Record<string, string>;
}

/**
 * Creates an org the way the scheduling feature sets one up: one phone number, providers with
 * weekly hours, services offered by some of them, date overrides and booking rules. It has no
 * org_business_hours, so no default provider or service unless one is marked `isDefault`.
 */
export async function createScheduledOrg(
  sql: postgres.Sql,
  options: CreateScheduledOrgOptions,
): Promise<ScheduledOrg> {
  const id = crypto.randomUUID();
  const phoneNumber = randomPhone();
  const timezone = options.timezone ?? "America/New_York";
  const rules = options.rules ?? {};
  await sql`
    insert into public.orgs (id, name, timezone, transfer_number)
    values (${id}, ${options.name ?? `Scheduled org ${id.slice(0, 8)}`}, ${timezone},
      '+15550100999')`;
  if (options.smsConfirmationTemplate) {
    await sql`update public.orgs set sms_confirmation_template = ${options.smsConfirmationTemplate}
      where id = ${id}`;
  }
  await setBookingRules(sql, id, rules);
  await sql`insert into public.org_phone_numbers (phone_number, org_id) values (${phoneNumber}, ${id})`;
  const providers: Record<string, string> = {};
  for (const provider of options.providers) {
    const [row] = await sql<{ id: string }[]>`
      insert into public.providers (org_id, name, active)
      values (${id}, ${provider.name}, ${provider.active ?? true}) returning id`;
    providers[provider.name] = row.id;
    for (const [day, ranges] of Object.entries(provider.hours ?? {})) {
      for (const [opens, closes] of ranges ?? []) {
        await sql`insert into public.provider_hours
          (org_id, provider_id, iso_weekday, opens_at, closes_at)
          values (${id}, ${row.id}, ${Number(day)}, ${opens}, ${closes})`;
      }
    }
  }
  const services: Record<string, string> = {};
  for (const service of options.services) {
    const [row] = await sql<{ id: string }[]>`
      insert into public.services
        (org_id, name, duration_minutes, buffer_after_minutes, instructions, is_default, active)
      values (${id}, ${service.name}, ${service.minutes}, ${service.bufferAfter ?? 0},
        ${service.instructions ?? ""}, ${service.isDefault ?? false}, ${service.active ?? true})
      returning id`;
    services[service.name] = row.id;
    for (const name of service.providers) {
      const providerId = providers[name];
      if (!providerId) throw new Error(`Service ${service.name}: no provider named ${name}`);
      await sql`insert into public.service_providers (org_id, service_id, provider_id)
        values (${id}, ${row.id}, ${providerId})`;
    }
  }
  const org: ScheduledOrg = {
    id,
    phoneNumber,
    timezone,
    appointmentMinutes: 30,
    providers,
    services,
  };
  await addScheduleOverrides(sql, org, options.overrides ?? []);
  return org;
}

/** Sets an org's booking rules; fields left out keep their current values. */
export async function setBookingRules(
  sql: postgres.Sql,
  orgId: string,
  rules: BookingRules,
): Promise<void> {
  if (rules.minNoticeMinutes !== undefined) {
    await sql`update public.orgs set min_notice_minutes = ${rules.minNoticeMinutes}
      where id = ${orgId}`;
  }
  if (rules.bookingHorizonDays !== undefined) {
    await sql`update public.orgs set booking_horizon_days = ${rules.bookingHorizonDays}
      where id = ${orgId}`;
  }
  if (rules.slotGranularityMinutes !== undefined) {
    await sql`update public.orgs set slot_granularity_minutes = ${rules.slotGranularityMinutes}
      where id = ${orgId}`;
  }
}

/** Adds date overrides to an org made by `createScheduledOrg` (providers by name). */
export async function addScheduleOverrides(
  sql: postgres.Sql,
  org: Pick<ScheduledOrg, "id" | "providers">,
  overrides: OverrideSpec[],
): Promise<void> {
  for (const override of overrides) {
    const providerId = override.provider === undefined ? null : org.providers[override.provider];
    if (providerId === undefined) throw new Error(`Override: no provider ${override.provider}`);
    const closed = override.closed ?? false;
    await sql`insert into public.schedule_overrides
      (org_id, provider_id, override_date, closed, opens_at, closes_at)
      values (${org.id}, ${providerId}, ${override.date}, ${closed},
        ${closed ? null : override.opens ?? null}, ${closed ? null : override.closes ?? null})`;
  }
}
