-- Demo data: the Harbor Dental org answering +15550100000, open Monday to Friday 09:00-17:00 New
-- York time with 30-minute appointments, and a few known callers. Jane Doe (+15551230001) is the
-- caller of the demo call, greeted by name. Fixed UUIDs and `on conflict do nothing` make this
-- safe to run again.

insert into public.orgs (
  id, name, timezone, greeting, persona, appointment_minutes, transfer_number,
  sms_recovery_template, emergency_keywords, max_call_seconds, voice,
  vad_threshold, vad_silence_ms, vad_prefix_padding_ms
)
values (
  '00000000-0000-4000-8000-000000000001',
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
  300
)
on conflict do nothing;

insert into public.org_phone_numbers (phone_number, org_id)
values ('+15550100000', '00000000-0000-4000-8000-000000000001')
on conflict do nothing;

insert into public.org_business_hours (org_id, iso_weekday, opens_at, closes_at)
select '00000000-0000-4000-8000-000000000001', d, '09:00', '17:00'
from generate_series(1, 5) as d
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
