import assert from "node:assert/strict";

const FUNCTIONS = ["voice-frontdoor", "voice-stream", "voice-action"];

Deno.test("each function's deno.json maps its imports exactly as the root deno.json does", async () => {
  const root = JSON.parse(await Deno.readTextFile("deno.json")).imports as Record<string, string>;
  for (const name of FUNCTIONS) {
    const own = JSON.parse(await Deno.readTextFile(`supabase/functions/${name}/deno.json`))
      .imports as Record<string, string>;
    for (const [specifier, target] of Object.entries(own)) {
      assert.equal(target, root[specifier], `${name}: ${specifier}`);
      assert.match(target, /^npm:(@[^/]+\/)?[^@]+@\d+\.\d+\.\d+$/, "pinned npm version");
    }
  }
});

Deno.test("config.toml disables JWT verification for the three Twilio-facing functions", async () => {
  const toml = await Deno.readTextFile("supabase/config.toml");
  for (const name of FUNCTIONS) {
    const section = toml.split(`[functions.${name}]`)[1]?.split("\n[")[0] ?? "";
    assert.match(section, /verify_jwt = false/, name);
    assert.match(section, new RegExp(`import_map = "./functions/${name}/deno.json"`), name);
  }
});
