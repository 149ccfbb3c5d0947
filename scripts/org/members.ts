/**
 * `scripts/org.ts add-member <slug> <email> [--role owner|staff]`: gives a person access to their
 * org's operator views (row level security does the rest). On hosted Supabase the person is
 * invited through the Auth admin API (supabase-js `auth.admin.inviteUserByEmail`, service role
 * key) and made a member through the `add_org_member` RPC; on a local database (no SUPABASE_URL,
 * or `--local`) the user row is created in `auth.users` directly.
 * @module
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { type OrgCommand, OrgCommandError, parseOptions, withDatabase } from "./command.ts";

/** Roles of `org_members`. */
export const MEMBER_ROLES = ["owner", "staff"] as const;
type MemberRole = (typeof MEMBER_ROLES)[number];

/** Users per page when looking an existing user up by email (the Auth API's maximum). */
const USERS_PER_PAGE = 1000;
/** Pages read at most: 100,000 users, far beyond a practice's staff. */
const MAX_USER_PAGES = 100;

/** What adding a member did. */
export interface AddedMember {
  userId: string;
  /** True when the person got an invitation email (hosted, new user). */
  invited: boolean;
  previousRole: string | null;
  role: MemberRole;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Adds or updates a member through the hosted Auth admin API and the Data API. */
export async function addMemberHosted(
  supabase: SupabaseClient,
  input: { slug: string; email: string; role: MemberRole; redirectTo?: string },
): Promise<AddedMember> {
  let userId: string | null = null;
  let invited = false;
  const invite = await supabase.auth.admin.inviteUserByEmail(input.email, {
    redirectTo: input.redirectTo,
  });
  if (invite.data?.user) {
    userId = invite.data.user.id;
    invited = true;
  } else if (invite.error && isAlreadyRegistered(invite.error)) {
    userId = await findUserId(supabase, input.email);
  } else {
    throw new OrgCommandError(`Cannot invite ${input.email}: ${invite.error?.message}`);
  }
  if (!userId) throw new OrgCommandError(`Cannot find the user ${input.email}`);
  const { data, error } = await supabase.rpc("add_org_member", {
    p_slug: input.slug,
    p_user_id: userId,
    p_role: input.role,
  });
  if (error) throw new OrgCommandError(`Cannot add ${input.email}: ${error.message}`);
  return { userId, invited, previousRole: data?.previous_role ?? null, role: input.role };
}

// GoTrue answers 422 `email_exists` (older versions: "already been registered").
function isAlreadyRegistered(error: { status?: number; code?: string; message: string }): boolean {
  return error.code === "email_exists" || /already been registered/i.test(error.message);
}

async function findUserId(supabase: SupabaseClient, email: string): Promise<string | null> {
  const wanted = email.toLowerCase();
  for (let page = 1; page <= MAX_USER_PAGES; page++) {
    const { data, error } = await supabase.auth.admin.listUsers({
      page,
      perPage: USERS_PER_PAGE,
    });
    if (error) throw new OrgCommandError(`Cannot list users: ${error.message}`);
    const found = data.users.find((user) => user.email?.toLowerCase() === wanted);
    if (found) return found.id;
    if (data.users.length < USERS_PER_PAGE) return null;
  }
  return null;
}

/** `add-member <slug> <email> [--role owner|staff] [--local]`. */
export const addMemberCommand: OrgCommand = async (args, ctx) => {
  const { positional, options } = parseOptions(args, ["role", "redirect-to"]);
  for (const name of options.keys()) {
    if (!["role", "redirect-to", "local"].includes(name)) {
      throw new OrgCommandError(`Unknown option --${name}`);
    }
  }
  if (positional.length !== 2) {
    throw new OrgCommandError("add-member takes an org slug and an email address");
  }
  const [slug, email] = [positional[0], positional[1].trim().toLowerCase()];
  if (!EMAIL.test(email)) throw new OrgCommandError(`${JSON.stringify(email)} is not an email`);
  const role = String(options.get("role") ?? "staff");
  if (!MEMBER_ROLES.includes(role as MemberRole)) {
    throw new OrgCommandError(`--role must be owner or staff, not ${JSON.stringify(role)}`);
  }
  const url = ctx.env.SUPABASE_URL;
  const key = ctx.env.SUPABASE_SERVICE_ROLE_KEY;
  let added: AddedMember;
  if (url && key && !options.has("local")) {
    const supabase = createClient(url, key, {
      auth: { persistSession: false, autoRefreshToken: false },
    });
    const redirectTo = options.get("redirect-to");
    added = await addMemberHosted(supabase, {
      slug,
      email,
      role: role as MemberRole,
      redirectTo: typeof redirectTo === "string" ? redirectTo : undefined,
    });
  } else {
    added = await withDatabase(ctx, async (sql) => {
      const result = await sql.begin(async (tx) => {
        const [user] = await tx<{ id: string }[]>`
          insert into auth.users (email, aud, role) values (${email}, 'authenticated', 'authenticated')
          on conflict (email) do update set updated_at = now()
          returning id`;
        const [{ member }] = await tx<{ member: { previous_role: string | null } }[]>`
          select public.add_org_member(${slug}, ${user.id}, ${role}) as member`;
        return { userId: user.id, previousRole: member.previous_role };
      }).catch((error) => {
        throw new OrgCommandError(error instanceof Error ? error.message : String(error));
      });
      return { ...result, invited: false, role: role as MemberRole };
    });
  }
  const change = added.previousRole === null
    ? `added as ${added.role}`
    : added.previousRole === added.role
    ? `already ${added.role}, unchanged`
    : `changed from ${added.previousRole} to ${added.role}`;
  ctx.out(
    `${email}: ${change} of ${slug}` +
      (added.invited ? " (invitation email sent)" : "") + ` (user ${added.userId})`,
  );
  return 0;
};
