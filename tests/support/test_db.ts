/**
 * Speaks SQL (postgres.js) to a throwaway database per test: created on the server `DATABASE_URL`
 * points to, or in an embedded Postgres (PGlite) when it is unset; prepared like a Supabase
 * database (bootstrap, migrations, seed); dropped afterwards.
 *
 * Preparing runs the Supabase CLI (~1.5 s), so it happens once per set of inputs: on a server into
 * a template database (`tmpl_voice_<hash>_<created>`) that each test database is copied from
 * (~0.1 s); embedded, into a PGlite data directory dump kept in the temp directory that each test
 * database is loaded from (~1 s). The hash covers bootstrap.sql, the migrations, the seed and the
 * PGlite version, so editing any of them prepares afresh.
 *
 * @module
 */

import postgres from "postgres";
import {
  EMBEDDED_CACHE_DIR,
  type EmbeddedPostgres,
  readCachedDump,
  startEmbeddedPostgres,
  writeCachedDump,
} from "../../scripts/db/embedded.ts";
import {
  BOOTSTRAP_PATH,
  listOrgFiles,
  prepareDatabase,
  PROJECT_ROOT,
} from "../../scripts/db/prepare.ts";

/** Options of {@link createTestDatabase}. */
export interface TestDatabaseOptions {
  /** Load supabase/seed.sql. Defaults to true. */
  seed?: boolean;
  /** Directory containing the `supabase/` folder to prepare from. Defaults to the project root. */
  workdir?: string;
  /**
   * Server to create the database on (a URL to its maintenance database, for a superuser).
   * Defaults to `DATABASE_URL`; null, or no `DATABASE_URL`, means an embedded Postgres (PGlite).
   */
  serverUrl?: string | null;
}

/** A database of one's own, prepared and ready. */
export interface TestDatabase {
  /** Connection URL (superuser), for code under test that opens its own connections. */
  readonly url: string;
  /** Superuser connection pool (at most 10 connections) to this database. */
  readonly sql: postgres.Sql;
  /** Closes `sql` and deletes the database (its connections are terminated first). Idempotent. */
  drop(): Promise<void>;
}

/** The roles Supabase's Data API (PostgREST) switches to per request. */
export type ApiRole = "anon" | "authenticated" | "service_role";

const API_ROLES: readonly ApiRole[] = ["anon", "authenticated", "service_role"];

const TEST_DB_PREFIX = "t_";
const TEMPLATE_PREFIX = "tmpl_voice_";
/** Test databases older than this are leftovers of crashed runs and get dropped. */
const STALE_TEST_DB_MS = 3 * 60 * 60 * 1000;
/** Templates of older inputs are kept this long (another checkout may still be using them). */
const STALE_TEMPLATE_MS = 24 * 60 * 60 * 1000;
/** Serializes template builds across processes sharing a server (`pg_advisory_lock` key). */
const TEMPLATE_LOCK_KEY = 7_460_118_255_001;
const MAX_TEST_CONNECTIONS = 10;

/** Server templates and embedded dumps built (or found) by this process, by input hash. */
const serverTemplates = new Map<string, Promise<string>>();
const embeddedDumps = new Map<string, Promise<Blob>>();
let staleDatabasesSwept = false;

/**
 * Creates a database of its own for one test, prepared with bootstrap, migrations and (by
 * default) seed. Repeated runs against one server never see each other's rows.
 *
 * @param options seed, workdir and server
 * @returns its URL, a superuser connection pool and `drop()`
 */
export async function createTestDatabase(
  options: TestDatabaseOptions = {},
): Promise<TestDatabase> {
  const seed = options.seed ?? true;
  const workdir = options.workdir ?? PROJECT_ROOT;
  const serverUrl = options.serverUrl === undefined
    ? Deno.env.get("DATABASE_URL")
    : options.serverUrl;
  const inputsHash = await hashInputs(workdir, seed);
  return serverUrl
    ? await createServerDatabase(serverUrl, workdir, seed, inputsHash)
    : await createEmbeddedDatabase(workdir, seed, inputsHash);
}

/**
 * Runs `fn` in a transaction as PostgREST would for a request: `set local role` and the JWT
 * claims in `request.jwt.claims`, which `auth.uid()`, `auth.role()` and `auth.jwt()` read.
 *
 * @param sql a superuser connection pool, such as {@link TestDatabase.sql}
 * @param role the API role to act as
 * @param claims the JWT claims, e.g. `{ sub, role: "authenticated", app_metadata }`; null for
 *   none (the helpers then return null)
 * @param fn the work, given the transaction
 * @returns what `fn` returns, after the transaction commits
 */
