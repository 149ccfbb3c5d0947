/**
 * Puts a business on the voice front door: org files in and out of the database, client import,
 * staff access and calendar feed tokens. Run with the pinned Deno:
 *
 *   node_modules/.bin/deno run -A scripts/org.ts <command> [arguments] [--database-url URL]
 *
 * Commands:
 *   apply <file>... [--dry-run]        upsert orgs from supabase/orgs/<slug>.toml files
 *   export <slug>                      print an org as its file
 *   import-clients <slug> <file.csv> [--dry-run]
 *                                      import clients (phone,first_name,last_name,notes)
 *   add-member <slug> <email> [--role owner|staff] [--local]
 *                                      give a person access to the org's operator views
 *                                      (invited by email when SUPABASE_URL and
 *                                      SUPABASE_SERVICE_ROLE_KEY are set)
 *   rotate-feed <slug> [--provider NAME] [--base-url URL]
 *                                      new calendar feed URL (the old one stops working)
 *
 * The database is `--database-url`, else DATABASE_URL, else SUPABASE_DB_URL.
 * @module
 */
import { applyCommand, exportCommand } from "./org/apply.ts";
import { type OrgCommand, type OrgCommandContext, OrgCommandError } from "./org/command.ts";
import { addMemberCommand } from "./org/members.ts";
import { importClientsCommand } from "./org/import_clients.ts";
import { rotateFeedCommand } from "./org/calendar_feed.ts";

/** Every command by name. */
export const ORG_COMMANDS: Record<string, OrgCommand> = {
  apply: applyCommand,
  export: exportCommand,
  "import-clients": importClientsCommand,
  "add-member": addMemberCommand,
  "rotate-feed": rotateFeedCommand,
};

/**
 * Runs one command line; returns the exit code. Errors a person can act on are one line.
 * @param argv the arguments after `scripts/org.ts`
 * @param ctx output streams and environment (the database URL is read from `argv` and `env`)
 */
export async function runOrgCli(
  argv: string[],
  ctx: Omit<OrgCommandContext, "databaseUrl">,
): Promise<number> {
  const args: string[] = [];
  let databaseUrl = ctx.env.DATABASE_URL || ctx.env.SUPABASE_DB_URL || "";
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--database-url") databaseUrl = argv[++i] ?? "";
    else if (argv[i].startsWith("--database-url=")) databaseUrl = argv[i].slice(15);
    else args.push(argv[i]);
  }
  const [name, ...rest] = args;
  const command = name === undefined ? undefined : ORG_COMMANDS[name];
  if (!command || name === "help" || name === "--help") {
    const doc = (await Deno.readTextFile(new URL(import.meta.url))).split(" * @module")[0];
    const usage = doc.split("\n").filter((line) => line.startsWith(" *"))
      .map((line) => line.slice(3)).join("\n").trim();
    (command || name === undefined || name === "help" || name === "--help" ? ctx.out : ctx.err)(
      usage,
    );
    return name === undefined || name === "help" || name === "--help" ? 0 : 2;
  }
  try {
    return await command(rest, { ...ctx, databaseUrl });
  } catch (error) {
    if (error instanceof OrgCommandError) {
      ctx.err(`org ${name}: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

if (import.meta.main) {
  const code = await runOrgCli(Deno.args, {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: Deno.env.toObject(),
  });
  Deno.exit(code);
}
