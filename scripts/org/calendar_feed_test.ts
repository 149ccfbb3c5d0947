import assert from "node:assert/strict";
import { isFeedToken } from "../../supabase/functions/voice-action/calendar.ts";
import { createScheduledOrg } from "../../tests/db/fixtures.ts";
import { createTestDatabase } from "../../tests/support/test_db.ts";
import { createFeedToken, feedBaseUrl, rotateFeedCommand } from "./calendar_feed.ts";
import { type OrgCommandContext, OrgCommandError } from "./command.ts";

function context(databaseUrl = "", env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const ctx: OrgCommandContext = {
    databaseUrl,
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env,
  };
  return { ctx, out, err };
}

Deno.test("createFeedToken() makes distinct 32-byte base64url tokens", () => {
  const tokens = new Set(Array.from({ length: 100 }, createFeedToken));
  assert.equal(tokens.size, 100);
  for (const token of tokens) assert.ok(isFeedToken(token), token);
});

Deno.test("feedBaseUrl() takes --base-url, then PUBLIC_FUNCTIONS_URL, then SUPABASE_URL", () => {
  const env = {
    PUBLIC_FUNCTIONS_URL: "https://calls.example.com/functions/v1/",
    SUPABASE_URL: "https://abc.supabase.co",
  };
  assert.equal(
    feedBaseUrl("http://localhost:54321/functions/v1", env),
    "http://localhost:54321/functions/v1",
  );
  assert.equal(feedBaseUrl(undefined, env), "https://calls.example.com/functions/v1");
  assert.equal(
    feedBaseUrl(undefined, { SUPABASE_URL: "https://abc.supabase.co/" }),
    "https://abc.supabase.co/functions/v1",
  );
  assert.throws(() => feedBaseUrl(undefined, {}), OrgCommandError);
  assert.throws(() => feedBaseUrl("not a url", {}), /not a URL/);
  assert.throws(() => feedBaseUrl("ftp://example.com", {}), /not an http\(s\) URL/);
});

Deno.test("rotateFeedCommand() refuses bad arguments before touching the database", async () => {
  const env = { PUBLIC_FUNCTIONS_URL: "https://abc.supabase.co/functions/v1" };
  const cases: [string[], RegExp][] = [
    [[], /Usage: org\.ts rotate-feed <slug>/],
    [["a", "b"], /Usage/],
    [["harbor-dental", "--provider"], /--provider needs a value/],
    [["harbor-dental", "--force"], /Unknown option --force/],
  ];
  for (const [args, message] of cases) {
    const { ctx, out } = context("", env);
    await assert.rejects(rotateFeedCommand(args, ctx), message, args.join(" "));
    assert.deepEqual(out, []);
  }
  const { ctx } = context("", {});
  await assert.rejects(rotateFeedCommand(["harbor-dental"], ctx), /--base-url/);
  const noDatabase = context("", env);
  await assert.rejects(rotateFeedCommand(["harbor-dental"], noDatabase.ctx), /--database-url/);
});

Deno.test("rotateFeedCommand() names the org's providers when the one asked for is unknown", async () => {
  const db = await createTestDatabase();
  try {
    const org = await createScheduledOrg(db.sql, {
      providers: [{ name: "Dr. Ada" }, { name: "Sam Ortiz" }],
      services: [{ name: "Cleaning", minutes: 30, providers: ["Dr. Ada"] }],
    });
    const [{ slug }] = await db.sql`select slug from public.orgs where id = ${org.id}`;
    const { ctx, out } = context(db.url, { SUPABASE_URL: "https://abc.supabase.co" });
    await assert.rejects(
      rotateFeedCommand([slug, "--provider", "Dr. Who"], ctx),
      /Cannot find provider "Dr\. Who" in .*: its providers are "Dr\. Ada", "Sam Ortiz"/,
    );
    await assert.rejects(rotateFeedCommand(["no-such-org"], ctx), /Cannot find org/);
    assert.deepEqual(out, []);
    const [{ count }] = await db.sql`select count(*)::int as count from public.calendar_feeds
      where org_id = ${org.id}`;
    assert.equal(count, 0);

    assert.equal(await rotateFeedCommand([slug, "--provider=DR. ADA"], ctx), 0);
    assert.match(
      out[0],
      /^https:\/\/abc\.supabase\.co\/functions\/v1\/voice-action\?route=calendar&token=/,
    );
  } finally {
    await db.drop();
  }
});
