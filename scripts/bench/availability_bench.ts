/**
 * Benchmarks `public.search_availability` (free slots per provider) at scale, beside
 * `public.lookup_caller` measured in the same run on the same database: target orgs of 20
 * providers (Monday-Friday 08:00-12:00 and 13:00-18:00, a quarter of them also Saturday
 * 09:00-13:00), 4 services (30, 45, 60 minutes, some with a 10-15 minute buffer) offered by 5-20
 * providers each, org holidays and provider sick days, and appointments filling about 70% of every
 * provider's hours from a year ago to four months ahead; plus background orgs with one provider
 * and the same year of bookings, so the appointments table is mostly other orgs' rows. Everything
 * is generated with generate_series into a fresh database, then random searches go through the
 * real postgres store adapter, and the plans inside the function are printed (auto_explain).
 * The function under test is the product's, as migrated (busy check once per provider over the
 * searched window). Unless `--no-baseline`, its earlier body, which checked every candidate slot
 * against the appointments on its own (PER_SLOT_SEARCH_AVAILABILITY), is installed beside it as
 * `search_availability_per_slot` in the bench database only, checked to return the same rows, and
 * timed as a baseline in the same rounds, on the same queries.
 *
 * Run by hand (not part of the test suite): it needs a real server and about 2.5 minutes.
 *   deno run -A scripts/bench/availability_bench.ts [--searches 2000] [--keep] [--no-baseline]
 * The server is `DATABASE_URL` (a superuser URL; a fresh database is created beside it and
 * dropped at the end unless `--keep`), defaulting to postgres://postgres@127.0.0.1:5432/postgres.
 *
 * @module
 */
import postgres from "postgres";
import { prepareDatabase } from "../db/prepare.ts";
import {
  buildRpcQuery,
  createPostgresStore,
} from "../../supabase/functions/_shared/store/postgres_store.ts";
import { createRpcStore } from "../../supabase/functions/_shared/store/rpc.ts";
import type { AvailabilityQuery, Store } from "../../supabase/functions/_shared/store/types.ts";
import { percentile } from "./bench_stats.ts";

const TARGET_ORGS = 5;
const TARGET_PROVIDERS = 20;
const TARGET_CLIENTS = 2_000;
const BACKGROUND_ORGS = 200;
const BACKGROUND_PROVIDERS = 1;
const BACKGROUND_CLIENTS = 200;
/** Bookings from this many days ago to this many days ahead (local days). */
const DAYS_BACK = 365;
const DAYS_AHEAD = 120;
/** Searches start on a random local day from tomorrow to this many days ahead. */
const SEARCH_DAYS_AHEAD = 100;
/** Searches timed in all, split evenly over the four kinds; one lookup_caller per round. */
const DEFAULT_SEARCHES = 2_000;
/** Rounds of every call before timing (connection, caches, the server's plans). */
const WARMUP_ROUNDS = 50;
/** The timed rounds stop early past this, so a slow function cannot make the run unbounded. */
const TIMING_BUDGET_MS = 120_000;
/** Random queries whose results the product and the per-slot baseline must agree on. */
const EQUIVALENCE_QUERIES = 60;
const TIMEZONE = "America/New_York";
/** Org holidays (closed) and short days (09:00-13:00), in days from today. */
const ORG_HOLIDAYS = [-330, -240, -180, -120, -60, -30, 12, 33, 47, 68, 95];
const ORG_SHORT_DAYS = [-90, 20, 54];
const DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";

/** The services every org gets: index (1-based), name, length, buffer, who offers it. */
const SERVICES = [
  { name: "Consultation", minutes: 30, buffer: 0, offeredBy: "true" }, // all 20
  { name: "Checkup", minutes: 45, buffer: 15, offeredBy: "p.p <= 10" }, // 10
  { name: "Treatment", minutes: 60, buffer: 10, offeredBy: "p.p between 11 and 15" }, // 5
  { name: "Follow-up", minutes: 30, buffer: 10, offeredBy: "p.p % 2 = 0" }, // 10
] as const;

function parseArgs(args: string[]): { searches: number; keep: boolean; baseline: boolean } {
  const index = args.indexOf("--searches");
  const searches = index === -1 ? DEFAULT_SEARCHES : Number(args[index + 1]);
  if (!Number.isInteger(searches) || searches <= 0) throw new Error("--searches must be a count");
  return { searches, keep: args.includes("--keep"), baseline: !args.includes("--no-baseline") };
}

