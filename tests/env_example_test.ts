import assert from "node:assert/strict";

Deno.test(".env.example lists every setting config.ts reads, each with a one-line meaning", async () => {
  const source = await Deno.readTextFile("supabase/functions/_shared/config.ts");
  const schemaBlock = source.slice(source.indexOf("const envSchema"), source.indexOf("});"));
  const settings = [...schemaBlock.matchAll(/^\s{2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]);
  assert.ok(settings.length >= 20, `found ${settings.length} settings`);
  const example = await Deno.readTextFile(".env.example");
  const lines = example.split("\n");
  for (const name of settings) {
    const index = lines.findIndex((line) => line.startsWith(`${name}=`));
    assert.ok(index > 0, `${name} missing from .env.example`);
    assert.match(lines[index - 1], /^# \S/, `${name} needs a comment line above it`);
  }
});
