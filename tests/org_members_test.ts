/**
 * `scripts/org.ts add-member`: locally on a prepared database, and on "hosted" Supabase through
 * a loopback stand-in of the Auth admin API (GoTrue's invite, users and error shapes) and the
 * Data API's RPC endpoint, which runs the real `add_org_member` on the test database. A member
 * then sees their org's rows and nothing of another org's (row level security).
 * @module
 */
import assert from "node:assert/strict";
import { runOrgCli } from "../scripts/org.ts";
import { createTestDatabase, type TestDatabase, withRole } from "./support/test_db.ts";
import { HARBOR_DENTAL } from "./db/fixtures.ts";
import { createOrg } from "./db/fixtures.ts";

async function org(env: Record<string, string>, ...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runOrgCli(argv, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env,
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** The orgs whose calls, clients and providers a signed-in user sees. */
async function visibleOrgIds(db: TestDatabase, userId: string): Promise<string[]> {
  return await withRole(
    db.sql,
    "authenticated",
    { sub: userId, role: "authenticated" },
    async (tx) => {
      const rows = await tx`
      select org_id from public.clients
      union select org_id from public.providers
      union select id from public.orgs`;
      return rows.map((row) => String(row.org_id)).sort();
    },
  );
}

interface FakeSupabase {
  url: string;
  requests: { method: string; path: string; body: unknown; auth: string | null }[];
  close(): Promise<void>;
}

/** GoTrue's admin endpoints and PostgREST's `/rpc/add_org_member`, as supabase-js calls them. */
function fakeSupabase(db: TestDatabase, serviceKey: string): FakeSupabase {
  const users = new Map<string, { id: string; email: string }>();
  const requests: FakeSupabase["requests"] = [];
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json" },
    });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    const body = req.method === "POST" ? await req.json() : null;
    const auth = req.headers.get("authorization");
    requests.push({ method: req.method, path: url.pathname + url.search, body, auth });
    if (auth !== `Bearer ${serviceKey}` || req.headers.get("apikey") !== serviceKey) {
      return json(401, { code: 401, error_code: "no_authorization", msg: "Invalid API key" });
    }
    if (req.method === "POST" && url.pathname === "/auth/v1/invite") {
      const email = String(body.email).toLowerCase();
      if (users.has(email)) {
        return json(422, {
          code: 422,
          error_code: "email_exists",
          msg: "A user with this email address has already been registered",
        });
      }
      const [row] = await db.sql<{ id: string }[]>`
        insert into auth.users (email) values (${email}) returning id`;
      const user = { id: row.id, email };
      users.set(email, user);
      return json(200, { ...user, aud: "authenticated", role: "authenticated" });
    }
    if (req.method === "GET" && url.pathname === "/auth/v1/admin/users") {
      const perPage = Number(url.searchParams.get("per_page"));
      const page = Number(url.searchParams.get("page"));
      const all = [...users.values()];
      return json(200, {
        users: all.slice((page - 1) * perPage, page * perPage),
        aud: "authenticated",
      });
    }
    if (req.method === "POST" && url.pathname === "/rest/v1/rpc/add_org_member") {
      try {
        const [{ result }] = await db.sql`
          select public.add_org_member(${body.p_slug}, ${body.p_user_id}, ${body.p_role}) as result`;
        return json(200, result);
      } catch (error) {
        return json(400, { code: "P0002", message: (error as Error).message });
      }
    }
    return json(404, { msg: "not found" });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    requests,
    close: () => server.shutdown(),
  };
}

Deno.test({
  name: "add-member gives a person their org's rows and nothing else",
  sanitizeResources: false,
  async fn(t) {
    const db = await createTestDatabase();
    try {
      const other = await createOrg(db.sql);
      await t.step("locally: the user is created and made a member", async () => {
        const env = { DATABASE_URL: db.url };
        const added = await org(env, "add-member", "harbor-dental", "Ann@Example.com");
        assert.equal(added.code, 0, added.err);
        assert.match(
          added.out,
          /^ann@example\.com: added as staff of harbor-dental \(user [0-9a-f-]{36}\)$/,
        );
        const [{ id }] = await db.sql`select id from auth.users where email = 'ann@example.com'`;
        assert.deepEqual(await visibleOrgIds(db, id), [HARBOR_DENTAL.id]);
        const again = await org(
          env,
          "add-member",
          "harbor-dental",
          "ann@example.com",
          "--role",
          "owner",
        );
        assert.match(again.out, /changed from staff to owner/);
        const [{ role }] = await db.sql`select role from public.org_members where user_id = ${id}`;
        assert.equal(role, "owner");
        assert.ok(!(await visibleOrgIds(db, id)).includes(other.id));
      });

      await t.step("locally: bad input is refused with one line", async () => {
        const env = { DATABASE_URL: db.url };
        const badRole = await org(
          env,
          "add-member",
          "harbor-dental",
          "b@example.com",
          "--role",
          "admin",
        );
        assert.equal(badRole.err, 'org add-member: --role must be owner or staff, not "admin"');
        const badEmail = await org(env, "add-member", "harbor-dental", "not-an-email");
        assert.equal(badEmail.code, 1);
        const noOrg = await org(env, "add-member", "no-such-org", "c@example.com");
        assert.match(noOrg.err, /Cannot find org no-such-org/);
        const [{ count }] = await db.sql`
          select count(*)::int from auth.users where email = 'c@example.com'`;
        assert.equal(count, 0, "nothing is left behind when the org is unknown");
      });

      await t.step(
        "hosted: invited through the Auth admin API, added through the RPC",
        async () => {
          const key = "service-role-key-for-tests";
          const fake = fakeSupabase(db, key);
          try {
            const env = { SUPABASE_URL: fake.url, SUPABASE_SERVICE_ROLE_KEY: key };
            const added = await org(env, "add-member", "harbor-dental", "sam@example.com");
            assert.equal(added.code, 0, added.err);
            assert.match(added.out, /added as staff of harbor-dental \(invitation email sent\)/);
            assert.deepEqual(fake.requests.map((request) => `${request.method} ${request.path}`), [
              "POST /auth/v1/invite",
              "POST /rest/v1/rpc/add_org_member",
            ]);
            assert.equal((fake.requests[0].body as { email: string }).email, "sam@example.com");
            // Already registered: found by listing users, not invited twice.
            const again = await org(
              env,
              "add-member",
              "harbor-dental",
              "sam@example.com",
              "--role",
              "owner",
            );
            assert.equal(again.code, 0, again.err);
            assert.match(again.out, /changed from staff to owner of harbor-dental \(user/);
            assert.deepEqual(fake.requests.slice(2).map((request) => request.path), [
              "/auth/v1/invite",
              "/auth/v1/admin/users?page=1&per_page=1000",
              "/rest/v1/rpc/add_org_member",
            ]);
            const [{ id }] = await db
              .sql`select id from auth.users where email = 'sam@example.com'`;
            assert.deepEqual(await visibleOrgIds(db, id), [HARBOR_DENTAL.id]);
            const wrongKey = await org(
              { ...env, SUPABASE_SERVICE_ROLE_KEY: "wrong" },
              "add-member",
              "harbor-dental",
              "x@example.com",
            );
            assert.equal(wrongKey.code, 1);
            assert.match(wrongKey.err, /Cannot invite x@example\.com: Invalid API key/);
          } finally {
            await fake.close();
          }
        },
      );
    } finally {
      await db.drop();
    }
  },
});
