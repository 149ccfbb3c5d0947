-- Prepares a bare PostgreSQL database the way Supabase's own image prepares its database, so the
-- migrations in supabase/migrations run unchanged on it: the API roles (anon, authenticated,
-- service_role, authenticator), the `auth` and `extensions` schemas, a minimal `auth.users`, the
-- `auth.uid()`/`auth.role()`/`auth.email()`/`auth.jwt()` helpers and the grants PostgREST relies on.
--
-- This is not a migration: on hosted Supabase (and under `supabase start`) all of this already
-- exists. scripts/db/prepare.ts runs it before `supabase db push`, on every preparation, so it must
-- stay idempotent: every statement here can run any number of times, on Postgres 15 to 18 and
-- PGlite.
--
-- Roles are cluster-wide while everything else is per database. Several test processes may
-- bootstrap different databases of one server at the same time, so role statements tolerate losing
-- a race to an identical statement of another session.

-- Roles, with the attributes of Supabase's image: API roles cannot log in; `authenticator` is the
-- login PostgREST uses and only gains the API roles' rights through `set role` (noinherit).
do $$
declare
  wanted record;
begin
  for wanted in
    select *
    from (
      values
        ('anon', false, false),
        ('authenticated', false, false),
        ('service_role', false, true),
        ('authenticator', true, false)
    ) as w (role_name, can_login, bypasses_rls)
  loop
    if not exists (select from pg_catalog.pg_roles where rolname = wanted.role_name) then
      begin
        execute format(
          'create role %I %s noinherit %s',
          wanted.role_name,
          case when wanted.can_login then 'login' else 'nologin' end,
          case when wanted.bypasses_rls then 'bypassrls' else 'nobypassrls' end
        );
      exception
        when duplicate_object or unique_violation then
          null; -- another session created it between our check and our statement
      end;
    end if;
  end loop;

  -- A role created earlier by someone else may lack the one attribute RLS tests depend on.
  if exists (
    select from pg_catalog.pg_roles where rolname = 'service_role' and not rolbypassrls
  ) then
    alter role service_role bypassrls;
  end if;

  for wanted in
    select r.rolname as role_name
    from pg_catalog.pg_roles r
    where r.rolname in ('anon', 'authenticated', 'service_role')
      and not pg_catalog.pg_has_role('authenticator', r.oid, 'member')
  loop
    begin
      execute format('grant %I to authenticator', wanted.role_name);
    exception
      when duplicate_object or unique_violation then
        null;
    end;
  end loop;
end
$$;

-- Extensions live in their own schema, as on Supabase; the image pre-installs these two. Other
-- extensions (btree_gist, ...) are the migrations' business, as they are on hosted Supabase.
create schema if not exists extensions;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;
grant usage on schema extensions to anon, authenticated, service_role;

-- Supabase puts `extensions` on the search path of the database's sessions (`"$user", public,
-- extensions`), so unqualified extension functions resolve for SQL run by the owner. The setting
-- applies to new sessions; the current one is updated too so the migrations pushed next see it
-- even where sessions are long lived (PGlite has exactly one).
do $$
begin
  execute format(
    'alter database %I set search_path to "$user", public, extensions',
    pg_catalog.current_database()
  );
  perform pg_catalog.set_config('search_path', '"$user", public, extensions', false);
end
$$;

-- Auth: the part of GoTrue's schema that policies, RPCs and seeds touch.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  id uuid not null default gen_random_uuid() primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  phone text,
  raw_app_meta_data jsonb default '{}'::jsonb,
  raw_user_meta_data jsonb default '{}'::jsonb,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
-- GoTrue keeps emails unique (among non-SSO users); a seed that reuses one fails here as it would
-- there.
create unique index if not exists users_email_key on auth.users (email);
comment on table auth.users is
  'Auth: minimal stand-in for GoTrue''s users table (local databases only).';

-- The helpers read the claims PostgREST sets per request: `request.jwt.claims` (JSON, current) or
-- the legacy per-claim settings `request.jwt.claim.<name>`. Same definitions as GoTrue's
-- migrations, including the empty search_path.
create or replace function auth.uid()
returns uuid
language sql
stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role()
returns text
language sql
stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email()
returns text
language sql
stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt()
returns jsonb
language sql
stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

-- Supabase's image: the API roles may use `public`, and whatever the migrating role creates there
-- is granted to them by default, so row level security (not missing grants) is what protects rows.
-- Default privileges are per database and per creating role: these cover objects created by the
-- role running this script, which is the role `supabase db push` connects as.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
