-- A call survives a worker that dies without warning (the hard CPU limit, memory, a deploy): at
-- every turn voice-stream saves a checkpoint of the conversation, the same state a handover
-- saves. When a stream ends and nobody reported how (no `stream-end:<CallSid>` event: no goodbye,
-- transfer, hang-up or failure report), voice-action's `<Connect action>` answer resumes the call
-- from the newest checkpoint on a new stream instead of apologizing, at most three times a call.
--
-- Table changed: call_continuations (kind; one pending checkpoint per call). RPCs (service role
-- only): save_call_checkpoint; take_call_handover now also takes a checkpoint for a dropped
-- stream and returns the kind it took.

alter table public.call_continuations
  add column kind text not null default 'handover' check (kind in ('handover', 'checkpoint'));
comment on column public.call_continuations.kind is
  'handover: saved by a stream handing the call over; checkpoint: the latest turn of a live '
  'stream, taken only when that stream died without a report.';
-- A call keeps one checkpoint that no `<Connect>` carried yet: each new one replaces it.
create unique index call_continuations_one_pending_checkpoint
on public.call_continuations (call_id) where kind = 'checkpoint' and dispatched_at is null;

-- How many times one call may be resumed from a checkpoint before it gets the apology.
create or replace function private.max_checkpoint_resumes()
returns integer
language sql
immutable
set search_path = ''
as $$
  select 3;
$$;

-- Saves the call's checkpoint (replacing the pending one) and returns its id. `p_state` is a
-- jsonb object of at most 256 KiB, as for save_call_continuation.
create or replace function public.save_call_checkpoint(
  p_call_sid text,
  p_trace_id text,
  p_state jsonb
)
returns uuid
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_call_id uuid;
  v_id uuid;
begin
  if coalesce(btrim(p_call_sid), '') = '' then
    raise exception 'save_call_checkpoint needs a call sid' using errcode = 'invalid_parameter_value';
  end if;
  if p_state is null or jsonb_typeof(p_state) <> 'object' then
    raise exception 'save_call_checkpoint needs a jsonb object'
      using errcode = 'invalid_parameter_value';
  end if;
  if octet_length(p_state::text) > 262144 then
    raise exception 'save_call_checkpoint: state is larger than 256 KiB'
      using errcode = 'program_limit_exceeded';
  end if;
  insert into public.calls (call_sid, trace_id) values (p_call_sid, nullif(btrim(p_trace_id), ''))
  on conflict (call_sid) do nothing;
  select c.id into v_call_id from public.calls c where c.call_sid = p_call_sid;
  delete from public.call_continuations k
  where k.call_id = v_call_id and k.kind = 'checkpoint' and k.dispatched_at is null;
  insert into public.call_continuations (call_id, trace_id, state, kind)
  values (v_call_id, nullif(btrim(p_trace_id), ''), p_state, 'checkpoint')
  returning id into v_id;
  return v_id;
end;
$$;

-- The `<Connect action>` request of a stream that ended: takes the call's newest pending
-- handover (saved in the last 10 minutes, never carried, never claimed); else, when nobody
-- reported how the stream ended (its worker died), the newest checkpoint of the last 10 minutes,
-- while the call was resumed fewer than max_checkpoint_resumes() times. Marks it dispatched and
-- returns {continuation_id, trace_id, kind}; null when the stream ended for good.
create or replace function public.take_call_handover(p_call_sid text)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_call_id uuid;
  v_continuation public.call_continuations;
begin
  select c.id into v_call_id from public.calls c where c.call_sid = p_call_sid;
  if v_call_id is null then
    return null;
  end if;
  select k.* into v_continuation
  from public.call_continuations k
  where k.call_id = v_call_id
    and k.kind = 'handover'
    and k.dispatched_at is null
    and k.consumed_at is null
    and k.created_at > now() - interval '10 minutes'
  order by k.created_at desc
  limit 1
  for update of k skip locked;
  if found then
    -- The handover carries the conversation on; the old stream's checkpoint is superseded.
    delete from public.call_continuations k
    where k.call_id = v_call_id and k.kind = 'checkpoint' and k.dispatched_at is null;
  elsif not exists (
    select 1 from public.call_events e
    where e.call_id = v_call_id and e.idempotency_key = 'stream-end:' || p_call_sid
  ) and (
    select count(*) from public.call_continuations k
    where k.call_id = v_call_id and k.kind = 'checkpoint' and k.dispatched_at is not null
  ) < private.max_checkpoint_resumes() then
    select k.* into v_continuation
    from public.call_continuations k
    where k.call_id = v_call_id
      and k.kind = 'checkpoint'
      and k.dispatched_at is null
      and k.consumed_at is null
      and k.created_at > now() - interval '10 minutes'
    order by k.created_at desc
    limit 1
    for update of k skip locked;
    if not found then
      return null;
    end if;
  else
    return null;
  end if;
  update public.call_continuations k set dispatched_at = now() where k.id = v_continuation.id;
  return jsonb_build_object(
    'continuation_id', v_continuation.id,
    'trace_id', v_continuation.trace_id,
    'kind', v_continuation.kind
  );
end;
$$;

revoke all on function private.max_checkpoint_resumes() from public, anon, authenticated;
grant execute on function private.max_checkpoint_resumes() to service_role;
revoke all on function public.save_call_checkpoint(text, text, jsonb)
from public, anon, authenticated;
grant execute on function public.save_call_checkpoint(text, text, jsonb) to service_role;