/** The per-slot baseline's name in the bench database. */
const PER_SLOT_FUNCTION = "search_availability_per_slot";

/**
 * The earlier body of public.search_availability (same signature and result), timed as the
 * baseline: the busy check is an anti-join probing the gist index of appointments once per
 * candidate slot, where the product probes it once per provider over the searched window.
 * Installed as PER_SLOT_FUNCTION in the bench database only.
 */
const PER_SLOT_SEARCH_AVAILABILITY = `
create or replace function public.${PER_SLOT_FUNCTION}(
  p_org uuid,
  p_service uuid,
  p_from date,
  p_days integer default 1,
  p_provider uuid default null
)
returns table (provider_id uuid, provider_name text, starts_at timestamptz, ends_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select g.provider_id, p.name, g.starts_at, g.ends_at
  from public.orgs o
  cross join lateral private.service_slots(o.id, p_service, p_provider, p_from, p_days) g
  join public.providers p on p.id = g.provider_id
  where o.id = p_org
    and g.starts_at > now() + make_interval(mins => o.min_notice_minutes)
    and (
      o.booking_horizon_days is null
      or (g.starts_at at time zone o.timezone)::date
        <= (now() at time zone o.timezone)::date + o.booking_horizon_days
    )
    and not exists (
      select 1
      from public.appointments a
      where a.provider_id = g.provider_id
        and a.status = 'booked'
        and a.blocked && tstzrange(g.starts_at, g.blocked_until, '[)')
    )
  order by g.starts_at, p.name;
$$;
`;

const ORG_NUMBER_SQL = `'+1555' || lpad(o.n::text, 7, '0')`;

function orgNumber(n: number): string {
  return `+1555${String(n).padStart(7, "0")}`;
}
function clientPhone(n: number, m: number): string {
  return `+1${2_000_000_000 + n * 10_000 + m}`;
}

