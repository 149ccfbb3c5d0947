-- Calendar feeds: an iCalendar (RFC 5545) URL per org, or per provider, that staff subscribe to
-- from Google Calendar, Outlook or Apple Calendar. voice-action serves it on
-- `GET .../voice-action?route=calendar&token=<token>`; the token is a random secret shown once by
-- `scripts/org.ts rotate-feed` and stored only as its SHA-256 (hex), so the table never holds
-- anything that opens a feed. Rotating replaces the active token: the old URL stops working.
--
-- Table added: calendar_feeds. Index added: appointments (org_id, starts_at), for whole-org
-- feeds. RPCs (service role only): rotate_calendar_feed, calendar_feed. Reads orgs, providers,
-- services, clients, appointments.
--
-- Nobody but the service role reads feeds (members read the appointments themselves, and a token
-- hash is of use to nobody else): RLS is on with no policy; anon and authenticated have no grant.

create table public.calendar_feeds (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id) on delete cascade,
  -- Null: every appointment of the org; else only this provider's.
  provider_id uuid,
  -- Lowercase hex SHA-256 of the URL's token.
  token_sha256 text not null check (token_sha256 ~ '^[0-9a-f]{64}$'),
  created_at timestamptz not null default now(),
  -- Set when a newer token replaced this one; a revoked feed answers like an unknown one.
  revoked_at timestamptz,
  constraint calendar_feeds_token_sha256_key unique (token_sha256),
  constraint calendar_feeds_provider_fkey foreign key (org_id, provider_id)
    references public.providers (org_id, id) on delete cascade
);
comment on table public.calendar_feeds is
  'iCalendar feed tokens (SHA-256 only) per org or provider; one active feed per org and provider.';

-- One active feed per org and provider (the whole-org feed, provider null, included).
create unique index calendar_feeds_one_active_key
on public.calendar_feeds (org_id, provider_id) nulls not distinct
where revoked_at is null;
create index calendar_feeds_org_provider_idx on public.calendar_feeds (org_id, provider_id);

-- Whole-org feeds read an org's appointments by start time (per-provider feeds use
-- appointments_org_provider_starts_idx).
create index appointments_org_starts_idx on public.appointments (org_id, starts_at);

alter table public.calendar_feeds enable row level security;
revoke all on public.calendar_feeds from anon, authenticated;
grant select, insert, update, delete on public.calendar_feeds to service_role;

-- Makes `p_token_sha256` (lowercase hex SHA-256 of a new token) the active token of the org's
-- feed (`p_provider` null) or of one provider's feed, revoking the token it replaces. Returns the
-- feed's id.
create or replace function public.rotate_calendar_feed(
  p_org uuid,
  p_provider uuid,
  p_token_sha256 text
)
returns uuid
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if p_token_sha256 is null or p_token_sha256 !~ '^[0-9a-f]{64}$' then
    raise exception 'rotate_calendar_feed needs a lowercase hex SHA-256'
      using errcode = 'invalid_parameter_value';
  end if;
  -- Serializes rotations of one org, so two at once cannot both leave an active token.
  perform 1 from public.orgs o where o.id = p_org for no key update;
  if not found then
    raise exception 'rotate_calendar_feed: unknown org' using errcode = 'no_data_found';
  end if;
  if p_provider is not null and not exists (
    select 1 from public.providers p where p.id = p_provider and p.org_id = p_org
  ) then
    raise exception 'rotate_calendar_feed: the provider is not one of the org''s'
      using errcode = 'no_data_found';
  end if;

  update public.calendar_feeds f
  set revoked_at = now()
  where f.org_id = p_org
    and f.provider_id is not distinct from p_provider
    and f.revoked_at is null;

  insert into public.calendar_feeds (org_id, provider_id, token_sha256)
  values (p_org, p_provider, p_token_sha256)
  returning id into v_id;
  return v_id;
end;
$$;

