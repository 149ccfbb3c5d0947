-- Scheduling that fits a practice: providers (people or rooms that take appointments) with weekly
-- hours, services with a duration and a buffer, date overrides for the whole org or one provider,
-- and per-org booking rules (minimum notice, booking horizon, slot granularity). Overlap is per
-- provider, buffers included, enforced by an exclusion constraint under any race.
--
-- Tables added: providers, provider_hours, services, service_providers, schedule_overrides.
-- Tables changed (additive): orgs (booking rules), clients (preferred provider), appointments
-- (provider, service, buffer; the org-wide overlap constraint becomes a per-provider one).
--
-- Existing orgs keep working: each org's weekly hours (org_business_hours) become its default
-- provider and its appointment length its default service ("Appointment"). org_business_hours
-- stays the way to edit that default provider's week (a trigger mirrors every change into
-- provider_hours), and orgs.appointment_minutes keeps the default service's duration, so a writer
-- that predates providers changes what callers are offered exactly as before.
--
-- Hours of a provider on a local date, in this order: the provider's overrides for that date if
-- any (closed wins over hours), else the org's overrides for that date if any, else the
-- provider's weekly hours for that weekday.

-- Booking rules. Defaults keep earlier behaviour: no notice, no horizon, slots cut at the
-- service's length plus buffer.
alter table public.orgs
  add column min_notice_minutes integer not null default 0
    check (min_notice_minutes between 0 and 43200),
  add column booking_horizon_days integer check (booking_horizon_days between 1 and 1095),
  add column slot_granularity_minutes integer check (slot_granularity_minutes between 5 and 240);
comment on column public.orgs.min_notice_minutes is
  'Bookings must start at least this many minutes from now.';
comment on column public.orgs.booking_horizon_days is
  'Bookings may start at most this many local days ahead; null means no limit.';
comment on column public.orgs.slot_granularity_minutes is
  'Offered start times step by this many minutes from each opening; null: the service''s length '
  'plus its buffer.';

-- Settings an org file carries that had no column yet.
alter table public.orgs
  -- ISO 3166-1 alpha-2: the default region of phone numbers written without a country code.
  add column country text check (country ~ '^[A-Z]{2}$'),
  -- BCP 47 tags the assistant may speak, first the default.
  add column languages text[] not null default '{en}'
    check (cardinality(languages) between 1 and 10);

create table public.providers (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id) on delete cascade,
  name text not null check (length(btrim(name)) between 1 and 100),
  -- The provider an org's legacy weekly hours (org_business_hours) are mirrored into.
  is_default boolean not null default false,
  active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint providers_org_id_id_key unique (org_id, id)
);
comment on table public.providers is
  'People or rooms that take appointments; overlap is checked per provider.';
create unique index providers_org_name_key on public.providers (org_id, lower(name));
create unique index providers_one_default_per_org on public.providers (org_id) where is_default;

create trigger providers_touch_updated_at
before update on public.providers
for each row execute function private.touch_updated_at();

-- A provider's week in the org's local time; several ranges a day, none means off that day.
create table public.provider_hours (
  org_id uuid not null,
  provider_id uuid not null,
  -- ISO 8601 weekday: 1 = Monday ... 7 = Sunday.
  iso_weekday smallint not null check (iso_weekday between 1 and 7),
  opens_at time not null,
  closes_at time not null,
  primary key (provider_id, iso_weekday, opens_at),
  check (opens_at < closes_at),
  constraint provider_hours_provider_fkey foreign key (org_id, provider_id)
    references public.providers (org_id, id) on delete cascade
);
comment on table public.provider_hours is
  'Weekly working ranges per provider and ISO weekday (1 = Monday), in the org''s local time.';
create index provider_hours_org_provider_idx on public.provider_hours (org_id, provider_id);

create table public.services (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id) on delete cascade,
  name text not null check (length(btrim(name)) between 1 and 100),
  duration_minutes integer not null check (duration_minutes between 5 and 480),
  -- Time kept free after the appointment (cleaning a room, notes); blocks the provider too.
  buffer_after_minutes integer not null default 0 check (buffer_after_minutes between 0 and 240),
  -- Read back to the caller after booking, e.g. "Please arrive 10 minutes early".
  instructions text not null default '' check (length(instructions) <= 500),
  -- The service a booking without one gets (the mirrored legacy appointment length).
  is_default boolean not null default false,
  active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint services_org_id_id_key unique (org_id, id)
);
comment on table public.services is 'What can be booked: duration, buffer after, instructions.';
create unique index services_org_name_key on public.services (org_id, lower(name));
create unique index services_one_default_per_org on public.services (org_id) where is_default;

create trigger services_touch_updated_at
before update on public.services
for each row execute function private.touch_updated_at();

