/**
 * Benchmarks `public.lookup_caller` (SQL over the Postgres wire protocol) at scale: 1,000 orgs,
 * 1,000,000 clients, 200,000 ended calls and 100,000 booked appointments, generated with
 * generate_series into a fresh database, then timed random lookups through the real postgres
 * store adapter, and EXPLAIN (ANALYZE) of every statement the function runs.
 *
 * Run by hand (not part of the test suite): it needs a real server and about a minute.
 *   deno run -A scripts/bench/lookup_caller_bench.ts [--lookups 2000] [--keep]
 * The server is `DATABASE_URL` (a superuser URL; a fresh database is created beside it and
 * dropped at the end unless `--keep`), defaulting to postgres://postgres@127.0.0.1:5432/postgres.
 *
 * @module
 */
import postgres from "postgres";
import { prepareDatabase } from "../db/prepare.ts";
import { createPostgresStore } from "../../supabase/functions/_shared/store/postgres_store.ts";

const ORGS = 1_000;
const CLIENTS_PER_ORG = 1_000;
const ENDED_CALLS_PER_ORG = 200;
const APPOINTMENTS_PER_ORG = 100;
const DEFAULT_LOOKUPS = 2_000;
const WARMUP_LOOKUPS = 200;
const DEFAULT_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres";

function parseArgs(args: string[]): { lookups: number; keep: boolean } {
  const index = args.indexOf("--lookups");
  const lookups = index === -1 ? DEFAULT_LOOKUPS : Number(args[index + 1]);
  if (!Number.isInteger(lookups) || lookups <= 0) throw new Error("--lookups must be a count");
  return { lookups, keep: args.includes("--keep") };
}

function percentile(sortedMs: number[], fraction: number): number {
  const index = Math.min(sortedMs.length - 1, Math.ceil(fraction * sortedMs.length) - 1);
  return sortedMs[Math.max(0, index)];
}

/** Org n's number and client m's number: both E.164, both derivable, so lookups can be random. */
const ORG_NUMBER_SQL = `'+1555' || lpad(o.n::text, 7, '0')`;
const CLIENT_PHONE_SQL = `'+1' || (2000000000 + o.n * 10000 + c.m)::text`;

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
  await step(
    `${ORGS} orgs with numbers and hours`,
    `
    create temporary table bench_orgs as
      select n, gen_random_uuid() as id from generate_series(1, ${ORGS}) as n;
    insert into public.orgs (id, name, timezone, greeting, persona, transfer_number,
      emergency_keywords)
    select o.id, 'Org ' || o.n, 'America/New_York', 'Hello!', 'Be brief.', '+15550100999',
      array['emergency']
    from bench_orgs o;
    insert into public.org_phone_numbers (phone_number, org_id)
    select ${ORG_NUMBER_SQL}, o.id from bench_orgs o;
    insert into public.org_business_hours (org_id, iso_weekday, opens_at, closes_at)
    select o.id, d, '09:00', '17:00' from bench_orgs o, generate_series(1, 5) as d;
  `,
  );
  await step(
    `${ORGS * CLIENTS_PER_ORG} clients`,
    `
    insert into public.clients (org_id, phone, first_name, last_name)
    select o.id, ${CLIENT_PHONE_SQL}, 'First' || c.m, 'Last' || o.n
    from bench_orgs o, generate_series(1, ${CLIENTS_PER_ORG}) as c (m);
  `,
  );
  await step(
    `${ORGS * ENDED_CALLS_PER_ORG} ended calls`,
    `
    insert into public.calls (call_sid, org_id, from_number, to_number, status, outcome,
      created_at, answered_at, ended_at, duration_seconds)
    select 'CA' || md5(o.n || ':' || k), o.id,
      '+1' || (2000000000 + o.n * 10000 + (k * 7919) % ${CLIENTS_PER_ORG} + 1)::text,
      ${ORG_NUMBER_SQL}, 'completed',
      (array['completed', 'booked', 'missed', 'transferred'])[1 + k % 4],
      now() - make_interval(days => k), now() - make_interval(days => k),
      now() - make_interval(days => k) + interval '2 minutes', 120
    from bench_orgs o, generate_series(1, ${ENDED_CALLS_PER_ORG}) as k;
  `,
  );
  await step(
    `${ORGS * APPOINTMENTS_PER_ORG} booked appointments`,
    `
    insert into public.appointments (org_id, client_id, starts_at, ends_at)
    select o.id, cl.id,
      date_trunc('day', now()) + interval '30 days' + make_interval(mins => 30 * a),
      date_trunc('day', now()) + interval '30 days' + make_interval(mins => 30 * a + 30)
    from bench_orgs o
    cross join generate_series(1, ${APPOINTMENTS_PER_ORG}) as a
    join public.clients cl
      on cl.org_id = o.id and cl.phone = '+1' || (2000000000 + o.n * 10000 + a * 3)::text;
  `,
  );
  await step("analyze", "analyze");
}

