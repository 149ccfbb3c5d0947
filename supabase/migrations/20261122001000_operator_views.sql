-- Operator views: daily call statistics and bookings per org, and every recorded step of one call,
-- for dashboards, the SQL editor and scripts/call_timeline.ts.
--
-- Views: operator_daily_calls, operator_daily_bookings, operator_call_timeline. They read orgs,
-- calls, call_events, call_turns, sms_messages and appointments and write nothing. Index added:
-- calls_trace_id_idx (the timeline is looked up by CallSid or by traceId).
--
-- Every view is `security_invoker`: the row level security of the tables underneath applies to
-- whoever queries the view, so an org member sees only their orgs' rows, anon sees nothing (no
-- grant either) and the service role sees everything. Days are the org's local calendar days
-- (orgs.timezone). Calls whose dialled number matched no org (org_id null, e.g. the deploy smoke
-- test) appear only in the timeline, and only to the service role.
--
-- Outcomes (see 20261122000300_call_rpcs.sql): a call is successful when the assistant handled it
-- (completed, booked, rescheduled, cancelled, transferred); failed, missed and voicemail calls are
-- not; recovered is a failed call followed by a recovery text. The success rate counts calls that
-- have an outcome, so calls still in progress do not lower it.

create index if not exists calls_trace_id_idx on public.calls (trace_id) where trace_id is not null;

-- One row per org and local day: volume, outcomes, recovery texts, latency percentiles, usage.
create or replace view public.operator_daily_calls
with (security_invoker = true)
as
select
  c.org_id,
  o.name as org_name,
  (c.created_at at time zone o.timezone)::date as day,
  count(*)::integer as calls,
  count(*) filter (where c.answered_at is not null)::integer as answered_calls,
  count(*) filter (
    where c.outcome in ('completed', 'booked', 'rescheduled', 'cancelled', 'transferred')
  )::integer as successful_calls,
  count(*) filter (where c.outcome = 'failed')::integer as failed_calls,
  count(*) filter (where c.outcome = 'recovered')::integer as recovered_calls,
  count(*) filter (where c.outcome = 'missed')::integer as missed_calls,
  count(*) filter (where c.outcome = 'booked')::integer as booked_calls,
  round(
    (
      count(*) filter (
        where c.outcome in ('completed', 'booked', 'rescheduled', 'cancelled', 'transferred')
      )::numeric
      / nullif(count(*) filter (where c.outcome is not null), 0)
    ),
    3
  )::double precision as success_rate,
  count(s.id)::integer as recovery_sms,
  count(s.id) filter (where s.status in ('delivered', 'read'))::integer
    as recovery_sms_delivered,
  count(s.id) filter (
    where s.status in ('failed', 'undelivered', 'canceled') or s.error_code is not null
  )::integer as recovery_sms_failed,
  round(percentile_cont(0.5) within group (order by c.lookup_ms))::integer as lookup_p50_ms,
  round(percentile_cont(0.95) within group (order by c.lookup_ms))::integer as lookup_p95_ms,
  round(percentile_cont(0.5) within group (order by c.first_audio_ms))::integer
    as first_audio_p50_ms,
  round(percentile_cont(0.95) within group (order by c.first_audio_ms))::integer
    as first_audio_p95_ms,
  round(avg(c.duration_seconds))::integer as avg_duration_seconds,
  coalesce(sum(c.barge_ins), 0)::integer as barge_ins,
  coalesce(sum(c.tool_calls), 0)::integer as tool_calls,
  coalesce(sum(c.model_input_tokens), 0)::bigint as model_input_tokens,
  coalesce(sum(c.model_output_tokens), 0)::bigint as model_output_tokens
from public.calls c
join public.orgs o on o.id = c.org_id
-- At most one recovery text per call (unique call_id, kind): the join never multiplies calls.
left join public.sms_messages s on s.call_id = c.id and s.kind = 'recovery'
group by c.org_id, o.name, (c.created_at at time zone o.timezone)::date;

comment on view public.operator_daily_calls is
  'Calls per org and local day: outcomes, success rate, recovery texts, p50/p95 of caller lookup '
  'and first assistant audio (ms), usage. Row level security of calls applies (security_invoker).';

-- One row per org and local day on which appointments were made (by phone or by staff).
create or replace view public.operator_daily_bookings
with (security_invoker = true)
as
select
  a.org_id,
  o.name as org_name,
  (a.created_at at time zone o.timezone)::date as day,
  count(*)::integer as bookings,
  count(*) filter (where a.call_id is not null)::integer as bookings_by_phone,
  count(*) filter (where a.status = 'cancelled')::integer as cancelled_since
