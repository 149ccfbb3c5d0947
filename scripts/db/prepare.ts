/**
 * Speaks SQL to a PostgreSQL server (postgres.js) and drives the Supabase CLI: prepares any bare
 * Postgres the way Supabase's image is prepared (scripts/db/bootstrap.sql), applies
 * supabase/migrations with `supabase db push`, then runs supabase/seed.sql and applies the org
 * files supabase/orgs/*.toml (scripts/org.ts apply).
 *
 * Usage: `deno run -A scripts/db/prepare.ts [url] [--no-seed] [--keep]`. The URL defaults to
 * `DATABASE_URL`; with neither, an embedded Postgres (PGlite) is started, prepared and stopped
 * (`--keep` leaves it serving until Ctrl-C).
 *
 * @module
 */

import postgres from "postgres";
import { applyOrgs, readOrgFiles } from "../org/apply.ts";
import { formatProblem } from "../org/org_file.ts";

/** Options of {@link prepareDatabase}. */
export interface PrepareDatabaseOptions {
  /** Run supabase/seed.sql after the migrations. Defaults to true. */
  seed?: boolean;
  /** Receives one line per step (what ran, how long it took). Defaults to silence. */
  log?: (line: string) => void;
  /**
   * Directory containing the `supabase/` folder whose migrations and seed are used. Defaults to
   * this project's root.
   */
  workdir?: string;
}

/** This project's root: the directory holding `supabase/` and `node_modules/`. */
export const PROJECT_ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname)
  .replace(/\/$/, "");

/** scripts/db/bootstrap.sql: what makes a bare Postgres database look like Supabase's. */
export const BOOTSTRAP_PATH = `${PROJECT_ROOT}/scripts/db/bootstrap.sql`;

/** `supabase db push` only applies files named `<version>_<name>.sql`. */
const MIGRATION_FILE = /^(\d+)_.*\.sql$/;

/** Hosts where a plain-text connection is expected (the CLI otherwise tries TLS first and warns). */
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/**
 * Prepares the database at `url`: bootstrap, migrations, seed. Safe to run again: every step is
 * idempotent, and migrations already recorded in `supabase_migrations.schema_migrations` are not
 * applied twice.
 *
 * @param url a Postgres connection URL for a superuser (or the database owner with CREATEROLE)
 * @param options seed, log and workdir
 * @throws Error naming the step that failed, with the server's or the CLI's message
 */
export async function prepareDatabase(
  url: string,
  options: PrepareDatabaseOptions = {},
): Promise<void> {
  const log = options.log ?? (() => {});
  const workdir = (options.workdir ?? PROJECT_ROOT).replace(/\/$/, "");
  const sql = postgres(url, {
    max: 1,
    onnotice: () => {}, // "already exists, skipping" on every rerun
    connect_timeout: 10,
  });
  try {
    let startedMs = performance.now();
    await runStep("bootstrap (scripts/db/bootstrap.sql)", async () => {
      await sql.unsafe(await Deno.readTextFile(BOOTSTRAP_PATH));
    });
    log(`bootstrap: done in ${elapsedMs(startedMs)} ms`);

    startedMs = performance.now();
    const history = await runStep(
      "migrations (reading history)",
      () => compareMigrationHistory(sql, workdir),
    );
    if (history.pending.length === 0 && history.unknownApplied.length === 0) {
      // The CLI would connect, compare the same versions and do nothing, after ~1.3 s of startup.
      log("migrations: up to date, supabase db push not needed");
    } else {
      await runStep("migrations (supabase db push)", () => pushMigrations(url, workdir));
      log(
        `migrations: supabase db push applied ${history.pending.length} (${
          history.pending.join(", ")
        }) in ${elapsedMs(startedMs)} ms`,
      );
    }

    if (options.seed ?? true) {
      startedMs = performance.now();
      const seedPath = `${workdir}/supabase/seed.sql`;
      const seed = await readTextFileIfExists(seedPath);
      if (seed === null) {
        log(`seed: ${seedPath} does not exist, skipped`);
      } else {
        await runStep("seed (supabase/seed.sql)", async () => {
          await sql.unsafe(seed);
        });
        log(`seed: done in ${elapsedMs(startedMs)} ms`);
      }
      startedMs = performance.now();
      const orgFiles = await listOrgFiles(workdir);
      if (orgFiles.length > 0) {
        const changed = await runStep("orgs (supabase/orgs/*.toml)", async () => {
          const read = await readOrgFiles(orgFiles);
          if (!read.ok) throw new Error(read.problems.map(formatProblem).join("; "));
          const applied = await applyOrgs(sql, read.orgs);
          return applied.filter((org) => org.changes.length > 0).length;
        });
        log(`orgs: ${orgFiles.length} files, ${changed} changed, in ${elapsedMs(startedMs)} ms`);
      }
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * The org files of a project, `supabase/orgs/*.toml`, sorted; none when the folder is missing.
 * @param workdir directory containing `supabase/`
 */
export async function listOrgFiles(workdir: string = PROJECT_ROOT): Promise<string[]> {
  const dir = `${workdir.replace(/\/$/, "")}/supabase/orgs`;
  const files: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".toml")) files.push(`${dir}/${entry.name}`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return files.sort();
}

/**
 * Adds `sslmode=disable` to URLs of loopback servers that do not say otherwise: local servers and
 * the embedded one speak plain TCP, and the CLI would otherwise try TLS first and print a warning.
 *
 * @param url a Postgres connection URL
 * @returns the URL to hand to the Supabase CLI
 */
export function cliDatabaseUrl(url: string): string {
  const parsed = new URL(url);
  if (!LOOPBACK_HOSTS.has(parsed.hostname) || parsed.searchParams.has("sslmode")) return url;
  parsed.searchParams.set("sslmode", "disable");
  return parsed.toString();
}

/**
 * Hides the password of a connection URL, for logs and error messages.
 *
 * @param url a Postgres connection URL
 * @returns the URL with `***` in place of the password
 */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "<unparsable database URL>";
  }
}