async function generate(sql: postgres.Sql, log: (line: string) => void): Promise<void> {
  const step = async (name: string, query: string) => {
    const startedMs = performance.now();
    await sql.unsafe(query);
    log(`  ${name}: ${Math.round(performance.now() - startedMs)} ms`);
  };
  const orgs = TARGET_ORGS + BACKGROUND_ORGS;
  const serviceRows = SERVICES.map((s, i) =>
    `(${i + 1}, '${s.name}', ${s.minutes}, ${s.buffer}, ${Math.ceil((s.minutes + s.buffer) / 15)})`
  ).join(", ");
  const offeredCase = SERVICES.map((s, i) => `case when ${s.offeredBy} then ${i + 1} end`).join(
    ", ",
  );
  await step(
    `${orgs} orgs (${TARGET_ORGS} targets) with numbers, providers, hours, services, clients`,
    `
    create temporary table bench_orgs as
      select n, gen_random_uuid() as id, n <= ${TARGET_ORGS} as target
      from generate_series(1, ${orgs}) as n;
    insert into public.orgs (id, name, timezone, greeting, persona, transfer_number,
      emergency_keywords)
    select o.id, 'Org ' || o.n, '${TIMEZONE}', 'Hello!', 'Be brief.', '+15550100999',
      array['emergency']
    from bench_orgs o;
    insert into public.org_phone_numbers (phone_number, org_id)
    select ${ORG_NUMBER_SQL}, o.id from bench_orgs o;

    create temporary table bench_services (s integer, name text, minutes integer,
      buffer integer, cells integer);
    insert into bench_services values ${serviceRows};
    create temporary table bench_org_services as
      select o.n, o.id as org_id, s.s, gen_random_uuid() as id, s.name, s.minutes, s.buffer,
        s.cells
      from bench_orgs o cross join bench_services s;
    insert into public.services (id, org_id, name, duration_minutes, buffer_after_minutes,
      instructions)
    select id, org_id, name, minutes, buffer, 'Please arrive 10 minutes early.'
    from bench_org_services;

    -- seq numbers every provider across orgs, for hashing; offered: the services' indexes.
    create temporary table bench_providers as
      select o.n, p.p, row_number() over (order by o.n, p.p) as seq, o.id as org_id,
        gen_random_uuid() as id, p.p % 4 = 0 as saturday,
        array_remove(array[${offeredCase}], null) as offered
      from bench_orgs o
      cross join lateral generate_series(1, case when o.target then ${TARGET_PROVIDERS}
        else ${BACKGROUND_PROVIDERS} end) as p (p);
    insert into public.providers (id, org_id, name)
    select id, org_id, 'Provider ' || lpad(p::text, 2, '0') from bench_providers;
    insert into public.provider_hours (org_id, provider_id, iso_weekday, opens_at, closes_at)
    select p.org_id, p.id, d, r.opens_at, r.closes_at
    from bench_providers p
    cross join generate_series(1, 5) as d
    cross join (values (time '08:00', time '12:00'), (time '13:00', time '18:00'))
      as r (opens_at, closes_at)
    union all
    select p.org_id, p.id, 6, '09:00', '13:00' from bench_providers p where p.saturday;
    insert into public.service_providers (org_id, service_id, provider_id)
    select p.org_id, s.id, p.id
    from bench_providers p
    join bench_org_services s on s.n = p.n and s.s = any (p.offered);

    create temporary table bench_clients as
      select o.n, c.m, o.id as org_id, gen_random_uuid() as id
      from bench_orgs o
      cross join lateral generate_series(1, case when o.target then ${TARGET_CLIENTS}
        else ${BACKGROUND_CLIENTS} end) as c (m);
    insert into public.clients (id, org_id, phone, first_name, last_name)
    select c.id, c.org_id, '+1' || (2000000000 + c.n * 10000 + c.m)::text, 'First' || c.m,
      'Last' || c.n
    from bench_clients c;
    create index on bench_clients (n, m);
    analyze bench_orgs, bench_org_services, bench_providers, bench_clients;
  `,
  );
  await step(
    "date overrides (org holidays and short days, provider sick days and other hours)",
    `
    -- Org holidays (closed) and one short day, in the past and in the searched future.
    insert into public.schedule_overrides (org_id, provider_id, override_date, closed, note)
    select o.id, null, current_date + d, true, 'Holiday'
    from bench_orgs o
    cross join unnest(array[${ORG_HOLIDAYS.join(", ")}]) as d;
    insert into public.schedule_overrides (org_id, provider_id, override_date, closed, opens_at,
      closes_at, note)
    select o.id, null, current_date + d, false, '09:00', '13:00', 'Short day'
    from bench_orgs o
    cross join unnest(array[${ORG_SHORT_DAYS.join(", ")}]) as d;
    -- Each provider: 6 sick days spread over the range and one day on other hours.
    insert into public.schedule_overrides (org_id, provider_id, override_date, closed, note)
    select p.org_id, p.id,
      current_date - ${DAYS_BACK} + (abs(hashint8(p.seq * 100 + k)::bigint) % ${
      DAYS_BACK + DAYS_AHEAD
    })::int,
      true, 'Sick'
    from bench_providers p cross join generate_series(1, 6) as k
    on conflict do nothing;
    insert into public.schedule_overrides (org_id, provider_id, override_date, closed, opens_at,
      closes_at, note)
    select p.org_id, p.id,
      current_date + 1 + (abs(hashint8(p.seq * 100 + 99)::bigint) % ${SEARCH_DAYS_AHEAD})::int,
      false, '10:00', '15:00', 'Other hours'
    from bench_providers p;
  `,
  );
  // Each working range of each provider-day is cut into 15-minute cells and walked as a
  // sequence of blocks: a free block of 2 cells (22%) or an appointment of one of the services
  // the provider offers, taking ceil((length + buffer) / 15) cells. Blocks are consecutive, so
  // one provider's appointments never overlap, buffers included; those not ending by closing
  // time are dropped. Days the org or the provider is closed get none.
  await step(
    "appointment layout (temporary table)",
    `
    create temporary table bench_blocks as
    with ranges as (
      select p.n, p.seq, p.org_id, p.id as provider_id, p.offered, d.day::date as day,
        d.day::date - (current_date - ${DAYS_BACK}) as day_index, h.opens_at,
        (extract(epoch from h.closes_at - h.opens_at) / 900)::integer as range_cells
      from bench_providers p
      cross join generate_series(current_date - ${DAYS_BACK}, current_date + ${DAYS_AHEAD},
        interval '1 day') as d (day)
      join public.provider_hours h
        on h.provider_id = p.id and h.iso_weekday = extract(isodow from d.day)::smallint
      where not exists (
        select 1 from public.schedule_overrides x
        where x.org_id = p.org_id and x.override_date = d.day::date
          and (x.provider_id is null or x.provider_id = p.id)
      )
    ),
    blocks as (
      select r.*, r.seq * 1000000 + r.day_index * 100 + extract(hour from r.opens_at)::integer
          as range_key,
        j.j, h.hash,
        case when h.hash % 100 < 22 then null
          else r.offered[1 + (h.hash / 100) % cardinality(r.offered)] end as s
      from ranges r
      cross join generate_series(1, 10) as j (j)
      cross join lateral (
        select abs(hashint8(r.seq * 100000000 + r.day_index * 100000
          + extract(hour from r.opens_at)::integer * 100 + j.j)::bigint) as hash
      ) h
    ),
    sized as (
      select b.*, coalesce(bs.cells, 2) as cells
      from blocks b left join bench_services bs on bs.s = b.s
    ),
    placed as (
      select z.*,
        (sum(z.cells) over (partition by z.range_key order by z.j) - z.cells)::integer
          as first_cell
      from sized z
    )
    select n, org_id, provider_id, day, opens_at, first_cell, s, hash,
      -- A unique confirmation code each (7919 is prime to 24^6): the insert trigger then
      -- skips drawing one and checking it against every other appointment.
      (row_number() over () * 7919) % ${24 ** 6} as code_number
    from placed
    where s is not null and first_cell + cells <= range_cells;
  `,
  );
  const [{ count: blocks }] = await sql`select count(*)::integer as count from bench_blocks`;
  await step(
    `${blocks} appointments (6% cancelled; the trigger fills blocked_until)`,
    `
    insert into public.appointments (org_id, client_id, provider_id, service_id,
      buffer_after_minutes, starts_at, ends_at, status, cancelled_at, confirmation_code)
    select b.org_id, c.id, b.provider_id, s.id, s.buffer, t.starts_at,
      t.starts_at + make_interval(mins => s.minutes),
      case when (b.hash / 10000) % 100 < 6 then 'cancelled' else 'booked' end,
      case when (b.hash / 10000) % 100 < 6 then t.starts_at - interval '2 days' end,
      (select string_agg(substr('ACDEFHJKMNPRTUVWXY346789',
          ((b.code_number / power(24, i)::bigint) % 24)::integer + 1, 1), '' order by i)
        from generate_series(0, 5) as i)
    from bench_blocks b
    join bench_org_services s on s.n = b.n and s.s = b.s
    join bench_orgs o on o.n = b.n
    join bench_clients c
      on c.n = b.n
      and c.m = 1 + (b.hash / 1000000) % case when o.target then ${TARGET_CLIENTS}
        else ${BACKGROUND_CLIENTS} end
    cross join lateral (
      select (b.day + b.opens_at + make_interval(mins => 15 * b.first_cell))
        at time zone '${TIMEZONE}' as starts_at
    ) t;
  `,
  );
  await step("analyze", "analyze");
}

