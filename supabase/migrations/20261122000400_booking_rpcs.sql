-- Booking RPCs (service role only): available_slots, book_appointment, cancel_appointment,
-- reschedule_appointment, plus the slot grid they share.
--
-- Tables touched: appointments, clients, calls (written); orgs, org_business_hours (read).
--
-- Slots are built on the org's local clock: each business-hours interval is cut into slots of the
-- org's appointment length from its opening time, each local start is converted with
-- `at time zone org.timezone`, and a slot lasts appointment_minutes of real time. Local times that
-- do not exist (the hour skipped when clocks go forward) are dropped rather than shifted, so no
-- slot is offered twice on a DST day; an ambiguous local time (the hour repeated when clocks go
-- back) is offered once, as Postgres resolves it.
--
-- The org and the caller's phone always come from the call row, never from the model. Results are
-- {ok: true, appointment: {id, starts_at, ends_at, confirmation_code, status}} or
-- {ok: false, code} with a stable code: slot_taken, outside_hours, in_past, unknown_org,
-- unknown_call, not_found, invalid_input. A caller whose number is withheld or not E.164 gets
-- invalid_input from book_appointment: the appointment could not be tied to a reachable client.

-- Every slot of the org's business hours on a local day, booked or not, past or not.
create or replace function private.slot_grid(p_org uuid, p_day date)
returns table (starts_at timestamptz, ends_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select distinct
    l.local_start at time zone o.timezone,
    (l.local_start at time zone o.timezone) + make_interval(mins => o.appointment_minutes)
  from public.orgs o
  join public.org_business_hours h
    on h.org_id = o.id and h.iso_weekday = extract(isodow from p_day)::smallint
  cross join lateral generate_series(
    0,
    (floor(extract(epoch from h.closes_at - h.opens_at) / 60 / o.appointment_minutes))::integer - 1
  ) as n (slot_index)
  cross join lateral (
    select (p_day + h.opens_at) + make_interval(mins => n.slot_index * o.appointment_minutes)
      as local_start
  ) l
  where o.id = p_org
    and ((l.local_start at time zone o.timezone) at time zone o.timezone) = l.local_start
  order by 1;
$$;

-- Why `p_starts_at` cannot start an appointment of the org: 'in_past', 'outside_hours', or null
-- when it is the start of a slot of the org's business hours in the future.
create or replace function private.slot_problem(p_org uuid, p_starts_at timestamptz)
returns text
language sql
stable
set search_path = ''
as $$
  select case
    when p_starts_at <= now() then 'in_past'
    when not exists (
      select 1
      from private.slot_grid(p_org, (p_starts_at at time zone o.timezone)::date) g
      where g.starts_at = p_starts_at
    ) then 'outside_hours'
  end
  from public.orgs o
  where o.id = p_org;
$$;

-- Normalizes a confirmation code as a caller may read it ("abc-123" -> "ABC123").
create or replace function private.normalize_confirmation_code(p_code text)
returns text
language sql
immutable
set search_path = ''
as $$
  select upper(regexp_replace(coalesce(p_code, ''), '[^A-Za-z0-9]', '', 'g'));
$$;

-- The free future slots of an org on a local day.
create or replace function public.available_slots(p_org uuid, p_day date)
returns table (starts_at timestamptz, ends_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select g.starts_at, g.ends_at
  from private.slot_grid(p_org, p_day) g
  where g.starts_at > now()
    and not exists (
      select 1
      from public.appointments a
      where a.org_id = p_org
        and a.status = 'booked'
        and a.during && tstzrange(g.starts_at, g.ends_at, '[)')
    )
  order by g.starts_at;
$$;

-- Books the slot starting at `p_starts_at` for the caller of `p_call_sid`, atomically: upserts the
-- client by (org, phone) and fills names it did not know, checks the slot, inserts the appointment
-- (the exclusion constraint turns a lost race into slot_taken) and marks the call `booked`.
create or replace function public.book_appointment(
  p_call_sid text,
  p_first_name text,
  p_last_name text,
  p_starts_at timestamptz
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  max_code_attempts constant integer := 5;
  v_first_name text := nullif(btrim(p_first_name), '');
  v_last_name text := nullif(btrim(p_last_name), '');
  v_call public.calls;
  v_org public.orgs;
  v_problem text;
  v_client_id uuid;
  v_appointment public.appointments;
  v_constraint text;
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

  v_problem := private.slot_problem(v_org.id, p_starts_at);
  if v_problem is not null then
    return jsonb_build_object('ok', false, 'code', v_problem);
  end if;

  insert into public.clients as c (org_id, phone, first_name, last_name)
  values (v_org.id, v_call.from_number, v_first_name, v_last_name)
  on conflict (org_id, phone) do update
  set
    first_name = coalesce(nullif(btrim(c.first_name), ''), excluded.first_name),
    last_name = coalesce(nullif(btrim(c.last_name), ''), excluded.last_name)
  returning c.id into v_client_id;

  for attempt in 1 .. max_code_attempts loop
    begin
      insert into public.appointments (org_id, client_id, call_id, starts_at, ends_at)
      values (
        v_org.id, v_client_id, v_call.id, p_starts_at,
        p_starts_at + make_interval(mins => v_org.appointment_minutes)
      )
      returning * into v_appointment;
      exit;
    exception
      when exclusion_violation then
        return jsonb_build_object('ok', false, 'code', 'slot_taken');
      when unique_violation then
        -- Two transactions drew the same confirmation code at once: draw again.
        get stacked diagnostics v_constraint = constraint_name;
        if v_constraint <> 'appointments_confirmation_code_key' or attempt = max_code_attempts then
          raise;
        end if;
    end;
  end loop;

  update public.calls c
  set outcome = private.merge_call_outcome(c.outcome, 'booked')
  where c.id = v_call.id;

  return jsonb_build_object('ok', true, 'appointment', private.appointment_json(v_appointment));
end;
$$;

-- The caller's own booked appointment with this code, locked; matched by the call's org and the
-- call's from number, so a caller can never touch someone else's appointment.
create or replace function private.find_caller_appointment(p_call public.calls, p_code text)
returns public.appointments
language sql
volatile
set search_path = ''
as $$
  select a.*
  from public.appointments a
  join public.clients c on c.id = a.client_id
  where a.org_id = p_call.org_id
    and a.confirmation_code = private.normalize_confirmation_code(p_code)
    and a.status = 'booked'
    and c.org_id = p_call.org_id
    and c.phone = p_call.from_number
  for update of a;
$$;

-- Cancels the caller's upcoming appointment with this confirmation code.
create or replace function public.cancel_appointment(p_call_sid text, p_code text)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_call public.calls;
  v_appointment public.appointments;
begin
  if coalesce(btrim(p_call_sid), '') = '' or private.normalize_confirmation_code(p_code) = '' then
    return jsonb_build_object('ok', false, 'code', 'invalid_input');
  end if;
  select c.* into v_call from public.calls c where c.call_sid = p_call_sid;
  if not found then
    return jsonb_build_object('ok', false, 'code', 'unknown_call');
  end if;
  if v_call.org_id is null then
    return jsonb_build_object('ok', false, 'code', 'unknown_org');
  end if;

  v_appointment := private.find_caller_appointment(v_call, p_code);
  if v_appointment.id is null then
    return jsonb_build_object('ok', false, 'code', 'not_found');
  end if;
  if v_appointment.starts_at <= now() then
    return jsonb_build_object('ok', false, 'code', 'in_past');
  end if;

  update public.appointments a
  set status = 'cancelled', cancelled_at = now()
  where a.id = v_appointment.id
  returning * into v_appointment;

  update public.calls c
  set outcome = private.merge_call_outcome(c.outcome, 'cancelled')
  where c.id = v_call.id;

  return jsonb_build_object('ok', true, 'appointment', private.appointment_json(v_appointment));
end;
$$;

-- Moves the caller's upcoming appointment with this code to another slot, keeping its code.
create or replace function public.reschedule_appointment(
  p_call_sid text,
  p_code text,
  p_starts_at timestamptz
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
  v_problem text;
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
  v_problem := private.slot_problem(v_org.id, p_starts_at);
  if v_problem is not null then
    return jsonb_build_object('ok', false, 'code', v_problem);
  end if;

  begin
    update public.appointments a
    set starts_at = p_starts_at,
      ends_at = p_starts_at + make_interval(mins => v_org.appointment_minutes)
    where a.id = v_appointment.id
    returning * into v_appointment;
  exception
    when exclusion_violation then
      return jsonb_build_object('ok', false, 'code', 'slot_taken');
  end;

  update public.calls c
  set outcome = private.merge_call_outcome(c.outcome, 'rescheduled')
  where c.id = v_call.id;

  return jsonb_build_object('ok', true, 'appointment', private.appointment_json(v_appointment));
end;
$$;

revoke all on function private.slot_grid(uuid, date) from public, anon, authenticated;
revoke all on function private.slot_problem(uuid, timestamptz) from public, anon, authenticated;
revoke all on function private.normalize_confirmation_code(text) from public, anon, authenticated;
revoke all on function private.find_caller_appointment(public.calls, text)
from public, anon, authenticated;
grant execute on function private.slot_grid(uuid, date) to service_role;
grant execute on function private.slot_problem(uuid, timestamptz) to service_role;
grant execute on function private.normalize_confirmation_code(text) to service_role;
grant execute on function private.find_caller_appointment(public.calls, text) to service_role;

revoke all on function public.available_slots(uuid, date) from public, anon, authenticated;
revoke all on function public.book_appointment(text, text, text, timestamptz)
from public, anon, authenticated;
revoke all on function public.cancel_appointment(text, text) from public, anon, authenticated;
revoke all on function public.reschedule_appointment(text, text, timestamptz)
from public, anon, authenticated;
grant execute on function public.available_slots(uuid, date) to service_role;
grant execute on function public.book_appointment(text, text, text, timestamptz) to service_role;
grant execute on function public.cancel_appointment(text, text) to service_role;
grant execute on function public.reschedule_appointment(text, text, timestamptz) to service_role;