from public.appointments a
join public.orgs o on o.id = a.org_id
group by a.org_id, o.name, (a.created_at at time zone o.timezone)::date;

comment on view public.operator_daily_bookings is
  'Appointments made per org and local day, how many by phone, and how many of them were cancelled '
  'since. Row level security of appointments applies (security_invoker).';

-- Everything recorded about each call, one row per step, in time order by (at, seq): the call
-- itself (source `call`, with its metrics), events (`event`, or `tool` for kinds starting with
-- tool), transcript turns (`turn`), texts (`sms`) and appointments it made (`appointment`).
create or replace view public.operator_call_timeline
with (security_invoker = true)
as
select
  c.id as call_id,
  c.call_sid,
  c.trace_id,
  c.org_id,
  -- The first event can be stamped a moment before the row that it created.
  least(
    c.created_at,
    (select min(e.occurred_at) from public.call_events e where e.call_id = c.id)
  ) as at,
  'call'::text as source,
  'call'::text as label,
  jsonb_build_object(
    'from', c.from_number,
    'to', c.to_number,
    'status', c.status,
    'outcome', c.outcome,
    'answered_at', c.answered_at,
    'ended_at', c.ended_at,
    'duration_seconds', c.duration_seconds,
    'lookup_ms', c.lookup_ms,
    'first_audio_ms', c.first_audio_ms,
    'barge_ins', c.barge_ins,
    'tool_calls', c.tool_calls,
    'model_input_tokens', c.model_input_tokens,
    'model_output_tokens', c.model_output_tokens,
    'stream_seconds', c.stream_seconds
  ) as detail,
  0::bigint as seq
from public.calls c
union all
select
  c.id,
  c.call_sid,
  c.trace_id,
  c.org_id,
  e.occurred_at,
  case when e.kind like 'tool%' then 'tool' else 'event' end,
  e.kind,
  jsonb_strip_nulls(jsonb_build_object(
    'status', e.status,
    'outcome', e.outcome,
    'payload', nullif(e.payload, '{}'::jsonb),
    'idempotency_key', e.idempotency_key,
    'received_at', e.received_at
  )),
  e.id
from public.call_events e
join public.calls c on c.id = e.call_id
union all
select
  c.id,
  c.call_sid,
  c.trace_id,
  c.org_id,
  t.created_at,
  'turn',
  t.speaker,
  jsonb_strip_nulls(jsonb_build_object(
    'sequence', t.sequence,
    'text', t.text,
    'start_ms', t.start_ms,
    'end_ms', t.end_ms
  )),
  t.sequence
from public.call_turns t
join public.calls c on c.id = t.call_id
union all
select
  c.id,
  c.call_sid,
  c.trace_id,
  c.org_id,
  s.created_at,
  'sms',
  s.kind,
  jsonb_strip_nulls(jsonb_build_object(
    'to', s.to_number,
    'from', s.from_number,
    'status', s.status,
    'message_sid', s.message_sid,
    'error_code', s.error_code,
    'body', s.body,
    'updated_at', s.updated_at
  )),
  0
from public.sms_messages s
join public.calls c on c.id = s.call_id
union all
select
  c.id,
  c.call_sid,
  c.trace_id,
  c.org_id,
  a.created_at,
  'appointment',
  'booked',
  jsonb_build_object(
    'appointment_id', a.id,
    'starts_at', a.starts_at,
    'ends_at', a.ends_at,
    'confirmation_code', a.confirmation_code,
    'status', a.status
  ),
  0
from public.appointments a
join public.calls c on c.id = a.call_id
union all
select
  c.id,
  c.call_sid,
  c.trace_id,
  c.org_id,
  a.cancelled_at,
  'appointment',
  'cancelled',
  jsonb_build_object(
    'appointment_id', a.id,
    'starts_at', a.starts_at,
    'confirmation_code', a.confirmation_code
  ),
  1
from public.appointments a
join public.calls c on c.id = a.call_id
where a.cancelled_at is not null;

comment on view public.operator_call_timeline is
  'Every recorded step of each call (the call, events, tool events, turns, texts, appointments), '
  'ordered by (at, seq). Row level security of the tables underneath applies (security_invoker).';

-- Views in public get Supabase's default privileges (anon included): spell them out instead.
revoke all on public.operator_daily_calls, public.operator_daily_bookings,
  public.operator_call_timeline
from public, anon, authenticated;
grant select on public.operator_daily_calls, public.operator_daily_bookings,
  public.operator_call_timeline
to authenticated, service_role;