-- An appointment as a calendar feed shows it: the client's first name and only the last four
-- digits of their number (the feed lives in third-party calendars).
create or replace function private.calendar_event_json(p_appointment public.appointments)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'id', p_appointment.id,
    'starts_at', private.iso_utc(p_appointment.starts_at),
    'ends_at', private.iso_utc(p_appointment.ends_at),
    'status', p_appointment.status,
    'confirmation_code', p_appointment.confirmation_code,
    'service_name', (select s.name from public.services s where s.id = p_appointment.service_id),
    'provider_name',
      (select p.name from public.providers p where p.id = p_appointment.provider_id),
    'client_first_name', (
      select nullif(btrim(c.first_name), '') from public.clients c
      where c.id = p_appointment.client_id
    ),
    'client_phone_masked', (
      select '•••• ' || right(c.phone, 4) from public.clients c
      where c.id = p_appointment.client_id
    ),
    'created_at', private.iso_utc(p_appointment.created_at),
    'updated_at', private.iso_utc(p_appointment.updated_at)
  );
$$;

-- The feed whose active token hashes to `p_token_sha256`, or null (unknown, revoked, malformed):
-- {feed_id, org: {id, name, timezone, slug}, provider: {id, name} | null, events: [...]}.
-- Events are the org's (or the provider's) appointments, booked and cancelled, starting from 30
-- days ago to 365 days ahead, in start order, at most 2,000: upcoming ones first, then as many
-- of the most recent past ones as fit.
create or replace function public.calendar_feed(p_token_sha256 text)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  max_events constant integer := 2000;
  past_window constant interval := interval '30 days';
  future_window constant interval := interval '365 days';
  v_feed public.calendar_feeds;
  v_now timestamptz := now();
  v_upcoming jsonb;
  v_past jsonb;
begin
  if p_token_sha256 is null or p_token_sha256 !~ '^[0-9a-f]{64}$' then
    return null;
  end if;
  select f.* into v_feed
  from public.calendar_feeds f
  where f.token_sha256 = p_token_sha256 and f.revoked_at is null;
  if not found then
    return null;
  end if;

  select coalesce(jsonb_agg(private.calendar_event_json(a) order by a.starts_at), '[]'::jsonb)
  into v_upcoming
  from (
    select *
    from public.appointments a
    where a.org_id = v_feed.org_id
      and (v_feed.provider_id is null or a.provider_id = v_feed.provider_id)
      and a.starts_at >= v_now
      and a.starts_at < v_now + future_window
    order by a.starts_at
    limit max_events
  ) a;

  select coalesce(jsonb_agg(private.calendar_event_json(a) order by a.starts_at), '[]'::jsonb)
  into v_past
  from (
    select *
    from public.appointments a
    where a.org_id = v_feed.org_id
      and (v_feed.provider_id is null or a.provider_id = v_feed.provider_id)
      and a.starts_at >= v_now - past_window
      and a.starts_at < v_now
    order by a.starts_at desc
    limit max_events - jsonb_array_length(v_upcoming)
  ) a;

  return jsonb_build_object(
    'feed_id', v_feed.id,
    'org', (
      select jsonb_build_object('id', o.id, 'name', o.name, 'timezone', o.timezone, 'slug', o.slug)
      from public.orgs o where o.id = v_feed.org_id
    ),
    'provider', (
      select jsonb_build_object('id', p.id, 'name', p.name)
      from public.providers p where p.id = v_feed.provider_id
    ),
    'events', v_past || v_upcoming
  );
end;
$$;

revoke all on function private.calendar_event_json(public.appointments)
from public, anon, authenticated;
grant execute on function private.calendar_event_json(public.appointments) to service_role;

revoke all on function public.rotate_calendar_feed(uuid, uuid, text)
from public, anon, authenticated;
revoke all on function public.calendar_feed(text) from public, anon, authenticated;
grant execute on function public.rotate_calendar_feed(uuid, uuid, text) to service_role;
grant execute on function public.calendar_feed(text) to service_role;
