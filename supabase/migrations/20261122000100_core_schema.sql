-- Core schema of the voice front door: tenants (orgs), their numbers, members and hours, the
-- callers they know (clients), every call with its events and transcript, appointments and SMS.
--
-- Tables: orgs, org_business_hours, org_phone_numbers, org_members, clients, calls, call_events,
-- call_turns, appointments, sms_messages, sms_opt_outs. Schema `private` (not exposed by the API)
-- holds helpers. Row level security and grants are in 20261122000200_security.sql; every write the
-- functions make goes through the RPCs of the later migrations, where the business rules live.
--
-- Phone numbers are stored in E.164 (`+` and 7 to 15 digits, no leading zero), the form Twilio
-- sends, so an equality match is a lookup. Times are timestamptz; an org's local time is derived
-- from its IANA timezone only where a human-facing rule needs it (business hours, SMS text).

create extension if not exists pgcrypto with schema extensions;
create extension if not exists btree_gist with schema extensions;

create schema if not exists private;
comment on schema private is
  'Helpers for policies and RPCs; never exposed through the Data API.';

-- True when `tz` names a time zone Postgres knows (IANA names such as America/New_York).
-- Converting a timestamp is the authoritative test: pg_timezone_names is slow to scan.
create or replace function private.is_valid_timezone(tz text)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  if tz is null or btrim(tz) = '' then
    return false;
  end if;
  perform pg_catalog.now() at time zone tz;
  return true;
exception
  when invalid_parameter_value then
    return false;
end;
$$;

-- Keeps updated_at honest on every update, whoever makes it.
create or replace function private.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := pg_catalog.now();
  return new;
end;
$$;