/** The statements lookup_caller runs, with one caller's values, for EXPLAIN (ANALYZE). */
function explainStatements(to: string, from: string): [string, string][] {
  return [
    [
      "org by dialled number",
      `select o.* from public.org_phone_numbers n join public.orgs o on o.id = n.org_id
       where n.phone_number = '${to}'`,
    ],
    [
      "client by (org, phone)",
      `select c.* from public.clients c
       where c.org_id = (select org_id from public.org_phone_numbers where phone_number = '${to}')
         and c.phone = '${from}'`,
    ],
    [
      "upcoming booked appointments",
      `select a.* from public.appointments a
       join public.clients c on c.id = a.client_id and c.phone = '${from}'
       where a.org_id = c.org_id and a.status = 'booked' and a.starts_at > now()
         and c.org_id = (select org_id from public.org_phone_numbers where phone_number = '${to}')
       order by a.starts_at limit 3`,
    ],
    [
      "last ended call outcome",
      `select c.outcome from public.calls c
       where c.org_id = (select org_id from public.org_phone_numbers where phone_number = '${to}')
         and c.from_number = '${from}' and c.ended_at is not null
       order by c.ended_at desc limit 1`,
    ],
  ];
}

async function main(): Promise<void> {
  const { lookups, keep } = parseArgs(Deno.args);
  const log = (line: string) => console.log(line);
  const serverUrl = Deno.env.get("DATABASE_URL") ?? DEFAULT_SERVER_URL;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  const name = `bench_lookup_${Date.now()}`;
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

    const store = createPostgresStore(dbUrl, { maxConnections: 1 });
    const pick = () => {
      const n = 1 + Math.floor(Math.random() * ORGS);
      // One in ten callers is unknown to the org (a stranger).
      const m = Math.random() < 0.1
        ? CLIENTS_PER_ORG + 1 + Math.floor(Math.random() * 1000)
        : 1 + Math.floor(Math.random() * CLIENTS_PER_ORG);
      return [orgNumber(n), clientPhone(n, m)] as const;
    };
    try {
      for (let i = 0; i < WARMUP_LOOKUPS; i++) await store.lookupCaller(...pick());
      const durationsMs: number[] = [];
      let withAppointments = 0;
      let withOutcome = 0;
      for (let i = 0; i < lookups; i++) {
        const [to, from] = pick();
        const startedMs = performance.now();
        const context = await store.lookupCaller(to, from);
        durationsMs.push(performance.now() - startedMs);
        if (!context) throw new Error(`lookup_caller found no org for ${to}`);
        if (context.upcomingAppointments.length > 0) withAppointments++;
        if (context.lastCallOutcome) withOutcome++;
      }
      durationsMs.sort((a, b) => a - b);
      log(
        `lookup_caller via createPostgresStore, ${lookups} random lookups, one connection: ` +
          `p50 ${percentile(durationsMs, 0.5).toFixed(2)} ms, ` +
          `p95 ${percentile(durationsMs, 0.95).toFixed(2)} ms, ` +
          `p99 ${percentile(durationsMs, 0.99).toFixed(2)} ms, ` +
          `max ${durationsMs.at(-1)!.toFixed(2)} ms ` +
          `(${withAppointments} with upcoming appointments, ${withOutcome} with a last outcome)`,
      );
    } finally {
      await store.close();
    }

    const [to, from] = [orgNumber(500), clientPhone(500, 3)];
    for (const [label, statement] of explainStatements(to, from)) {
      const plan = await sql.unsafe(`explain (analyze, buffers, costs off) ${statement}`);
      log(`\nEXPLAIN (ANALYZE) ${label}:`);
      for (const row of plan) log(`  ${row["QUERY PLAN"]}`);
    }
    const [{ result }] = await sql`select public.lookup_caller(${to}, ${from}) as result`;
    log(`\nlookup_caller(${to}, ${from}) = ${JSON.stringify(result).slice(0, 300)}...`);
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