-- Which providers offer which services.
create table public.service_providers (
  org_id uuid not null,
  service_id uuid not null,
  provider_id uuid not null,
  primary key (service_id, provider_id),
  constraint service_providers_service_fkey foreign key (org_id, service_id)
    references public.services (org_id, id) on delete cascade,
  constraint service_providers_provider_fkey foreign key (org_id, provider_id)
    references public.providers (org_id, id) on delete cascade
);
create index service_providers_provider_idx on public.service_providers (org_id, provider_id);
create index service_providers_org_service_idx on public.service_providers (org_id, service_id);

-- One day that differs from the week: closed, or other ranges (several rows for several ranges).
create table public.schedule_overrides (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id) on delete cascade,
  -- Null: the whole org (a holiday, an extra Saturday clinic).
  provider_id uuid,
  override_date date not null,
  closed boolean not null default false,
  opens_at time,
  closes_at time,
  note text not null default '' check (length(note) <= 200),
  created_at timestamptz not null default now(),
  constraint schedule_overrides_provider_fkey foreign key (org_id, provider_id)
    references public.providers (org_id, id) on delete cascade,
  constraint schedule_overrides_hours_check check (
    (closed and opens_at is null and closes_at is null)
    or (not closed and opens_at is not null and closes_at is not null and opens_at < closes_at)
  )
);
comment on table public.schedule_overrides is
  'Date overrides for an org (provider_id null) or one provider: closed, or other hours.';
create index schedule_overrides_org_date_idx
on public.schedule_overrides (org_id, override_date, provider_id);
create index schedule_overrides_org_provider_idx
on public.schedule_overrides (org_id, provider_id);

alter table public.clients
  add column preferred_provider_id uuid,
  add constraint clients_preferred_provider_fkey foreign key (org_id, preferred_provider_id)
    references public.providers (org_id, id) on delete set null (preferred_provider_id);
create index clients_preferred_provider_idx on public.clients (org_id, preferred_provider_id)
where preferred_provider_id is not null;

-- The default provider and service of an org, created on first need (idempotent). A provider
-- already named like the org, or a service named "Appointment", becomes the default rather than
-- clashing with the new one's name.
create or replace function private.ensure_default_provider(p_org uuid)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_provider uuid;
  v_service uuid;
begin
  select p.id into v_provider from public.providers p where p.org_id = p_org and p.is_default;
  if v_provider is null then
    update public.providers p set is_default = true, active = true
    from public.orgs o
    where o.id = p_org and p.org_id = p_org and lower(p.name) = lower(o.name)
    returning p.id into v_provider;
  end if;
  if v_provider is null then
    insert into public.providers (org_id, name, is_default)
    select o.id, o.name, true from public.orgs o where o.id = p_org
    returning id into v_provider;
  end if;
  select s.id into v_service from public.services s where s.org_id = p_org and s.is_default;
  if v_service is null then
    update public.services s set is_default = true, active = true
    where s.org_id = p_org and lower(s.name) = 'appointment'
    returning s.id into v_service;
  end if;
  if v_service is null then
    insert into public.services (org_id, name, duration_minutes, is_default)
    select o.id, 'Appointment', o.appointment_minutes, true from public.orgs o where o.id = p_org
    returning id into v_service;
  end if;
  insert into public.service_providers (org_id, service_id, provider_id)
  values (p_org, v_service, v_provider)
  on conflict do nothing;
  return v_provider;
end;
$$;

-- Makes the default provider's week equal the org's legacy weekly hours.
create or replace function private.mirror_business_hours(p_org uuid)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_provider uuid;
begin
  -- Two transactions editing one org's hours rebuild its week one after the other.
  perform 1 from public.orgs o where o.id = p_org for no key update;
  v_provider := private.ensure_default_provider(p_org);
  delete from public.provider_hours h where h.provider_id = v_provider;
  insert into public.provider_hours (org_id, provider_id, iso_weekday, opens_at, closes_at)
  select b.org_id, v_provider, b.iso_weekday, b.opens_at, b.closes_at
  from public.org_business_hours b
  where b.org_id = p_org;
end;
$$;

create or replace function private.org_business_hours_mirror()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    if exists (select 1 from public.orgs o where o.id = old.org_id) then
      perform private.mirror_business_hours(old.org_id);
    end if;
  end if;
  if tg_op in ('INSERT', 'UPDATE') and (tg_op = 'INSERT' or new.org_id <> old.org_id) then
    perform private.mirror_business_hours(new.org_id);
  end if;
  return null;
end;
$$;

create trigger org_business_hours_mirror
after insert or update or delete on public.org_business_hours
for each row execute function private.org_business_hours_mirror();

-- orgs.appointment_minutes stays the default service's length.
create or replace function private.org_appointment_minutes_mirror()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  update public.services s
  set duration_minutes = new.appointment_minutes
  where s.org_id = new.id and s.is_default and s.duration_minutes <> new.appointment_minutes;
  return null;
