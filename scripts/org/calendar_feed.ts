/**
 * `scripts/org.ts rotate-feed <slug> [--provider "<name>"] [--base-url <url>]`: gives an org (or
 * one of its providers) a new calendar feed URL and revokes the old one. Speaks SQL to the org's
 * database (`rotate_calendar_feed`, which stores only the token's SHA-256) and prints the URL
 * once: it cannot be shown again, only replaced.
 * @module
 */
import {
  calendarFeedUrl,
  FEED_TOKEN_BYTES,
  feedTokenSha256,
} from "../../supabase/functions/voice-action/calendar.ts";
import {
  findOrg,
  type OrgCommand,
  type OrgCommandContext,
  OrgCommandError,
  parseOptions,
  withDatabase,
} from "./command.ts";

const USAGE = 'Usage: org.ts rotate-feed <slug> [--provider "<name>"] [--base-url <url>]';
const VALUED_OPTIONS = ["provider", "base-url"] as const;

/**
 * A new feed token: `FEED_TOKEN_BYTES` random bytes, base64url without padding (43 characters).
 */
export function createFeedToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(FEED_TOKEN_BYTES));
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

/**
 * The public functions base URL feeds are served under: `--base-url`, else `PUBLIC_FUNCTIONS_URL`,
 * else `SUPABASE_URL` + `/functions/v1`.
 * @param option the `--base-url` value, if given
 * @param env the process environment
 * @throws OrgCommandError when none is set or it is not an http(s) URL
 */
export function feedBaseUrl(
  option: string | undefined,
  env: Record<string, string | undefined>,
): string {
  const supabaseUrl = env.SUPABASE_URL?.trim();
  const base = option?.trim() || env.PUBLIC_FUNCTIONS_URL?.trim() ||
    (supabaseUrl ? `${supabaseUrl.replace(/\/+$/, "")}/functions/v1` : "");
  if (!base) {
    throw new OrgCommandError(
      "Cannot build the feed URL: pass --base-url or set PUBLIC_FUNCTIONS_URL (or SUPABASE_URL)",
    );
  }
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new OrgCommandError(`Cannot build the feed URL: ${base} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new OrgCommandError(`Cannot build the feed URL: ${base} is not an http(s) URL`);
  }
  return base.replace(/\/+$/, "");
}

/**
 * `rotate-feed`: creates a token, stores its hash as the active token of the org's feed (or the
 * named provider's), prints the feed URL on standard output (nothing else goes there, so
 * `$(org.ts rotate-feed ...)` captures it) and what happened on standard error.
 */
export const rotateFeedCommand: OrgCommand = async (args: string[], ctx: OrgCommandContext) => {
  const { positional, options } = parseOptions(args, VALUED_OPTIONS);
  for (const name of options.keys()) {
    if (!(VALUED_OPTIONS as readonly string[]).includes(name)) {
      throw new OrgCommandError(`Unknown option --${name}. ${USAGE}`);
    }
  }
  if (positional.length !== 1) throw new OrgCommandError(USAGE);
  const [slug] = positional;
  const providerName = options.get("provider") as string | undefined;
  const baseUrl = feedBaseUrl(options.get("base-url") as string | undefined, ctx.env);

  const token = createFeedToken();
  const tokenSha256 = await feedTokenSha256(token);
  const { org, provider } = await withDatabase(ctx, async (sql) => {
    const org = await findOrg(sql, slug);
    let provider: { id: string; name: string } | null = null;
    if (providerName !== undefined) {
      const providers = await sql<{ id: string; name: string }[]>`
        select id, name from public.providers where org_id = ${org.id} order by name`;
      provider = providers.find((row) =>
        row.name.toLowerCase() === providerName.trim().toLowerCase()
      ) ?? null;
      if (!provider) {
        throw new OrgCommandError(
          `Cannot find provider ${JSON.stringify(providerName)} in ${slug}: its providers are ` +
            (providers.map((row) => JSON.stringify(row.name)).join(", ") || "none"),
        );
      }
    }
    await sql`select public.rotate_calendar_feed(
      ${org.id}::uuid, ${provider?.id ?? null}::uuid, ${tokenSha256}::text)`;
    return { org, provider };
  });

  const what = provider ? `${provider.name} at ${org.name}` : `${org.name} (every provider)`;
  ctx.err(`New calendar feed URL for ${what}. It is shown once; anyone who has it can read the`);
  ctx.err("calendar (first names and the last 4 digits of phone numbers). Any earlier URL of this");
  ctx.err("feed has stopped working: subscribers of the old one must subscribe to this one.");
  ctx.out(calendarFeedUrl(baseUrl, token));
  return 0;
};
