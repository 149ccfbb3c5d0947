/**
 * What every `scripts/org.ts` command shares: its context (database URL, output streams,
 * environment), a connection opened for the command's run, and looking an org up by slug.
 * @module
 */
import postgres from "postgres";

/** What a command gets from the dispatcher. */
export interface OrgCommandContext {
  /** Postgres URL (`--database-url`, else `DATABASE_URL`, else `SUPABASE_DB_URL`); may be empty. */
  databaseUrl: string;
  /** Standard output, one line per call. */
  out: (line: string) => void;
  /** Standard error, one line per call. */
  err: (line: string) => void;
  /** The process environment (tests pass their own). */
  env: Record<string, string | undefined>;
}

/** A command of `scripts/org.ts`: takes its own arguments, returns the process exit code. */
export type OrgCommand = (args: string[], ctx: OrgCommandContext) => Promise<number>;

/** A failure the command reports as one line and exit code 1 (no stack trace). */
export class OrgCommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OrgCommandError";
  }
}

/**
 * Runs `fn` with a connection pool to the command's database, closed afterwards.
 * @param ctx the command's context
 * @param fn the work
 */
export async function withDatabase<T>(
  ctx: OrgCommandContext,
  fn: (sql: postgres.Sql) => Promise<T>,
): Promise<T> {
  if (!ctx.databaseUrl) {
    throw new OrgCommandError(
      "Cannot connect: pass --database-url or set DATABASE_URL (or SUPABASE_DB_URL)",
    );
  }
  const sql = postgres(ctx.databaseUrl, { max: 4, onnotice: () => {}, connect_timeout: 10 });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** An org as commands address it. */
export interface OrgRef {
  id: string;
  slug: string;
  name: string;
  timezone: string;
  country: string | null;
}

/**
 * The org with this slug.
 * @throws OrgCommandError when there is none
 */
export async function findOrg(
  sql: postgres.Sql | postgres.TransactionSql,
  slug: string,
): Promise<OrgRef> {
  const [org] = await sql<OrgRef[]>`
    select id, slug, name, timezone, country from public.orgs where slug = ${slug}`;
  if (!org) {
    throw new OrgCommandError(`Cannot find org ${JSON.stringify(slug)}: no org has that slug`);
  }
  return org;
}

/**
 * Splits `--name value`, `--name=value` and bare `--flag` options from positional arguments.
 * @param args the command's arguments
 * @param valued names of options that take a value
 */
export function parseOptions(
  args: string[],
  valued: readonly string[],
): { positional: string[]; options: Map<string, string | true> } {
  const positional: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2);
    if (valued.includes(name)) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new OrgCommandError(`--${name} needs a value`);
      options.set(name, value);
    } else {
      if (inline !== undefined) throw new OrgCommandError(`--${name} takes no value`);
      options.set(name, true);
    }
  }
  return { positional, options };
}
