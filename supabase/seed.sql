-- Demo data for Harbor Dental, whose settings live in its file supabase/orgs/harbor-dental.toml
-- (applied right after this seed by scripts/db/prepare.ts, as scripts/org.ts apply does): here
-- only the rows whose ids tests and the demo name (the org, its two providers and three services,
-- matched by name when the file is applied) and a few known callers. Jane Doe (+15551230001) is
-- the caller of the demo call, greeted by name; she prefers Dr. Lee, who is off on the Tuesday she
-- asks for, so she books her cleaning with Sam. Fixed UUIDs and `on conflict do nothing` make this
-- safe to run again.

insert into public.orgs (id, slug, name, timezone)
values ('00000000-0000-4000-8000-000000000001', 'harbor-dental', 'Harbor Dental', 'America/New_York')
on conflict do nothing;

insert into public.providers (id, org_id, name)
values
  ('00000000-0000-4000-8000-000000000201', '00000000-0000-4000-8000-000000000001', 'Dr. Lee'),
  ('00000000-0000-4000-8000-000000000202', '00000000-0000-4000-8000-000000000001', 'Sam Ortiz')
on conflict do nothing;

insert into public.services (id, org_id, name, duration_minutes)
values
  ('00000000-0000-4000-8000-000000000301', '00000000-0000-4000-8000-000000000001', 'Cleaning', 30),
  ('00000000-0000-4000-8000-000000000302', '00000000-0000-4000-8000-000000000001', 'Check-up', 30),
  (
    '00000000-0000-4000-8000-000000000303', '00000000-0000-4000-8000-000000000001',
    'New patient exam', 60
  )
on conflict do nothing;

insert into public.clients (id, org_id, phone, first_name, last_name, notes, preferred_provider_id)
values
  (
    '00000000-0000-4000-8000-000000000101', '00000000-0000-4000-8000-000000000001',
    '+15551230001', 'Jane', 'Doe', 'Prefers morning appointments.',
    '00000000-0000-4000-8000-000000000201'
  ),
  (
    '00000000-0000-4000-8000-000000000102', '00000000-0000-4000-8000-000000000001',
    '+15551230002', 'John', 'Smith', '', null
  ),
  (
    '00000000-0000-4000-8000-000000000103', '00000000-0000-4000-8000-000000000001',
    '+15551230003', 'Maria', 'Garcia', 'Spanish speaker; happy to continue in English.', null
  )
on conflict do nothing;
