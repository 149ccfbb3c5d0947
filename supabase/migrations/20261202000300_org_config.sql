-- The org as a file (supabase/orgs/<slug>.toml, applied by scripts/org.ts): a stable slug per
-- org, and the RPCs that export an org's whole configuration as one jsonb document and apply one
-- (country and languages were added with the scheduling schema, 20261202000100).
--
-- Tables touched: orgs (columns added; written by apply), org_phone_numbers, providers,
-- provider_hours, services, service_providers, schedule_overrides, org_members (written by the
-- RPCs below).

alter table public.orgs add column slug text;

-- Existing orgs get a slug from their name (`Harbor Dental` -> `harbor-dental`), made unique with
-- a piece of their id when two names agree.
update public.orgs o
set slug = s.slug
from (
  select id, case
    when count(*) over (partition by base) = 1 and base <> '' then base
    else left(nullif(base, '') || '-', 50) || left(replace(id::text, '-', ''), 8)
  end as slug
  from (
    select id, left(trim(both '-' from regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')), 50)
      as base
    from public.orgs
  ) named
) s
where s.id = o.id;

create or replace function private.default_org_slug()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.slug is null then
    new.slug := left(replace(new.id::text, '-', ''), 12);
  end if;
  return new;
end;
$$;

create trigger orgs_default_slug
before insert on public.orgs
for each row execute function private.default_org_slug();

alter table public.orgs
  alter column slug set not null,
  add constraint orgs_slug_key unique (slug),
  add constraint orgs_slug_format check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$');
comment on column public.orgs.slug is
  'Stable name of the org: its file is supabase/orgs/<slug>.toml.';

revoke all on function private.default_org_slug() from public, anon, authenticated;

-- The org's whole configuration as one document, the shape of its file (scripts/org/org_file.ts
-- maps it to and from TOML). Only active providers and services; everything sorted, so two
-- exports of an unchanged org are equal. Null for an unknown slug.
create or replace function public.export_org_config(p_slug text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'name', o.name,
    'timezone', o.timezone,
    'country', o.country,
    'numbers', coalesce((
      select jsonb_agg(n.phone_number order by n.phone_number)
      from public.org_phone_numbers n where n.org_id = o.id
    ), '[]'::jsonb),
    'greeting', o.greeting,
    'persona', o.persona,
    'voice', o.voice,
    'languages', to_jsonb(o.languages),
    'transfer_number', o.transfer_number,
    'emergency_keywords', to_jsonb(o.emergency_keywords),
    'max_call_minutes', case when o.max_call_seconds is null then null
      else ceil(o.max_call_seconds / 60.0)::integer end,
    'vad', jsonb_build_object(
      'threshold', o.vad_threshold,
      'silence_ms', o.vad_silence_ms,
      'prefix_padding_ms', o.vad_prefix_padding_ms
    ),
    'sms', jsonb_build_object(
      'recovery', o.sms_recovery_template,
      'confirmation', o.sms_confirmation_template
    ),
    'booking', jsonb_build_object(
      'min_notice_minutes', o.min_notice_minutes,
      'horizon_days', o.booking_horizon_days,
      'slot_minutes', o.slot_granularity_minutes
    ),
    'providers', coalesce((
      select jsonb_agg(jsonb_build_object(
        'name', p.name,
        'hours', coalesce((
          select jsonb_agg(jsonb_build_object(
            'weekday', h.iso_weekday,
            'opens', to_char(h.opens_at, 'HH24:MI'),
            'closes', case when h.closes_at = '24:00'::time then '24:00'
              else to_char(h.closes_at, 'HH24:MI') end
          ) order by h.iso_weekday, h.opens_at)
          from public.provider_hours h where h.provider_id = p.id
        ), '[]'::jsonb)
      ) order by lower(p.name))
      from public.providers p where p.org_id = o.id and p.active
    ), '[]'::jsonb),
    'services', coalesce((
      select jsonb_agg(jsonb_build_object(
        'name', s.name,
        'minutes', s.duration_minutes,
        'buffer_minutes', s.buffer_after_minutes,
        'instructions', s.instructions,
        'default', s.is_default,
        'providers', coalesce((
          select jsonb_agg(p.name order by lower(p.name))
          from public.service_providers sp
          join public.providers p on p.id = sp.provider_id and p.active
          where sp.service_id = s.id
        ), '[]'::jsonb)
      ) order by lower(s.name))
      from public.services s where s.org_id = o.id and s.active
    ), '[]'::jsonb),
    'overrides', coalesce((
      select jsonb_agg(jsonb_build_object(
        'date', to_char(d.override_date, 'YYYY-MM-DD'),
        'provider', d.provider_name,
        'closed', d.closed,
        'hours', d.hours,
        'note', d.note
      ) order by d.override_date, d.provider_name nulls first)
      from (
        select x.override_date, p.name as provider_name, bool_or(x.closed) as closed,
          coalesce(jsonb_agg(jsonb_build_object(
            'opens', to_char(x.opens_at, 'HH24:MI'),
            'closes', case when x.closes_at = '24:00'::time then '24:00'
              else to_char(x.closes_at, 'HH24:MI') end
          ) order by x.opens_at) filter (where not x.closed), '[]'::jsonb) as hours,
          coalesce(max(nullif(x.note, '')), '') as note
        from public.schedule_overrides x
        left join public.providers p on p.id = x.provider_id
        where x.org_id = o.id
        group by x.override_date, p.name
      ) d
    ), '[]'::jsonb)
  )
  from public.orgs o
  where o.slug = p_slug;
$$;

-- Makes the org `p_slug` what `p_config` (the shape export_org_config returns) says, creating it
-- when new; all or nothing. Numbers not listed are detached; providers and services not listed
-- are deleted, or deactivated when appointments refer to them; a provider with future bookings
-- is never removed (the error lists them). Appointments are never deleted. Returns
-- {org_id, created, before, after} with before and after from export_org_config.
create or replace function public.apply_org_config(p_slug text, p_config jsonb)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_before jsonb := public.export_org_config(p_slug);
  v_org uuid;
  v_default_minutes integer;
  v_taken text;
  v_blocked text;
  v_provider record;
  v_service record;
  v_ids uuid[];
begin
  if p_config is null or jsonb_typeof(p_config) <> 'object' then
    raise exception 'Cannot apply org %: the configuration is not an object', p_slug
      using errcode = 'invalid_parameter_value';
  end if;
  select (s ->> 'minutes')::integer into v_default_minutes
  from jsonb_array_elements(coalesce(p_config -> 'services', '[]')) s
  order by coalesce((s ->> 'default')::boolean, false) desc
  limit 1;

  insert into public.orgs as o (
    slug, name, timezone, country, greeting, persona, voice, languages, transfer_number,
    emergency_keywords, max_call_seconds, vad_threshold, vad_silence_ms, vad_prefix_padding_ms,
    sms_recovery_template, sms_confirmation_template, min_notice_minutes, booking_horizon_days,
    slot_granularity_minutes, appointment_minutes
  )
  values (
    p_slug,
    p_config ->> 'name',
    p_config ->> 'timezone',
    p_config ->> 'country',
    coalesce(p_config ->> 'greeting', ''),
    coalesce(p_config ->> 'persona', ''),
    coalesce(p_config ->> 'voice', 'alloy'),
    coalesce(
      array(select jsonb_array_elements_text(p_config -> 'languages')), array['en']
    ),
    p_config ->> 'transfer_number',
    coalesce(array(select jsonb_array_elements_text(p_config -> 'emergency_keywords')), '{}'),
    ((p_config ->> 'max_call_minutes')::integer) * 60,
    coalesce((p_config #>> '{vad,threshold}')::numeric, 0.6),
    coalesce((p_config #>> '{vad,silence_ms}')::integer, 400),
    coalesce((p_config #>> '{vad,prefix_padding_ms}')::integer, 300),
    coalesce(
      p_config #>> '{sms,recovery}',
      'Hi {first_name}, sorry we got cut off. Call {org_name} back any time, or reply with a '
        || 'good time to reach you.'
    ),
    coalesce(
      p_config #>> '{sms,confirmation}',
      'Hi {first_name}, your {service} with {provider} at {org_name} is booked for {when}. '
        || 'Confirmation code: {code}.'
    ),
    coalesce((p_config #>> '{booking,min_notice_minutes}')::integer, 0),
    (p_config #>> '{booking,horizon_days}')::integer,
    (p_config #>> '{booking,slot_minutes}')::integer,
    coalesce(v_default_minutes, 30)
  )
  on conflict (slug) do update
  set name = excluded.name,
    timezone = excluded.timezone,
    country = excluded.country,
    greeting = excluded.greeting,
    persona = excluded.persona,
    voice = excluded.voice,
    languages = excluded.languages,
    transfer_number = excluded.transfer_number,
    emergency_keywords = excluded.emergency_keywords,
    max_call_seconds = excluded.max_call_seconds,
    vad_threshold = excluded.vad_threshold,
    vad_silence_ms = excluded.vad_silence_ms,
    vad_prefix_padding_ms = excluded.vad_prefix_padding_ms,
    sms_recovery_template = excluded.sms_recovery_template,
    sms_confirmation_template = excluded.sms_confirmation_template,
    min_notice_minutes = excluded.min_notice_minutes,
    booking_horizon_days = excluded.booking_horizon_days,
    slot_granularity_minutes = excluded.slot_granularity_minutes,
    appointment_minutes = excluded.appointment_minutes
  returning o.id into v_org;

  -- Numbers: a number answers for one org only.
  select string_agg(format('%s (org %s)', n.phone_number, o.slug), ', ') into v_taken
  from public.org_phone_numbers n
  join public.orgs o on o.id = n.org_id
  where n.org_id <> v_org
    and n.phone_number in (select jsonb_array_elements_text(p_config -> 'numbers'));
  if v_taken is not null then
    raise exception 'Cannot apply org %: numbers already answer for another org: %', p_slug,
      v_taken using errcode = 'unique_violation';
  end if;
  delete from public.org_phone_numbers n
  where n.org_id = v_org
    and n.phone_number not in (select jsonb_array_elements_text(p_config -> 'numbers'));
  insert into public.org_phone_numbers (phone_number, org_id)
  select number, v_org from jsonb_array_elements_text(p_config -> 'numbers') as number
  on conflict (phone_number) do nothing;

  -- Providers: removed ones must have no future bookings.
  select string_agg(
    format('%s on %s (code %s)', p.name,
      to_char(a.starts_at at time zone o.timezone, 'YYYY-MM-DD HH24:MI'), a.confirmation_code),
    ', ' order by a.starts_at
  ) into v_blocked
  from public.providers p
  join public.orgs o on o.id = p.org_id
  join public.appointments a on a.provider_id = p.id and a.status = 'booked' and a.starts_at > now()
  where p.org_id = v_org and p.active
    and lower(p.name) not in (
      select lower(x ->> 'name') from jsonb_array_elements(p_config -> 'providers') x
    );
  if v_blocked is not null then
    raise exception 'Cannot apply org %: providers removed from the file have future bookings: %',
      p_slug, v_blocked using errcode = 'foreign_key_violation';
  end if;
  for v_provider in
    select p.id, exists (select 1 from public.appointments a where a.provider_id = p.id) as used
    from public.providers p
    where p.org_id = v_org and p.active
      and lower(p.name) not in (
        select lower(x ->> 'name') from jsonb_array_elements(p_config -> 'providers') x
      )
  loop
    if v_provider.used then
      update public.providers set active = false where id = v_provider.id;
    else
      delete from public.providers where id = v_provider.id;
    end if;
  end loop;
  insert into public.providers as p (org_id, name)
  select v_org, x ->> 'name' from jsonb_array_elements(p_config -> 'providers') x
  on conflict (org_id, lower(name)) do update set name = excluded.name, active = true
  where p.name is distinct from excluded.name or not p.active;

  select array_agg(p.id) into v_ids
  from public.providers p
  where p.org_id = v_org and p.active;
  delete from public.provider_hours h where h.provider_id = any (v_ids);
  insert into public.provider_hours (org_id, provider_id, iso_weekday, opens_at, closes_at)
  select v_org, p.id, (h ->> 'weekday')::smallint, (h ->> 'opens')::time, (h ->> 'closes')::time
  from jsonb_array_elements(p_config -> 'providers') x
  join public.providers p on p.org_id = v_org and lower(p.name) = lower(x ->> 'name')
  cross join lateral jsonb_array_elements(coalesce(x -> 'hours', '[]')) h;

  -- Services: the file's default first cleared, so the one-default index never sees two.
  for v_service in
    select s.id, exists (select 1 from public.appointments a where a.service_id = s.id) as used
    from public.services s
    where s.org_id = v_org and s.active
      and lower(s.name) not in (
        select lower(x ->> 'name') from jsonb_array_elements(p_config -> 'services') x
      )
  loop
    if v_service.used then
      update public.services set active = false, is_default = false where id = v_service.id;
    else
      delete from public.services where id = v_service.id;
    end if;
  end loop;
  update public.services s set is_default = false
  where s.org_id = v_org and s.is_default
    and not exists (
      select 1 from jsonb_array_elements(p_config -> 'services') x
      where lower(x ->> 'name') = lower(s.name) and coalesce((x ->> 'default')::boolean, false)
    );
  insert into public.services as s (
    org_id, name, duration_minutes, buffer_after_minutes, instructions, is_default
  )
  select v_org, x ->> 'name', (x ->> 'minutes')::integer,
    coalesce((x ->> 'buffer_minutes')::integer, 0), coalesce(x ->> 'instructions', ''),
    coalesce((x ->> 'default')::boolean, false)
  from jsonb_array_elements(p_config -> 'services') x
  on conflict (org_id, lower(name)) do update
  set name = excluded.name,
    duration_minutes = excluded.duration_minutes,
    buffer_after_minutes = excluded.buffer_after_minutes,
    instructions = excluded.instructions,
    is_default = excluded.is_default,
    active = true
  where (s.name, s.duration_minutes, s.buffer_after_minutes, s.instructions, s.is_default, s.active)
    is distinct from (excluded.name, excluded.duration_minutes, excluded.buffer_after_minutes,
      excluded.instructions, excluded.is_default, true);

  delete from public.service_providers sp where sp.org_id = v_org;
  insert into public.service_providers (org_id, service_id, provider_id)
  select distinct v_org, s.id, p.id
  from jsonb_array_elements(p_config -> 'services') x
  join public.services s on s.org_id = v_org and lower(s.name) = lower(x ->> 'name')
  cross join lateral jsonb_array_elements_text(coalesce(x -> 'providers', '[]')) as named
  join public.providers p on p.org_id = v_org and lower(p.name) = lower(named) and p.active;

  delete from public.schedule_overrides d where d.org_id = v_org;
  insert into public.schedule_overrides (org_id, provider_id, override_date, closed, note)
  select v_org, p.id, (x ->> 'date')::date, true, coalesce(x ->> 'note', '')
  from jsonb_array_elements(coalesce(p_config -> 'overrides', '[]')) x
  left join public.providers p on p.org_id = v_org and lower(p.name) = lower(x ->> 'provider')
  where coalesce((x ->> 'closed')::boolean, false);
  insert into public.schedule_overrides (
    org_id, provider_id, override_date, closed, opens_at, closes_at, note
  )
  select v_org, p.id, (x ->> 'date')::date, false, (h ->> 'opens')::time, (h ->> 'closes')::time,
    coalesce(x ->> 'note', '')
  from jsonb_array_elements(coalesce(p_config -> 'overrides', '[]')) x
  left join public.providers p on p.org_id = v_org and lower(p.name) = lower(x ->> 'provider')
  cross join lateral jsonb_array_elements(coalesce(x -> 'hours', '[]')) as h
  where not coalesce((x ->> 'closed')::boolean, false);

  return jsonb_build_object(
    'org_id', v_org,
    'created', v_before is null,
    'before', v_before,
    'after', public.export_org_config(p_slug)
  );
end;
$$;

-- Makes an existing user a member of the org (or changes their role); idempotent.
create or replace function public.add_org_member(p_slug text, p_user_id uuid, p_role text)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_org uuid;
  v_previous text;
begin
  if p_role is null or p_role not in ('owner', 'staff') then
    raise exception 'Unknown role %: use owner or staff', p_role
      using errcode = 'invalid_parameter_value';
  end if;
  select o.id into v_org from public.orgs o where o.slug = p_slug;
  if v_org is null then
    raise exception 'Cannot find org %', p_slug using errcode = 'no_data_found';
  end if;
  select m.role into v_previous from public.org_members m
  where m.org_id = v_org and m.user_id = p_user_id;
  insert into public.org_members (org_id, user_id, role)
  values (v_org, p_user_id, p_role)
  on conflict (org_id, user_id) do update set role = excluded.role;
  return jsonb_build_object('org_id', v_org, 'previous_role', v_previous, 'role', p_role);
end;
$$;

revoke all on function public.export_org_config(text) from public, anon, authenticated;
revoke all on function public.apply_org_config(text, jsonb) from public, anon, authenticated;
revoke all on function public.add_org_member(text, uuid, text) from public, anon, authenticated;
grant execute on function public.export_org_config(text) to service_role;
grant execute on function public.apply_org_config(text, jsonb) to service_role;
grant execute on function public.add_org_member(text, uuid, text) to service_role;