export async function withRole<T>(
  sql: postgres.Sql,
  role: ApiRole,
  claims: Record<string, unknown> | null,
  fn: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<T> {
  if (!API_ROLES.includes(role)) throw new Error(`Cannot act as role ${role}: not an API role`);
  // Boxed: `begin` would otherwise await the elements of an array `fn` returns.
  const [result] = await sql.begin(async (tx) => {
    await tx.unsafe(`set local role ${role}`);
    await tx`select set_config('request.jwt.claims', ${
      claims ? JSON.stringify(claims) : ""
    }, true)`;
    return [await fn(tx)] as const;
  });
  return result as T;
}

async function createServerDatabase(
  serverUrl: string,
  workdir: string,
  seed: boolean,
  inputsHash: string,
): Promise<TestDatabase> {
  let template = serverTemplates.get(inputsHash);
  if (!template) {
    template = ensureServerTemplate(serverUrl, workdir, seed, inputsHash);
    serverTemplates.set(inputsHash, template);
    template.catch(() => serverTemplates.delete(inputsHash));
  }
  const templateName = await template;
  const name = `${TEST_DB_PREFIX}${Date.now()}_${randomSuffix()}`;
  try {
    await withAdmin(serverUrl, async (admin) => {
      await sweepStaleDatabases(admin);
      await admin.unsafe(
        `create database ${quoteIdent(name)} template ${quoteIdent(templateName)}`,
      );
    });
  } catch (error) {
    // The template vanished since this process found it (swept, dropped by hand): rebuild once.
    if (
      (error as { code?: string }).code !== "3D000" || serverTemplates.get(inputsHash) !== template
    ) {
      throw error;
    }
    serverTemplates.delete(inputsHash);
    return await createServerDatabase(serverUrl, workdir, seed, inputsHash);
  }
  const url = databaseUrl(serverUrl, name);
  const sql = postgres(url, { max: MAX_TEST_CONNECTIONS, onnotice: () => {} });
  try {
    // A copy does not inherit the template's `alter database ... set` (search_path); bootstrap
    // is idempotent and restores it.
    await sql.unsafe(await Deno.readTextFile(BOOTSTRAP_PATH));
  } catch (error) {
    await sql.end({ timeout: 5 });
    await withAdmin(
      serverUrl,
      (admin) => admin.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`),
    );
    throw error;
  }
  let dropping: Promise<void> | null = null;
  return {
    url,
    sql,
    drop() {
      dropping ??= (async () => {
        await sql.end({ timeout: 5 });
        await withAdmin(serverUrl, async (admin) => {
          await admin.unsafe(`drop database if exists ${quoteIdent(name)} with (force)`);
        });
      })();
      return dropping;
    },
  };
}

/**
 * Finds or builds the template database for these inputs. Builds are serialized across processes
 * by an advisory lock and published by renaming, so a half-built template is never copied.
 */
async function ensureServerTemplate(
  serverUrl: string,
  workdir: string,
  seed: boolean,
  inputsHash: string,
): Promise<string> {
  const prefix = `${TEMPLATE_PREFIX}${inputsHash.slice(0, 16)}_`;
  const findTemplate = async (admin: postgres.Sql) => {
    const rows = await admin<{ datname: string }[]>`
      select datname from pg_database
      where starts_with(datname, ${prefix}) and datname !~ '_building_'
      order by datname limit 1
    `;
    return rows[0]?.datname ?? null;
  };
  const found = await withAdmin(serverUrl, findTemplate);
  if (found) return found;

  return await withAdmin(serverUrl, async (admin) => {
    const lock = await admin.reserve();
    try {
      await lock`select pg_advisory_lock(${TEMPLATE_LOCK_KEY})`;
      const builtMeanwhile = await findTemplate(admin);
      if (builtMeanwhile) return builtMeanwhile;
      const name = `${prefix}${Math.floor(Date.now() / 1000)}`;
      const building = `${name}_building_${randomSuffix()}`;
      await admin.unsafe(`create database ${quoteIdent(building)}`);
      try {
        await prepareDatabase(databaseUrl(serverUrl, building), { seed, workdir });
        await admin.unsafe(`alter database ${quoteIdent(building)} rename to ${quoteIdent(name)}`);
      } catch (error) {
        await admin.unsafe(`drop database if exists ${quoteIdent(building)} with (force)`)
          .catch(() => {});
        throw error;
      }
      return name;
    } finally {
      await lock`select pg_advisory_unlock(${TEMPLATE_LOCK_KEY})`.catch(() => {});
      lock.release();
    }
  });
}

/** Drops test databases left by crashed runs and templates of long-gone inputs. Best effort. */
async function sweepStaleDatabases(admin: postgres.Sql): Promise<void> {
  if (staleDatabasesSwept) return;
  staleDatabasesSwept = true;
  const rows = await admin<{ datname: string }[]>`
    select datname from pg_database
    where starts_with(datname, ${TEST_DB_PREFIX}) or starts_with(datname, ${TEMPLATE_PREFIX})
  `;
  const nowMs = Date.now();
  for (const { datname } of rows) {
    const testMatch = /^t_(\d{13})_[a-z0-9]+$/.exec(datname);
    const templateMatch = /^tmpl_voice_[0-9a-f]{16}_(\d{10})(_building_[a-z0-9]+)?$/.exec(datname);
    const stale = testMatch
      ? nowMs - Number(testMatch[1]) > STALE_TEST_DB_MS
      : templateMatch
      ? nowMs - Number(templateMatch[1]) * 1000 > STALE_TEMPLATE_MS
      : false;
    if (stale) {
      await admin.unsafe(`drop database if exists ${quoteIdent(datname)} with (force)`)
        .catch(() => {});
    }
  }
}

async function createEmbeddedDatabase(
  workdir: string,
  seed: boolean,
  inputsHash: string,
): Promise<TestDatabase> {
  let dump = embeddedDumps.get(inputsHash);
  if (!dump) {
    dump = ensureEmbeddedDump(workdir, seed, inputsHash);
    embeddedDumps.set(inputsHash, dump);
    dump.catch(() => embeddedDumps.delete(inputsHash));
  }
  const server: EmbeddedPostgres = await startEmbeddedPostgres({ loadDataDir: await dump });
  const sql = postgres(server.url, { max: MAX_TEST_CONNECTIONS, onnotice: () => {} });
  let dropping: Promise<void> | null = null;
  return {
    url: server.url,
    sql,
    drop() {
      dropping ??= (async () => {
        await sql.end({ timeout: 5 });
        await server.stop();
      })();
      return dropping;
    },
  };
}

/**
 * PGlite serves one database per instance, so each test database is a fresh instance loaded from
 * a prepared data directory dump, cached on disk across processes.
 */
async function ensureEmbeddedDump(
  workdir: string,
  seed: boolean,
  inputsHash: string,
): Promise<Blob> {
  const cachePath = `${EMBEDDED_CACHE_DIR}/prepared-${inputsHash}.tar`;
  const cached = await readCachedDump(cachePath);
  if (cached) return cached;
  const server = await startEmbeddedPostgres();
  let dump: Blob;
  try {
    await prepareDatabase(server.url, { seed, workdir });
    dump = await server.dumpDataDir();
  } finally {
    await server.stop();
  }
  await writeCachedDump(cachePath, dump);
  await sweepStaleDumps();
  return dump;
}

/** Deletes cached dumps of inputs not used for a day (each is ~50 MB). Best effort. */
async function sweepStaleDumps(): Promise<void> {
  const nowMs = Date.now();
  for await (const entry of Deno.readDir(EMBEDDED_CACHE_DIR)) {
    const path = `${EMBEDDED_CACHE_DIR}/${entry.name}`;
    const info = await Deno.stat(path).catch(() => null);
    const usedMs = info?.atime?.getTime() ?? info?.mtime?.getTime() ?? nowMs;
    if (nowMs - usedMs > STALE_TEMPLATE_MS) await Deno.remove(path).catch(() => {});
  }
}

/** SHA-256 over everything that decides the prepared database's content. */
async function hashInputs(workdir: string, seed: boolean): Promise<string> {
  const parts: string[] = [
    `seed=${seed}`,
    // The dump format belongs to the PGlite version; a server template does not care.
    `pglite=${import.meta.resolve("@electric-sql/pglite")}`,
    await Deno.readTextFile(BOOTSTRAP_PATH),
  ];
  const migrationsDir = `${workdir}/supabase/migrations`;
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(migrationsDir)) {
      if (entry.isFile && entry.name.endsWith(".sql")) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  for (const name of names.sort()) {
    parts.push(name, await Deno.readTextFile(`${migrationsDir}/${name}`));
  }
  if (seed) {
    try {
      parts.push(await Deno.readTextFile(`${workdir}/supabase/seed.sql`));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    for (const path of await listOrgFiles(workdir)) {
      parts.push(path.slice(workdir.length), await Deno.readTextFile(path));
    }
  }
  const bytes = new TextEncoder().encode(parts.join("\0"));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Runs `fn` with a short-lived single connection to the server's maintenance database. */
async function withAdmin<T>(serverUrl: string, fn: (admin: postgres.Sql) => Promise<T>) {
  const admin = postgres(serverUrl, { max: 2, onnotice: () => {} });
  try {
    return await fn(admin);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** `serverUrl` with its database name replaced. */
function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function randomSuffix(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 8);
}
