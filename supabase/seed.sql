-- Demo data: the Harbor Dental org answering +15550100000 (New York time) with two providers and
-- three services, and a few known callers. Dr. Lee works Monday, Wednesday, Thursday and Friday
-- 09:00-12:00 and 13:00-17:00; Sam Ortiz, the hygienist, Monday to Friday 09:00-17:00. Cleanings
-- (30 minutes, the default service) are with either; check-ups (30) and new patient exams (60,
-- 15 minutes' buffer, arrive early) with Dr. Lee. Closed on Christmas Day and New Year's Day.
-- Jane Doe (+15551230001) is the caller of the demo call, greeted by name; she prefers Dr. Lee,
-- who is off on the Tuesday she asks for, so she books her cleaning with Sam. Fixed UUIDs and
-- `on conflict do nothing` make this safe to run again.

insert into public.orgs (
  id, slug, country, name, timezone, greeting, persona, appointment_minutes, transfer_number,
  sms_recovery_template, emergency_keywords, max_call_seconds, voice,
  vad_threshold, vad_silence_ms, vad_prefix_padding_ms,
  min_notice_minutes, booking_horizon_days, slot_granularity_minutes
)
values (
  '00000000-0000-4000-8000-000000000001',
  'harbor-dental',
  'US',
  'Harbor Dental',
  'America/New_York',
  'Thanks for calling Harbor Dental, this is the virtual receptionist. How can I help you today?',
  'You are the friendly front desk of Harbor Dental, a family dental practice. Keep answers short, '
    || 'book, move or cancel cleanings and check-ups, and offer to transfer the caller to a person '
    || 'for anything clinical or about billing.',
  30,
  '+15550100999',
  'Hi {first_name}, this is {org_name}. Sorry we got cut off! Call us back any time, or reply '
    || 'with a good time to reach you.',
  array['emergency', 'bleeding', 'swelling', 'severe pain', 'knocked out'],
  600,
  'alloy',
  0.6,
  400,
  300,
  60,
  90,
  30
)
on conflict do nothing;

insert into public.org_phone_numbers (phone_number, org_id)
values ('+15550100000', '00000000-0000-4000-8000-000000000001')
on conflict do nothing;

insert into public.providers (id, org_id, name)
values
  ('00000000-0000-4000-8000-000000000201', '00000000-0000-4000-8000-000000000001', 'Dr. Lee'),
  ('00000000-0000-4000-8000-000000000202', '00000000-0000-4000-8000-000000000001', 'Sam Ortiz')
on conflict do nothing;

insert into public.provider_hours (org_id, provider_id, iso_weekday, opens_at, closes_at)
select '00000000-0000-4000-8000-000000000001'::uuid, '00000000-0000-4000-8000-000000000201'::uuid,
  d, r.opens_at, r.closes_at
from unnest(array[1, 3, 4, 5]) as d
cross join (values ('09:00'::time, '12:00'::time), ('13:00', '17:00')) as r (opens_at, closes_at)
union all
select '00000000-0000-4000-8000-000000000001'::uuid, '00000000-0000-4000-8000-000000000202'::uuid,
  d, '09:00'::time, '17:00'::time
from generate_series(1, 5) as d
on conflict do nothing;

insert into public.services (
  id, org_id, name, duration_minutes, buffer_after_minutes, instructions, is_default
)
values
  (
    '00000000-0000-4000-8000-000000000301', '00000000-0000-4000-8000-000000000001',
    'Cleaning', 30, 0, '', true
  ),
  (
    '00000000-0000-4000-8000-000000000302', '00000000-0000-4000-8000-000000000001',
    'Check-up', 30, 0, '', false
  ),
  (
    '00000000-0000-4000-8000-000000000303', '00000000-0000-4000-8000-000000000001',
    'New patient exam', 60, 15, 'Please arrive 10 minutes early to fill in a short form.', false
  )
on conflict do nothing;

insert into public.service_providers (org_id, service_id, provider_id)
values
  (
    '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000301',
    '00000000-0000-4000-8000-000000000201'
  ),
  (
    '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000301',
    '00000000-0000-4000-8000-000000000202'
  ),
  (
    '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000302',
    '00000000-0000-4000-8000-000000000201'
  ),
  (
    '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000303',
    '00000000-0000-4000-8000-000000000201'
  )
on conflict do nothing;

insert into public.schedule_overrides (id, org_id, override_date, closed, note)
values
  (
    '00000000-0000-4000-8000-000000000401', '00000000-0000-4000-8000-000000000001',
    '2026-12-25', true, 'Christmas Day'
  ),
  (
    '00000000-0000-4000-8000-000000000402', '00000000-0000-4000-8000-000000000001',
    '2027-01-01', true, 'New Year''s Day'
  )
on conflict do nothing;

insert into public.clients (id, org_id, phone, first_name, last_name, notes)
values
  (
    '00000000-0000-4000-8000-000000000101', '00000000-0000-4000-8000-000000000001',
    '+15551230001', 'Jane', 'Doe', 'Prefers morning appointments.'
  ),
  (
    '00000000-0000-4000-8000-000000000102', '00000000-0000-4000-8000-000000000001',
    '+15551230002', 'John', 'Smith', ''
  ),
  (
    '00000000-0000-4000-8000-000000000103', '00000000-0000-4000-8000-000000000001',
    '+15551230003', 'Maria', 'Garcia', 'Spanish speaker; happy to continue in English.'
  )
on conflict do nothing;

update public.clients
set preferred_provider_id = '00000000-0000-4000-8000-000000000201'
where id = '00000000-0000-4000-8000-000000000101' and preferred_provider_id is null;
