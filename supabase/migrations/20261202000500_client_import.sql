-- Client import (scripts/org.ts import-clients): one RPC that upserts a batch of an org's clients
-- read from a CSV file, so re-importing a file updates the clients it already made instead of
-- adding them again.
--
-- Tables touched: clients (written), orgs (read).
--
-- The command parses and checks the file (numbers normalised to E.164, names at most 100
-- characters, one row per number) and calls this in batches inside one transaction, rolled back
-- for a dry run. An empty value never erases what is stored: a null or empty first_name or
-- last_name keeps the stored name, empty notes keep the stored notes. A row that would change
-- nothing is not written (its updated_at stays).

-- Upserts `p_rows`, a jsonb array of {phone, first_name, last_name, notes} (phone in E.164, each
-- at most once per batch; the others optional), into the org's clients, matched on
-- (org_id, phone). Returns {added, updated, unchanged}: new clients, existing clients whose
-- values changed, existing clients the batch had nothing new for.
create or replace function public.import_clients(p_org uuid, p_rows jsonb)
returns jsonb
language plpgsql
volatile
security invoker
set search_path = ''
as $$
declare
  v_added integer;
  v_updated integer;
begin
  if jsonb_typeof(p_rows) is distinct from 'array' then
    raise exception 'import_clients needs a jsonb array of rows'
      using errcode = 'invalid_parameter_value';
  end if;
  if not exists (select 1 from public.orgs o where o.id = p_org) then
    raise exception 'Cannot find org %', p_org using errcode = 'no_data_found';
  end if;

  -- xmax is 0 on a row this statement inserted and set on one it updated; rows whose update
  -- the where clause skips are not returned at all.
  with written as (
    insert into public.clients as c (org_id, phone, first_name, last_name, notes)
    select p_org, btrim(r.phone), nullif(btrim(r.first_name), ''), nullif(btrim(r.last_name), ''),
      coalesce(r.notes, '')
    from jsonb_to_recordset(p_rows) as r (phone text, first_name text, last_name text, notes text)
    on conflict (org_id, phone) do update
    set first_name = coalesce(excluded.first_name, c.first_name),
      last_name = coalesce(excluded.last_name, c.last_name),
      notes = case when excluded.notes <> '' then excluded.notes else c.notes end
    where (c.first_name, c.last_name, c.notes) is distinct from (
      coalesce(excluded.first_name, c.first_name),
      coalesce(excluded.last_name, c.last_name),
      case when excluded.notes <> '' then excluded.notes else c.notes end
    )
    returning (c.xmax = 0) as inserted
  )
  select count(*) filter (where w.inserted), count(*) filter (where not w.inserted)
  into v_added, v_updated
  from written w;

  return jsonb_build_object(
    'added', v_added,
    'updated', v_updated,
    'unchanged', jsonb_array_length(p_rows) - v_added - v_updated
  );
end;
$$;

revoke all on function public.import_clients(uuid, jsonb) from public, anon, authenticated;
grant execute on function public.import_clients(uuid, jsonb) to service_role;
