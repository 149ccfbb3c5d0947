/**
 * Tests the local database infrastructure over SQL (postgres.js) and the Supabase CLI: that
 * scripts/db/prepare.ts turns a bare Postgres (the server at `DATABASE_URL`, and an embedded
 * PGlite) into a Supabase-like database idempotently, and that tests/support/test_db.ts gives
 * isolated databases and PostgREST-like roles.
 *
 * Server cases run when `DATABASE_URL` is set (e.g.
 * `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres`); embedded cases always run.
 *
 * @module
 */

import assert from "node:assert/strict";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../scripts/db/embedded.ts";
import {
  cliDatabaseUrl,
  prepareDatabase,
  PROJECT_ROOT,
  redactDatabaseUrl,
} from "../scripts/db/prepare.ts";
import { createTestDatabase, withRole } from "./support/test_db.ts";

const SERVER_URL = Deno.env.get("DATABASE_URL");
const NO_SERVER = !SERVER_URL;

const USER_A = "00000000-0000-4000-8000-00000000000a";
const USER_B = "00000000-0000-4000-8000-00000000000b";

/** A copy of the project's supabase/ folder (config, migrations, seed) that a test may change. */
async function snapshotSupabaseDir(): Promise<{ workdir: string; migrationCount: number }> {
  const workdir = await Deno.makeTempDir({ prefix: "db_setup_test_" });
  await Deno.mkdir(`${workdir}/supabase/migrations`, { recursive: true });
  for (const name of ["config.toml", "seed.sql"]) {
    await Deno.copyFile(`${PROJECT_ROOT}/supabase/${name}`, `${workdir}/supabase/${name}`)
      .catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
  }
  let migrationCount = 0;
  for await (const entry of Deno.readDir(`${PROJECT_ROOT}/supabase/migrations`)) {
    if (!entry.isFile || !/^\d+_.*\.sql$/.test(entry.name)) continue;
    await Deno.copyFile(
      `${PROJECT_ROOT}/supabase/migrations/${entry.name}`,
      `${workdir}/supabase/migrations/${entry.name}`,
    );
    migrationCount++;
  }
  return { workdir, migrationCount };
}

/** Runs `fn` against a bare database on the `DATABASE_URL` server, dropped afterwards. */
async function withBareServerDatabase(fn: (url: string) => Promise<void>): Promise<void> {
  const admin = postgres(SERVER_URL!, { max: 1, onnotice: () => {} });
  // Named like test_db.ts's databases, so a crashed run's leftover is swept by it.
  const name = `t_${Date.now()}_${crypto.randomUUID().slice(0, 8)}`;
  try {
    await admin.unsafe(`create database "${name}"`);
    const url = new URL(SERVER_URL!);
    url.pathname = `/${name}`;
    await fn(url.toString());
  } finally {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
    await admin.end();
  }
}

/** Runs `fn` against a fresh embedded Postgres, stopped afterwards. */
async function withBareEmbeddedDatabase(fn: (url: string) => Promise<void>): Promise<void> {
  const server = await startEmbeddedPostgres();
  try {
    await fn(server.url);
  } finally {
    await server.stop();
  }
}

/** Checks what bootstrap.sql, the migrations and the seed leave behind. */
async function assertSupabaseLike(url: string, migrationCount: number): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const roles = await sql`
      select rolname, rolcanlogin, rolinherit, rolbypassrls,
        pg_has_role('authenticator', oid, 'member') as "authenticatorMember"
      from pg_roles
      where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')
      order by rolname
    `;
    assert.deepEqual([...roles], [
      row("anon", false, false, false, true),
      row("authenticated", false, false, false, true),
      row("authenticator", true, false, false, true),
      row("service_role", false, false, true, true),
    ]);

    const extensions = await sql`
      select extname, extnamespace::regnamespace::text as schema
      from pg_extension where extname in ('pgcrypto', 'uuid-ossp') order by extname
    `;
    assert.deepEqual([...extensions], [
      { extname: "pgcrypto", schema: "extensions" },
      { extname: "uuid-ossp", schema: "extensions" },
    ]);
    // A new session gets Supabase's search path (PGlite: its one session was started with it).
    const [{ searchPath }] = await sql`select current_setting('search_path') as "searchPath"`;
    assert.equal(searchPath, '"$user", public, extensions');

    const authUsersColumns = await sql`
      select column_name from information_schema.columns
      where table_schema = 'auth' and table_name = 'users'
        and column_name in ('id', 'email', 'raw_app_meta_data', 'raw_user_meta_data', 'created_at')
    `;
    assert.equal(authUsersColumns.length, 5);
    const [usage] = await sql`
      select has_schema_privilege('anon', 'auth', 'usage') as auth,
        has_schema_privilege('authenticated', 'public', 'usage') as public,
        has_schema_privilege('service_role', 'extensions', 'usage') as extensions
    `;
    assert.deepEqual(usage, { auth: true, public: true, extensions: true });

    // Default privileges: the migrating role's new objects in public are granted to the API
    // roles, so row level security is what keeps rows apart.
    const probe = await sql.reserve();
    try {
      await probe`begin`; // rolled back below: leaves nothing behind
      await probe`create table public.zz_default_privileges_probe (id int)`;
      const [granted] = await probe`
        select has_table_privilege('anon', 'public.zz_default_privileges_probe', 'select') as anon,
          has_table_privilege('authenticated', 'public.zz_default_privileges_probe', 'insert')
            as authenticated,
          has_table_privilege('service_role', 'public.zz_default_privileges_probe', 'delete')
            as "serviceRole"
      `;
      assert.deepEqual(granted, { anon: true, authenticated: true, serviceRole: true });
    } finally {
      await probe`rollback`;
      probe.release();
    }

    const [{ applied }] = await sql`
      select count(*)::int as applied from supabase_migrations.schema_migrations
    `;
    assert.equal(applied, migrationCount);
  } finally {
    await sql.end();
  }
}

