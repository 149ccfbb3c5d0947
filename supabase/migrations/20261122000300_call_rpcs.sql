-- Call path RPCs (service role only): lookup_caller, record_call_event, append_call_turns,
-- record_call_metrics, get_call, plus the private helpers they share.
--
-- Tables touched: calls, call_events, call_turns (written); orgs, org_phone_numbers, clients,
-- appointments (read). Results are jsonb with snake_case keys; times are ISO 8601 UTC strings with
-- milliseconds and a `Z` (the same text JavaScript's `Date.prototype.toISOString()` prints).
--
-- Call status rules (record_call_event):
-- - Status only moves forward: queued/initiated (0) < ringing (1) < in-progress (2) < terminal (3:
--   completed, busy, failed, no-answer, canceled). A late `ringing` never overwrites `completed`,
--   and a terminal status never changes to another terminal one.
-- - Reaching in-progress sets answered_at; reaching a terminal status sets ended_at and
--   duration_seconds (Twilio's CallDuration when given, else ended_at - answered_at).
-- Call outcome rules:
-- - Outcomes are ranked: completed, missed (1) < failed, voicemail (2) < recovered (3) <
--   cancelled, transferred (4) < rescheduled, booked (5).
-- - An outcome passed in replaces the current one when its rank is at least the current rank, so
--   `booked` survives a later `completed` or `failed`, and `recovered` replaces `failed`.
-- - A terminal status with no outcome yet sets one: completed -> completed; busy, no-answer,
--   canceled -> missed; failed -> failed.

-- Status rank for monotonic updates; null for statuses we do not know (never applied).
create or replace function private.call_status_rank(p_status text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case p_status
    when 'queued' then 0
    when 'initiated' then 0
    when 'ringing' then 1
    when 'in-progress' then 2
    when 'completed' then 3
    when 'busy' then 3
    when 'failed' then 3
    when 'no-answer' then 3
    when 'canceled' then 3
  end;
$$;

-- Outcome strength: a weaker outcome never replaces a stronger one.
create or replace function private.call_outcome_rank(p_outcome text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case p_outcome
    when 'completed' then 1
    when 'missed' then 1
    when 'failed' then 2
    when 'voicemail' then 2
    when 'recovered' then 3
    when 'cancelled' then 4
    when 'transferred' then 4
    when 'rescheduled' then 5
    when 'booked' then 5
  end;
$$;

-- The outcome a call ends up with when `p_new` is applied to `p_current`.
create or replace function private.merge_call_outcome(p_current text, p_new text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when p_new is null then p_current
    when p_current is null then p_new
    when private.call_outcome_rank(p_new) >= private.call_outcome_rank(p_current) then p_new
    else p_current
  end;
$$;

-- True for a number we can call or text back: E.164 and not one of the placeholders Twilio sends
-- for withheld caller IDs (they spell ANONYMOUS, RESTRICTED, BLOCKED, UNKNOWN, UNAVAILABLE).
create or replace function private.is_dialable_number(p_number text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select coalesce(
    p_number ~ '^\+[1-9][0-9]{6,14}$'
    and p_number not in ('+266696687', '+7378742833', '+2562533', '+8656696', '+86282452253'),
    false
  );
$$;

-- ISO 8601 in UTC with milliseconds, independent of the session's TimeZone setting.
create or replace function private.iso_utc(p_at timestamptz)
returns text
language sql
stable
set search_path = ''
as $$
  select to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
$$;

-- An appointment as the RPCs return it.
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
    'status', p_appointment.status
  );
$$;

-- Everything the prompt needs about a call, in one round trip: the org that owns the dialled
-- number, the caller if known, their next booked appointments (at most 3) and how their last
-- ended call to this org went (the current call has not ended, so it is never that one).
-- Returns null when `p_to` is not a known number.
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
      'vad', jsonb_build_object(
        'threshold', v_org.vad_threshold,
        'silence_duration_ms', v_org.vad_silence_ms,
        'prefix_padding_ms', v_org.vad_prefix_padding_ms
      ),
      'phone_number', v_to
    ),
    'client', case when v_client.id is null then null else jsonb_build_object(
      'id', v_client.id,
      'first_name', v_client.first_name,
      'last_name', v_client.last_name,
      'phone', v_client.phone
    ) end,
    'upcoming_appointments', coalesce(v_appointments, '[]'::jsonb),
    'last_call_outcome', v_last_outcome
  );
end;
$$;

-- Records one call event exactly once (by idempotency key) and moves the call forward; see the
-- rules at the top of this file. Creates the call on its first event, taking the org from the
-- dialled number. Returns {inserted, status, outcome, org_id}; a replay returns inserted = false
-- and changes nothing.
create or replace function public.record_call_event(
  p_call_sid text,
  p_idempotency_key text,
  p_kind text,
  p_trace_id text default null,
  p_from text default null,
  p_to text default null,
  p_status text default null,
  p_outcome text default null,
  p_duration_seconds integer default null,
  p_occurred_at timestamptz default null,
  p_payload jsonb default null
)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_to text := nullif(btrim(p_to), '');
  v_from text := nullif(btrim(p_from), '');
  v_occurred_at timestamptz := coalesce(p_occurred_at, now());
  v_call public.calls;
  v_event_id bigint;
  v_status text;
  v_outcome text;
  v_terminal boolean;
  v_answered_at timestamptz;
  v_ended_at timestamptz;
begin
  if coalesce(btrim(p_call_sid), '') = '' or coalesce(btrim(p_idempotency_key), '') = ''
    or coalesce(btrim(p_kind), '') = '' then
    raise exception 'record_call_event needs a call sid, an idempotency key and a kind'
      using errcode = 'invalid_parameter_value';
  end if;
  if p_outcome is not null and private.call_outcome_rank(p_outcome) is null then
    raise exception 'Unknown call outcome: %', p_outcome using errcode = 'invalid_parameter_value';
  end if;

  -- Create the call on its first event; a concurrent first event waits here, then finds it.
  insert into public.calls (call_sid, org_id, from_number, to_number, trace_id)
  values (
    p_call_sid,
    (select n.org_id from public.org_phone_numbers n where n.phone_number = v_to),
    v_from,
    v_to,
    p_trace_id
  )
  on conflict (call_sid) do nothing;

  select c.* into v_call from public.calls c where c.call_sid = p_call_sid for update;

  insert into public.call_events (call_id, idempotency_key, kind, status, outcome, occurred_at, payload)
  values (
    v_call.id, p_idempotency_key, p_kind, p_status, p_outcome, v_occurred_at,
    coalesce(p_payload, '{}'::jsonb)
  )
  on conflict (idempotency_key) do nothing
  returning id into v_event_id;

  if v_event_id is null then
    return jsonb_build_object(
      'inserted', false, 'status', v_call.status, 'outcome', v_call.outcome, 'org_id', v_call.org_id
    );
  end if;

  v_status := v_call.status;
  if private.call_status_rank(p_status) > coalesce(private.call_status_rank(v_call.status), -1) then
    v_status := p_status;
  end if;
  v_terminal := private.call_status_rank(v_status) = 3;

  v_answered_at := v_call.answered_at;
  if v_answered_at is null and v_status = 'in-progress' then
    v_answered_at := v_occurred_at;
  end if;
  v_ended_at := v_call.ended_at;
  if v_ended_at is null and v_terminal then
    v_ended_at := v_occurred_at;
  end if;

  v_outcome := private.merge_call_outcome(v_call.outcome, p_outcome);
  if v_outcome is null and v_terminal then
    v_outcome := case v_status
      when 'completed' then 'completed'
      when 'failed' then 'failed'
      else 'missed'
    end;
  end if;

  update public.calls c
  set
    status = v_status,
    outcome = v_outcome,
    answered_at = v_answered_at,
    ended_at = v_ended_at,
    duration_seconds = coalesce(
      p_duration_seconds,
      c.duration_seconds,
      case when v_terminal and v_answered_at is not null
        then greatest(0, round(extract(epoch from v_ended_at - v_answered_at)))::integer
      end
    ),
    from_number = coalesce(c.from_number, v_from),
    to_number = coalesce(c.to_number, v_to),
    trace_id = coalesce(c.trace_id, p_trace_id),
    org_id = coalesce(
      c.org_id,
      (select n.org_id from public.org_phone_numbers n where n.phone_number = v_to)
    )
  where c.id = v_call.id
  returning c.* into v_call;

  return jsonb_build_object(
    'inserted', true, 'status', v_call.status, 'outcome', v_call.outcome, 'org_id', v_call.org_id
  );
end;
$$;

-- Appends transcript turns, idempotent by (call, sequence): a replayed turn is skipped. Turns are
-- objects {sequence, speaker, text, start_ms, end_ms}. Creates a bare call row when the call has
-- no event yet, so no transcript is lost. Returns how many turns were new.
create or replace function public.append_call_turns(p_call_sid text, p_turns jsonb)
returns integer
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_call_id uuid;
  v_inserted integer;
begin
  if coalesce(btrim(p_call_sid), '') = '' then
    raise exception 'append_call_turns needs a call sid' using errcode = 'invalid_parameter_value';
  end if;
  if p_turns is null or jsonb_typeof(p_turns) <> 'array' then
    raise exception 'append_call_turns needs a jsonb array of turns'
      using errcode = 'invalid_parameter_value';
  end if;
  if jsonb_array_length(p_turns) = 0 then
    return 0;
  end if;

  insert into public.calls (call_sid) values (p_call_sid) on conflict (call_sid) do nothing;
  select c.id into v_call_id from public.calls c where c.call_sid = p_call_sid;

  insert into public.call_turns (call_id, sequence, speaker, text, start_ms, end_ms)
  select v_call_id, t.sequence, t.speaker, coalesce(t.text, ''), t.start_ms, t.end_ms
  from jsonb_to_recordset(p_turns)
    as t(sequence integer, speaker text, text text, start_ms integer, end_ms integer)
  order by t.sequence
  on conflict (call_id, sequence) do nothing;

  get diagnostics v_inserted = row_count;
  return v_inserted;
end;
$$;

-- Adds one stream's metrics to its call: counters (barge-ins, tool calls, tokens, stream seconds)
-- are added, because a long call is carried by several streams in turn; lookup_ms and
-- first_audio_ms keep the first value written (the call's first stream). Call it once per stream.
-- Returns false when the call is unknown.
create or replace function public.record_call_metrics(
  p_call_sid text,
  p_lookup_ms integer default null,
  p_first_audio_ms integer default null,
  p_barge_ins integer default 0,
  p_tool_calls integer default 0,
  p_model_input_tokens bigint default 0,
  p_model_output_tokens bigint default 0,
  p_stream_seconds numeric default null
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  update public.calls c
  set
    lookup_ms = coalesce(c.lookup_ms, p_lookup_ms),
    first_audio_ms = coalesce(c.first_audio_ms, p_first_audio_ms),
    barge_ins = c.barge_ins + coalesce(p_barge_ins, 0),
    tool_calls = c.tool_calls + coalesce(p_tool_calls, 0),
    model_input_tokens = c.model_input_tokens + coalesce(p_model_input_tokens, 0),
    model_output_tokens = c.model_output_tokens + coalesce(p_model_output_tokens, 0),
    stream_seconds = case
      when p_stream_seconds is null then c.stream_seconds
      else coalesce(c.stream_seconds, 0) + p_stream_seconds
    end
  where c.call_sid = p_call_sid;
  return found;
end;
$$;

-- A call as voice-action needs it, with the caller's first name when the org knows them; null
-- when the call is unknown.
create or replace function public.get_call(p_call_sid text)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'call_sid', c.call_sid,
    'org_id', c.org_id,
    'trace_id', c.trace_id,
    'from', c.from_number,
    'to', c.to_number,
    'status', c.status,
    'outcome', c.outcome,
    'client_first_name', (
      select cl.first_name from public.clients cl
      where cl.org_id = c.org_id and cl.phone = c.from_number
    )
  )
  from public.calls c
  where c.call_sid = p_call_sid;
$$;

revoke all on function private.call_status_rank(text) from public, anon, authenticated;
revoke all on function private.call_outcome_rank(text) from public, anon, authenticated;
revoke all on function private.merge_call_outcome(text, text) from public, anon, authenticated;
revoke all on function private.is_dialable_number(text) from public, anon, authenticated;
revoke all on function private.iso_utc(timestamptz) from public, anon, authenticated;
revoke all on function private.appointment_json(public.appointments)
from public, anon, authenticated;
grant execute on function private.call_status_rank(text) to service_role;
grant execute on function private.call_outcome_rank(text) to service_role;
grant execute on function private.merge_call_outcome(text, text) to service_role;
grant execute on function private.is_dialable_number(text) to service_role;
grant execute on function private.iso_utc(timestamptz) to service_role;
grant execute on function private.appointment_json(public.appointments) to service_role;

revoke all on function public.lookup_caller(text, text) from public, anon, authenticated;
revoke all on function public.record_call_event(
  text, text, text, text, text, text, text, text, integer, timestamptz, jsonb
) from public, anon, authenticated;
revoke all on function public.append_call_turns(text, jsonb) from public, anon, authenticated;
revoke all on function public.record_call_metrics(
  text, integer, integer, integer, integer, bigint, bigint, numeric
) from public, anon, authenticated;
revoke all on function public.get_call(text) from public, anon, authenticated;

grant execute on function public.lookup_caller(text, text) to service_role;
grant execute on function public.record_call_event(
  text, text, text, text, text, text, text, text, integer, timestamptz, jsonb
) to service_role;
grant execute on function public.append_call_turns(text, jsonb) to service_role;
grant execute on function public.record_call_metrics(
  text, integer, integer, integer, integer, bigint, bigint, numeric
) to service_role;
grant execute on function public.get_call(text) to service_role;
