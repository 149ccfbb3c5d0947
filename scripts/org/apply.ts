/**
 * `scripts/org.ts apply <file>... [--dry-run]` and `export <slug>`: org files into the database
 * in one transaction through `apply_org_config`, with what changed; and an org back out as its
 * file.
 * @module
 */
import type postgres from "postgres";
import {
  type OrgCommand,
  type OrgCommandContext,
  OrgCommandError,
  parseOptions,
  withDatabase,
} from "./command.ts";
import {
  formatProblem,
  type OrgConfig,
  orgConfigToToml,
  type OrgFileProblem,
  parseOrgFile,
  toOrgConfig,
} from "./org_file.ts";

/** An org file read and valid. */
export interface OrgToApply {
  slug: string;
  path: string;
  config: OrgConfig;
}

/** What applying one org did (or would do, on a dry run). */
export interface AppliedOrg {
  slug: string;
  orgId: string;
  created: boolean;
  /** One line per change; empty when the org already matched its file. */
  changes: string[];
}

/**
 * Reads and validates org files: every problem of every file, or the orgs to apply.
 * @param paths the files
 */
export async function readOrgFiles(
  paths: readonly string[],
): Promise<{ ok: true; orgs: OrgToApply[] } | { ok: false; problems: OrgFileProblem[] }> {
  const problems: OrgFileProblem[] = [];
  const orgs: OrgToApply[] = [];
  const seen = new Map<string, string>();
  for (const path of paths) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (error) {
      problems.push({ file: path, line: 1, key: "", message: `cannot read: ${describe(error)}` });
      continue;
    }
    const result = parseOrgFile(text, path);
    if (!result.ok) {
      problems.push(...result.problems);
      continue;
    }
    const earlier = seen.get(result.slug);
    if (earlier) {
      problems.push({ file: path, line: 1, key: "", message: `same slug as ${earlier}` });
      continue;
    }
    seen.set(result.slug, path);
    orgs.push({ slug: result.slug, path, config: toOrgConfig(result.file) });
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, orgs };
}

class DryRunRollback extends Error {}

/**
 * Applies orgs in one transaction (rolled back on a dry run): all of them or none.
 * @throws OrgCommandError with the database's reason when one is refused
 */
export async function applyOrgs(
  sql: postgres.Sql,
  orgs: readonly OrgToApply[],
  options: { dryRun?: boolean } = {},
): Promise<AppliedOrg[]> {
  const applied: AppliedOrg[] = [];
  try {
    await sql.begin(async (tx) => {
      for (const org of orgs) {
        const [{ result }] = await tx<{ result: ApplyRpcResult }[]>`
          select public.apply_org_config(${org.slug}, ${tx.json(toJson(org.config))}) as result`;
        applied.push({
          slug: org.slug,
          orgId: result.org_id,
          created: result.created,
          changes: diffOrgConfigs(result.before, result.after),
        });
      }
      if (options.dryRun) throw new DryRunRollback();
    });
  } catch (error) {
    if (error instanceof DryRunRollback) return applied;
    const failed = orgs[applied.length];
    throw new OrgCommandError(
      `Cannot apply ${failed ? failed.path : "the org files"}: ${
        describe(error)
      }; nothing was applied`,
    );
  }
  return applied;
}

interface ApplyRpcResult {
  org_id: string;
  created: boolean;
  before: OrgConfig | null;
  after: OrgConfig;
}