function row(
  rolname: string,
  rolcanlogin: boolean,
  rolinherit: boolean,
  rolbypassrls: boolean,
  authenticatorMember: boolean,
) {
  return { rolname, rolcanlogin, rolinherit, rolbypassrls, authenticatorMember };
}

/**
 * Prepares the bare database at `url` twice, then adds a good and a bad migration: the whole life
 * of a database under prepareDatabase().
 */
async function exercisePrepare(url: string): Promise<void> {
  const { workdir, migrationCount } = await snapshotSupabaseDir();
  try {
    const firstRun: string[] = [];
    await prepareDatabase(url, { workdir, log: (line) => firstRun.push(line) });
    const secondRun: string[] = [];
    await prepareDatabase(url, { workdir, log: (line) => secondRun.push(line) });
    if (migrationCount > 0) {
      assert.match(firstRun.join("\n"), /supabase db push applied/);
    }
    assert.match(secondRun.join("\n"), /migrations: up to date/);
    await assertSupabaseLike(url, migrationCount);

    // A migration written later is pushed by the next run; the history records it.
    await Deno.writeTextFile(
      `${workdir}/supabase/migrations/99990101000000_added_later.sql`,
      "create table public.zz_added_later (id int primary key);\n",
    );
    await prepareDatabase(url, { workdir, seed: false });
    await assertSupabaseLike(url, migrationCount + 1);

    // A failing migration names the step and carries the CLI's report of the server's error.
    await Deno.writeTextFile(
      `${workdir}/supabase/migrations/99990102000000_broken.sql`,
      "insert into public.zz_no_such_table values (1);\n",
    );
    await assert.rejects(() => prepareDatabase(url, { workdir, seed: false }), (error: Error) => {
      assert.match(error.message, /^Cannot prepare database: migrations \(supabase db push\)/);
      assert.match(error.message, /zz_no_such_table/);
      return true;
    });
    await assertSupabaseLike(url, migrationCount + 1);
  } finally {
    await Deno.remove(workdir, { recursive: true });
  }
}

Deno.test({
  name: "prepareDatabase() prepares a server database idempotently, then pushes later migrations",
  ignore: NO_SERVER,
  fn: () => withBareServerDatabase(exercisePrepare),
});

Deno.test(
  "prepareDatabase() prepares an embedded PGlite idempotently, then pushes later migrations",
  () => withBareEmbeddedDatabase(exercisePrepare),
);

/** Two test databases of one target never see each other's rows; drop() removes them. */
async function exerciseIsolation(serverUrl: string | null): Promise<void> {
  const first = await createTestDatabase({ serverUrl });
  const second = await createTestDatabase({ serverUrl });
  try {
    assert.notEqual(first.url, second.url);
    await first.sql`create table public.zz_isolation (note text)`;
    await first.sql`insert into public.zz_isolation values ('first only')`;
    const [{ exists }] = await second.sql`
      select to_regclass('public.zz_isolation') is not null as "exists"
    `;
    assert.equal(exists, false);
    // What a new session of the code under test sees, like one on a prepared database.
    const fresh = postgres(second.url, { max: 1, onnotice: () => {} });
    try {
      const [{ path, applied }] = await fresh`
        select current_setting('search_path') as path,
          (select count(*)::int from supabase_migrations.schema_migrations) as applied
      `;
      assert.equal(path, '"$user", public, extensions');
      assert.ok(applied > 0);
    } finally {
      await fresh.end();
    }
  } finally {
    await first.drop();
    await second.drop();
  }
  await first.drop(); // idempotent
  const probe = postgres(first.url, { max: 1, connect_timeout: 5, onnotice: () => {} });
  await assert.rejects(() => probe`select 1`);
  await probe.end({ timeout: 0 });
}

