-- Scheduling RPCs (service role only): search_availability, and book_appointment,
-- reschedule_appointment, lookup_caller, claim_sms and available_slots taught services and
-- providers.
--
-- Tables touched: appointments, clients, calls (written); orgs, providers, provider_hours,
-- services, service_providers, schedule_overrides (read).
--
-- Slots are built per provider on the org's local clock: each range of the provider's hours that
-- day (see 20261202000100_scheduling_schema.sql for overrides) offers starts from its opening
-- time in steps of the org's slot granularity (default: the service's length plus buffer) while
-- the appointment itself ends by closing time. A slot blocks the provider for the service's
-- length plus its buffer. Local times that do not exist on a DST day are dropped; an ambiguous
-- one is offered once, as Postgres resolves it. Bookable: starts more than min_notice_minutes
-- from now and on or before the local day `booking_horizon_days` ahead.
--
-- New stable result codes besides those of 20261122000400_booking_rpcs.sql: too_soon, too_far,
-- unknown_service (none given and the org has no default, or not one of the org's active
-- services), unknown_provider (not one of the org's active providers offering the service).

-- Every slot of a service on `p_days` local days from `p_from`, per provider offering it (or only
-- `p_provider`), booked or not, past or not.
create or replace function private.service_slots(
  p_org uuid,
  p_service uuid,
  p_provider uuid,
  p_from date,
  p_days integer
)
returns table (provider_id uuid, starts_at timestamptz, ends_at timestamptz, blocked_until timestamptz)
language sql
stable
set search_path = ''
as $$
  with settings as (
    select o.timezone, s.duration_minutes, s.buffer_after_minutes,
      coalesce(o.slot_granularity_minutes, s.duration_minutes + s.buffer_after_minutes) as step
    from public.orgs o
    join public.services s on s.org_id = o.id and s.id = p_service and s.active
    where o.id = p_org
  ),
  chosen_providers as (
    select p.id
    from public.service_providers sp
    join public.providers p on p.id = sp.provider_id and p.org_id = p_org and p.active
    where sp.service_id = p_service and sp.org_id = p_org
      and (p_provider is null or p.id = p_provider)
  ),
  days as (
    select p_from + i as day
    from generate_series(0, least(greatest(coalesce(p_days, 1), 1), 62) - 1) as i
  ),
  overrides as (
    select o.provider_id, o.override_date, o.closed, o.opens_at, o.closes_at
    from public.schedule_overrides o
    where o.org_id = p_org
      and o.override_date between p_from and p_from + least(greatest(coalesce(p_days, 1), 1), 62)
  ),
  provider_days as (
    select cp.id as provider_id, d.day,
      case
        when exists (
          select 1 from overrides x where x.provider_id = cp.id and x.override_date = d.day
        ) then 'provider'
        when exists (
          select 1 from overrides x where x.provider_id is null and x.override_date = d.day
        ) then 'org'
        else 'weekly'
      end as scope
    from chosen_providers cp
    cross join days d
  ),
  ranges as (
    select pd.provider_id, pd.day, x.opens_at, x.closes_at
    from provider_days pd
    join overrides x
      on x.override_date = pd.day
      and not x.closed
      and (
        (pd.scope = 'provider' and x.provider_id = pd.provider_id)
        or (pd.scope = 'org' and x.provider_id is null)
      )
    where not exists (
      select 1 from overrides c
      where c.override_date = pd.day and c.closed
        and (
          (pd.scope = 'provider' and c.provider_id = pd.provider_id)
          or (pd.scope = 'org' and c.provider_id is null)
        )
    )
    union all
    select pd.provider_id, pd.day, h.opens_at, h.closes_at
    from provider_days pd
    join public.provider_hours h
      on h.provider_id = pd.provider_id and h.iso_weekday = extract(isodow from pd.day)::smallint
    where pd.scope = 'weekly'
  )
  select distinct
    r.provider_id,
    l.local_start at time zone st.timezone,
    (l.local_start at time zone st.timezone) + make_interval(mins => st.duration_minutes),
    (l.local_start at time zone st.timezone)
      + make_interval(mins => st.duration_minutes + st.buffer_after_minutes)
  from ranges r
  cross join settings st
  cross join lateral generate_series(
    0,
    floor(
      (extract(epoch from r.closes_at - r.opens_at) / 60 - st.duration_minutes) / st.step
    )::integer
  ) as n (slot_index)
  cross join lateral (
    select (r.day + r.opens_at) + make_interval(mins => n.slot_index * st.step) as local_start
  ) l
  where ((l.local_start at time zone st.timezone) at time zone st.timezone) = l.local_start
    -- In real time too: on the day clocks go forward, 01:00 + 2 h is 04:00, past a 03:00 close.
    and (l.local_start at time zone st.timezone) + make_interval(mins => st.duration_minutes)
      <= (r.day + r.closes_at) at time zone st.timezone;
$$;

-- Why `p_starts_at` cannot start a booking under the org's rules, whoever the provider:
-- 'in_past', 'too_soon', 'too_far', or null.
create or replace function private.booking_rule_problem(p_org uuid, p_starts_at timestamptz)
returns text
language sql
stable
set search_path = ''
as $$
  select case
    when p_starts_at <= now() then 'in_past'
    when p_starts_at <= now() + make_interval(mins => o.min_notice_minutes) then 'too_soon'
    when o.booking_horizon_days is not null
      and (p_starts_at at time zone o.timezone)::date
        > (now() at time zone o.timezone)::date + o.booking_horizon_days then 'too_far'
  end
  from public.orgs o
  where o.id = p_org;
$$;

-- The service a booking is for: the one given (if the org's and active), else the org's default,
-- else its only active service; null when none fits.
create or replace function private.resolve_service(p_org uuid, p_service uuid)
returns uuid
language sql
stable
set search_path = ''
as $$
  select case
    when p_service is not null then (
      select s.id from public.services s where s.id = p_service and s.org_id = p_org and s.active
    )
    else coalesce(
      (select s.id from public.services s where s.org_id = p_org and s.is_default and s.active),
      (
        select min(s.id::text)::uuid from public.services s
        where s.org_id = p_org and s.active
        having count(*) = 1
      )
    )
  end;
$$;

-- True when `p_provider` is an active provider of the org offering `p_service`.
create or replace function private.provider_offers(p_org uuid, p_service uuid, p_provider uuid)
returns boolean
language sql
stable
set search_path = ''
as $$
  select exists (
    select 1
    from public.service_providers sp
    join public.providers p on p.id = sp.provider_id and p.active
    where sp.org_id = p_org and sp.service_id = p_service and sp.provider_id = p_provider
  );
$$;

-- Free bookable slots of a service over `p_days` local days (at most 62) from `p_from`, per
-- provider (all providers offering it, or only `p_provider`), in time then provider-name order.
-- The busy check reads each provider's booked time over the searched window once (one probe of
-- the exclusion constraint's gist index per provider, merged into a multirange) rather than once
-- per candidate slot: measured 19.6 -> 5.5 ms p95 for a weekday of 20 providers with a year of
-- bookings (docs/benchmarks.md, "Availability search").
create or replace function public.search_availability(
  p_org uuid,
  p_service uuid,
  p_from date,
  p_days integer default 1,
  p_provider uuid default null
)
returns table (provider_id uuid, provider_name text, starts_at timestamptz, ends_at timestamptz)
language sql
stable
set search_path = ''
as $$
  with slots as materialized (
    select g.provider_id, g.starts_at, g.ends_at, g.blocked_until
    from public.orgs o
    cross join lateral private.service_slots(o.id, p_service, p_provider, p_from, p_days) g
    where o.id = p_org
      and g.starts_at > now() + make_interval(mins => o.min_notice_minutes)
      and (
        o.booking_horizon_days is null
        or (g.starts_at at time zone o.timezone)::date
          <= (now() at time zone o.timezone)::date + o.booking_horizon_days
      )
  ),
  -- A correlated subquery, so the planner cannot turn it into a window-only scan of every org's
  -- appointments.
  busy as (
    select w.provider_id, (
      select range_agg(a.blocked)
      from public.appointments a
      where a.provider_id = w.provider_id
        and a.status = 'booked'
        and a.blocked && w.searched
    ) as blocked
    from (
      select s.provider_id, tstzrange(min(s.starts_at), max(s.blocked_until), '[)') as searched
      from slots s
      group by s.provider_id
    ) w
  )
  select g.provider_id, p.name, g.starts_at, g.ends_at
  from slots g
  join public.providers p on p.id = g.provider_id
  left join busy b on b.provider_id = g.provider_id
  where b.blocked is null or not b.blocked && tstzrange(g.starts_at, g.blocked_until, '[)')
  order by g.starts_at, p.name;
$$;

-- Earlier API, kept for callers that predate services: the default service's slots of any of its
-- providers on a local day, once per start time.
create or replace function private.slot_grid(p_org uuid, p_day date)
returns table (starts_at timestamptz, ends_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select distinct g.starts_at, g.ends_at
  from private.service_slots(p_org, private.resolve_service(p_org, null), null, p_day, 1) g
  order by 1;
$$;

create or replace function public.available_slots(p_org uuid, p_day date)
returns table (starts_at timestamptz, ends_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select distinct s.starts_at, s.ends_at
  from public.search_availability(p_org, private.resolve_service(p_org, null), p_day, 1) s
  order by 1;
$$;

-- An appointment as the RPCs return it, with its service and provider.
create or replace function private.appointment_json(p_appointment public.appointments)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'id', p_appointment.id,
    'starts_at', private.iso_utc(p_appointment.starts_at),
    'ends_at', private.iso_utc(p_appointment.ends_at),
    'confirmation_code', p_appointment.confirmation_code,
    'status', p_appointment.status,
    'service_id', p_appointment.service_id,
    'service_name', (select s.name from public.services s where s.id = p_appointment.service_id),
    'provider_id', p_appointment.provider_id,
    'provider_name',
      (select p.name from public.providers p where p.id = p_appointment.provider_id)
  );
$$;

-- Inserts the appointment with the first candidate provider whose time is still free; null when
-- every candidate was taken (lost races included: the exclusion constraint decides).
create or replace function private.insert_first_free(
  p_org uuid,
  p_client uuid,
  p_call uuid,
  p_service public.services,
  p_starts_at timestamptz,
  p_providers uuid[]
)
returns public.appointments
language plpgsql
volatile
set search_path = ''
as $$
declare
  max_code_attempts constant integer := 5;
  v_provider uuid;
  v_appointment public.appointments;
  v_constraint text;
begin
  foreach v_provider in array p_providers loop
    for attempt in 1 .. max_code_attempts loop
      begin
        insert into public.appointments (
          org_id, client_id, call_id, provider_id, service_id, buffer_after_minutes,
          starts_at, ends_at
        )
        values (
          p_org, p_client, p_call, v_provider, p_service.id, p_service.buffer_after_minutes,
          p_starts_at, p_starts_at + make_interval(mins => p_service.duration_minutes)
        )
        returning * into v_appointment;
        return v_appointment;
      exception
        when exclusion_violation then
          exit; -- this provider is taken: try the next
        when unique_violation then
          -- Two transactions drew the same confirmation code at once: draw again.
          get stacked diagnostics v_constraint = constraint_name;
          if v_constraint <> 'appointments_confirmation_code_key'
            or attempt = max_code_attempts then
            raise;
          end if;
      end;
    end loop;
  end loop;
  return null;
end;
$$;

-- Candidate providers for a start: those offering the service (or only `p_provider`) with a
-- slot starting then, `p_first` first, then by name.
create or replace function private.slot_providers(
  p_org uuid,
  p_service uuid,
  p_provider uuid,
  p_starts_at timestamptz,
  p_first uuid default null
)
returns uuid[]
language sql
stable
set search_path = ''
as $$
  select coalesce(array_agg(g.provider_id order by g.provider_id is distinct from p_first, p.name), '{}')
  from public.orgs o
  cross join lateral private.service_slots(
    o.id, p_service, p_provider, (p_starts_at at time zone o.timezone)::date, 1
  ) g
  join public.providers p on p.id = g.provider_id
  where o.id = p_org and g.starts_at = p_starts_at;
$$;

drop function public.book_appointment(text, text, text, timestamptz);

-- Books `p_service` (default: the org's default service) at `p_starts_at` for the caller of
-- `p_call_sid`, with `p_provider` or else the first provider offering it who is free then.
create or replace function public.book_appointment(
  p_call_sid text,
  p_first_name text,
  p_last_name text,
  p_starts_at timestamptz,
  p_service_id uuid default null,
  p_provider_id uuid default null
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_first_name text := nullif(btrim(p_first_name), '');
  v_last_name text := nullif(btrim(p_last_name), '');
  v_call public.calls;
  v_org public.orgs;
  v_service public.services;
  v_problem text;
  v_providers uuid[];
  v_client_id uuid;
  v_appointment public.appointments;
begin
  if coalesce(btrim(p_call_sid), '') = '' or p_starts_at is null or v_first_name is null
    or length(v_first_name) > 100 or coalesce(length(v_last_name), 0) > 100 then
    return jsonb_build_object('ok', false, 'code', 'invalid_input');
  end if;

  select c.* into v_call from public.calls c where c.call_sid = p_call_sid;
  if not found then
    return jsonb_build_object('ok', false, 'code', 'unknown_call');
  end if;
  select o.* into v_org from public.orgs o where o.id = v_call.org_id;
  if not found then
    return jsonb_build_object('ok', false, 'code', 'unknown_org');
  end if;
  if not private.is_dialable_number(v_call.from_number) then
    return jsonb_build_object('ok', false, 'code', 'invalid_input');
  end if;
  select s.* into v_service from public.services s
  where s.id = private.resolve_service(v_org.id, p_service_id);
  if not found then
    return jsonb_build_object('ok', false, 'code', 'unknown_service');
  end if;
  if p_provider_id is not null
    and not private.provider_offers(v_org.id, v_service.id, p_provider_id) then
    return jsonb_build_object('ok', false, 'code', 'unknown_provider');
  end if;

  v_problem := private.booking_rule_problem(v_org.id, p_starts_at);
  if v_problem is not null then
    return jsonb_build_object('ok', false, 'code', v_problem);
  end if;
  v_providers := private.slot_providers(v_org.id, v_service.id, p_provider_id, p_starts_at);
  if cardinality(v_providers) = 0 then
    return jsonb_build_object('ok', false, 'code', 'outside_hours');
  end if;

  insert into public.clients as c (org_id, phone, first_name, last_name)
  values (v_org.id, v_call.from_number, v_first_name, v_last_name)
  on conflict (org_id, phone) do update
  set
    first_name = coalesce(nullif(btrim(c.first_name), ''), excluded.first_name),
    last_name = coalesce(nullif(btrim(c.last_name), ''), excluded.last_name)
  returning c.id into v_client_id;

  -- Bookings of one org take turns: racing transactions that each try provider after provider
  -- would otherwise wait on each other's uncommitted rows in the exclusion check (a deadlock).
  perform 1 from public.orgs o where o.id = v_org.id for no key update;
  v_appointment := private.insert_first_free(
    v_org.id, v_client_id, v_call.id, v_service, p_starts_at, v_providers
  );
  if v_appointment.id is null then
    return jsonb_build_object('ok', false, 'code', 'slot_taken');
  end if;

  update public.calls c
  set outcome = private.merge_call_outcome(c.outcome, 'booked')
  where c.id = v_call.id;

  return jsonb_build_object('ok', true, 'appointment', private.appointment_json(v_appointment));
end;
$$;

drop function public.reschedule_appointment(text, text, timestamptz);

-- Moves the caller's upcoming appointment with this code to another start (and optionally
-- another service or provider), keeping its code. Without a provider it stays with its current
-- one when free, else goes to the first other provider of the service who is.
create or replace function public.reschedule_appointment(
  p_call_sid text,
  p_code text,
  p_starts_at timestamptz,
  p_service_id uuid default null,
  p_provider_id uuid default null
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_call public.calls;
  v_org public.orgs;
  v_appointment public.appointments;
  v_service public.services;
  v_problem text;
  v_providers uuid[];
  v_provider uuid;
  v_moved boolean := false;
begin
  if coalesce(btrim(p_call_sid), '') = '' or private.normalize_confirmation_code(p_code) = ''
    or p_starts_at is null then
    return jsonb_build_object('ok', false, 'code', 'invalid_input');
  end if;
  select c.* into v_call from public.calls c where c.call_sid = p_call_sid;
  if not found then
    return jsonb_build_object('ok', false, 'code', 'unknown_call');
  end if;
  select o.* into v_org from public.orgs o where o.id = v_call.org_id;
  if not found then
    return jsonb_build_object('ok', false, 'code', 'unknown_org');
  end if;

  v_appointment := private.find_caller_appointment(v_call, p_code);
  if v_appointment.id is null then
    return jsonb_build_object('ok', false, 'code', 'not_found');
  end if;
  if v_appointment.starts_at <= now() then
    return jsonb_build_object('ok', false, 'code', 'in_past');
  end if;
  select s.* into v_service from public.services s
  where s.id = private.resolve_service(v_org.id, coalesce(p_service_id, v_appointment.service_id));
  if not found then
    return jsonb_build_object('ok', false, 'code', 'unknown_service');
  end if;
  if p_provider_id is not null
    and not private.provider_offers(v_org.id, v_service.id, p_provider_id) then
    return jsonb_build_object('ok', false, 'code', 'unknown_provider');
  end if;
  v_problem := private.booking_rule_problem(v_org.id, p_starts_at);
  if v_problem is not null then
    return jsonb_build_object('ok', false, 'code', v_problem);
  end if;
  v_providers := private.slot_providers(
    v_org.id, v_service.id, p_provider_id, p_starts_at, v_appointment.provider_id
  );
  if cardinality(v_providers) = 0 then
    return jsonb_build_object('ok', false, 'code', 'outside_hours');
  end if;

  -- Changes of one org's bookings take turns (see book_appointment).
  perform 1 from public.orgs o where o.id = v_org.id for no key update;
  foreach v_provider in array v_providers loop
    begin
      update public.appointments a
      set starts_at = p_starts_at,
        ends_at = p_starts_at + make_interval(mins => v_service.duration_minutes),
        provider_id = v_provider,
        service_id = v_service.id,
        buffer_after_minutes = v_service.buffer_after_minutes
      where a.id = v_appointment.id
      returning * into v_appointment;
      v_moved := true;
      exit;
    exception
      when exclusion_violation then
        null; -- taken with this provider: try the next
    end;
  end loop;
  if not v_moved then
    return jsonb_build_object('ok', false, 'code', 'slot_taken');
  end if;

  update public.calls c
  set outcome = private.merge_call_outcome(c.outcome, 'rescheduled')
  where c.id = v_call.id;

  return jsonb_build_object('ok', true, 'appointment', private.appointment_json(v_appointment));
end;
$$;

-- The org's bookable setup as the prompt and the tools need it: services (with the names of the
-- providers offering them), providers and booking rules.
create or replace function private.org_schedule_json(p_org uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'services', coalesce((
      select jsonb_agg(jsonb_build_object(
        'id', s.id,
        'name', s.name,
        'duration_minutes', s.duration_minutes,
        'buffer_after_minutes', s.buffer_after_minutes,
        'instructions', s.instructions,
        'is_default', s.is_default,
        'providers', coalesce((
          select jsonb_agg(p.name order by p.name)
          from public.service_providers sp
          join public.providers p on p.id = sp.provider_id and p.active
          where sp.service_id = s.id
        ), '[]'::jsonb)
      ) order by s.name)
      from public.services s
      where s.org_id = p_org and s.active
    ), '[]'::jsonb),
    'providers', coalesce((
      select jsonb_agg(jsonb_build_object('id', p.id, 'name', p.name) order by p.name)
      from public.providers p
      where p.org_id = p_org and p.active
    ), '[]'::jsonb),
    'booking_rules', (
      select jsonb_build_object(
        'min_notice_minutes', o.min_notice_minutes,
        'booking_horizon_days', o.booking_horizon_days,
        'slot_granularity_minutes', o.slot_granularity_minutes
      )
      from public.orgs o where o.id = p_org
    )
  );
$$;

-- Everything the prompt needs about a call, in one round trip (see 20261122000300_call_rpcs.sql),
-- now with the org's services, providers and booking rules, the caller's preferred provider and
-- the provider of their last past appointment, and service and provider on upcoming appointments.
create or replace function public.lookup_caller(p_to text, p_from text)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_to text := btrim(p_to);
  v_from text := btrim(p_from);
  v_org public.orgs;
  v_client public.clients;
  v_appointments jsonb;
  v_last_outcome text;
  v_preferred jsonb;
  v_last_provider jsonb;
begin
  select o.* into v_org
  from public.org_phone_numbers n
  join public.orgs o on o.id = n.org_id
  where n.phone_number = v_to;
  if not found then
    return null;
  end if;

  select c.* into v_client
  from public.clients c
  where c.org_id = v_org.id and c.phone = v_from;

  if v_client.id is not null then
    select coalesce(jsonb_agg(private.appointment_json(a) order by a.starts_at), '[]'::jsonb)
    into v_appointments
    from (
      select *
      from public.appointments a
      where a.org_id = v_org.id
        and a.client_id = v_client.id
        and a.status = 'booked'
        and a.starts_at > now()
      order by a.starts_at
      limit 3
    ) a;

    select jsonb_build_object('id', p.id, 'name', p.name) into v_preferred
    from public.providers p
    where p.id = v_client.preferred_provider_id and p.active;

    select jsonb_build_object('id', p.id, 'name', p.name) into v_last_provider
    from public.appointments a
    join public.providers p on p.id = a.provider_id and p.active
    where a.org_id = v_org.id
      and a.client_id = v_client.id
      and a.status = 'booked'
      and a.starts_at <= now()
    order by a.starts_at desc
    limit 1;
  end if;

  select c.outcome into v_last_outcome
  from public.calls c
  where c.org_id = v_org.id and c.from_number = v_from and c.ended_at is not null
  order by c.ended_at desc
  limit 1;

  return jsonb_build_object(
    'org', jsonb_build_object(
      'id', v_org.id,
      'name', v_org.name,
      'timezone', v_org.timezone,
      'greeting', v_org.greeting,
      'persona', v_org.persona,
      'appointment_minutes', v_org.appointment_minutes,
      'transfer_number', v_org.transfer_number,
      'sms_recovery_template', v_org.sms_recovery_template,
      'emergency_keywords', to_jsonb(v_org.emergency_keywords),
      'max_call_seconds', v_org.max_call_seconds,
      'voice', v_org.voice,
      'languages', to_jsonb(v_org.languages),
      'vad', jsonb_build_object(
        'threshold', v_org.vad_threshold,
        'silence_duration_ms', v_org.vad_silence_ms,
        'prefix_padding_ms', v_org.vad_prefix_padding_ms
      ),
      'phone_number', v_to
    ) || private.org_schedule_json(v_org.id),
    'client', case when v_client.id is null then null else jsonb_build_object(
      'id', v_client.id,
      'first_name', v_client.first_name,
      'last_name', v_client.last_name,
      'phone', v_client.phone,
      'preferred_provider', v_preferred
    ) end,
    'upcoming_appointments', coalesce(v_appointments, '[]'::jsonb),
    'last_provider', v_last_provider,
    'last_call_outcome', v_last_outcome
  );
end;
$$;

-- A confirmation template with {service} and {provider} filled from the appointment. An org that
-- predates providers has only its mirrored default provider, named as the org: " with {provider}"
-- is left out for it, and its default service ("Appointment") reads "appointment", so its text
-- says "your appointment at Harbor Dental" rather than naming the org twice.
create or replace function private.fill_schedule_placeholders(
  p_template text,
  p_appointment public.appointments
)
returns text
language sql
stable
set search_path = ''
as $$
  select replace(replace(
    case when p.is_default then replace(p_template, ' with {provider}', '') else p_template end,
    '{service}', case
      when s.id is null or (s.is_default and s.name = 'Appointment') then 'appointment'
      else s.name
    end),
    '{provider}', coalesce(p.name, ''))
  from (select 1) as one
  left join public.providers p on p.id = p_appointment.provider_id
  left join public.services s on s.id = p_appointment.service_id;
$$;

-- claim_sms of 20261122000500_sms_rpcs.sql, with {service} and {provider} in confirmations.
create or replace function public.claim_sms(p_call_sid text, p_kind text, p_body text default null)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_call public.calls;
  v_org public.orgs;
  v_client public.clients;
  v_appointment public.appointments;
  v_body text := nullif(btrim(p_body), '');
  v_sms_id uuid;
begin
  if p_kind is null or p_kind not in ('recovery', 'confirmation') then
    raise exception 'Unknown SMS kind: %', p_kind using errcode = 'invalid_parameter_value';
  end if;

  select c.* into v_call from public.calls c where c.call_sid = p_call_sid;
  if not found then
    return jsonb_build_object('claimed', false, 'reason', 'unknown_call');
  end if;
  select o.* into v_org from public.orgs o where o.id = v_call.org_id;
  if not found or v_call.to_number is null then
    return jsonb_build_object('claimed', false, 'reason', 'unknown_call');
  end if;
  if not private.is_dialable_number(v_call.from_number) then
    return jsonb_build_object('claimed', false, 'reason', 'invalid_number');
  end if;
  if exists (
    select 1 from public.sms_opt_outs s
    where s.org_id = v_org.id and s.phone = v_call.from_number
  ) then
    return jsonb_build_object('claimed', false, 'reason', 'opted_out');
  end if;

  if v_body is null then
    select c.* into v_client
    from public.clients c
    where c.org_id = v_org.id and c.phone = v_call.from_number;

    if p_kind = 'recovery' then
      v_body := private.render_sms_template(
        v_org.sms_recovery_template, v_client.first_name, v_org.name
      );
    else
      select a.* into v_appointment
      from public.appointments a
      where a.org_id = v_org.id
        and a.client_id = v_client.id
        and a.status = 'booked'
        and a.starts_at > now()
      order by a.updated_at desc
      limit 1;
      if v_appointment.id is null then
        raise exception 'Cannot render a confirmation: the caller has no upcoming appointment'
          using errcode = 'no_data_found';
      end if;
      v_body := private.render_sms_template(
        private.fill_schedule_placeholders(v_org.sms_confirmation_template, v_appointment),
        v_client.first_name,
        v_org.name,
        to_char(
          v_appointment.starts_at at time zone v_org.timezone,
          'FMDay, FMMonth FMDD "at" FMHH12:MI AM'
        ),
        v_appointment.confirmation_code
      );
    end if;
  end if;

  insert into public.sms_messages (org_id, call_id, to_number, from_number, body, kind)
  values (v_org.id, v_call.id, v_call.from_number, v_call.to_number, left(v_body, 1600), p_kind)
  on conflict (call_id, kind) do nothing
  returning id into v_sms_id;

  if v_sms_id is null then
    return jsonb_build_object('claimed', false, 'reason', 'already_claimed');
  end if;
  return jsonb_build_object(
    'claimed', true,
    'sms_id', v_sms_id,
    'to', v_call.from_number,
    'from', v_call.to_number,
    'body', left(v_body, 1600)
  );
end;
$$;

revoke all on function private.service_slots(uuid, uuid, uuid, date, integer)
from public, anon, authenticated;
revoke all on function private.booking_rule_problem(uuid, timestamptz)
from public, anon, authenticated;
revoke all on function private.resolve_service(uuid, uuid) from public, anon, authenticated;
revoke all on function private.provider_offers(uuid, uuid, uuid) from public, anon, authenticated;
revoke all on function private.insert_first_free(
  uuid, uuid, uuid, public.services, timestamptz, uuid[]
) from public, anon, authenticated;
revoke all on function private.slot_providers(uuid, uuid, uuid, timestamptz, uuid)
from public, anon, authenticated;
revoke all on function private.org_schedule_json(uuid) from public, anon, authenticated;
revoke all on function private.fill_schedule_placeholders(text, public.appointments)
from public, anon, authenticated;
grant execute on function private.service_slots(uuid, uuid, uuid, date, integer) to service_role;
grant execute on function private.booking_rule_problem(uuid, timestamptz) to service_role;
grant execute on function private.resolve_service(uuid, uuid) to service_role;
grant execute on function private.provider_offers(uuid, uuid, uuid) to service_role;
grant execute on function private.insert_first_free(
  uuid, uuid, uuid, public.services, timestamptz, uuid[]
) to service_role;
grant execute on function private.slot_providers(uuid, uuid, uuid, timestamptz, uuid)
to service_role;
grant execute on function private.org_schedule_json(uuid) to service_role;
grant execute on function private.fill_schedule_placeholders(text, public.appointments)
to service_role;

revoke all on function public.search_availability(uuid, uuid, date, integer, uuid)
from public, anon, authenticated;
revoke all on function public.book_appointment(text, text, text, timestamptz, uuid, uuid)
from public, anon, authenticated;
revoke all on function public.reschedule_appointment(text, text, timestamptz, uuid, uuid)
from public, anon, authenticated;
grant execute on function public.search_availability(uuid, uuid, date, integer, uuid)
to service_role;
grant execute on function public.book_appointment(text, text, text, timestamptz, uuid, uuid)
to service_role;
grant execute on function public.reschedule_appointment(text, text, timestamptz, uuid, uuid)
to service_role;