create table public.orgs (
  id uuid primary key default gen_random_uuid(),
  name text not null check (length(btrim(name)) between 1 and 200),
  timezone text not null default 'America/New_York'
    constraint orgs_timezone_valid check (private.is_valid_timezone(timezone)),
  greeting text not null default '',
  persona text not null default '',
  appointment_minutes integer not null default 30 check (appointment_minutes between 5 and 480),
  transfer_number text check (transfer_number ~ '^\+[1-9][0-9]{6,14}$'),
  -- Placeholders: {first_name} (or "there" when unknown) and {org_name}.
  sms_recovery_template text not null default
    'Hi {first_name}, sorry we got cut off. Call {org_name} back any time, or reply with a good time to reach you.',
  -- Placeholders: {first_name}, {org_name}, {when} (local time), {code} (confirmation code).
  sms_confirmation_template text not null default
    'Hi {first_name}, your appointment with {org_name} is booked for {when}. Confirmation code: {code}.',
  emergency_keywords text[] not null default '{}',
  max_call_seconds integer check (max_call_seconds > 0),
  voice text not null default 'alloy',
  vad_threshold numeric(3, 2) not null default 0.6 check (vad_threshold between 0 and 1),
  vad_silence_ms integer not null default 400 check (vad_silence_ms between 100 and 5000),
  vad_prefix_padding_ms integer not null default 300 check (vad_prefix_padding_ms between 0 and 2000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.orgs is 'Tenants: one business answering calls, with its assistant settings.';

create trigger orgs_touch_updated_at
before update on public.orgs
for each row execute function private.touch_updated_at();

-- Opening hours in the org's local time; a day may have several intervals (a lunch break), and a
-- day without rows is closed. Intervals do not cross midnight.
create table public.org_business_hours (
  org_id uuid not null references public.orgs (id) on delete cascade,
  -- ISO 8601 weekday, as `extract(isodow ...)`: 1 = Monday ... 7 = Sunday.
  iso_weekday smallint not null check (iso_weekday between 1 and 7),
  opens_at time not null,
  closes_at time not null,
  primary key (org_id, iso_weekday, opens_at),
  check (opens_at < closes_at)
);
comment on table public.org_business_hours is
  'Opening intervals per ISO weekday (1 = Monday), in the org''s local time.';

-- The number a caller dialled (Twilio `To`) decides the tenant.
create table public.org_phone_numbers (
  phone_number text primary key check (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
  org_id uuid not null references public.orgs (id) on delete cascade,
  created_at timestamptz not null default now()
);
create index org_phone_numbers_org_id_idx on public.org_phone_numbers (org_id);

create table public.org_members (
  org_id uuid not null references public.orgs (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null default 'staff' check (role in ('owner', 'staff')),
  created_at timestamptz not null default now(),
  primary key (org_id, user_id)
);
create index org_members_user_id_idx on public.org_members (user_id);
comment on table public.org_members is 'Signed-in users who may see an org''s data, with their role.';

create table public.clients (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id) on delete cascade,
  phone text not null check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  first_name text check (length(first_name) <= 100),
  last_name text check (length(last_name) <= 100),
  notes text not null default '',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint clients_org_phone_key unique (org_id, phone),
  -- Target of composite foreign keys that keep an appointment's client in the same org.
  constraint clients_org_id_id_key unique (org_id, id)
);
comment on table public.clients is 'Callers an org knows, one per E.164 phone number.';

create trigger clients_touch_updated_at
before update on public.clients
for each row execute function private.touch_updated_at();

create table public.calls (
  id uuid primary key default gen_random_uuid(),
  call_sid text not null unique check (length(call_sid) between 1 and 64),
  -- Null while the dialled number is unknown: the call is still recorded.
  org_id uuid references public.orgs (id) on delete cascade,
  from_number text,
  to_number text,
  trace_id text,
  status text check (
    status in (
      'queued', 'initiated', 'ringing', 'in-progress',
      'completed', 'busy', 'failed', 'no-answer', 'canceled'
    )
  ),
  outcome text check (
    outcome in (
      'completed', 'missed', 'failed', 'voicemail', 'recovered',
      'cancelled', 'transferred', 'rescheduled', 'booked'
    )
  ),
  created_at timestamptz not null default now(),
  answered_at timestamptz,
  ended_at timestamptz,
  duration_seconds integer check (duration_seconds >= 0),
  lookup_ms integer check (lookup_ms >= 0),
  first_audio_ms integer check (first_audio_ms >= 0),
  barge_ins integer not null default 0 check (barge_ins >= 0),
  tool_calls integer not null default 0 check (tool_calls >= 0),
  model_input_tokens bigint not null default 0 check (model_input_tokens >= 0),
  model_output_tokens bigint not null default 0 check (model_output_tokens >= 0),
  stream_seconds numeric(10, 3) check (stream_seconds >= 0),
  updated_at timestamptz not null default now(),
  constraint calls_org_id_id_key unique (org_id, id)
);
comment on table public.calls is
  'One row per Twilio call (CallSid); status only moves forward, see record_call_event.';
-- "How did this caller's last call end?" (lookup_caller) and the per-org call log.
create index calls_org_from_ended_idx on public.calls (org_id, from_number, ended_at desc)
where ended_at is not null;
create index calls_org_created_idx on public.calls (org_id, created_at desc);

create trigger calls_touch_updated_at
before update on public.calls
for each row execute function private.touch_updated_at();

-- Every status callback and stream milestone, exactly once per idempotency key.
create table public.call_events (
  id bigint generated always as identity primary key,
  call_id uuid not null references public.calls (id) on delete cascade,
  idempotency_key text not null unique check (length(idempotency_key) between 1 and 200),
  kind text not null check (length(kind) between 1 and 64),
  status text,
  outcome text,
  occurred_at timestamptz not null default now(),
  received_at timestamptz not null default now(),
  payload jsonb not null default '{}'
);
create index call_events_call_id_idx on public.call_events (call_id, occurred_at);

create table public.call_turns (
  id bigint generated always as identity primary key,
  call_id uuid not null references public.calls (id) on delete cascade,
  sequence integer not null check (sequence >= 0),
  speaker text not null check (speaker in ('caller', 'assistant')),
  text text not null,
  start_ms integer check (start_ms >= 0),
  end_ms integer check (end_ms >= 0),
  created_at timestamptz not null default now(),
  constraint call_turns_call_sequence_key unique (call_id, sequence)
);
comment on table public.call_turns is 'Call transcripts, one row per turn, ordered by sequence.';

-- Confirmation codes are read out over the phone: no 0/O/Q, 1/I/L, 2/Z, 5/S, 8/B, 6/G.
create or replace function private.new_confirmation_code()
returns text
language plpgsql
volatile
set search_path = ''
as $$
declare
  alphabet constant text := 'ACDEFHJKMNPRTUVWXY346789';
  code_length constant integer := 6;
  -- Two random bytes per character keep the modulo bias below 0.03 %.
  random_bytes bytea := extensions.gen_random_bytes(code_length * 2);
  code text := '';
begin
  for i in 0 .. code_length - 1 loop
    code := code || substr(
      alphabet,
      1 + ((get_byte(random_bytes, 2 * i) * 256 + get_byte(random_bytes, 2 * i + 1))
        % length(alphabet)),
      1
    );
  end loop;
  return code;
end;
$$;

create table public.appointments (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id) on delete cascade,
  client_id uuid not null,
  call_id uuid,
  starts_at timestamptz not null,
  ends_at timestamptz not null,
  during tstzrange generated always as (tstzrange(starts_at, ends_at, '[)')) stored,
  status text not null default 'booked' check (status in ('booked', 'cancelled')),
  confirmation_code text not null unique check (confirmation_code ~ '^[ACDEFHJKMNPRTUVWXY346789]{6}$'),
  cancelled_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (starts_at < ends_at),
  -- The client and the call must belong to the appointment's org.
  constraint appointments_client_fkey foreign key (org_id, client_id)
    references public.clients (org_id, id),
  constraint appointments_call_fkey foreign key (org_id, call_id)
    references public.calls (org_id, id) on delete set null (call_id),
  -- Two active appointments of one org never overlap, however many bookings race.
  constraint appointments_no_overlap exclude using gist (org_id with =, during with &&)
    where (status = 'booked')
);
comment on table public.appointments is
  'Appointments; active (booked) ones of an org never overlap (exclusion constraint).';
create index appointments_org_client_starts_idx on public.appointments (org_id, client_id, starts_at);
create index appointments_org_call_idx on public.appointments (org_id, call_id);

-- Gives every new appointment a unique speakable code, whoever inserts it. The unique constraint
-- stays the backstop for two transactions drawing the same code at once (book_appointment retries).
-- Security definer: the collision check must see every org's codes, not only the inserter's.
create or replace function private.assign_confirmation_code()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.confirmation_code is null then
    loop
      new.confirmation_code := private.new_confirmation_code();
      exit when not exists (
        select 1 from public.appointments a where a.confirmation_code = new.confirmation_code
      );
    end loop;
  end if;
  return new;
end;
$$;

create trigger appointments_assign_confirmation_code
before insert on public.appointments
for each row execute function private.assign_confirmation_code();

create trigger appointments_touch_updated_at
before update on public.appointments
for each row execute function private.touch_updated_at();

create table public.sms_messages (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.orgs (id) on delete cascade,
  call_id uuid not null references public.calls (id) on delete cascade,
  to_number text not null check (to_number ~ '^\+[1-9][0-9]{6,14}$'),
  from_number text not null,
  body text not null check (length(body) between 1 and 1600),
  kind text not null check (kind in ('recovery', 'confirmation')),
  -- Twilio's Message SID, once the send was accepted.
  message_sid text unique,
  -- `claimed` until the send is attempted, then Twilio's message status (only moves forward).
  status text not null default 'claimed' check (status ~ '^[a-z_-]{1,32}$'),
  error_code text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- One text of each kind per call: claiming it is the insert.
  constraint sms_messages_call_kind_key unique (call_id, kind)
);
create index sms_messages_org_created_idx on public.sms_messages (org_id, created_at desc);

create trigger sms_messages_touch_updated_at
before update on public.sms_messages
for each row execute function private.touch_updated_at();

create table public.sms_opt_outs (
  org_id uuid not null references public.orgs (id) on delete cascade,
  phone text not null check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  created_at timestamptz not null default now(),
  primary key (org_id, phone)
);
comment on table public.sms_opt_outs is 'Numbers that asked an org not to text them (STOP).';