/** Each target org's services and providers, for picking random searches. */
interface TargetOrg {
  n: number;
  id: string;
  services: { id: string; name: string; providers: string[] }[];
}

async function loadTargets(sql: postgres.Sql): Promise<TargetOrg[]> {
  const rows = await sql<{ n: number; org_id: string; service_id: string; name: string }[]>`
    select o.n, o.id as org_id, s.id as service_id, s.name
    from bench_orgs o join bench_org_services s on s.n = o.n
    where o.target order by o.n, s.s`;
  const providers = await sql<{ service_id: string; provider_id: string }[]>`
    select sp.service_id, sp.provider_id from public.service_providers sp
    join bench_orgs o on o.id = sp.org_id where o.target`;
  const byService = new Map<string, string[]>();
  for (const row of providers) {
    byService.set(row.service_id, [...(byService.get(row.service_id) ?? []), row.provider_id]);
  }
  const targets = new Map<number, TargetOrg>();
  for (const row of rows) {
    const target = targets.get(row.n) ?? { n: row.n, id: row.org_id, services: [] };
    target.services.push({
      id: row.service_id,
      name: row.name,
      providers: byService.get(row.service_id) ?? [],
    });
    targets.set(row.n, target);
  }
  return [...targets.values()];
}

function randomItem<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)];
}

/** A local day `offset` days from today (UTC date arithmetic on the calendar day). */
function dayFromToday(offset: number): string {
  const now = new Date(
    new Date().toLocaleString("en-US", { timeZone: TIMEZONE }),
  );
  const day = new Date(Date.UTC(now.getFullYear(), now.getMonth(), now.getDate() + offset));
  return day.toISOString().slice(0, 10);
}

