-- Row level security and grants for every table of 20261122000100_core_schema.sql.
--
-- Who may do what:
-- - service_role (the edge functions): everything, but it writes through the RPCs.
-- - authenticated org members: read their own orgs' rows; insert, update and delete their orgs'
--   clients and appointments. Nothing of another org.
-- - anon: nothing (no table privileges, no policies).
-- Membership is resolved by private.member_org_ids(), a security definer helper outside the
-- exposed schema, so policies on org_members do not recurse into themselves.

grant usage on schema private to authenticated, service_role;

-- The orgs the signed-in user belongs to. `(select auth.uid())` is evaluated once per statement.
create or replace function private.member_org_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.org_id
  from public.org_members m
  where m.user_id = (select auth.uid());
$$;

revoke all on function private.member_org_ids() from public, anon;
grant execute on function private.member_org_ids() to authenticated, service_role;

-- Helpers called by triggers and checks run without EXECUTE checks; nobody calls them directly.
revoke all on function private.is_valid_timezone(text) from public, anon, authenticated;
revoke all on function private.touch_updated_at() from public, anon, authenticated;
revoke all on function private.new_confirmation_code() from public, anon, authenticated;
revoke all on function private.assign_confirmation_code() from public, anon, authenticated;
grant execute on function private.is_valid_timezone(text) to service_role;
grant execute on function private.new_confirmation_code() to service_role;

alter table public.orgs enable row level security;
alter table public.org_business_hours enable row level security;
alter table public.org_phone_numbers enable row level security;
alter table public.org_members enable row level security;
alter table public.clients enable row level security;
alter table public.calls enable row level security;
alter table public.call_events enable row level security;
alter table public.call_turns enable row level security;
alter table public.appointments enable row level security;
alter table public.sms_messages enable row level security;
alter table public.sms_opt_outs enable row level security;

-- Table privileges are spelled out rather than inherited from default privileges, so the
-- policies below are the only way in and anon has no way in at all.
revoke all on
  public.orgs, public.org_business_hours, public.org_phone_numbers, public.org_members,
  public.clients, public.calls, public.call_events, public.call_turns, public.appointments,
  public.sms_messages, public.sms_opt_outs
from anon, authenticated;

grant select on
  public.orgs, public.org_business_hours, public.org_phone_numbers, public.org_members,
  public.clients, public.calls, public.call_events, public.call_turns, public.appointments,
  public.sms_messages, public.sms_opt_outs
to authenticated;
grant insert, update, delete on public.clients, public.appointments to authenticated;

grant select, insert, update, delete on
  public.orgs, public.org_business_hours, public.org_phone_numbers, public.org_members,
  public.clients, public.calls, public.call_events, public.call_turns, public.appointments,
  public.sms_messages, public.sms_opt_outs
to service_role;
grant usage, select on all sequences in schema public to service_role;

-- orgs and their configuration: read only for members.
create policy "Members can read their orgs"
on public.orgs for select to authenticated
using (id in (select private.member_org_ids()));

create policy "Members can read their orgs' business hours"
on public.org_business_hours for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read their orgs' phone numbers"
on public.org_phone_numbers for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read their orgs' memberships"
on public.org_members for select to authenticated
using (org_id in (select private.member_org_ids()));

-- clients: full access within the member's orgs.
create policy "Members can read their orgs' clients"
on public.clients for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can add clients to their orgs"
on public.clients for insert to authenticated
with check (org_id in (select private.member_org_ids()));

create policy "Members can update their orgs' clients"
on public.clients for update to authenticated
using (org_id in (select private.member_org_ids()))
with check (org_id in (select private.member_org_ids()));

create policy "Members can delete their orgs' clients"
on public.clients for delete to authenticated
using (org_id in (select private.member_org_ids()));

-- calls, their events and transcripts: read only; written by the edge functions.
create policy "Members can read their orgs' calls"
on public.calls for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read their orgs' call events"
on public.call_events for select to authenticated
using (
  call_id in (
    select c.id from public.calls c where c.org_id in (select private.member_org_ids())
  )
);

create policy "Members can read their orgs' call transcripts"
on public.call_turns for select to authenticated
using (
  call_id in (
    select c.id from public.calls c where c.org_id in (select private.member_org_ids())
  )
);

-- appointments: full access within the member's orgs; the composite foreign keys keep the
-- client and call in the same org, the exclusion constraint keeps them from overlapping.
create policy "Members can read their orgs' appointments"
on public.appointments for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can add appointments to their orgs"
on public.appointments for insert to authenticated
with check (org_id in (select private.member_org_ids()));

create policy "Members can update their orgs' appointments"
on public.appointments for update to authenticated
using (org_id in (select private.member_org_ids()))
with check (org_id in (select private.member_org_ids()));

create policy "Members can delete their orgs' appointments"
on public.appointments for delete to authenticated
using (org_id in (select private.member_org_ids()));

-- SMS: read only.
create policy "Members can read their orgs' text messages"
on public.sms_messages for select to authenticated
using (org_id in (select private.member_org_ids()));

create policy "Members can read their orgs' SMS opt-outs"
on public.sms_opt_outs for select to authenticated
using (org_id in (select private.member_org_ids()));