Deno.test({
  name: "createTestDatabase() on a server gives each test its own database, dropped by drop()",
  ignore: NO_SERVER,
  fn: () => exerciseIsolation(SERVER_URL!),
});

Deno.test(
  "createTestDatabase() without a server gives each test its own embedded PGlite",
  () => exerciseIsolation(null),
);

Deno.test("withRole() acts as PostgREST would: role, JWT claims, row level security", async () => {
  const db = await createTestDatabase({ seed: false });
  try {
    await db.sql`create table public.zz_notes (owner uuid not null, body text)`;
    await db.sql`alter table public.zz_notes enable row level security`;
    await db.sql`
      create policy "Owners read their notes" on public.zz_notes for select to authenticated
      using (owner = (select auth.uid()))
    `;
    await db.sql`insert into public.zz_notes values (${USER_A}, 'a'), (${USER_B}, 'b')`;

    const claims = {
      sub: USER_A,
      role: "authenticated",
      email: "a@example.test",
      app_metadata: { org_id: "o1" },
    };
    const seen = await withRole(db.sql, "authenticated", claims, async (tx) => {
      const [helpers] = await tx`
        select auth.uid() as uid, auth.role() as role, auth.email() as email,
          auth.jwt() -> 'app_metadata' ->> 'org_id' as "orgId", current_user as "currentUser"
      `;
      const notes = await tx`select body from public.zz_notes`;
      return { helpers, bodies: notes.map((note) => note.body) };
    });
    assert.deepEqual(seen.helpers, {
      uid: USER_A,
      role: "authenticated",
      email: "a@example.test",
      orgId: "o1",
      currentUser: "authenticated",
    });
    assert.deepEqual(seen.bodies, ["a"]);

    const anonCount = await withRole(db.sql, "anon", { role: "anon" }, async (tx) => {
      const [{ n }] = await tx`select count(*)::int as n from public.zz_notes`;
      return n;
    });
    assert.equal(anonCount, 0);
    const serviceCount = await withRole(db.sql, "service_role", null, async (tx) => {
      const [{ n }] = await tx`select count(*)::int as n from public.zz_notes`;
      return n;
    });
    assert.equal(serviceCount, 2);

    // No claims: the helpers return null. The legacy per-claim setting still works.
    const legacy = await withRole(db.sql, "authenticated", null, async (tx) => {
      const [before] = await tx`select auth.uid() as uid, auth.jwt() as jwt`;
      await tx`select set_config('request.jwt.claim.sub', ${USER_B}, true)`;
      const [after] = await tx`select auth.uid() as uid`;
      return { before, after };
    });
    assert.deepEqual(legacy, { before: { uid: null, jwt: null }, after: { uid: USER_B } });

    // Settings were local to each transaction.
    const [outside] = await db.sql`
      select current_user = session_user as "ownRole", auth.uid() as uid
    `;
    assert.deepEqual(outside, { ownRole: true, uid: null });
  } finally {
    await db.drop();
  }
});

Deno.test("cliDatabaseUrl() disables TLS for loopback servers only, unless the URL says otherwise", () => {
  assert.equal(
    cliDatabaseUrl("postgres://postgres@127.0.0.1:5432/postgres"),
    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
  );
  assert.equal(
    cliDatabaseUrl("postgres://postgres@localhost:5432/db?sslmode=require"),
    "postgres://postgres@localhost:5432/db?sslmode=require",
  );
  assert.equal(
    cliDatabaseUrl("postgres://postgres:pw@db.example.supabase.co:5432/postgres"),
    "postgres://postgres:pw@db.example.supabase.co:5432/postgres",
  );
});

Deno.test("redactDatabaseUrl() hides the password", () => {
  assert.equal(
    redactDatabaseUrl("postgres://postgres:s3cret@db.example.test:5432/postgres"),
    "postgres://postgres:***@db.example.test:5432/postgres",
  );
  assert.equal(redactDatabaseUrl("not a url"), "<unparsable database URL>");
});