/** Monday-Friday days from tomorrow to SEARCH_DAYS_AHEAD that are neither holidays nor short. */
function workingDays(): string[] {
  return Array.from({ length: SEARCH_DAYS_AHEAD }, (_, i) => i + 1)
    .filter((offset) => !ORG_HOLIDAYS.includes(offset) && !ORG_SHORT_DAYS.includes(offset))
    .map(dayFromToday)
    .filter((day) => [1, 2, 3, 4, 5].includes(new Date(`${day}T12:00:00Z`).getUTCDay()));
}

/** The service every provider of a target org offers. */
function serviceOfAll(org: TargetOrg): TargetOrg["services"][number] {
  return org.services.find((service) => service.providers.length === TARGET_PROVIDERS)!;
}

interface Case {
  label: string;
  run: () => Promise<number>;
}

interface Figures {
  label: string;
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  meanRows: number;
}

/** The kinds of search timed, each drawing a fresh random query. */
function searchKinds(targets: TargetOrg[]): { label: string; query: () => AvailabilityQuery }[] {
  const randomQuery = (days: number, oneProvider: boolean): AvailabilityQuery => {
    const org = randomItem(targets);
    const service = randomItem(org.services);
    return {
      orgId: org.id,
      serviceId: service.id,
      fromDay: dayFromToday(1 + Math.floor(Math.random() * SEARCH_DAYS_AHEAD)),
      days,
      providerId: oneProvider ? randomItem(service.providers) : null,
    };
  };
  // The heaviest day: the service all 20 providers offer, on a regular working day.
  const days = workingDays();
  const busiestQuery = (): AvailabilityQuery => {
    const org = randomItem(targets);
    return { orgId: org.id, serviceId: serviceOfAll(org).id, fromDay: randomItem(days), days: 1 };
  };
  return [
    { label: "1 day, all providers", query: () => randomQuery(1, false) },
    { label: "1 day, 20 providers, Mon-Fri", query: busiestQuery },
    { label: "1 day, one provider", query: () => randomQuery(1, true) },
    { label: "7 days, all providers", query: () => randomQuery(7, false) },
  ];
}

/**
 * The calls of one round, with fresh random queries: lookup_caller, every kind of search on the
 * product and, given a baseline store, the same queries on the per-slot baseline, in that order.
 */
function roundCases(
  product: Store,
  baseline: Store | null,
  targets: TargetOrg[],
): () => Case[] {
  const kinds = searchKinds(targets);
  const search = (store: Store, query: AvailabilityQuery) => async () =>
    (await store.searchAvailability(query)).length;
  return () => {
    const queries = kinds.map((kind) => ({ label: kind.label, query: kind.query() }));
    const lookup: Case = {
      label: "lookup_caller (reference)",
      run: async () => {
        const org = randomItem(targets);
        const m = 1 + Math.floor(Math.random() * TARGET_CLIENTS);
        const context = await product.lookupCaller(orgNumber(org.n), clientPhone(org.n, m));
        if (!context?.client) throw new Error(`lookup_caller found no client for org ${org.n}`);
        return context.upcomingAppointments.length;
      },
    };
    return [
      lookup,
      ...queries.map((q) => ({ label: q.label, run: search(product, q.query) })),
      ...(baseline === null
        ? []
        : queries.map((q) => ({ label: q.label, run: search(baseline, q.query) }))),
    ];
  };
}

/**
 * Runs every call of a round once, in a fresh random order each round, so the calls (product and
 * baseline alike) share the machine's noise; warm-up rounds first.
 */
async function measure(
  newRound: () => Case[],
  rounds: number,
  log: (line: string) => void,
): Promise<Figures[]> {
  for (let i = 0; i < WARMUP_ROUNDS; i++) for (const c of newRound()) await c.run();
  const labels = newRound().map((c) => c.label);
  const samples = labels.map(() => [] as number[]);
  const rows = labels.map(() => 0);
  const startedMs = performance.now();
  let round = 0;
  for (; round < rounds && performance.now() - startedMs < TIMING_BUDGET_MS; round++) {
    const cases = newRound();
    const order = cases.map((_, i) => i).sort(() => Math.random() - 0.5);
    for (const i of order) {
      const t0 = performance.now();
      rows[i] += await cases[i].run();
      samples[i].push(performance.now() - t0);
    }
  }
  if (round < rounds) log(`  time budget reached after ${round} of ${rounds} rounds`);
  return labels.map((label, i) => {
    const sorted = samples[i].sort((a, b) => a - b);
    return {
      label,
      count: sorted.length,
      p50: percentile(sorted, 0.5),
      p95: percentile(sorted, 0.95),
      p99: percentile(sorted, 0.99),
      max: sorted[sorted.length - 1],
      meanRows: rows[i] / sorted.length,
    };
  });
}

