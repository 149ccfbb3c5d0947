-- Stream handover: a call outlives the worker that carries its Media Stream. Before its worker's
-- wall clock or CPU budget runs out, voice-stream saves the conversation (recent turns, a summary,
-- tool context, the caller context, the next transcript sequence number) as a continuation and
-- closes the stream; voice-action's `<Connect action>` answer takes the pending continuation and
-- opens a new stream whose token is bound to its id; the new worker claims it, once.
--
-- Table added: call_continuations. RPCs (service role only): save_call_continuation,
-- take_call_handover, claim_call_continuation. Reads and writes calls (a bare call row is created
-- when the call has no event yet, as append_call_turns does).
--
-- Every stream of a call writes its own metrics with record_call_metrics, which adds counters
-- (barge-ins, tool calls, tokens, stream seconds) and keeps the first stream's lookup and first
-- audio times, so the state carries no metrics. Transcript turns continue their sequence across
-- streams (call_turns is unique per call and sequence), so every turn is stored once.
--
-- Nobody but the service role reads continuations: they hold caller speech, and operators read
-- the same turns in call_turns. RLS is on with no policy; anon and authenticated have no grant.

create table public.call_continuations (
  id uuid primary key default gen_random_uuid(),
  call_id uuid not null references public.calls (id) on delete cascade,
  trace_id text,
  state jsonb not null check (jsonb_typeof(state) = 'object'),
  created_at timestamptz not null default now(),
  -- Set when voice-action put the continuation in a `<Connect><Stream>`: taken once.
  dispatched_at timestamptz,
  -- Set when a voice-stream worker claimed it: claimed once.
  consumed_at timestamptz
);

comment on table public.call_continuations is
  'Conversation state a voice-stream worker leaves for the worker that continues the call. '
  'Single use; rows older than an hour are deleted by save_call_continuation.';

create index call_continuations_call_id_idx
on public.call_continuations (call_id, created_at desc);
create index call_continuations_created_at_idx on public.call_continuations (created_at);

alter table public.call_continuations enable row level security;
revoke all on public.call_continuations from anon, authenticated;
grant select, insert, update, delete on public.call_continuations to service_role;

-- Saves a call's continuation and returns its id. `p_state` is a jsonb object of at most 256 KiB.
-- Continuations older than an hour (claimed or abandoned) are deleted on the way.
create or replace function public.save_call_continuation(
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
    raise exception 'save_call_continuation needs a call sid'
      using errcode = 'invalid_parameter_value';
  end if;
  if p_state is null or jsonb_typeof(p_state) <> 'object' then
    raise exception 'save_call_continuation needs a jsonb object'
      using errcode = 'invalid_parameter_value';
  end if;
  if octet_length(p_state::text) > 262144 then
    raise exception 'save_call_continuation: state is larger than 256 KiB'
      using errcode = 'program_limit_exceeded';
  end if;

  delete from public.call_continuations k where k.created_at < now() - interval '1 hour';

  insert into public.calls (call_sid, trace_id) values (p_call_sid, nullif(btrim(p_trace_id), ''))
  on conflict (call_sid) do nothing;
  select c.id into v_call_id from public.calls c where c.call_sid = p_call_sid;

  insert into public.call_continuations (call_id, trace_id, state)
  values (v_call_id, nullif(btrim(p_trace_id), ''), p_state)
  returning id into v_id;
  return v_id;
end;
$$;

-- The `<Connect action>` request of a stream that ended: takes the call's newest continuation
-- that no `<Connect>` carried yet and nobody claimed (saved in the last 10 minutes), marks it
-- dispatched and returns {continuation_id, trace_id}; null when no handover is pending, which
-- means the stream ended for good.
create or replace function public.take_call_handover(p_call_sid text)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_continuation public.call_continuations;
begin
  select k.* into v_continuation
  from public.call_continuations k
  join public.calls c on c.id = k.call_id
  where c.call_sid = p_call_sid
    and k.dispatched_at is null
    and k.consumed_at is null
    and k.created_at > now() - interval '10 minutes'
  order by k.created_at desc
  limit 1
  for update of k skip locked;
  if not found then
    return null;
  end if;
  update public.call_continuations k set dispatched_at = now() where k.id = v_continuation.id;
  return jsonb_build_object(
    'continuation_id', v_continuation.id,
    'trace_id', v_continuation.trace_id
  );
end;
$$;

-- A new voice-stream worker claims the continuation its stream token names: returns the state
-- once; null when the id is unknown, belongs to another call, was claimed already or is older
-- than 10 minutes.
create or replace function public.claim_call_continuation(p_id uuid, p_call_sid text)
returns jsonb
language plpgsql
volatile
set search_path = ''
as $$
declare
  v_state jsonb;
begin
  update public.call_continuations k
  set consumed_at = now()
  from public.calls c
  where k.id = p_id
    and c.id = k.call_id
    and c.call_sid = p_call_sid
    and k.consumed_at is null
    and k.created_at > now() - interval '10 minutes'
  returning k.state into v_state;
  return v_state;
end;
$$;

revoke all on function public.save_call_continuation(text, text, jsonb)
from public, anon, authenticated;
revoke all on function public.take_call_handover(text) from public, anon, authenticated;
revoke all on function public.claim_call_continuation(uuid, text) from public, anon, authenticated;

grant execute on function public.save_call_continuation(text, text, jsonb) to service_role;
grant execute on function public.take_call_handover(text) to service_role;
grant execute on function public.claim_call_continuation(uuid, text) to service_role;