end;
$$;

create trigger orgs_appointment_minutes_mirror
after update of appointment_minutes on public.orgs
for each row execute function private.org_appointment_minutes_mirror();

-- Every existing org: its weekly hours become its default provider, its length its service.
select private.mirror_business_hours(o.id) from public.orgs o;

alter table public.appointments
  add column provider_id uuid,
  add column service_id uuid,
  add column buffer_after_minutes integer not null default 0
    check (buffer_after_minutes between 0 and 240),
  -- ends_at plus the buffer, kept by a trigger (timestamptz arithmetic is not immutable, so a
  -- generated column cannot compute it).
  add column blocked_until timestamptz;

update public.appointments a
set
  provider_id = p.id,
  service_id = s.id,
  blocked_until = a.ends_at
from public.providers p, public.services s
where p.org_id = a.org_id and p.is_default and s.org_id = a.org_id and s.is_default;

-- Fills what a writer that predates providers leaves out, and keeps blocked_until honest.
create or replace function private.fill_appointment_schedule()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.provider_id is null then
    select p.id into new.provider_id
    from public.providers p
    where p.org_id = new.org_id and p.is_default;
  end if;
  if new.service_id is null and tg_op = 'INSERT' then
    select s.id, greatest(new.buffer_after_minutes, s.buffer_after_minutes)
    into new.service_id, new.buffer_after_minutes
    from public.services s
    where s.org_id = new.org_id and s.is_default;
    new.buffer_after_minutes := coalesce(new.buffer_after_minutes, 0);
  end if;
  new.blocked_until := new.ends_at + make_interval(mins => new.buffer_after_minutes);
  return new;
end;
$$;

create trigger appointments_fill_schedule
before insert or update on public.appointments
for each row execute function private.fill_appointment_schedule();

alter table public.appointments
  alter column provider_id set not null,
  alter column blocked_until set not null,
  add column blocked tstzrange generated always as (tstzrange(starts_at, blocked_until, '[)'))
    stored,
  add constraint appointments_provider_fkey foreign key (org_id, provider_id)
    references public.providers (org_id, id),
  add constraint appointments_service_fkey foreign key (org_id, service_id)
    references public.services (org_id, id) on delete set null (service_id),
  add constraint appointments_blocked_check check (blocked_until >= ends_at);

-- Overlap is per provider now, buffers included: two providers may take the same hour.
alter table public.appointments drop constraint appointments_no_overlap;
alter table public.appointments
  add constraint appointments_provider_no_overlap exclude using gist (
    provider_id with =,
    blocked with &&
  ) where (status = 'booked');
create index appointments_org_service_idx on public.appointments (org_id, service_id);
create index appointments_org_provider_starts_idx
on public.appointments (org_id, provider_id, starts_at);
comment on table public.appointments is
  'Appointments; active (booked) ones of a provider never overlap, buffers included.';

-- Confirmations name the service and provider ({service}, {provider}); existing orgs keep theirs.
alter table public.orgs
  alter column sms_confirmation_template set default
    'Hi {first_name}, your {service} with {provider} at {org_name} is booked for {when}. '
    || 'Confirmation code: {code}.';

-- Row level security: members read their orgs' scheduling setup; the service role does all.
alter table public.providers enable row level security;
alter table public.provider_hours enable row level security;
alter table public.services enable row level security;
alter table public.service_providers enable row level security;
alter table public.schedule_overrides enable row level security;

revoke all on
  public.providers, public.provider_hours, public.services, public.service_providers,
  public.schedule_overrides
from anon, authenticated;
grant select on
  public.providers, public.provider_hours, public.services, public.service_providers,
  public.schedule_overrides
to authenticated;
grant select, insert, update, delete on
  public.providers, public.provider_hours, public.services, public.service_providers,
  public.schedule_overrides
to service_role;

create policy "Members can read their orgs' providers"
on public.providers for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read their orgs' provider hours"
on public.provider_hours for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read their orgs' services"
on public.services for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read which providers offer their orgs' services"
on public.service_providers for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read their orgs' schedule overrides"
on public.schedule_overrides for select to authenticated
using (org_id in (select private.member_org_ids()));

revoke all on function private.ensure_default_provider(uuid) from public, anon, authenticated;
revoke all on function private.mirror_business_hours(uuid) from public, anon, authenticated;
revoke all on function private.org_business_hours_mirror() from public, anon, authenticated;
revoke all on function private.org_appointment_minutes_mirror() from public, anon, authenticated;
revoke all on function private.fill_appointment_schedule() from public, anon, authenticated;
grant execute on function private.ensure_default_provider(uuid) to service_role;
grant execute on function private.mirror_business_hours(uuid) to service_role;