function printFigures(title: string, figures: Figures[], log: (line: string) => void): void {
  const base = figures[0];
  log(`\n${title}`);
  log(
    "| call                         | n     | p50 ms | p95 ms | p99 ms | max ms | p50 / lookup " +
      "| p95 / lookup | rows |",
  );
  log(
    "| ---------------------------- | ----- | ------ | ------ | ------ | ------ | ------------ " +
      "| ------------ | ---- |",
  );
  for (const f of figures) {
    log(
      `| ${f.label.padEnd(28)} | ${String(f.count).padStart(5)} | ${
        f.p50.toFixed(2).padStart(6)
      } ` +
        `| ${f.p95.toFixed(2).padStart(6)} | ${f.p99.toFixed(2).padStart(6)} ` +
        `| ${f.max.toFixed(2).padStart(6)} | ${(f.p50 / base.p50).toFixed(2).padStart(11)}x ` +
        `| ${(f.p95 / base.p95).toFixed(2).padStart(11)}x | ${f.meanRows.toFixed(1).padStart(4)} |`,
    );
  }
}

/**
 * A store whose searchAvailability calls the per-slot baseline instead of the product: the
 * postgres adapter's SQL (buildRpcQuery, unprepared) and mapping (createRpcStore), with the
 * function's name swapped, on a connection of its own.
 */
function createPerSlotStore(dbUrl: string): Store {
  const sql = postgres(dbUrl, { max: 1, prepare: false, onnotice: () => {} });
  return createRpcStore({
    async call(name, args) {
      let { text, values } = buildRpcQuery(name, args);
      if (name === "search_availability") {
        const swapped = text.replace("public.search_availability(", `public.${PER_SLOT_FUNCTION}(`);
        if (swapped === text) throw new Error(`cannot point ${text} at ${PER_SLOT_FUNCTION}`);
        text = swapped;
      }
      // deno-lint-ignore no-explicit-any
      const rows = await sql.unsafe(text, values as any[]);
      return rows[0]?.result ?? null;
    },
    async close() {
      await sql.end({ timeout: 5 });
    },
  });
}

/** Times the product (through createPostgresStore) and, if asked, the per-slot baseline. */
async function timeStores(
  dbUrl: string,
  targets: TargetOrg[],
  rounds: number,
  withBaseline: boolean,
  log: (line: string) => void,
): Promise<{ lookup: Figures; product: Figures[]; baseline: Figures[] | null }> {
  const product = createPostgresStore(dbUrl, { maxConnections: 1 });
  const baseline = withBaseline ? createPerSlotStore(dbUrl) : null;
  try {
    const figures = await measure(roundCases(product, baseline, targets), rounds, log);
    const kinds = searchKinds(targets).length;
    return {
      lookup: figures[0],
      product: figures.slice(1, 1 + kinds),
      baseline: baseline === null ? null : figures.slice(1 + kinds),
    };
  } finally {
    await product.close();
    await baseline?.close();
  }
}

/**
 * The plans of the statements inside a search function (and of private.service_slots, which it
 * calls), as the server runs them: auto_explain with nested statements, its LOG lines sent to
 * this session as notices. Prints EXPLAIN (ANALYZE, BUFFERS) of the call and, when `full`, every
 * nested plan.
 */
async function explainSearch(
  dbUrl: string,
  statement: string,
  print: RegExp | null,
  log: (line: string) => void,
): Promise<string[]> {
  const notices: string[] = [];
  const sql = postgres(dbUrl, {
    max: 1,
    onnotice: (notice) => notices.push(String(notice.message)),
  });
  try {
    await sql.unsafe(`
      load 'auto_explain';
      set auto_explain.log_min_duration = 0;
      set auto_explain.log_analyze = on;
      set auto_explain.log_buffers = on;
      set auto_explain.log_timing = on;
      set auto_explain.log_nested_statements = on;
      set client_min_messages = log;
    `);
    await sql.unsafe(statement); // warm: the plans printed are of a second run
    notices.length = 0;
    const plan = await sql.unsafe(`explain (analyze, buffers) ${statement}`);
    log(`\nEXPLAIN (ANALYZE, BUFFERS) ${statement}:`);
    for (const row of plan) log(`  ${row["QUERY PLAN"]}`);
    // The top-level EXPLAIN is logged too: keep only the nested statements.
    const nested = notices.filter((notice) => !notice.includes("Query Text: explain"));
    const printed = nested.filter((notice) => print?.test(notice));
    if (printed.length > 0) {
      log(`\nauto_explain of statements run inside it (${printed.length} of ${nested.length}):`);
      for (const notice of printed) for (const line of notice.split("\n")) log(`  ${line}`);
    }
    return nested;
  } finally {
    await sql.end();
  }
}