/** Local migration versions against those the database's migration history records. */
async function compareMigrationHistory(
  sql: postgres.Sql,
  workdir: string,
): Promise<{ pending: string[]; unknownApplied: string[] }> {
  const local = await localMigrationVersions(workdir);
  const [{ exists }] = await sql<{ exists: boolean }[]>`
    select to_regclass('supabase_migrations.schema_migrations') is not null as "exists"
  `;
  const applied = exists
    ? (await sql<{ version: string }[]>`
      select version from supabase_migrations.schema_migrations
    `).map((row) => row.version)
    : [];
  return {
    pending: local.filter((version) => !applied.includes(version)),
    // Applied versions missing locally make the CLI refuse to push; let it say so.
    unknownApplied: applied.filter((version) => !local.includes(version)),
  };
}

async function localMigrationVersions(workdir: string): Promise<string[]> {
  const versions: string[] = [];
  try {
    for await (const entry of Deno.readDir(`${workdir}/supabase/migrations`)) {
      const match = entry.isFile ? MIGRATION_FILE.exec(entry.name) : null;
      if (match) versions.push(match[1]);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return versions.sort();
}

/** Runs `supabase db push` against `url`, with migrations from `workdir/supabase/migrations`. */
async function pushMigrations(url: string, workdir: string): Promise<void> {
  const args = [
    "db",
    "push",
    `--remote=${cliDatabaseUrl(url)}`,
    "--yes",
    // Also apply local migrations older than the newest applied one (e.g. after a rebase).
    "--include-all",
    // Vault secrets from config.toml need Supabase's vault extension, which a bare Postgres lacks.
    "--skip-vault",
    "--workdir",
    workdir,
  ];
  const output = await new Deno.Command(await supabaseBinary(), {
    args,
    cwd: workdir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
  }).output();
  if (!output.success) {
    const decoder = new TextDecoder();
    const stderr = decoder.decode(output.stderr).trim();
    const stdout = decoder.decode(output.stdout).trim();
    throw new Error(
      `supabase db push exited with code ${output.code}\n${
        [stderr, stdout].filter(Boolean).join("\n")
      }`
        .replaceAll(url, redactDatabaseUrl(url)),
    );
  }
}

/**
 * The Supabase CLI executable: the platform binary itself when installed (skips the Node shim
 * that would only spawn it), else `node_modules/.bin/supabase`.
 */
async function supabaseBinary(): Promise<string> {
  const platform =
    { linux: "linux", darwin: "darwin", windows: "windows" }[Deno.build.os as string];
  const arch = { x86_64: "x64", aarch64: "arm64" }[Deno.build.arch as string];
  const extension = Deno.build.os === "windows" ? ".exe" : "";
  if (platform && arch) {
    const binary =
      `${PROJECT_ROOT}/node_modules/@supabase/cli-${platform}-${arch}/bin/supabase${extension}`;
    if (await fileExists(binary)) return binary;
  }
  return `${PROJECT_ROOT}/node_modules/.bin/supabase`;
}

/** Runs one step and rethrows its failure with the step's name in front. */
async function runStep<T>(step: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw new Error(`Cannot prepare database: ${step} failed: ${describeError(error)}`, {
      cause: error,
    });
  }
}

/** An error's message plus what postgres.js knows about where in the SQL it happened. */
function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const details = error as Error & { code?: string; detail?: string; where?: string };
  return [
    details.message,
    details.code && /^[0-9A-Z]{5}$/.test(details.code) ? `(SQLSTATE ${details.code})` : "",
    details.detail ? `\nDetail: ${details.detail}` : "",
    details.where ? `\nWhere: ${details.where}` : "",
  ].filter(Boolean).join(" ");
}

async function readTextFileIfExists(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

function elapsedMs(startedMs: number): number {
  return Math.round(performance.now() - startedMs);
}

async function main(args: string[]): Promise<number> {
  const flags = new Set(args.filter((arg) => arg.startsWith("--")));
  const positional = args.filter((arg) => !arg.startsWith("--"));
  const unknown = [...flags].filter((flag) => flag !== "--no-seed" && flag !== "--keep");
  if (unknown.length > 0 || positional.length > 1) {
    console.error("Usage: deno run -A scripts/db/prepare.ts [url] [--no-seed] [--keep]");
    return 2;
  }
  const log = (line: string) => console.error(line);
  const seed = !flags.has("--no-seed");
  const url = positional[0] ?? Deno.env.get("DATABASE_URL");
  const startedMs = performance.now();
  if (url) {
    await prepareDatabase(url, { seed, log });
    log(`prepared ${redactDatabaseUrl(url)} in ${elapsedMs(startedMs)} ms`);
    return 0;
  }
  const { startEmbeddedPostgres } = await import("./embedded.ts");
  const embedded = await startEmbeddedPostgres();
  try {
    log(`embedded Postgres (PGlite) started in ${elapsedMs(startedMs)} ms at ${embedded.url}`);
    await prepareDatabase(embedded.url, { seed, log });
    log(`prepared ${embedded.url} in ${elapsedMs(startedMs)} ms`);
    if (flags.has("--keep")) {
      console.log(embedded.url);
      log("serving until Ctrl-C");
      await new Promise<void>((resolve) => Deno.addSignalListener("SIGINT", resolve));
    }
  } finally {
    await embedded.stop();
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    Deno.exit(1);
  }
}
