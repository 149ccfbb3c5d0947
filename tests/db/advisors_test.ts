/**
 * Supabase's database advisors (security and performance lints, run by the real Supabase CLI)
 * find nothing at warning level or above on the migrated database: RLS on every table, policies
 * with `(select auth.uid())`, fixed search paths, no security definer function exposed.
 * @module
 */
import assert from "node:assert/strict";
import { cliDatabaseUrl, PROJECT_ROOT } from "../../scripts/db/prepare.ts";
import { createTestDatabase } from "../support/test_db.ts";

Deno.test("supabase db advisors reports no warnings on the migrated schema", async () => {
  const db = await createTestDatabase({ seed: true });
  try {
    const output = await new Deno.Command(`${PROJECT_ROOT}/node_modules/.bin/supabase`, {
      args: [
        "db",
        "advisors",
        `--remote=${cliDatabaseUrl(db.url)}`,
        "--type",
        "all",
        "--level",
        "warn",
        "--fail-on",
        "warn",
        "--yes",
      ],
      cwd: PROJECT_ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, text);
    assert.doesNotMatch(text, /"level":\s*"(WARN|ERROR)"/, text);
  } finally {
    await db.drop();
  }
});
