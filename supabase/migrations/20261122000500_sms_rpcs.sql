-- SMS RPCs (service role only): claim_sms, record_sms_result, update_sms_status.
--
-- Tables touched: sms_messages (written); calls, orgs, clients, appointments, sms_opt_outs (read).
--
-- A text is claimed before it is sent: claiming is the insert into sms_messages, and the unique
-- (call_id, kind) makes exactly one claim win however many run at once. The winner sends it and
-- records Twilio's answer; status callbacks then move the delivery status forward only:
-- claimed (0) < accepted, scheduled, queued (1) < sending (2) < sent (3) < delivered, undelivered,
-- failed, canceled, partially_delivered (4) < read (5). Unknown statuses are never applied.
-- See https://www.twilio.com/docs/messaging/api/message-resource#message-status-values

create or replace function private.sms_status_rank(p_status text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case p_status
    when 'claimed' then 0
    when 'accepted' then 1
    when 'scheduled' then 1
    when 'queued' then 1
    when 'sending' then 2
    when 'sent' then 3
    when 'delivered' then 4
    when 'undelivered' then 4
    when 'failed' then 4
    when 'canceled' then 4
    when 'partially_delivered' then 4
    when 'read' then 5
  end;
$$;

-- Fills an org's SMS template. Placeholders: {first_name} ("there" when unknown), {org_name},
-- {when} and {code} (confirmations only; empty otherwise).
create or replace function private.render_sms_template(
  p_template text,
  p_first_name text,
  p_org_name text,
  p_when text default null,
  p_code text default null
)
returns text
language sql
immutable
set search_path = ''
as $$
  select replace(replace(replace(replace(
    p_template,
    '{first_name}', coalesce(nullif(btrim(p_first_name), ''), 'there')),
    '{org_name}', coalesce(p_org_name, '')),
    '{when}', coalesce(p_when, '')),
    '{code}', coalesce(p_code, ''));
$$;

-- Claims the one text of `p_kind` ('recovery' or 'confirmation') for a call. Exactly one claim
-- per call and kind wins, under any concurrency. The text goes to the caller (refused when the
-- number is withheld, not E.164, or opted out) from the org number they dialled. Without
-- `p_body` the org's template is rendered; a confirmation describes the caller's most recently
-- booked or moved upcoming appointment. Returns {claimed: true, sms_id, to, from, body} or
-- {claimed: false, reason} with reason already_claimed, opted_out, invalid_number, unknown_call.
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
        v_org.sms_confirmation_template,
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

-- Records what Twilio answered when the claimed text was sent: its Message SID (kept once set)
-- and status (only forward), or the error of a failed send. Returns false for an unknown id.
create or replace function public.record_sms_result(
  p_sms_id uuid,
  p_message_sid text,
  p_status text,
  p_error_code text default null
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  update public.sms_messages s
  set
    message_sid = coalesce(s.message_sid, nullif(btrim(p_message_sid), '')),
    status = case
      when private.sms_status_rank(p_status) > private.sms_status_rank(s.status) then p_status
      else s.status
    end,
    error_code = coalesce(p_error_code, s.error_code)
  where s.id = p_sms_id;
  return found;
end;
$$;

-- Applies a Twilio message status callback; the status only moves forward, and an error code
-- is kept only with the status it came with. Returns false when the Message SID is unknown.
create or replace function public.update_sms_status(
  p_message_sid text,
  p_status text,
  p_error_code text default null
)
returns boolean
language plpgsql
volatile
set search_path = ''
as $$
begin
  update public.sms_messages s
  set
    status = p_status,
    error_code = coalesce(p_error_code, s.error_code)
  where s.message_sid = p_message_sid
    and private.sms_status_rank(p_status) > private.sms_status_rank(s.status);
  if found then
    return true;
  end if;
  return exists (select 1 from public.sms_messages s where s.message_sid = p_message_sid);
end;
$$;

revoke all on function private.sms_status_rank(text) from public, anon, authenticated;
revoke all on function private.render_sms_template(text, text, text, text, text)
from public, anon, authenticated;
grant execute on function private.sms_status_rank(text) to service_role;
grant execute on function private.render_sms_template(text, text, text, text, text)
to service_role;

revoke all on function public.claim_sms(text, text, text) from public, anon, authenticated;
revoke all on function public.record_sms_result(uuid, text, text, text)
from public, anon, authenticated;
revoke all on function public.update_sms_status(text, text, text) from public, anon, authenticated;
grant execute on function public.claim_sms(text, text, text) to service_role;
grant execute on function public.record_sms_result(uuid, text, text, text) to service_role;
grant execute on function public.update_sms_status(text, text, text) to service_role;