// postgres.js types json parameters narrowly; the document is plain JSON.
function toJson(config: OrgConfig): postgres.JSONValue {
  return JSON.parse(JSON.stringify(config));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function show(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value ?? null);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** `changed voice: "alloy" -> "marin"`; long texts by length, their ends would not differ. */
function describeChange(key: string, before: unknown, after: unknown): string {
  const long = (value: unknown) => typeof value === "string" && value.length > 40;
  if (long(before) || long(after)) {
    const length = (value: unknown) => typeof value === "string" ? value.length : 0;
    return `changed ${key}: text edited (${length(before)} -> ${length(after)} characters)`;
  }
  return `changed ${key}: ${show(before)} -> ${show(after)}`;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

const SCALAR_KEYS = [
  "name",
  "timezone",
  "country",
  "greeting",
  "persona",
  "voice",
  "languages",
  "transfer_number",
  "emergency_keywords",
  "max_call_minutes",
] as const;

const NESTED_KEYS = ["vad", "sms", "booking"] as const;

/** Changes of named items (providers, services, overrides) between two lists. */
function diffNamed<T>(
  kind: string,
  before: readonly T[],
  after: readonly T[],
  keyOf: (item: T) => string,
  labelOf: (item: T) => string,
): string[] {
  const changes: string[] = [];
  const old = new Map(before.map((item) => [keyOf(item), item]));
  const now = new Map(after.map((item) => [keyOf(item), item]));
  for (const [key, item] of now) {
    const previous = old.get(key);
    if (!previous) {
      changes.push(`added ${kind} ${labelOf(item)}`);
      continue;
    }
    const fields = Object.keys(item as object).filter((field) =>
      !same(
        (previous as Record<string, unknown>)[field],
        (item as Record<string, unknown>)[field],
      )
    );
    if (fields.length > 0) changes.push(`changed ${kind} ${labelOf(item)}: ${fields.join(", ")}`);
  }
  for (const [key, item] of old) {
    if (!now.has(key)) changes.push(`removed ${kind} ${labelOf(item)}`);
  }
  return changes;
}

/**
 * What differs between two exports of an org, one line per change, in the file's words.
 * @param before the org before (null: it did not exist)
 * @param after the org after
 */
export function diffOrgConfigs(before: OrgConfig | null, after: OrgConfig): string[] {
  if (before === null) {
    return [
      `created org ${JSON.stringify(after.name)}: ${after.numbers.length} numbers, ` +
      `${after.providers.length} providers, ${after.services.length} services, ` +
      `${after.overrides.length} date overrides`,
    ];
  }
  const changes: string[] = [];
  for (const key of SCALAR_KEYS) {
    if (!same(before[key], after[key])) changes.push(describeChange(key, before[key], after[key]));
  }
  for (const section of NESTED_KEYS) {
    const old = before[section] as Record<string, unknown>;
    const now = after[section] as Record<string, unknown>;
    for (const key of Object.keys(now)) {
      if (!same(old[key], now[key])) {
        changes.push(describeChange(`${section}.${key}`, old[key], now[key]));
      }
    }
  }
  for (const number of after.numbers) {
    if (!before.numbers.includes(number)) changes.push(`added number ${number}`);
  }
  for (const number of before.numbers) {
    if (!after.numbers.includes(number)) changes.push(`detached number ${number}`);
  }
  const named = (item: { name: string }) => item.name.toLowerCase();
  const label = (item: { name: string }) => JSON.stringify(item.name);
  changes.push(...diffNamed("provider", before.providers, after.providers, named, label));
  changes.push(...diffNamed("service", before.services, after.services, named, label));
  const overrideKey = (item: OrgConfig["overrides"][number]) =>
    `${item.date}|${item.provider?.toLowerCase() ?? ""}`;
  const overrideLabel = (item: OrgConfig["overrides"][number]) =>
    `${item.date}${item.provider ? ` (${item.provider})` : ""}`;
  changes.push(
    ...diffNamed("override", before.overrides, after.overrides, overrideKey, overrideLabel),
  );
  return changes;
}

/** `apply <file>... [--dry-run]`. */
export const applyCommand: OrgCommand = async (args, ctx) => {
  const { positional, options } = parseOptions(args, []);
  const dryRun = options.has("dry-run");
  for (const name of options.keys()) {
    if (name !== "dry-run") throw new OrgCommandError(`Unknown option --${name}`);
  }
  if (positional.length === 0) {
    throw new OrgCommandError("apply needs at least one org file, e.g. supabase/orgs/*.toml");
  }
  const read = await readOrgFiles(positional);
  if (!read.ok) {
    for (const problem of read.problems) ctx.err(formatProblem(problem));
    ctx.err(
      `${read.problems.length} problem${
        read.problems.length === 1 ? "" : "s"
      } found; nothing was applied`,
    );
    return 1;
  }
  const applied = await withDatabase(ctx, (sql) => applyOrgs(sql, read.orgs, { dryRun }));
  printApplied(applied, dryRun, ctx);
  return 0;
};

function printApplied(applied: AppliedOrg[], dryRun: boolean, ctx: OrgCommandContext): void {
  let changed = 0;
  for (const org of applied) {
    if (org.changes.length === 0) {
      ctx.out(`${org.slug}: no changes`);
      continue;
    }
    changed++;
    ctx.out(`${org.slug}:${dryRun ? " (dry run)" : ""}`);
    for (const change of org.changes) ctx.out(`  ${change}`);
  }
  const verb = dryRun ? "would change" : "changed";
  ctx.out(
    `${applied.length} org${applied.length === 1 ? "" : "s"} read, ${changed} ${verb}` +
      (dryRun ? "; nothing was applied (dry run)" : ""),
  );
}

/** `export <slug>`: the org as stored, as its file. */
export const exportCommand: OrgCommand = async (args, ctx) => {
  const { positional, options } = parseOptions(args, []);
  if (positional.length !== 1 || options.size > 0) {
    throw new OrgCommandError("export takes one org slug, e.g. export harbor-dental");
  }
  const [slug] = positional;
  const config = await withDatabase(ctx, async (sql) => {
    const [{ config }] = await sql<{ config: OrgConfig | null }[]>`
      select public.export_org_config(${slug}) as config`;
    return config;
  });
  if (config === null) throw new OrgCommandError(`Cannot find org ${JSON.stringify(slug)}`);
  ctx.out(orgConfigToToml(config).trimEnd());
  return 0;
};
