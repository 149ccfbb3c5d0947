-- The org as a file (supabase/orgs/<slug>.toml, applied by scripts/org.ts): a stable slug per
-- org, the settings such a file carries that had no column yet (country, languages), and the
-- RPCs that export an org's whole configuration as one jsonb document and apply one.
--
-- Tables touched: orgs (columns added; written by apply), org_phone_numbers, providers,
-- provider_hours, services, service_providers, schedule_overrides, org_members (written by the
-- RPCs below).

alter table public.orgs
  add column slug text,
  -- ISO 3166-1 alpha-2: the default region of phone numbers written without a country code.
  add column country text check (country ~ '^[A-Z]{2}$'),
  -- BCP 47 tags the assistant may speak, first the default.
  add column languages text[] not null default '{en}'
    check (cardinality(languages) between 1 and 10);

-- Existing orgs get a slug from their name (`Harbor Dental` -> `harbor-dental`), made unique with
-- a piece of their id when two names agree.
update public.orgs o
set slug = s.slug
from (
  select id, case
    when count(*) over (partition by base) = 1 and base <> '' then base
    else left(nullif(base, '') || '-', 50) || left(replace(id::text, '-', ''), 8)
  end as slug
  from (
    select id, left(trim(both '-' from regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g')), 50)
      as base
    from public.orgs
  ) named
) s
where s.id = o.id;

create or replace function private.default_org_slug()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.slug is null then
    new.slug := left(replace(new.id::text, '-', ''), 12);
  end if;
  return new;
end;
$$;

create trigger orgs_default_slug
before insert on public.orgs
for each row execute function private.default_org_slug();

alter table public.orgs
  alter column slug set not null,
  add constraint orgs_slug_key unique (slug),
  add constraint orgs_slug_format check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$');
comment on column public.orgs.slug is
  'Stable name of the org: its file is supabase/orgs/<slug>.toml.';

revoke all on function private.default_org_slug() from public, anon, authenticated;