/** What the busy check does on appointments: which scans, how many probes, how long. */
function summarizePlan(notices: string[], log: (line: string) => void): void {
  const text = notices.join("\n");
  const lines = text.split("\n");
  const gist = lines.filter((line) =>
    /(?:Index (?:Only )?Scan using|Bitmap Index Scan on) appointments_provider_no_overlap/.test(
      line,
    )
  );
  const seqScans = lines.filter((line) => /Seq Scan on appointments/.test(line));
  log(`  gist index appointments_provider_no_overlap used: ${gist.length > 0}`);
  log(`  sequential scan over appointments: ${seqScans.length > 0}`);
  for (const line of gist) {
    const match = line.match(/actual time=[\d.]+\.\.([\d.]+) rows=(\d+) loops=(\d+)/);
    if (!match) continue;
    const [, perLoopMs, rows, loops] = match;
    log(
      `  busy check: ${loops} probe(s) of the gist index, ${rows} row(s) each, ` +
        `${perLoopMs} ms each, ~${(Number(perLoopMs) * Number(loops)).toFixed(2)} ms in all`,
    );
  }
  for (const match of text.matchAll(/duration: ([\d.]+) ms\s+plan:\s+Query Text:\s*(.{0,60})/g)) {
    log(`  statement ${match[1].padStart(7)} ms: ${match[2].replace(/\s+/g, " ").trim()}...`);
  }
}

/** Random queries (1-40 days, some for one provider) on which two functions must agree. */
async function checkEquivalent(
  sql: postgres.Sql,
  targets: TargetOrg[],
  product: string,
  baseline: string,
): Promise<number> {
  let rows = 0;
  for (let i = 0; i < EQUIVALENCE_QUERIES; i++) {
    const org = randomItem(targets);
    const service = randomItem(org.services);
    const provider = i % 3 === 0 ? randomItem(service.providers) : null;
    const day = dayFromToday(Math.floor(Math.random() * SEARCH_DAYS_AHEAD));
    const days = 1 + Math.floor(Math.random() * 40);
    const args = [org.id, service.id, day, days, provider] as const;
    const [{ differ, count }] = await sql.unsafe(
      `select
         (select count(*) from (
           (select * from public.${product}($1, $2, $3, $4, $5)
            except all select * from public.${baseline}($1, $2, $3, $4, $5))
           union all
           (select * from public.${baseline}($1, $2, $3, $4, $5)
            except all select * from public.${product}($1, $2, $3, $4, $5))
         ) d)::integer as differ,
         (select count(*) from public.${product}($1, $2, $3, $4, $5))::integer as count`,
      [...args],
    );
    if (differ !== 0) {
      throw new Error(
        `${baseline} differs from ${product} on ${JSON.stringify(args)}: ${differ} rows`,
      );
    }
    rows += count;
  }
  return rows;
}

async function main(): Promise<void> {
  const { searches, keep, baseline } = parseArgs(Deno.args);
  const rounds = Math.ceil(searches / 4);
  const log = (line: string) => console.log(line);
  const serverUrl = Deno.env.get("DATABASE_URL") ?? DEFAULT_SERVER_URL;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  const name = `bench_availability_${Date.now()}`;
  await admin.unsafe(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const dbUrl = url.toString();
  log(`database ${name}`);
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    await prepareDatabase(dbUrl, { seed: false, log: (line) => log(`  ${line}`) });
    log("generating data");
    await generate(sql, log);
    const [{ version }] = await sql`select version()`;
    log(`server: ${version}`);
    const [stats] = await sql`
      select
        (select count(*) from public.appointments)::integer as appointments,
        (select count(*) from public.appointments a join bench_orgs o on o.id = a.org_id
          where o.target)::integer as target_appointments,
        (select round(100.0 * sum(extract(epoch from a.blocked_until - a.starts_at))
          / (select sum(extract(epoch from h.closes_at - h.opens_at)) * ${DAYS_BACK + DAYS_AHEAD}
               / 7.0
             from public.provider_hours h join bench_orgs o on o.id = h.org_id where o.target), 1)
         from public.appointments a join bench_orgs o on o.id = a.org_id
         where o.target and a.status = 'booked')::float8 as filled_percent,
        pg_size_pretty(pg_total_relation_size('public.appointments')) as size`;
    log(
      `appointments: ${stats.appointments} in all, ${stats.target_appointments} in the ` +
        `${TARGET_ORGS} target orgs (booked time, buffers included, ${stats.filled_percent}% ` +
        `of their weekly hours over the range), table and indexes ${stats.size}`,
    );

    const targets = await loadTargets(sql);
    if (baseline) {
      log(
        `\nper-slot baseline (busy check once per candidate slot) installed as ${PER_SLOT_FUNCTION}`,
      );
      await sql.unsafe(PER_SLOT_SEARCH_AVAILABILITY);
      const compared = await checkEquivalent(
        sql,
        targets,
        "search_availability",
        PER_SLOT_FUNCTION,
      );
      log(
        `  same rows as the product on ${EQUIVALENCE_QUERIES} random queries of 1-40 days ` +
          `(${compared} slots)`,
      );
    }

    const { lookup, product, baseline: before } = await timeStores(
      dbUrl,
      targets,
      rounds,
      baseline,
      log,
    );
    const [connections, queries] = baseline
      ? [" per function", " on each function, the same queries,"]
      : ["", ""];
    const how = `one connection${connections}, ${WARMUP_ROUNDS} warm-up rounds, then ${rounds} ` +
      `rounds of one call of each kind${queries} in random order (p50/p95 ratios to ` +
      `lookup_caller of the same rounds; rows: mean slots returned):`;
    printFigures(
      `product search_availability (as migrated) via createPostgresStore, ${how}`,
      [lookup, ...product],
      log,
    );
    if (before !== null) {
      printFigures(
        `per-slot busy check, before (${PER_SLOT_FUNCTION}), same rounds:`,
        [lookup, ...before],
        log,
      );
      log(
        "\nper-slot (before) -> product, same rounds and queries (speed-up: per-slot / product):",
      );
      for (let i = 0; i < product.length; i++) {
        const [b, p] = [before[i], product[i]];
        log(
          `  ${p.label}: p50 ${b.p50.toFixed(2)} -> ${p.p50.toFixed(2)} ms ` +
            `(${(b.p50 / p.p50).toFixed(1)}x), p95 ${b.p95.toFixed(2)} -> ${p.p95.toFixed(2)} ms ` +
            `(${(b.p95 / p.p95).toFixed(1)}x); rows ${b.meanRows.toFixed(1)} / ` +
            `${p.meanRows.toFixed(1)}`,
        );
      }
    }

    const busiest = product[1];
    log(
      `\ntarget p95 <= 10 ms for one day with 20 providers: product ${busiest.p95.toFixed(2)} ms ` +
        `(${busiest.p95 <= 10 ? "met" : "missed"})` +
        (before === null ? "" : `, per-slot baseline ${before[1].p95.toFixed(2)} ms`),
    );

    // The plan of a heavy search: all 20 providers, the first regular working day a week out.
    const org = targets[0];
    const day = workingDays().find((d) => d >= dayFromToday(7))!;
    const statement = (fn: string) =>
      `select * from public.${fn}('${org.id}', '${serviceOfAll(org).id}', '${day}', 1, null)`;
    const notices = await explainSearch(dbUrl, statement("search_availability"), /./, log);
    log("\nplan summary (product function, one day, all 20 providers of the service):");
    summarizePlan(notices, log);
    if (baseline) {
      const perSlot = await explainSearch(
        dbUrl,
        statement(PER_SLOT_FUNCTION),
        /and not exists/,
        log,
      );
      log("\nplan summary (per-slot baseline, same search):");
      summarizePlan(perSlot, log);
    }
  } finally {
    await sql.end();
    if (keep) {
      log(`kept database ${name}`);
    } else {
      await admin.unsafe(`drop database ${name} with (force)`);
    }
    await admin.end();
  }
}

if (import.meta.main) {
  await main();
}
